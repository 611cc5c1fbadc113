//! Phase 0, the listener: serving threads that accept connections on the
//! listening sockets (plain HTTP, and TLS: `crate::tls`), the limits that
//! protect them (all told and per client; each connection's deadlines are
//! its socket's: `deadlines.rs`), and a graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::connection::{instant_at, now_ms, Admitted, Answer, ClientSlot, ClientSlots, Connection, InRequest};
use super::deadlines::{Deadlines, Watched};
use crate::metrics::Closed;
use crate::plane::DataPlane;
use crate::tls::TlsTerminator;

/// Limits of the public listener: what one client, or many, can hold of it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 client's /64) may hold at
    /// once; more are closed as they are accepted. 0: no cap. Trusted
    /// proxies (`--trusted-proxies`) are exempt.
    pub max_connections_per_client: usize,
    /// Bytes of a request's head (request line and headers) over HTTP/1.1,
    /// and of its header list over HTTP/2.
    pub max_header_bytes: usize,
    /// How long a shutdown waits for requests in flight.
    pub drain: Duration,
    /// How long a new connection may stay silent before its first byte.
    pub first_byte_timeout: Duration,
    /// How long a client may take to send a request head, from its first byte.
    pub header_timeout: Duration,
    /// How long a connection may stay without a request in flight
    /// (HTTP/1.1 keep-alive, HTTP/2, a WebSocket tunnel without traffic),
    /// and how long a write may wait for a client that does not read.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged; a peer that does not answer
    /// within the same time is closed.
    pub h2_ping_interval: Duration,
    /// Requests one HTTP/2 connection may have in flight at once.
    pub h2_max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_client: 256,
            max_header_bytes: 64 * 1024,
            drain: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            h2_ping_interval: Duration::from_secs(30),
            h2_max_streams: 100,
        }
    }
}

/// What the serving threads share: the connection slots, all told and per client.
#[derive(Clone, Debug)]
struct Shared {
    permits: Arc<tokio::sync::Semaphore>,
    client_slots: Arc<ClientSlots>,
}

/// One listening socket of the public listener: plain HTTP, or TLS
/// (`--tls-listen`) with the certificates of its terminator.
#[derive(Debug)]
pub struct Listening {
    pub socket: std::net::TcpListener,
    pub tls: Option<Arc<TlsTerminator>>,
}

impl Listening {
    /// A plain HTTP listener.
    pub fn plain(socket: std::net::TcpListener) -> Listening {
        Listening { socket, tls: None }
    }

    /// A TLS listener.
    pub fn tls(socket: std::net::TcpListener, tls: Arc<TlsTerminator>) -> Listening {
        Listening { socket, tls: Some(tls) }
    }
}

