//! [`Pool`]: keep-alive connections to origins, made by [`Connector`].
//!
//! One pool per serving thread, keyed by origin (scheme, host, port), under
//! one budget of idle connections for the whole host ([`IdleBudget`]): a
//! burst of requests, or of names, can open many connections, but past the
//! budget each is closed as soon as its answer is done, so idle sockets to
//! origins cannot exhaust the host's file descriptors.
//!
//! A TLS connection remembers the certificate it was verified with. In
//! `--origin-tls-name request-host` mode it is reused for another request
//! host only when that certificate covers the host too (a wildcard
//! certificate covers every random subdomain it matches), so that one
//! handshake serves them all, and a connection verified for one name never
//! carries a request for a name its certificate does not cover.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::body::{Body, BoxError};

/// How long a connection may wait idle in the pool.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The names a verified certificate was found to cover, and not to cover,
/// remembered per connection up to this many each (a check parses the
/// certificate: a few µs, under the pool's lock).
const NAMES_REMEMBERED: usize = 32;

/// Where a pooled connection goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

/// What the peer of a connection proved.
#[derive(Debug)]
enum Peer {
    /// Plain HTTP: any request host may use it.
    Plain,
    /// TLS, verified with `cert` for each of `names`; found not to cover
    /// each of `not`.
    Tls { cert: Option<CertificateDer<'static>>, names: Vec<String>, not: Vec<String> },
}

impl Peer {
    /// Whether the connection may carry a request whose certificate must
    /// name `name`.
    fn covers(&mut self, name: &str) -> bool {
        let Peer::Tls { cert, names, not } = self else { return true };
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return true;
        }
        if not.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return false;
        }
        let Some(cert) = cert else { return false };
        let Ok(server_name) = ServerName::try_from(name) else { return false };
        let covered = webpki::EndEntityCert::try_from(&*cert)
            .is_ok_and(|end| end.verify_is_valid_for_subject_name(&server_name).is_ok());
        let remembered = if covered { names } else { not };
        if remembered.len() < NAMES_REMEMBERED {
            remembered.push(name.to_ascii_lowercase());
        }
        covered
    }
}

/// A connection to an origin: the handle to send on, and its peer.
#[derive(Debug)]
pub(super) struct Conn {
    pub sender: SendRequest<Body>,
    peer: Peer,
}

/// Idle connections kept by every pool of the host together.
#[derive(Debug)]
pub(super) struct IdleBudget {
    held: AtomicUsize,
    cap: usize,
}

impl IdleBudget {
    pub(super) fn new(cap: usize) -> Arc<IdleBudget> {
        Arc::new(IdleBudget { held: AtomicUsize::new(0), cap })
    }

    fn try_take(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| (held < self.cap).then_some(held + 1))
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    /// Idle connections held now.
    pub(super) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// One serving thread's idle connections.
#[derive(Debug)]
pub(super) struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    per_origin: usize,
    budget: Arc<IdleBudget>,
}

