//! [`Proxy`]: reverse-proxying a request to its load balancer or origin.
//!
//! The request keeps its `Host` (load balancers route on it), gains the
//! forwarding headers (a client's replaced, a trusted proxy's kept:
//! [`headers`]) and this host's `Via` (a request that names it already is a
//! loop: 508), and loses its hop-by-hop ones; both bodies stream; a
//! WebSocket upgrade (and no other) is passed through once the origin
//! agrees to it, into a [`tunnel`] that keeps the connection's slot. Connections to origins are pooled and kept alive;
//! `https` origins are reached through rustls, with SNI and certificate
//! checks against the origin's name, or against the request's host
//! ([`TlsName::RequestHost`]), since load balancers often present the
//! customer's certificate.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject as _;

use crate::body::{self, Body, BoxError};
use crate::http::connection::InRequest;
use crate::http::Connection;
use crate::respond::{failure, plain, RequestId};
use crate::trust::TrustedProxies;

mod headers;
mod idle;
mod pool;
mod tls;
mod tunnel;

pub use self::headers::strip_hop_by_hop;
use self::headers::{append_via, join_cookies, set_forwarding, upgrade_protocol, via_names, Hop};
use self::idle::IdleTimeout;
use self::pool::{Conn, Connector, IdleBudget, Key, Pool};
pub use self::tls::TlsName;

/// What a client learns of an origin it could not reach: not its address,
/// nor why (the log line with the request id says both).
const UNREACHABLE: &str = "bad gateway: the origin could not be reached";

/// How the proxy reaches origins.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub connect_timeout: Duration,
    /// The longest wait for the origin's response headers, and then between
    /// two reads of its body.
    pub read_timeout: Duration,
    pub tls_name: TlsName,
    /// PEM certificates trusted besides the system's roots (a private CA,
    /// or a test certificate).
    pub extra_roots: Vec<Vec<u8>>,
    /// Idle keep-alive connections kept per origin (per serving thread).
    /// Generous: when the pool runs dry under load, the client opens a
    /// connection, and one over this limit is closed as soon as it is idle,
    /// so a low limit means a connect per request at steady load.
    pub idle_per_origin: usize,
    /// Idle keep-alive connections kept to all origins together, all
    /// serving threads together: past it, a connection is closed when its
    /// answer is done rather than kept.
    pub max_idle_connections: usize,
    /// The load balancers or CDNs in front of the host, whose forwarding
    /// headers are passed on (`headers::set_forwarding`); a client's are
    /// replaced.
    pub trusted_proxies: TrustedProxies,
    /// The name this host adds to a proxied request's `Via`; a request that
    /// names it already has come round through an origin (a 508). One name
    /// for a fleet behind one load balancer.
    pub via_name: String,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            tls_name: TlsName::Origin,
            extra_roots: Vec::new(),
            idle_per_origin: 1024,
            max_idle_connections: 1024,
            trusted_proxies: TrustedProxies::default(),
            via_name: default_via_name(),
        }
    }
}

/// Why the proxy could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot read the trusted certificates: {0}")]
    Certificates(String),
    #[error("no trusted root certificates: the system has none and no --origin-ca was given")]
    NoRoots,
    #[error("--via-name {0:?} is not a name for Via: letters, digits and !#$%&'*+-.^_`|~ only")]
    ViaName(String),
}

/// The machine's host name (`--via-name`'s default), or `edgeroute`.
pub fn default_via_name() -> String {
    // Linux's own record of it (the host runs on Linux: memfd, openat2).
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    if is_token(name) {
        name.to_owned()
    } else {
        "edgeroute".to_owned()
    }
}

/// An RFC 9110 token (what a `Via` recipient's name must be).
pub fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Where a proxied request goes: the resolved balancer or origin (the
/// snapshot's `edgeroute_edge::Origin`, owned, as the proxy connects to it).
#[derive(Clone, Debug)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub https: bool,
}

/// The request's facts the proxy passes on.
#[derive(Clone, Copy, Debug)]
pub struct Forwarded<'a> {
    /// The `Host` the client sent (with its port, if any), kept as it was.
    pub host: &'a [u8],
    /// The host name alone, lowercased (the TLS name in [`TlsName::RequestHost`] mode).
    pub name: &'a str,
    /// The connection it came on: its peer, and the slot a tunnel keeps.
    pub connection: &'a Arc<Connection>,
}

/// What a failed proxy attempt tells the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyOutcome {
    /// The origin answered (whatever its status).
    Answered,
    /// It could not be reached, failed, or timed out.
    OriginFailed,
}

