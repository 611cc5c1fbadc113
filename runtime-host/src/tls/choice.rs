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
    /// The set of `certificates` at time `now` (seconds since the Unix
    /// epoch), each serving its names unless another that expires later
    /// names them too; `default` answers names none covers. A certificate
    /// expired at `now` serves only names that no valid certificate covers,
    /// exactly or by a wildcard (a browser refuses it either way, but says
    /// why).
    pub fn new(certificates: Vec<Arc<Certificate>>, default: Option<Arc<Certificate>>, now: i64) -> CertificateSet {
        let mut set = CertificateSet { default, ..CertificateSet::default() };
        let better = |new: &Certificate, old: &Certificate| {
            new.not_after > old.not_after || (new.not_after == old.not_after && new.file < old.file)
        };
        let (valid, expired): (Vec<_>, Vec<_>) = certificates.iter().partition(|c| now <= c.not_after);
        for (certificate, fills_in) in
            valid.into_iter().map(|c| (c, false)).chain(expired.into_iter().map(|c| (c, true)))
        {
            for name in &certificate.names {
                if fills_in && set.covers(name, now) {
                    continue;
                }
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

    /// Whether a certificate of the set that is valid at `now` covers
    /// `name` already (a name by itself or by a wildcard; a wildcard by the
    /// same wildcard).
    fn covers(&self, name: &Name, now: i64) -> bool {
        let valid = |c: Option<&Arc<Certificate>>| c.is_some_and(|c| now <= c.not_after);
        match name {
            Name::Exact(name) => {
                valid(self.exact.get(name))
                    || name.split_once('.').is_some_and(|(_, parent)| valid(self.wildcard.get(parent)))
            }
            Name::Wildcard(parent) => valid(self.wildcard.get(parent)),
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::tls::authority::{LocalAuthority, Validity};

    /// 2023-11-14.
    const NOW: i64 = 1_700_000_000;

    fn certificate(ca: &LocalAuthority, file: &str, names: &[&str], until: i32) -> Arc<Certificate> {
        let validity = Validity { not_before: (2020, 1, 1), not_after: (until, 1, 1) };
        let pem = ca.issue(names, validity).unwrap();
        let resumption = crate::tls::certificate::Resumption::new(8);
        Arc::new(Certificate::from_pem(Path::new(file), pem.as_bytes(), NOW, &resumption).unwrap())
    }

    fn chosen<'s>(set: &'s CertificateSet, sni: Option<&str>) -> Option<&'s str> {
        set.choose(sni).map(|c| c.file.to_str().unwrap())
    }

    #[test]
    fn exact_beats_wildcard_and_a_wildcard_covers_one_label() {
        let ca = LocalAuthority::new("test").unwrap();
        let set = CertificateSet::new(
            vec![
                certificate(&ca, "wild", &["*.previews.example.com"], 2040),
                certificate(&ca, "exact", &["pinned.previews.example.com", "www.example.com"], 2040),
            ],
            None,
            NOW,
        );
        assert_eq!(chosen(&set, Some("a.previews.example.com")), Some("wild"));
        assert_eq!(chosen(&set, Some("pinned.previews.example.com")), Some("exact"));
        assert_eq!(chosen(&set, Some("WWW.example.com.")), Some("exact"));
        for none in [Some("a.b.previews.example.com"), Some("previews.example.com"), Some("example.com"), None] {
            assert_eq!(chosen(&set, none), None, "{none:?}");
        }
        let with_default = CertificateSet::new(set.all().to_vec(), Some(set.all()[0].clone()), NOW);
        assert_eq!(chosen(&with_default, Some("a.b.previews.example.com")), Some("exact"));
        assert_eq!(chosen(&with_default, None), Some("exact"));
        assert_eq!(chosen(&with_default, Some("a.previews.example.com")), Some("wild"));
    }

    /// Two files for one name: the later expiry, then the path, whatever
    /// the order they were read in.
    #[test]
    fn a_name_two_files_claim_goes_to_the_later_expiry_then_the_first_path() {
        let ca = LocalAuthority::new("test").unwrap();
        let (old, renewed) = (
            certificate(&ca, "b-old", &["www.example.com"], 2030),
            certificate(&ca, "c-new", &["www.example.com"], 2031),
        );
        let twin = certificate(&ca, "a-twin", &["www.example.com"], 2031);
        for order in [vec![old.clone(), renewed.clone()], vec![renewed.clone(), old.clone()]] {
            assert_eq!(chosen(&CertificateSet::new(order, None, NOW), Some("www.example.com")), Some("c-new"));
        }
        for order in [vec![twin.clone(), renewed.clone(), old.clone()], vec![old, renewed, twin]] {
            assert_eq!(chosen(&CertificateSet::new(order, None, NOW), Some("www.example.com")), Some("a-twin"));
        }
    }
}

#[cfg(test)]
mod expiry {
    use std::path::Path;

    use super::*;
    use crate::tls::authority::{LocalAuthority, Validity};

    /// A certificate that expires while served gives way to a valid one
    /// covering its names, and keeps serving the names nothing else covers.
    #[test]
    fn an_expired_certificate_serves_only_what_nothing_valid_covers() {
        let ca = LocalAuthority::new("test").unwrap();
        let read = |file: &str, names: &[&str], until: i32| {
            let validity = Validity { not_before: (2020, 1, 1), not_after: (until, 1, 1) };
            let pem = ca.issue(names, validity).unwrap();
            let resumption = crate::tls::certificate::Resumption::new(0);
            Arc::new(Certificate::from_pem(Path::new(file), pem.as_bytes(), 1_700_000_000, &resumption).unwrap())
        };
        let exact = read("exact", &["a.example.com", "only.example.com"], 2030);
        let wild = read("wild", &["*.example.com"], 2035);
        let before = CertificateSet::new(vec![exact.clone(), wild.clone()], None, 1_700_000_000);
        let chosen = |set: &CertificateSet, sni: &str| set.choose(Some(sni)).map(|c| c.file.display().to_string());
        assert_eq!(chosen(&before, "a.example.com").as_deref(), Some("exact"));
        // 2031: the exact certificate has expired; the wildcard covers its names.
        let after = CertificateSet::new(vec![exact.clone(), wild], None, 1_925_000_000);
        assert_eq!(chosen(&after, "a.example.com").as_deref(), Some("wild"));
        assert_eq!(chosen(&after, "only.example.com").as_deref(), Some("wild"));
        // With nothing else, the expired one still answers (the client says why it refuses).
        let alone = CertificateSet::new(vec![exact], None, 1_925_000_000);
        assert_eq!(chosen(&alone, "only.example.com").as_deref(), Some("exact"));
    }
}
