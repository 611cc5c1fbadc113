//! [`Proxy`]: reverse-proxying a request to its load balancer or origin.
//!
//! The request keeps its `Host` (load balancers route on it), gains the
//! `X-Forwarded-*` headers and loses its hop-by-hop ones; both bodies
//! stream; a WebSocket (any HTTP/1.1 `Upgrade`) is passed through once the
//! origin agrees to it. Connections to origins are pooled and kept alive;
//! `https` origins are reached through rustls, with SNI and certificate
//! checks against the origin's name, or against the request's host
//! ([`TlsName::RequestHost`]), since load balancers often present the
//! customer's certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;

use crate::body::{self, Body, BoxError};
use crate::respond::plain;

mod headers;
mod idle;
mod tls;

pub use self::headers::strip_hop_by_hop;
use self::headers::{append_forwarded_for, join_cookies, upgrade_protocol};
use self::idle::IdleTimeout;
use self::tls::ServerName;
pub use self::tls::TlsName;

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
    /// Keep the client's `X-Forwarded-Proto` (set it only when absent): for a
    /// host behind a load balancer that terminates TLS and says so. Off, the
    /// header always says `http`, so that no client can claim `https`.
    pub trust_forwarded_proto: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            tls_name: TlsName::Origin,
            extra_roots: Vec::new(),
            idle_per_origin: 1024,
            trust_forwarded_proto: false,
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
    pub client: SocketAddr,
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
/// [`Proxy::with_own_pool`] makes one that does not.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    connector: hyper_rustls::HttpsConnector<HttpConnector>,
    config: ProxyConfig,
}

fn pooled(
    connector: hyper_rustls::HttpsConnector<HttpConnector>,
    config: &ProxyConfig,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Body> {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(config.idle_per_origin)
        .set_host(false)
        .build(connector)
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
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .with_server_name_resolver(ServerName)
            .enable_http1()
            .wrap_connector(http);
        let client = pooled(connector.clone(), &config);
        Ok(Proxy { client, connector, config })
    }

    /// The same proxy with a pool of its own: for a thread with its own
    /// runtime, whose connections are then driven where they are used.
    pub fn with_own_pool(&self) -> Proxy {
        Proxy { client: pooled(self.connector.clone(), &self.config), ..self.clone() }
    }

    /// Forwards `req` to `origin`, and streams its answer back. Never fails:
    /// an origin that cannot be reached is a 502, one that is too slow a 504.
    pub async fn forward(
        &self,
        mut req: Request<hyper::body::Incoming>,
        origin: &Upstream,
        fwd: Forwarded<'_>,
    ) -> (Response<Body>, ProxyOutcome) {
        let upgrade = upgrade_protocol(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

        let scheme = if origin.https { "https" } else { "http" };
        let tls_user = match (origin.https, self.config.tls_name) {
            (true, TlsName::RequestHost) => format!("{}@", fwd.name),
            _ => String::new(),
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let host = if origin.host.contains(':') { format!("[{}]", origin.host) } else { origin.host.clone() };
        let uri = match format!("{scheme}://{tls_user}{host}:{}{path}", origin.port).parse::<hyper::Uri>() {
            Ok(uri) => uri,
            Err(e) => {
                return (
                    plain(StatusCode::BAD_GATEWAY, &format!("bad gateway: bad origin URI ({e})")),
                    ProxyOutcome::OriginFailed,
                )
            }
        };

        let (parts, incoming) = req.into_parts();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        headers.remove(hyper::header::HOST);
        if let Ok(value) = HeaderValue::from_bytes(fwd.host) {
            headers.insert(hyper::header::HOST, value.clone());
            headers.insert(HeaderName::from_static("x-forwarded-host"), value);
        }
        join_cookies(&mut headers);
        append_forwarded_for(&mut headers, fwd.client);
        let proto = HeaderName::from_static("x-forwarded-proto");
        if !(self.config.trust_forwarded_proto && headers.contains_key(&proto)) {
            headers.insert(proto, HeaderValue::from_static("http"));
        }
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
        let mut answer = match tokio::time::timeout(self.config.read_timeout, self.client.request(upstream)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                let why = error_chain(&e);
                let name = name();
                tracing::warn!("origin {name} for {}: {why}", fwd.name);
                return (
                    plain(StatusCode::BAD_GATEWAY, &format!("bad gateway: cannot reach the origin {name} ({why})")),
                    ProxyOutcome::OriginFailed,
                );
            }
            Err(_) => {
                let name = name();
                tracing::warn!("origin {name} for {}: no answer within {:?}", fwd.name, self.config.read_timeout);
                return (
                    plain(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "gateway timeout: the origin {name} did not answer within {:?}",
                            self.config.read_timeout
                        ),
                    ),
                    ProxyOutcome::OriginFailed,
                );
            }
        };

        if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let origin_upgrade = hyper::upgrade::on(&mut answer);
                let name = name();
                tokio::spawn(async move {
                    match tokio::try_join!(client_upgrade, origin_upgrade) {
                        Ok((client, origin)) => {
                            let (mut client, mut origin) = (TokioIo::new(client), TokioIo::new(origin));
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
                        }
                        Err(e) => tracing::debug!("upgrade with {name} failed: {e}"),
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
