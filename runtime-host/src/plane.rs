//! [`DataPlane`]: one request, in named phases, as pingora names a proxied
//! request's (`pingora-proxy/src/proxy_trait.rs`):
//!
//! 1. [`request_filter`](DataPlane::request_filter): a tunnel (CONNECT) is
//!    refused; the request must name one host (the URI's authority, else
//!    its one `Host` header: `http::request`).
//! 2. [`resolve`](DataPlane::resolve): the host and path through this
//!    thread's instance of the edge module (`Router::with_worker`).
//! 3. [`dispatch`](DataPlane::dispatch): answer as the route says: a static
//!    site's object ([`statics`](crate::statics)), a redirect, a proxied
//!    request to a load balancer ([`proxy`](crate::proxy)), or a short
//!    answer ([`respond`](crate::respond)).
//! 4. [`response_filter`](DataPlane::response_filter): every answer names the
//!    snapshot that resolved it (`x-edgeroute-snapshot`), and is counted.
//!
//! Each phase either passes the request on or ends it with a response;
//! nothing in them fails or panics on bad input.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use edgeroute_edge::{Resolution, Scheme, SnapshotId};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::Body;
use crate::engine::EngineError;
use crate::http::request::{host_name, request_host, InFlight};
use crate::http::Connection;
use crate::metrics::Outcome;
use crate::proxy::{Forwarded, Proxy, ProxyOutcome, Upstream};
use crate::respond::{name_snapshot, plain, redirect};
use crate::state::HostState;
use crate::statics::Objects;

/// The data plane: the live routes, where static objects come from, and the
/// proxy to origins.
#[derive(Debug)]
pub struct DataPlane {
    pub state: &'static HostState,
    pub objects: Objects,
    pub proxy: Proxy,
}

/// A resolution, owned, so that it can outlive the worker's buffer across
/// awaits: what the request is answered with.
#[derive(Debug)]
enum Resolved {
    Static { bucket: String, key: String, status: u16, fallback: Option<String>, not_found_page: Option<String> },
    Redirect { location: String, status: u16 },
    Balancer(Upstream),
    NotFound,
    BadRequest(&'static str),
}

/// A request that passed [`DataPlane::request_filter`]: its host, as sent,
/// and its target (path and query).
struct Named {
    host: Vec<u8>,
    target: Vec<u8>,
}

/// A short answer that ends the request in an early phase.
#[derive(Debug)]
struct Short {
    outcome: Outcome,
    status: StatusCode,
    text: Cow<'static, str>,
}

impl Short {
    fn bad_request(status: StatusCode, text: impl Into<Cow<'static, str>>) -> Short {
        Short { outcome: Outcome::BadRequest, status, text: text.into() }
    }
}

/// A phase's verdict: go on with `T`, or answer now.
type Phase<T> = Result<T, Short>;

impl DataPlane {
    /// Answers one request. Never fails and never panics on bad input: every
    /// outcome is a response.
    pub async fn handle(&self, req: Request<hyper::body::Incoming>, connection: &Arc<Connection>) -> Response<Body> {
        let client = connection.client;
        let metrics = &self.state.metrics;
        // Counted down when the request ends, answered or dropped (a client
        // that goes away mid-proxy drops this future).
        let _in_flight = InFlight::enter(metrics);
        let start = Instant::now();
        let method = req.method().clone();
        let uri = tracing::enabled!(tracing::Level::DEBUG).then(|| req.uri().clone());
        let (outcome, response, id) = match self.request_filter(&req) {
            Err(short) => (short.outcome, plain(short.status, &short.text), None),
            Ok(named) => match self.resolve(&named) {
                Err(short) => (short.outcome, plain(short.status, &short.text), None),
                Ok((route, id)) => {
                    let (outcome, response) = self.dispatch(req, named, route, connection).await;
                    (outcome, response, Some(id))
                }
            },
        };
        let response = self.response_filter(outcome, response, id);
        if let Some(uri) = uri {
            tracing::debug!(
                "{client} {method} {uri} -> {} {} in {:?}",
                response.status().as_u16(),
                outcome.as_str(),
                start.elapsed()
            );
        }
        response
    }

