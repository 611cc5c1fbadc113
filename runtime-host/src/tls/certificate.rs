//! [`Certificate`]: one PEM file of `--tls-certs`, read and checked whole
//! before it may serve a handshake. HAProxy's convention: the file holds
//! the certificate chain (the server's own certificate first, then its
//! intermediates) and the private key, in any order.
//!
//! A file is refused, with a [`Refusal`] that says why, when it does not
//! parse, lacks a certificate or a key (or has two keys), when the key is
//! not the certificate's, when the certificate names no DNS name this host
//! can serve, or when it is expired or not valid yet. Its names are the
//! certificate's DNS subject alternative names only: RFC 6125 §6.4.4 has a
//! client ignore the common name when there are any, and every CA issues them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// The file that holds the key of a certificate file that holds none:
/// `NAME.key` beside `NAME.crt` or `NAME.pem` (a Kubernetes
/// `kubernetes.io/tls` secret's `tls.crt` and `tls.key`), else
/// `NAME.pem.key` (HAProxy's rule).
pub fn key_file(file: &Path) -> Option<PathBuf> {
    let mut appended = file.as_os_str().to_owned();
    appended.push(".key");
    [file.with_extension("key"), PathBuf::from(appended)].into_iter().find(|key| key != file && key.is_file())
}

/// The ALPN protocols offered, in the host's order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Seconds in a day, for expiry in days.
const DAY: i64 = 86_400;

/// Session resumption, shared by every certificate: a cache of this many
/// sessions (TLS 1.3 tickets are stateful, TLS 1.2 session ids), or none
/// (`--tls-sessions 0`: no cache, no tickets; every handshake is full).
#[derive(Clone, Debug)]
pub struct Resumption(Option<Arc<dyn rustls::server::StoresServerSessions>>);

impl Resumption {
    pub fn new(sessions: usize) -> Resumption {
        Resumption((sessions > 0).then(|| {
            let cache: Arc<dyn rustls::server::StoresServerSessions> =
                rustls::server::ServerSessionMemoryCache::new(sessions);
            cache
        }))
    }
}

/// One name a certificate covers, as RFC 6125 reads it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Name {
    /// `api.example.com`: exactly this name.
    Exact(Box<str>),
    /// `*.example.com`, kept as `example.com`: any one label in front of it
    /// (`a.example.com`, never `a.b.example.com` nor `example.com`).
    Wildcard(Box<str>),
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Exact(name) => f.write_str(name),
            Name::Wildcard(parent) => write!(f, "*.{parent}"),
        }
    }
}

/// A PEM file that serves handshakes: its chain and key, ready in a rustls
/// configuration of its own, and what it covers and until when.
#[derive(Debug)]
pub struct Certificate {
    /// The file it was read from.
    pub file: PathBuf,
    /// The DNS names it covers, sorted.
    pub names: Vec<Name>,
    /// Its validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The rustls configuration that serves it.
    pub config: Arc<ServerConfig>,
}

/// Why a certificate file was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error("it is not PEM: {0}")]
    Pem(String),
    #[error("it holds no certificate (BEGIN CERTIFICATE)")]
    NoCertificate,
    #[error("it holds no private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY), and there is no NAME.key beside it: put the key in the same file, after the chain, or in NAME.key")]
    NoKey,
    #[error("its private key is encrypted: decrypt it (openssl pkey -in FILE -out FILE), and keep the file readable by the host only")]
    EncryptedKey,
    #[error("it holds {0} private keys: one file, one certificate and its key")]
    ManyKeys(usize),
    #[error("its first certificate does not parse: {0}")]
    BadCertificate(String),
    #[error("its private key is not usable: {0}")]
    BadKey(#[source] rustls::Error),
    #[error("its private key is not the key of its first certificate (is the chain in order, the server's own certificate first?)")]
    KeyMismatch,
    #[error("its certificate names no DNS name (subject alternative names){0}")]
    NoNames(String),
    #[error("it expired on {0}")]
    Expired(String),
    #[error("it is not valid until {0}")]
    NotYetValid(String),
    #[error("no TLS configuration can serve it: {0}")]
    Config(#[source] rustls::Error),
}

impl Refusal {
    /// The reason's label in `edgeroute_tls_certificates_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Read(_) => "unreadable",
            Refusal::Pem(_) | Refusal::NoCertificate | Refusal::NoKey | Refusal::ManyKeys(_) => "not_a_chain_and_key",
            Refusal::EncryptedKey => "bad_key",
            Refusal::BadCertificate(_) | Refusal::NoNames(_) => "bad_certificate",
            Refusal::BadKey(_) | Refusal::Config(_) => "bad_key",
            Refusal::KeyMismatch => "key_mismatch",
            Refusal::Expired(_) => "expired",
            Refusal::NotYetValid(_) => "not_yet_valid",
        }
    }

    /// The reasons, in the order `/metrics` lists them.
    pub const REASONS: [&'static str; 7] =
        ["unreadable", "not_a_chain_and_key", "bad_certificate", "bad_key", "key_mismatch", "expired", "not_yet_valid"];
}

impl Certificate {
    /// Reads `file`, checks it whole at time `now` (seconds since the Unix
    /// epoch), and makes the configuration that serves it, resuming
    /// sessions as `resumption` says.
    /// A file that holds no key takes it from its [`key_file`].
    pub fn read(file: &Path, now: i64, resumption: &Resumption) -> Result<Certificate, Refusal> {
        let mut pem = std::fs::read(file).map_err(Refusal::Read)?;
        if !pem.windows(11).any(|w| w == b"PRIVATE KEY") {
            if let Some(key) = key_file(file) {
                pem.push(b'\n');
                pem.extend(std::fs::read(&key).map_err(Refusal::Read)?);
            }
        }
        Certificate::from_pem(file, &pem, now, resumption)
    }

