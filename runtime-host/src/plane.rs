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
use hyper::header::{HeaderValue, LOCATION};
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

/// The data plane: the live routes, where static objects come from, the
/// proxy to origins, and what it does about https.
#[derive(Debug)]
pub struct DataPlane {
    pub state: &'static HostState,
    pub objects: Objects,
    pub proxy: Proxy,
    pub https: HttpsPolicy,
}

/// What the data plane does about https (`--redirect-https`, the SNI check).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpsPolicy {
    /// Plain requests for a table entry answer 308 to https on this port
    /// (left out of the URL when it is 443), unless they come from a
    /// trusted proxy that says the client spoke https (`X-Forwarded-Proto`).
    pub redirect_to_port: Option<u16>,
    /// A request over TLS whose Host resolves to another table entry than
    /// the name its client sent in the handshake (SNI) answers 421
    /// Misdirected Request (off with `--allow-sni-mismatch`).
    pub sni_must_match: bool,
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

/// Whether a trusted proxy says its client spoke https: the nearest hop's
/// `X-Forwarded-Proto` (the last of a list that proxies append to), else
/// the `proto` of the last `Forwarded` element.
fn proxy_says_https(headers: &hyper::HeaderMap) -> bool {
    let last = |name: &str| {
        headers.get_all(name).iter().next_back().and_then(|v| v.to_str().ok()).and_then(|v| v.rsplit(',').next())
    };
    if let Some(proto) = last("x-forwarded-proto") {
        return proto.trim().eq_ignore_ascii_case("https");
    }
    last("forwarded").is_some_and(|element| {
        element.split(';').any(|pair| {
            pair.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("proto") && v.trim().trim_matches('"').eq_ignore_ascii_case("https")
            })
        })
    })
}

/// Room for a table entry's Domain (a host name of 253 bytes, and `*.`).
const ENTRY_BYTES: usize = 256;

/// Whether a request's host (as sent: maybe a port, a trailing dot, any
/// case) names `sni` (lowercase, as the handshake keeps it).
fn same_name(host: &[u8], sni: &[u8]) -> bool {
    let host = match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    host.eq_ignore_ascii_case(sni)
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
            Ok(named) => match self.resolve(&named, connection) {
                Err(short) => (short.outcome, plain(short.status, &short.text), None),
                Ok((route, id)) => match self.https_filter(&req, &named, &route, connection) {
                    Some(response) => (Outcome::Redirect, response, Some(id)),
                    None => {
                        let (outcome, response) = self.dispatch(req, named, route, connection).await;
                        (outcome, response, Some(id))
                    }
                },
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
    /// and the id of the snapshot that answered. Over TLS, a Host that is
    /// not the handshake's name (SNI) must resolve to the same table entry
    /// (or, like it, to none): a client may send requests for several
    /// names on one HTTP/2 connection when one certificate covers them all,
    /// and a host that served another entry's name on it would cross from
    /// one tenant's environment to another's. It answers 421 instead, and
    /// the client opens a connection of the right name (RFC 9110 §15.5.20).
    fn resolve(&self, named: &Named, connection: &Connection) -> Phase<(Resolved, SnapshotId)> {
        let state = self.state;
        let sni = match &connection.tls {
            Some(tls) if self.https.sni_must_match => {
                tls.sni.as_deref().filter(|sni| !same_name(&named.host, sni.as_bytes()))
            }
            _ => None,
        };
        let answer = state.router.with_worker(|worker| {
            let start = Instant::now();
            let resolution = worker.resolve(&named.host, &named.target);
            state.metrics.resolve(start.elapsed());
            let resolution = resolution?;
            // The matched entry, copied out of the worker's buffer for a
            // second resolve (only when there is one to make).
            let mut entry = [0u8; ENTRY_BYTES];
            let entry_len =
                if sni.is_some() { resolution.domain().and_then(|domain| domain.copy_to(&mut entry)) } else { None };
            let route = match resolution {
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
            if let Some(sni) = sni {
                // The SNI name with the request's own path: the answer of a
                // site depends on its entry and the path alone, so the same
                // entry gives the same answer, matched entry included (a
                // site's missing page names no entry: with "/", an entry
                // without a "/" page would look like none).
                // (Too long with the SNI name in front: no check, not a 414.)
                let other = match worker.resolve(sni.as_bytes(), &named.target) {
                    Err(EngineError::InputTooLong) => None,
                    other => Some(other?),
                };
                let mut other_entry = [0u8; ENTRY_BYTES];
                let other_len = other.as_ref().map(|o| o.domain().and_then(|domain| domain.copy_to(&mut other_entry)));
                let ours = entry_len.map(|n| &entry[..n]);
                let differ = other_len.is_some_and(|len| ours != len.map(|n| &other_entry[..n]));
                if !matches!(&route, Resolved::BadRequest(_)) && differ {
                    return Ok(Err(Short {
                        outcome: Outcome::Misdirected,
                        status: StatusCode::MISDIRECTED_REQUEST,
                        text: "misdirected request: this connection was opened for another name (TLS SNI); \
                               open a new one for this host"
                            .into(),
                    }));
                }
            }
            let id = worker.live().map(|l| l.id).ok_or(EngineError::BadAnswer)?;
            Ok::<_, EngineError>(Ok((route, id)))
        });
        let answer = match answer {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(misdirected)) => return Err(misdirected),
            Err(e) => Err(e),
        };
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

    /// Phase 2½: a plain request for a table entry, with `--redirect-https`,
    /// is sent to https (308: the method and body are kept). Not a request
    /// from a trusted proxy that says its client spoke https: that proxy
    /// (a TLS-terminating load balancer) would be sent back to itself.
    fn https_filter<B>(
        &self,
        req: &Request<B>,
        named: &Named,
        route: &Resolved,
        connection: &Connection,
    ) -> Option<Response<Body>> {
        let port = self.https.redirect_to_port?;
        if connection.tls.is_some() || matches!(route, Resolved::NotFound | Resolved::BadRequest(_)) {
            return None;
        }
        if connection.trusted && proxy_says_https(req.headers()) {
            return None;
        }
        let mut location = format!("https://{}", host_name(&named.host));
        if port != 443 {
            location.push_str(&format!(":{port}"));
        }
        // The path and query as they came, any byte that is not visible
        // ASCII percent-encoded (HTTP/1.1 lets obs-text through).
        for &b in &named.target {
            if b.is_ascii_graphic() {
                location.push(char::from(b));
            } else {
                location.push_str(&format!("%{b:02X}"));
            }
        }
        let mut response = redirect(308, "");
        match HeaderValue::from_str(&location) {
            Ok(value) => {
                response.headers_mut().insert(LOCATION, value);
                Some(response)
            }
            // Never served over plain HTTP instead: refused.
            Err(_) => Some(plain(StatusCode::BAD_REQUEST, "bad request: the request target")),
        }
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