    /// Phase 1: refuses what a router never forwards, and finds the host.
    fn request_filter<B>(&self, req: &Request<B>) -> Phase<Named> {
        // A router forwards requests; it does not open tunnels.
        if req.method() == Method::CONNECT {
            return Err(Short::bad_request(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: CONNECT"));
        }
        let host = request_host(req)
            .map_err(|why| Short::bad_request(StatusCode::BAD_REQUEST, format!("bad request: {why}")))?;
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).as_bytes().to_vec();
        Ok(Named { host: host.to_vec(), target })
    }

    /// Phase 2: resolves through this thread's worker; returns the route
    /// and the id of the snapshot that answered.
    fn resolve(&self, named: &Named) -> Phase<(Resolved, SnapshotId)> {
        let state = self.state;
        let answer = state.router.with_worker(|worker| {
            let start = Instant::now();
            let resolution = worker.resolve(&named.host, &named.target);
            state.metrics.resolve(start.elapsed());
            let route = match resolution? {
                Resolution::Static { bucket, key, status, fallback, not_found_page, .. } => Resolved::Static {
                    bucket: bucket.to_owned(),
                    key: key.to_string(),
                    status,
                    fallback: fallback.map(|f| f.to_string()),
                    not_found_page: not_found_page.map(|p| p.to_string()),
                },
                Resolution::Redirect { location, status, .. } => {
                    Resolved::Redirect { location: location.to_string(), status }
                }
                Resolution::Balancer { origin, port, scheme, .. } => {
                    Resolved::Balancer(Upstream { host: origin.to_owned(), port, https: scheme == Scheme::Https })
                }
                Resolution::NotFound => Resolved::NotFound,
                Resolution::BadRequest(reason) => Resolved::BadRequest(reason.as_str()),
            };
            let id = worker.live().map(|l| l.id).ok_or(EngineError::BadAnswer)?;
            Ok::<_, EngineError>((route, id))
        });
        answer.map_err(|e| match e {
            // Longer than the module's input buffer: the client's doing, not ours.
            EngineError::InputTooLong => {
                Short::bad_request(StatusCode::URI_TOO_LONG, "bad request: the request is too long")
            }
            // A host that has no snapshot yet (its store and cache had none).
            EngineError::NoSnapshot => Short {
                outcome: Outcome::Error,
                status: StatusCode::SERVICE_UNAVAILABLE,
                text: "service unavailable: no routes loaded yet".into(),
            },
            e => {
                tracing::error!("resolve failed: {e}");
                Short {
                    outcome: Outcome::Error,
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    text: "internal error: the router failed".into(),
                }
            }
        })
    }

    /// Phase 3: answers as the route says.
    async fn dispatch(
        &self,
        req: Request<hyper::body::Incoming>,
        named: Named,
        route: Resolved,
        connection: &Arc<Connection>,
    ) -> (Outcome, Response<Body>) {
        match route {
            Resolved::Static { bucket, key, status, fallback, not_found_page } => {
                // Boxed, as is the proxy's future below: each is kilobytes,
                // and hyper moves the request's future several times.
                let site = crate::statics::Site {
                    bucket: &bucket,
                    key: &key,
                    status,
                    fallback: fallback.as_deref(),
                    not_found_page: not_found_page.as_deref(),
                };
                let fetch = Box::pin(crate::statics::serve(&self.objects, &self.state.metrics, &req, site));
                (Outcome::Static, fetch.await)
            }
            Resolved::Redirect { location, status } => (Outcome::Redirect, redirect(status, &location)),
            Resolved::Balancer(origin) => {
                let name = host_name(&named.host);
                let fwd = Forwarded { host: &named.host, name: &name, connection };
                let (response, result) = Box::pin(self.proxy.forward(req, &origin, fwd)).await;
                if result == ProxyOutcome::OriginFailed {
                    self.state.metrics.origin_errors.fetch_add(1, Ordering::Relaxed);
                }
                (Outcome::Balancer, response)
            }
            Resolved::NotFound => (Outcome::NotFound, plain(StatusCode::NOT_FOUND, "not found")),
            Resolved::BadRequest(reason) => {
                (Outcome::BadRequest, plain(StatusCode::BAD_REQUEST, &format!("bad request: {reason}")))
            }
        }
    }

    /// Phase 4: names the snapshot that answered (the live one when the
    /// request never reached the resolver) and counts the answer.
    fn response_filter(
        &self,
        outcome: Outcome,
        mut response: Response<Body>,
        id: Option<SnapshotId>,
    ) -> Response<Body> {
        self.state.metrics.request(outcome, response.status().as_u16());
        if let Some(id) = id.or_else(|| self.state.router.live().map(|live| live.id)) {
            name_snapshot(&mut response, &id);
        }
        response
    }
}