/// The data plane on several threads, each with a single-threaded tokio
/// runtime of its own, all accepting from the same listening sockets (as
/// nginx's workers do). A request is then served start to end on one
/// thread: its connection, the routing module's instance and the pooled
/// connection to its origin are that thread's, with no hand-over between
/// threads. The connection limits are shared, by every socket too.
#[derive(Debug)]
pub struct Workers {
    addrs: Vec<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `threads` serving threads on `listeners` (already bound).
    pub fn start(
        plane: &DataPlane,
        listeners: Vec<Listening>,
        threads: usize,
        limits: Limits,
    ) -> std::io::Result<Workers> {
        let mut addrs = Vec::new();
        for listening in &listeners {
            addrs.push(listening.socket.local_addr()?);
            listening.socket.set_nonblocking(true)?;
        }
        let shared = Shared {
            permits: Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))),
            client_slots: ClientSlots::new(limits.max_connections_per_client),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut workers = Workers { addrs, stop, threads: Vec::new() };
        for n in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let mut sockets = Vec::new();
            for listening in &listeners {
                sockets.push((listening.socket.try_clone()?, listening.tls.clone()));
            }
            let plane = Arc::new(DataPlane {
                state: plane.state,
                objects: plane.objects.clone(),
                proxy: plane.proxy.with_own_pool(),
                https: plane.https,
            });
            let (limits, shared, stopped) = (limits.clone(), shared.clone(), stopped.clone());
            let thread = std::thread::Builder::new().name(format!("edgeroute-serve-{n}")).spawn(move || {
                runtime.block_on(async move {
                    // This thread's instance lets go of a base no longer served,
                    // even while no request comes (two bases in memory at most),
                    // and its pool closes connections to origins idle too long.
                    let tidying = plane.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(crate::router::RELEASE_EVERY).await;
                            tidying.state.router.with_worker(|worker| worker.release_stale());
                            tidying.proxy.sweep_idle();
                        }
                    });
                    // Every socket's accept loop on this thread, polled together.
                    let mut serving: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> = Vec::new();
                    for (socket, tls) in sockets {
                        let listener = match tokio::net::TcpListener::from_std(socket) {
                            Ok(listener) => listener,
                            Err(e) => return tracing::error!("serving thread {n} cannot listen: {e}"),
                        };
                        let on = Socket { listener, tls };
                        let (plane, limits, shared, stopped) =
                            (plane.clone(), limits.clone(), shared.clone(), stopped.clone());
                        serving.push(Box::pin(serve(plane, on, limits, shared, stopped)));
                    }
                    std::future::poll_fn(|cx| {
                        serving.retain_mut(|accepting| accepting.as_mut().poll(cx).is_pending());
                        if serving.is_empty() {
                            std::task::Poll::Ready(())
                        } else {
                            std::task::Poll::Pending
                        }
                    })
                    .await;
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

    /// The address the workers serve on (the first listener's).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address the workers serve on, in the order of their listeners.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
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

/// A serving thread's side of one listening socket.
struct Socket {
    listener: tokio::net::TcpListener,
    tls: Option<Arc<TlsTerminator>>,
}

/// Serves the data plane on `on` until `stopped` says so, then stops
/// accepting, tells every connection to finish (HTTP/1.1 after its
/// request, HTTP/2 with a GOAWAY; tunnels at once) and waits up to
/// `limits.drain` for them.
async fn serve(
    plane: Arc<DataPlane>,
    on: Socket,
    limits: Limits,
    shared: Shared,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let Shared { permits, client_slots } = shared;
    let Socket { listener, tls } = on;
    let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let deadlines =
        Deadlines { first_byte: limits.first_byte_timeout, header: limits.header_timeout, idle: limits.idle_timeout };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // The connection's own deadlines (`deadlines.rs`) bound heads and idle
    // time; hyper's head timeout, which also runs between requests, stays
    // as a backstop past them.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout + limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .keep_alive_interval(limits.h2_ping_interval)
        .keep_alive_timeout(limits.h2_ping_interval)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let tasks = tokio_util::task::TaskTracker::new();
    let metrics = &plane.state.metrics;
    let mut shutdown = stopped.clone();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = shutdown.wait_for(|stop| *stop) => break,
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
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let accepted_at = tokio::time::Instant::now();
        let trusted = plane.proxy.trusts(client.ip());
        let client_slot = if trusted {
            ClientSlot::uncapped()
        } else {
            match client_slots.take(client.ip()) {
                Some(slot) => slot,
                None => {
                    // Closed at once, its permit free for the next one.
                    metrics.closed(Closed::ClientCap);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let admitted = Admitted {
            client,
            local,
            trusted,
            tls: None,
            idle_timeout: limits.idle_timeout,
            permit,
            client_slot,
            stop: stopped.clone(),
        };
        let (plane, builder, limits) = (plane.clone(), builder.clone(), limits.clone());
        match &tls {
            None => {
                let connection = Arc::new(Connection::open(admitted, metrics));
                let io = Watched::new(stream, connection.clone(), deadlines);
                tasks.spawn(serve_connection(io, connection, plane, builder, limits));
            }
            Some(tls) => {
                let tls = tls.clone();
                tasks.spawn(async move {
                    let metrics = &plane.state.metrics;
                    // The slot is held through the handshake, which has
                    // deadlines of its own; a drain ends it (a connection
                    // that has sent no request yet is not waited for).
                    let mut stop = admitted.stop.clone();
                    let handshake = tokio::select! {
                        done = tls.accept(stream, accepted_at, &deadlines, metrics) => done,
                        _ = stop.wait_for(|stop| *stop) => None,
                    };
                    let Some((stream, session)) = handshake else { return };
                    let connection = Arc::new(Connection::open(Admitted { tls: Some(session), ..admitted }, metrics));
                    let io = Watched::new(stream, connection.clone(), deadlines);
                    serve_connection(io, connection, plane, builder, limits).await;
                });
            }
        }
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(limits.drain, tasks.wait()).await.is_err() {
        tracing::warn!("shutdown: requests still in flight after {:?}; closing them", limits.drain);
    }
}

/// Serves one connection (its socket `io`, plain or TLS) until it ends,
/// closing it gracefully when it has been idle too long or the host drains.
async fn serve_connection<S>(
    io: Watched<S>,
    connection: Arc<Connection>,
    plane: Arc<DataPlane>,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    limits: Limits,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let connection = connection.clone();
        hyper::service::service_fn(move |req| {
            let plane = plane.clone();
            let request = InRequest::begin(&connection);
            async move {
                let response = plane.handle(req, request.connection()).await;
                Ok::<_, std::convert::Infallible>(response.map(|body| Answer::new(body, request)))
            }
        })
    };
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
    tokio::pin!(serving);
    let grace = limits.header_timeout;
    let idle_ms = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut stop = connection.stop.clone();
    let (mut finishing, mut closing) = (false, None::<std::pin::Pin<Box<tokio::time::Sleep>>>);
    // The socket's read finds the connection idle as it waits. One whose
    // reads are held up is not read: an upload that its origin stopped
    // reading fills hyper's body channel, and hyper then reads nothing
    // more, its answer long sent. So the task looks too, every idle
    // timeout (a timer set again only when it fires).
    let mut idle_check = Box::pin(tokio::time::sleep(connection.idle_timeout));
    loop {
        tokio::select! {
            _ = serving.as_mut() => break,
            () = idle_check.as_mut() => {
                let now = now_ms();
                let next = match connection.idle_deadline() {
                    Some(at) if now >= at => {
                        connection.tell_idle();
                        now.saturating_add(idle_ms)
                    }
                    Some(at) => at,
                    None => now.saturating_add(idle_ms),
                };
                idle_check.as_mut().reset(instant_at(next));
            }
            // Idle too long: finish gracefully, and not forever.
            () = connection.idle.notified(), if closing.is_none() => {
                serving.as_mut().graceful_shutdown();
                closing = Some(Box::pin(tokio::time::sleep(grace)));
            }
            _ = stop.wait_for(|stop| *stop), if !finishing => {
                serving.as_mut().graceful_shutdown();
                finishing = true;
            }
            // The grace is over: closed, unless a request came in
            // meanwhile (it is let finish; the other deadlines bound it).
            () = async { closing.as_mut().expect("guarded").await }, if closing.is_some() => {
                if connection.in_flight() == 0 {
                    break;
                }
                closing = Some(Box::pin(tokio::time::sleep(grace)));
            }
        }
    }
}