impl Pool {
    pub(super) fn new(per_origin: usize, budget: Arc<IdleBudget>) -> Pool {
        Pool { idle: Mutex::new(HashMap::new()), per_origin, budget }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection to `key` whose peer covers `name` (the newest
    /// first: the likeliest to be open still).
    pub(super) fn checkout(&self, key: &Key, name: &str) -> Option<Conn> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        let before = list.len();
        list.retain(|i| usable(i, Instant::now()));
        self.budget.give_back(before - list.len());
        let found = list.iter_mut().rposition(|i| i.conn.peer.covers(name)).map(|at| list.remove(at).conn);
        if found.is_some() {
            self.budget.give_back(1);
        }
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Keeps `conn` for the next request to `key`, if the budget allows.
    pub(super) fn checkin(&self, key: Key, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        let list = idle.entry(key).or_default();
        if list.len() < self.per_origin && self.budget.try_take() {
            list.push(Idle { conn, since: Instant::now() });
        }
    }

    /// Closes the connections idle too long, and forgets the closed ones.
    pub(super) fn sweep(&self) {
        let mut idle = self.lock();
        let now = Instant::now();
        let mut gone = 0;
        idle.retain(|_, list| {
            let before = list.len();
            list.retain(|i| usable(i, now));
            gone += before - list.len();
            !list.is_empty()
        });
        self.budget.give_back(gone);
    }
}

fn usable(idle: &Idle, now: Instant) -> bool {
    !idle.conn.sender.is_closed() && now.duration_since(idle.since) < IDLE_TIMEOUT
}

/// Makes connections to origins: TCP (with a connect timeout), then TLS
/// for `https` with SNI and certificate checks against the name asked for,
/// then an HTTP/1.1 handshake, the connection driven on its own task (with
/// upgrades, for WebSockets).
#[derive(Clone)]
pub(super) struct Connector {
    pub tls: tokio_rustls::TlsConnector,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("connect_timeout", &self.connect_timeout).finish_non_exhaustive()
    }
}

impl Connector {
    /// A new connection to `key`, its certificate checked for `name`.
    pub(super) async fn connect(&self, key: &Key, name: &str) -> Result<Conn, BoxError> {
        let tcp = tokio::time::timeout(self.connect_timeout, self.tcp(key))
            .await
            .map_err(|_| format!("no connection within {:?}", self.connect_timeout))??;
        if !key.https {
            return handshake(tcp, Peer::Plain).await;
        }
        let server_name = ServerName::try_from(name.to_owned())?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(server_name, tcp))
            .await
            .map_err(|_| format!("no TLS handshake within {:?}", self.connect_timeout))??;
        let cert = tls.get_ref().1.peer_certificates().and_then(|certs| certs.first()).map(|c| c.clone().into_owned());
        handshake(tls, Peer::Tls { cert, names: vec![name.to_ascii_lowercase()], not: Vec::new() }).await
    }

    async fn tcp(&self, key: &Key) -> Result<tokio::net::TcpStream, BoxError> {
        let mut last = None;
        for addr in tokio::net::lookup_host((key.host.as_str(), key.port)).await? {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => e.into(),
            None => format!("{} has no address", key.host).into(),
        })
    }
}

async fn handshake<T>(io: T, peer: Peer) -> Result<Conn, BoxError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("origin connection: {e}");
        }
    });
    Ok(Conn { sender, peer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn a_certificate_covers_the_names_it_was_issued_for_and_no_other() {
        let mut peer =
            Peer::Tls { cert: Some(cert_for(&["*.pr-7.example.com", "shop.example.com"])), names: vec![], not: vec![] };
        for name in ["a.pr-7.example.com", "Zz-9.PR-7.example.com", "shop.example.com"] {
            assert!(peer.covers(name), "{name}");
        }
        for name in ["pr-7.example.com", "a.b.pr-7.example.com", "other.example.com", "a.pr-8.example.com", "", "-"] {
            assert!(!peer.covers(name), "{name}");
        }
        let Peer::Tls { names, not, .. } = &peer else { unreachable!() };
        assert_eq!(names, &["a.pr-7.example.com", "zz-9.pr-7.example.com", "shop.example.com"]);
        assert_eq!(not.len(), 4, "{not:?}: the names that are no DNS name are not remembered");
        assert!(!peer_covers_again(&peer, "other.example.com"));
        assert!(Peer::Plain.covers("anything.example"));
        assert!(!Peer::Tls { cert: None, names: vec!["a.example.com".into()], not: vec![] }.covers("b.example.com"));
    }

    /// A refusal remembered answers without the certificate.
    fn peer_covers_again(peer: &Peer, name: &str) -> bool {
        let Peer::Tls { names, not, .. } = peer else { return true };
        let mut without_cert = Peer::Tls { cert: None, names: names.clone(), not: not.clone() };
        assert!(not.iter().any(|n| n == name), "{name} not remembered as refused");
        without_cert.covers(name)
    }

    #[test]
    fn the_budget_is_shared_and_never_exceeded() {
        let budget = IdleBudget::new(2);
        assert!(budget.try_take() && budget.try_take() && !budget.try_take());
        budget.give_back(1);
        assert!(budget.try_take());
        assert_eq!(budget.held(), 2);
    }
}
