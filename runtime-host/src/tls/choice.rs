//! [`CertificateSet`]: the certificates a handshake chooses from, by the
//! name the client sends (SNI), with the rules of RFC 6125 rather than the
//! routing table's:
//!
//! 1. a certificate naming the name exactly;
//! 2. else one naming `*.` and the name's parent: a wildcard covers
//!    exactly one label (`*.previews.example.com` covers
//!    `a.previews.example.com`, never `a.b.previews.example.com`);
//! 3. else the default certificate (`--tls-default-cert`), if there is one;
//!    else none, and the handshake is refused with an alert.
//!
//! A client that sends no name gets the default certificate, or the alert.
//! Where two files name the same name, the one that expires last serves it
//! (a renewed certificate put beside the old one takes over at once), and
//! of two that expire together, the file whose path sorts first: never
//! "whichever was read first".

use std::collections::HashMap;
use std::sync::Arc;

use super::certificate::{Certificate, Name};

/// The certificates of one moment, immutable; the host swaps in a new set
/// when its files change (`folder.rs`).
#[derive(Debug, Default)]
pub struct CertificateSet {
    exact: HashMap<Box<str>, Arc<Certificate>>,
    /// By the wildcard's parent (`example.com` for `*.example.com`).
    wildcard: HashMap<Box<str>, Arc<Certificate>>,
    default: Option<Arc<Certificate>>,
    /// Every certificate, each once, in the order of their files.
    all: Vec<Arc<Certificate>>,
}

impl CertificateSet {
    /// The set of `certificates`, each serving its names unless another
    /// that expires later names them too; `default` answers names none covers.
    pub fn new(certificates: Vec<Arc<Certificate>>, default: Option<Arc<Certificate>>) -> CertificateSet {
        let mut set = CertificateSet { default, ..CertificateSet::default() };
        let better = |new: &Certificate, old: &Certificate| {
            new.not_after > old.not_after || (new.not_after == old.not_after && new.file < old.file)
        };
        for certificate in &certificates {
            for name in &certificate.names {
                let (map, key) = match name {
                    Name::Exact(name) => (&mut set.exact, name),
                    Name::Wildcard(parent) => (&mut set.wildcard, parent),
                };
                match map.get(key) {
                    Some(held) if !better(certificate, held) => {}
                    _ => {
                        map.insert(key.clone(), certificate.clone());
                    }
                }
            }
        }
        set.all = certificates;
        set.all.sort_by(|a, b| a.file.cmp(&b.file));
        set
    }

    /// The certificate for a handshake whose client sent `sni` (module docs).
    pub fn choose(&self, sni: Option<&str>) -> Option<&Arc<Certificate>> {
        let Some(sni) = sni else { return self.default.as_ref() };
        let lower;
        let name = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = sni.to_ascii_lowercase();
            lower.as_str()
        } else {
            sni
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        self.exact
            .get(name)
            .or_else(|| name.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)))
            .or(self.default.as_ref())
    }

    /// Every certificate, each once.
    pub fn all(&self) -> &[Arc<Certificate>] {
        &self.all
    }

    /// The default certificate, if any.
    pub fn default_certificate(&self) -> Option<&Arc<Certificate>> {
        self.default.as_ref()
    }
}