/// A pooled, keep-alive client for every origin. Clones share the pool;
/// [`Proxy::with_own_pool`] makes one that does not (one per serving
/// thread), under the same budget of idle connections.
#[derive(Clone, Debug)]
pub struct Proxy {
    pool: Arc<Pool>,
    budget: Arc<IdleBudget>,
    connector: Connector,
    config: ProxyConfig,
    /// This host's `Via` entry for a request received over HTTP/1.0, 1.1, 2.
    via: Arc<[HeaderValue; 3]>,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        for pem in &config.extra_roots {
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ProxyError::Certificates(e.to_string()))?;
                roots.add(cert).map_err(|e| ProxyError::Certificates(e.to_string()))?;
            }
        }
        if roots.is_empty() {
            tracing::warn!("{}; https origins will fail", ProxyError::NoRoots);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Certificates(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            Connector { tls: tokio_rustls::TlsConnector::from(Arc::new(tls)), connect_timeout: config.connect_timeout };
        if !is_token(&config.via_name) {
            return Err(ProxyError::ViaName(config.via_name.clone()));
        }
        let via = |protocol: &str| {
            HeaderValue::from_str(&format!("{protocol} {}", config.via_name))
                .map_err(|_| ProxyError::ViaName(config.via_name.clone()))
        };
        let via = Arc::new([via("1.0")?, via("1.1")?, via("2")?]);
        let budget = IdleBudget::new(config.max_idle_connections);
        let pool = Arc::new(Pool::new(config.idle_per_origin, budget.clone()));
        Ok(Proxy { pool, budget, connector, config, via })
    }

    /// The same proxy with a pool of its own: for a thread with its own
    /// runtime, whose connections are then driven where they are used. The
    /// budget of idle connections stays shared.
    pub fn with_own_pool(&self) -> Proxy {
        Proxy { pool: Arc::new(Pool::new(self.config.idle_per_origin, self.budget.clone())), ..self.clone() }
    }

    /// Closes this pool's connections idle too long (each serving thread
    /// calls it now and then).
    pub fn sweep_idle(&self) {
        self.pool.sweep();
    }

    /// Idle connections to origins held now, by every pool of the host.
    pub fn idle_connections(&self) -> usize {
        self.budget.held()
    }

    /// Sends `req` to `key` on a pooled connection whose certificate covers
    /// `name`, else on a new one; the connection goes back to the pool once
    /// the answer is done. A pooled connection found closed before the
    /// request went out is left for the next (the request was not sent).
    async fn send(
        &self,
        key: Key,
        name: &str,
        mut req: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, BoxError> {
        while let Some(mut conn) = self.pool.checkout(&key, name) {
            if conn.sender.ready().await.is_err() {
                continue;
            }
            match conn.sender.try_send_request(req).await {
                Ok(answer) => {
                    self.give_back(key, conn);
                    return Ok(answer);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let mut conn = self.connector.connect(&key, name).await?;
        let answer = conn.sender.send_request(req).await?;
        self.give_back(key, conn);
        Ok(answer)
    }

    /// Pools `conn` once it can take another request (its answer read to
    /// the end); an upgraded or failed connection is not.
    fn give_back(&self, key: Key, mut conn: Conn) {
        // A short answer is often read whole by the connection's task before
        // its head reaches this one: then no task need wait for it.
        if conn.sender.is_ready() {
            self.pool.checkin(key, conn);
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if conn.sender.ready().await.is_ok() {
                pool.checkin(key, conn);
            }
        });
    }

    /// Whether a connection from `ip` comes from a trusted proxy.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.config.trusted_proxies.trusts(ip)
    }

    /// Forwards `req` to `origin`, and streams its answer back. Never fails:
    /// an origin that cannot be reached is a 502, one that is too slow a 504.
    pub async fn forward(
        &self,
        mut req: Request<hyper::body::Incoming>,
        origin: &Upstream,
        fwd: Forwarded<'_>,
    ) -> (Response<Body>, ProxyOutcome) {
        // A request that has passed this host already came round through an
        // origin that points back at it: answered, not sent round again.
        if via_names(req.headers(), &self.config.via_name) {
            tracing::warn!("{}: a loop (Via names this host, {}): 508", fwd.name, self.config.via_name);
            let answer = plain(StatusCode::LOOP_DETECTED, "loop detected: this request has passed this host already");
            return (answer, ProxyOutcome::Answered);
        }
        let via = match req.version() {
            hyper::Version::HTTP_10 => &self.via[0],
            hyper::Version::HTTP_2 => &self.via[2],
            _ => &self.via[1],
        };
        // An upgrade request carries no body: one that does is a plain
        // request (hyper would hand over the socket only once the body was
        // read, and a client that never sends it would hold the connection).
        let bodiless = hyper::body::Body::size_hint(req.body()).exact() == Some(0);
        let upgrade = upgrade_protocol(req.headers()).filter(|_| bodiless);
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

        let scheme = if origin.https { "https" } else { "http" };
        // Sent in origin form: the path and query, as they came.
        let uri = req.uri().path_and_query().map_or_else(
            || hyper::Uri::from_static("/"),
            |p| {
                hyper::Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(p.as_str().as_bytes()))
                    .unwrap_or_else(|_| hyper::Uri::from_static("/"))
            },
        );
        let key = Key { https: origin.https, host: origin.host.clone(), port: origin.port };
        // The name the origin's certificate must carry (and SNI).
        let tls_name = match self.config.tls_name {
            TlsName::RequestHost => fwd.name,
            TlsName::Origin => origin.host.as_str(),
        };

        let (parts, incoming) = req.into_parts();
        let mut headers = parts.headers;
        // One length, as read: a client's `Content-Length: 5, 5` or two equal
        // fields (which hyper accepts as one) go on as one field.
        if headers.contains_key(hyper::header::CONTENT_LENGTH) {
            if let Some(length) = hyper::body::Body::size_hint(&incoming).exact() {
                headers.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(length));
            }
        }
        strip_hop_by_hop(&mut headers);
        headers.remove(hyper::header::HOST);
        let host = HeaderValue::from_bytes(fwd.host).unwrap_or_else(|_| HeaderValue::from_static(""));
        headers.insert(hyper::header::HOST, host.clone());
        join_cookies(&mut headers);
        let connection = fwd.connection;
        let hop = Hop {
            client: connection.client.ip(),
            host: &host,
            port: connection.local.port(),
            trusted: connection.trusted,
            https: connection.tls.is_some(),
        };
        set_forwarding(&mut headers, &hop);
        append_via(&mut headers, via);
        if let Some(protocol) = &upgrade {
            headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(hyper::header::UPGRADE, protocol.clone());
        }
        let mut upstream = Request::new(incoming.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync());
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = uri;
        *upstream.version_mut() = hyper::Version::HTTP_11;
        *upstream.headers_mut() = headers;

        let name = || format!("{scheme}://{}:{}", origin.host, origin.port);
        let mut answer = match tokio::time::timeout(self.config.read_timeout, self.send(key, tls_name, upstream)).await
        {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                let id = RequestId::new();
                tracing::warn!("request {id}: origin {} for {}: {}", name(), fwd.name, error_chain(&*e));
                return (failure(StatusCode::BAD_GATEWAY, UNREACHABLE, id), ProxyOutcome::OriginFailed);
            }
            Err(_) => {
                let id = RequestId::new();
                let limit = self.config.read_timeout;
                tracing::warn!("request {id}: origin {} for {}: no answer within {limit:?}", name(), fwd.name);
                let what = "gateway timeout: the origin did not answer in time";
                return (failure(StatusCode::GATEWAY_TIMEOUT, what, id), ProxyOutcome::OriginFailed);
            }
        };

        if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let origin_upgrade = hyper::upgrade::on(&mut answer);
                let name = name();
                // The tunnel keeps the connection's slot until it ends, and
                // holds it busy: none of its HTTP deadlines applies to frames.
                let connection = fwd.connection.clone();
                let handover = connection.idle_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handover, async { tokio::try_join!(client_upgrade, origin_upgrade) })
                        .await
                    {
                        Ok(Ok((client, origin))) => {
                            let _busy = InRequest::hold(&connection);
                            tunnel::carry(client, origin, &connection).await;
                        }
                        Ok(Err(e)) => tracing::debug!("upgrade with {name} failed: {e}"),
                        Err(_) => tracing::debug!("upgrade with {name}: no handover within {handover:?}"),
                    }
                });
                let (parts, _) = answer.into_parts();
                return (Response::from_parts(parts, body::empty()), ProxyOutcome::Answered);
            }
        }

        let (mut parts, incoming) = answer.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = IdleTimeout::new(incoming, self.config.read_timeout).boxed_unsync();
        (Response::from_parts(parts, body), ProxyOutcome::Answered)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
