//! The HTTP data plane: every request's host and path are resolved through
//! the edge module, then answered as the route says: a static site's object,
//! a redirect, a proxied request to a load balancer, or a short 404/400.
//!
//! HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) are served on one
//! listener. The host name comes from the URI's authority (absolute-form,
//! or HTTP/2's `:authority`), else from the one `Host` header; none, or two,
//! is a 400. Every response carries `x-edgeroute-snapshot`: the first 12 hex
//! digits of the id of the snapshot that resolved it.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeroute_edge::{Resolution, Scheme};
use hyper::header::{HeaderValue, ALLOW, HOST, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::Body;
use crate::edge::Edge;
use crate::engine::EngineError;
use crate::metrics::Outcome;
use crate::proxy::{plain, Forwarded, Origin, Proxy, ProxyOutcome};
use crate::router::Worker;
use crate::statics::{Fetched, ObjectMeta, Objects, Want};

/// Limits of the public listener.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Bytes of a request's head (request line and headers) over HTTP/1.1,
    /// and of its header list over HTTP/2.
    pub max_header_bytes: usize,
    /// How long a shutdown waits for requests in flight.
    pub drain: Duration,
    /// How long a client may take to send its request head.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            drain: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
        }
    }
}

/// The data plane: the live routes, where static objects come from, and the
/// proxy to origins.
#[derive(Debug)]
pub struct DataPlane {
    pub edge: &'static Edge,
    pub objects: Objects,
    pub proxy: Proxy,
}

/// Length of the snapshot id prefix in `x-edgeroute-snapshot`.
pub const ID_PREFIX: usize = 12;