    /// [`Certificate::read`] of bytes already read.
    pub fn from_pem(file: &Path, pem: &[u8], now: i64, resumption: &Resumption) -> Result<Certificate, Refusal> {
        // (rustls reads no encrypted key: a host has no one to type its
        // passphrase. PKCS#8's marker, and the old PEM header of PKCS#1.)
        if pem.windows(21).any(|w| w == b"ENCRYPTED PRIVATE KEY")
            || pem.windows(20).any(|w| w == b"Proc-Type: 4,ENCRYPT")
        {
            return Err(Refusal::EncryptedKey);
        }
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Refusal::Pem(e.to_string()))?;
        let mut keys = PrivateKeyDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Refusal::Pem(e.to_string()))?;
        let Some(leaf) = chain.first() else { return Err(Refusal::NoCertificate) };
        let key = match keys.len() {
            0 => return Err(Refusal::NoKey),
            1 => keys.pop().expect("one"),
            n => return Err(Refusal::ManyKeys(n)),
        };
        let (names, not_before, not_after) = read_leaf(leaf)?;
        if now > not_after {
            return Err(Refusal::Expired(utc(not_after)));
        }
        if now < not_before {
            return Err(Refusal::NotYetValid(utc(not_before)));
        }
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let signer = provider.key_provider.load_private_key(key).map_err(Refusal::BadKey)?;
        let key = CertifiedKey::new(chain, signer);
        match key.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(Refusal::KeyMismatch)
            }
            Err(e) => return Err(Refusal::BadKey(e)),
        }
        let config = server_config(Arc::new(key), provider, resumption)?;
        Ok(Certificate { file: file.to_owned(), names, not_before, not_after, config })
    }

    /// Days left until it expires at `now`, negative once it has.
    pub fn days_left(&self, now: i64) -> f64 {
        (self.not_after - now) as f64 / DAY as f64
    }
}

/// The names and the validity of a chain's first certificate.
fn read_leaf(leaf: &CertificateDer<'_>) -> Result<(Vec<Name>, i64, i64), Refusal> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| Refusal::BadCertificate(e.to_string()))?;
    let validity = cert.validity();
    let san = cert.subject_alternative_name().map_err(|e| Refusal::BadCertificate(e.to_string()))?;
    let mut names = Vec::new();
    let mut unusable = Vec::new();
    for general in san.iter().flat_map(|san| san.value.general_names.iter()) {
        if let x509_parser::extensions::GeneralName::DNSName(dns) = general {
            match Name::parse(dns) {
                Some(name) => names.push(name),
                None => unusable.push(format!("{dns:?}")),
            }
        }
    }
    if names.is_empty() {
        let why = if unusable.is_empty() { String::new() } else { format!(" it can serve: {}", unusable.join(", ")) };
        return Err(Refusal::NoNames(why));
    }
    names.sort();
    names.dedup();
    Ok((names, validity.not_before.timestamp(), validity.not_after.timestamp()))
}

impl Name {
    /// A certificate's DNS name: a host name, or `*.` and one, lowercased
    /// (names are case-insensitive). `None` for what RFC 6125 has a client
    /// refuse: a partial-label wildcard (`f*.example.com`), a wildcard not
    /// leftmost or over a single label (`*.com`), an empty label.
    pub fn parse(dns: &str) -> Option<Name> {
        let dns = dns.strip_suffix('.').unwrap_or(dns).to_ascii_lowercase();
        let (wildcard, name) = match dns.strip_prefix("*.") {
            Some(parent) => (true, parent),
            None => (false, dns.as_str()),
        };
        let label = |l: &str| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let labels: Vec<&str> = name.split('.').collect();
        if name.len() > 253 || !labels.iter().all(|l| label(l)) || (wildcard && labels.len() < 2) {
            return None;
        }
        Some(if wildcard { Name::Wildcard(name.into()) } else { Name::Exact(name.into()) })
    }
}

/// Seconds since the Unix epoch, as a UTC date and time.
fn utc(seconds: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(seconds) {
        Ok(time) => time.to_string(),
        Err(_) => format!("{seconds} seconds after 1970"),
    }
}

/// The rustls configuration of one certificate: TLS 1.3 and 1.2, ALPN
/// `h2` then `http/1.1`, no client certificates, no early data, and the
/// host's session cache (a client that comes back resumes instead of
/// making a full handshake) unless resumption is off.
fn server_config(
    key: Arc<CertifiedKey>,
    provider: rustls::crypto::CryptoProvider,
    resumption: &Resumption,
) -> Result<Arc<ServerConfig>, Refusal> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(Refusal::Config)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Chosen(key)));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    match &resumption.0 {
        Some(cache) => config.session_storage = cache.clone(),
        None => {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
    }
    Ok(Arc::new(config))
}

/// The certificate chosen for a handshake already (by SNI, before rustls
/// takes the connection: `handshake.rs`).
#[derive(Debug)]
struct Chosen(Arc<CertifiedKey>);

impl ResolvesServerCert for Chosen {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_6125() {
        let exact = |s: &str| Some(Name::Exact(s.into()));
        let wild = |s: &str| Some(Name::Wildcard(s.into()));
        assert_eq!(Name::parse("API.Example.com."), exact("api.example.com"));
        assert_eq!(Name::parse("*.previews.example.com"), wild("previews.example.com"));
        assert_eq!(Name::parse("*.example.com"), wild("example.com"));
        for refused in ["*.com", "f*.example.com", "a.*.example.com", "*", "", "a..b", "*.", "ex ample.com"] {
            assert_eq!(Name::parse(refused), None, "{refused:?}");
        }
    }
}