thread_local! {
    /// Each server thread's worker (its own instance of the live module), and
    /// the edge it belongs to (several edges may share a process in tests).
    static WORKER: RefCell<Option<(usize, Worker<'static>)>> = const { RefCell::new(None) };
}

/// A resolution, owned, so that it can outlive the worker's buffer across awaits.
#[derive(Debug)]
enum Route {
    Static { bucket: String, key: String, status: u16, fallback: Option<String> },
    Redirect { location: String, status: u16 },
    Balancer(Origin),
    NotFound,
    BadRequest(&'static str),
}

/// Resolves through this thread's worker; returns the route and the id
/// prefix of the snapshot that answered.
fn resolve(edge: &'static Edge, host: &[u8], target: &[u8]) -> Result<(Route, String), EngineError> {
    WORKER.with(|slot| {
        let mut slot = slot.borrow_mut();
        let key = edge as *const Edge as usize;
        if slot.as_ref().map(|(k, _)| *k) != Some(key) {
            *slot = Some((key, edge.router.worker()));
        }
        let Some((_, worker)) = slot.as_mut() else { unreachable!("set above") };
        let start = Instant::now();
        let resolution = worker.resolve(host, target);
        edge.metrics.resolve(start.elapsed());
        let route = match resolution? {
            Resolution::Static { bucket, key, status, fallback, .. } => Route::Static {
                bucket: bucket.to_owned(),
                key: key.to_string(),
                status,
                fallback: fallback.map(|f| f.to_string()),
            },
            Resolution::Redirect { location, status, .. } => Route::Redirect { location: location.to_string(), status },
            Resolution::Balancer { origin, port, scheme, .. } => {
                Route::Balancer(Origin { host: origin.to_owned(), port, https: scheme == Scheme::Https })
            }
            Resolution::NotFound => Route::NotFound,
            Resolution::BadRequest(reason) => Route::BadRequest(reason.as_str()),
        };
        let id = worker.live().map(|l| l.id[..ID_PREFIX.min(l.id.len())].to_owned()).unwrap_or_default();
        Ok((route, id))
    })
}

/// One request in flight, counted while it lives.
struct InFlight<'m>(&'m crate::metrics::Metrics);

impl<'m> InFlight<'m> {
    fn enter(metrics: &'m crate::metrics::Metrics) -> Self {
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The request's host name, as sent: the URI's authority, else the one Host header.
pub fn request_host<B>(req: &Request<B>) -> Result<&[u8], &'static str> {
    if let Some(authority) = req.uri().authority() {
        return Ok(authority.as_str().as_bytes());
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(one), None) => Ok(one.as_bytes()),
        (None, _) => Err("no Host header"),
        (Some(_), Some(_)) => Err("more than one Host header"),
    }
}

/// The host name without its port, lowercased, without a trailing dot (the
/// resolver has checked it already; this is for the TLS name and logs).
fn host_name(host: &[u8]) -> String {
    let text = String::from_utf8_lossy(host);
    let name = match text.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => &text,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DataPlane {
    /// Answers one request. Never fails and never panics on bad input: every
    /// outcome is a response.
    pub async fn handle(&self, req: Request<hyper::body::Incoming>, client: SocketAddr) -> Response<Body> {
        let metrics = &self.edge.metrics;
        // Counted down when the request ends, answered or dropped (a client
        // that goes away mid-proxy drops this future).
        let _in_flight = InFlight::enter(metrics);
        let start = Instant::now();
        let method = req.method().clone();
        let uri = tracing::enabled!(tracing::Level::DEBUG).then(|| req.uri().clone());
        let (outcome, mut response, id) = self.answer(req, client).await;
        metrics.request(outcome, response.status().as_u16());
        if let Some(uri) = uri {
            tracing::debug!(
                "{client} {method} {uri} -> {} {} in {:?}",
                response.status().as_u16(),
                outcome.as_str(),
                start.elapsed()
            );
        }
        let id = id.unwrap_or_else(|| {
            let live = self.edge.router.live();
            live.id[..ID_PREFIX.min(live.id.len())].to_owned()
        });
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-edgeroute-snapshot", value);
        }
        response
    }

    async fn answer(
        &self,
        req: Request<hyper::body::Incoming>,
        client: SocketAddr,
    ) -> (Outcome, Response<Body>, Option<String>) {
        // A router forwards requests; it does not open tunnels.
        if req.method() == Method::CONNECT {
            return (Outcome::BadRequest, plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: CONNECT"), None);
        }
        let host = match request_host(&req) {
            Ok(host) => host.to_vec(),
            Err(why) => {
                return (Outcome::BadRequest, plain(StatusCode::BAD_REQUEST, &format!("bad request: {why}")), None)
            }
        };
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).as_bytes().to_vec();
        let (route, id) = match resolve(self.edge, &host, &target) {
            Ok(answer) => answer,
            // Longer than the module's input buffer: the client's doing, not ours.
            Err(EngineError::InputTooLong) => {
                return (
                    Outcome::BadRequest,
                    plain(StatusCode::URI_TOO_LONG, "bad request: the request is too long"),
                    None,
                )
            }
            Err(e) => {
                tracing::error!("resolve failed: {e}");
                return (
                    Outcome::Error,
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error: the router failed"),
                    None,
                );
            }
        };
        let (outcome, response) = match route {
            Route::Static { bucket, key, status, fallback } => {
                // Boxed, as is the proxy's future below: each is kilobytes,
                // and hyper moves the request's future several times.
                let fetch = Box::pin(self.serve_static(&req, &bucket, &key, status, fallback.as_deref(), &target));
                (Outcome::Static, fetch.await)
            }
            Route::Redirect { location, status } => {
                let mut response =
                    plain(StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY), "moved");
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(LOCATION, value);
                }
                (Outcome::Redirect, response)
            }
            Route::Balancer(origin) => {
                let name = host_name(&host);
                let fwd = Forwarded { host: &host, name: &name, client };
                let (response, result) = Box::pin(self.proxy.forward(req, &origin, fwd)).await;
                if result == ProxyOutcome::OriginFailed {
                    self.edge.metrics.origin_errors.fetch_add(1, Ordering::Relaxed);
                }
                (Outcome::Balancer, response)
            }
            Route::NotFound => (Outcome::NotFound, plain(StatusCode::NOT_FOUND, "not found")),
            Route::BadRequest(reason) => {
                (Outcome::BadRequest, plain(StatusCode::BAD_REQUEST, &format!("bad request: {reason}")))
            }
        };
        (outcome, response, Some(id))
    }

    /// Serves a static site's object, as S3 website hosting would: when the
    /// bucket has no such object, the site's Fallback (200), else its
    /// `404.html` (404), else a plain 404 — never the store's own error.
    async fn serve_static(
        &self,
        req: &Request<hyper::body::Incoming>,
        bucket: &str,
        key: &str,
        status: u16,
        fallback: Option<&str>,
        target: &[u8],
    ) -> Response<Body> {
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                return response;
            }
        };
        let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        let want = Want {
            head,
            if_none_match: header(hyper::header::IF_NONE_MATCH),
            range: header(hyper::header::RANGE),
            if_range: header(hyper::header::IF_RANGE),
        };
        // The resolver's 404 (a site's own 404.html) is sent whole, whatever the conditions.
        let first = if status == 404 { want.unconditional() } else { want };
        let mut tries: Vec<(String, u16, Want<'_>)> = vec![(key.to_owned(), status, first)];
        if status == 200 {
            if let Some(fallback) = fallback.filter(|f| *f != key) {
                tries.push((fallback.to_owned(), 200, want));
            }
            if let Some(page) = not_found_page(key, target).filter(|p| p != key) {
                tries.push((page, 404, want.unconditional()));
            }
        }
        for (key, status, want) in tries {
            match self.objects.fetch(bucket, &key, &want).await {
                Ok(Fetched::Missing) => continue,
                Ok(fetched) => return object_response(fetched, status),
                Err(e) => {
                    tracing::warn!("{e}");
                    self.edge.metrics.origin_errors.fetch_add(1, Ordering::Relaxed);
                    return plain(StatusCode::BAD_GATEWAY, "bad gateway: the site's storage did not answer");
                }
            }
        }
        plain(StatusCode::NOT_FOUND, "not found")
    }
}

/// The site's `404.html` for a key made from the request path: the key
/// without that path, + `404.html`. The resolver has checked the path, so
/// decoding its escapes once gives the key's tail exactly.
fn not_found_page(key: &str, target: &[u8]) -> Option<String> {
    let path = target.split(|&b| b == b'?' || b == b'#').next().unwrap_or_default();
    let mut tail = percent_decode(path.strip_prefix(b"/")?)?;
    if tail.is_empty() || tail.ends_with('/') {
        tail.push_str("index.html");
    }
    let prefix = key.strip_suffix(tail.as_str())?;
    (prefix.is_empty() || prefix.ends_with('/')).then(|| format!("{prefix}404.html"))
}

fn percent_decode(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn object_response(fetched: Fetched, status: u16) -> Response<Body> {
    let (status, meta, body) = match fetched {
        Fetched::Object { meta, partial, body } => {
            let status = if partial && status == 200 { StatusCode::PARTIAL_CONTENT } else { code(status) };
            (status, meta, body)
        }
        Fetched::NotModified { meta } => (StatusCode::NOT_MODIFIED, meta, crate::body::empty()),
        Fetched::RangeNotSatisfiable { size } => {
            let mut response = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(hyper::header::CONTENT_RANGE, value);
            }
            return response;
        }
        Fetched::Missing => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let ObjectMeta {
        content_type,
        content_encoding,
        etag,
        last_modified,
        cache_control,
        content_length,
        content_range,
    } = meta;
    let mut put = |name: hyper::header::HeaderName, value: Option<String>| {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    };
    if status != StatusCode::NOT_MODIFIED {
        put(hyper::header::CONTENT_TYPE, content_type);
        put(hyper::header::CONTENT_ENCODING, content_encoding);
        put(hyper::header::CONTENT_LENGTH, Some(content_length.to_string()));
        put(hyper::header::CONTENT_RANGE, content_range);
        put(hyper::header::ACCEPT_RANGES, Some("bytes".to_owned()));
    }
    put(hyper::header::ETAG, etag);
    put(hyper::header::LAST_MODIFIED, last_modified);
    put(hyper::header::CACHE_CONTROL, cache_control);
    response
}

fn code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

/// The data plane on several threads, each with a single-threaded tokio
/// runtime of its own, all accepting from one listening socket (as nginx's
/// workers do). A request is then served start to end on one thread: its
/// connection, the routing module's instance and the pooled connection to
/// its origin are that thread's, with no hand-over between threads. The
/// connection limit is shared.
#[derive(Debug)]
pub struct Workers {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `threads` serving threads on `listener` (already bound).
    pub fn start(
        plane: &DataPlane,
        listener: std::net::TcpListener,
        threads: usize,
        limits: Limits,
    ) -> std::io::Result<Workers> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut workers = Workers { addr, stop, threads: Vec::new() };
        for n in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let listener = listener.try_clone()?;
            let plane = Arc::new(DataPlane {
                edge: plane.edge,
                objects: plane.objects.clone(),
                proxy: plane.proxy.with_own_pool(),
            });
            let (limits, permits, mut stopped) = (limits.clone(), permits.clone(), stopped.clone());
            let thread = std::thread::Builder::new().name(format!("edgeroute-serve-{n}")).spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => return tracing::error!("serving thread {n} cannot listen: {e}"),
                    };
                    let shutdown = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    serve(plane, listener, limits, permits, shutdown).await;
                });
            });
            match thread {
                Ok(thread) => workers.threads.push(thread),
                Err(e) => {
                    workers.stop_and_join();
                    return Err(e);
                }
            }
        }
        Ok(workers)
    }

    /// The address the workers serve on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets every thread drain (up to the limits' `drain`)
    /// and waits for them.
    pub async fn shutdown(mut self) {
        let _ = tokio::task::spawn_blocking(move || self.stop_and_join()).await;
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(true);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Dropped without [`Workers::shutdown`], the threads stop accepting and
/// drain on their own; nothing waits for them.
impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Serves the data plane on `listener` until `shutdown` completes, then
/// stops accepting and waits up to `limits.drain` for requests in flight.
async fn serve(
    plane: Arc<DataPlane>,
    listener: tokio::net::TcpListener,
    limits: Limits,
    permits: Arc<tokio::sync::Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let edge: &'static Edge = plane.edge;
        let metrics = &edge.metrics;
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        let plane = plane.clone();
        let service = hyper::service::service_fn(move |req| {
            let plane = plane.clone();
            async move { Ok::<_, std::convert::Infallible>(plane.handle(req, client).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            metrics.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown: requests still in flight after {:?}; closing them", limits.drain);
    }
}
