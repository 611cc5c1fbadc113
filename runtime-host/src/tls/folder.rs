//! [`CertificateFiles`]: the source of the host's certificates, the files
//! and folders of `--tls-certs` (a folder's `*.pem` files, not its
//! subfolders) and `--tls-default-cert`. Each [`scan`](CertificateFiles::scan)
//! reads again only the files that changed (by their metadata), and keeps
//! for every file its last good certificate: a file that turns bad is
//! refused on its own, logged and counted, and its names keep the
//! certificate they had. A file that is gone is gone with its certificate;
//! a folder that cannot be listed keeps what it had (a remount, a brief
//! permission slip), and says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::certificate::{key_file, Certificate, Refusal, Resumption};
use super::choice::CertificateSet;
use crate::metrics::Metrics;

/// What a file looked like when it was last read: a file replaced or
/// written again differs in one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Signature {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Signature {
    fn of(metadata: &std::fs::Metadata) -> Signature {
        use std::os::unix::fs::MetadataExt as _;
        Signature {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// One file's state.
#[derive(Debug)]
struct Held {
    /// The file's, and its key file's if it has one.
    signature: Option<(Signature, Option<Signature>)>,
    /// Its last good certificate.
    good: Option<Arc<Certificate>>,
    /// Refused last time it was read as not valid yet: read again at every
    /// scan until it is (or changes).
    waiting: bool,
    /// Why it was refused the last time it was read, if it was.
    refused: Option<&'static str>,
    /// Its good certificate has expired (told once).
    expired: bool,
}

/// Why the host cannot serve TLS with its certificate files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read --tls-certs {0}: {1}")]
    Path(PathBuf, #[source] std::io::Error),
    #[error("--tls-certs {0} is a folder with no .pem or .crt file in it")]
    EmptyFolder(PathBuf),
    #[error("--tls-default-cert {0} is refused: {1}")]
    Default(PathBuf, #[source] Refusal),
    #[error("no certificate could be loaded from --tls-certs (each refusal is logged above)")]
    NoCertificate,
}

/// What a scan found.
#[derive(Debug)]
pub struct Scan {
    /// The certificates to serve from now on.
    pub set: CertificateSet,
    /// Whether any certificate changed since the last scan.
    pub changed: bool,
    /// Files refused in this scan, and why.
    pub refused: Vec<(PathBuf, Refusal)>,
}

/// The certificate files of `--tls-certs` and `--tls-default-cert`.
#[derive(Debug)]
pub struct CertificateFiles {
    paths: Vec<PathBuf>,
    default: Option<PathBuf>,
    resumption: Resumption,
    /// The folders watched: each `--tls-certs` folder, the folder of each
    /// file (as they were at start: a folder that goes missing is still one).
    folders: Vec<PathBuf>,
    /// The next scan says the set changed, whatever it finds (after a scan
    /// that failed half way).
    force_change: bool,
    held: BTreeMap<PathBuf, Held>,
}

impl CertificateFiles {
    /// Reads every file a first time. Fails when a path cannot be read, a
    /// folder has no `.pem` file, the default certificate is refused, or
    /// no certificate at all is good; a bad file among good ones is only
    /// refused (logged, counted in `metrics`). The host remembers `sessions`
    /// sessions to resume, for all its certificates (0: none).
    pub fn open(
        paths: &[PathBuf],
        default: Option<&Path>,
        sessions: usize,
        metrics: &Metrics,
    ) -> Result<(CertificateFiles, CertificateSet), TlsError> {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let mut files = CertificateFiles {
            paths: paths.iter().map(|p| absolute(p)).collect(),
            default: default.map(absolute),
            resumption: Resumption::new(sessions),
            folders: Vec::new(),
            force_change: false,
            held: BTreeMap::new(),
        };
        let mut folders: Vec<PathBuf> = (files.paths.iter().chain(&files.default))
            .map(|p| if p.is_dir() { p.clone() } else { p.parent().map_or_else(|| p.clone(), Path::to_path_buf) })
            .collect();
        folders.sort();
        folders.dedup();
        files.folders = folders;
        for path in &files.paths {
            if list(path).map_err(|e| TlsError::Path(path.clone(), e))?.is_empty() {
                return Err(TlsError::EmptyFolder(path.clone()));
            }
        }
        let mut scan = files.scan(now(), metrics);
        if let Some(default) = &files.default {
            if let Some(i) = scan.refused.iter().position(|(file, _)| file == default) {
                let (file, why) = scan.refused.swap_remove(i);
                return Err(TlsError::Default(file, why));
            }
        }
        if scan.set.all().is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Ok((files, scan.set))
    }

    /// The folders to watch for changes (a file's own folder for a file).
    pub fn folders(&self) -> &[PathBuf] {
        &self.folders
    }

    /// Forgets what every file looked like: the next scan reads them all
    /// again and swaps its set in (after a scan that panicked half way).
    pub fn reread_all(&mut self) {
        for held in self.held.values_mut() {
            held.signature = None;
        }
        self.force_change = true;
    }

    /// Reads what changed since the last scan, at time `now` (seconds since
    /// the Unix epoch); logs and counts each refusal.
    pub fn scan(&mut self, now: i64, metrics: &Metrics) -> Scan {
        let mut seen: Vec<PathBuf> = Vec::new();
        // Files of a path that cannot be listed now: kept as they are, not read.
        let mut unlisted: Vec<PathBuf> = Vec::new();
        for path in &self.paths {
            match list(path) {
                Ok(files) => seen.extend(files),
                Err(e) => {
                    tracing::error!(
                        "cannot list --tls-certs {} ({e}): its certificates stay as they were",
                        path.display()
                    );
                    unlisted.extend(self.held.keys().filter(|held| held.starts_with(path)).cloned());
                }
            }
        }
        // A default file that is not there for now is kept too (being replaced).
        if let Some(default) = &self.default {
            if std::fs::metadata(default).is_err() && self.held.contains_key(default) {
                unlisted.push(default.clone());
            }
        }
        unlisted.sort();
        unlisted.dedup();
        seen.extend(unlisted.iter().cloned());
        seen.extend(self.default.iter().cloned());
        seen.sort();
        seen.dedup();
        let before: Vec<*const Certificate> =
            self.held.values().filter_map(|h| h.good.as_ref().map(Arc::as_ptr)).collect();
        self.held.retain(|file, _| seen.binary_search(file).is_ok());
        let mut refused = Vec::new();
        for file in seen {
            if unlisted.binary_search(&file).is_ok() {
                continue;
            }
            let held = self.held.entry(file.clone()).or_insert(Held {
                signature: None,
                good: None,
                waiting: false,
                refused: None,
                expired: false,
            });
            let key = key_file(&file).and_then(|key| std::fs::metadata(key).ok()).map(|m| Signature::of(&m));
            let signature = std::fs::metadata(&file).ok().map(|m| (Signature::of(&m), key));
            if signature.is_some() && signature == held.signature && !held.waiting {
                continue;
            }
            let read = Certificate::read(&file, now, &self.resumption);
            let same_file = signature.is_some() && signature == held.signature;
            held.signature = signature;
            match read {
                Ok(certificate) => {
                    tracing::info!(
                        "TLS: {} serves {} (expires in {:.0} days)",
                        file.display(),
                        names(&certificate),
                        certificate.days_left(now)
                    );
                    held.good = Some(Arc::new(certificate));
                    held.waiting = false;
                    held.refused = None;
                    held.expired = false;
                }
                // The same file refused again for the same reason (one that
                // waits to become valid): said and counted once.
                Err(why) if same_file && held.refused == Some(why.reason()) => {}
                // A `.crt` with no key in it or beside it is not one to serve
                // (a Kubernetes secret's `ca.crt`): passed over, said once.
                Err(Refusal::NoKey) if file.extension().is_some_and(|e| e == "crt") && held.good.is_none() => {
                    if !same_file {
                        tracing::info!(
                            "TLS: {} holds no private key and has no .key beside it: not served (a CA's certificate?)",
                            file.display()
                        );
                    }
                    held.refused = None;
                }
                Err(why) => {
                    held.waiting = matches!(why, Refusal::NotYetValid(_));
                    held.refused = Some(why.reason());
                    metrics.tls.refused(why.reason());
                    let keeps = match &held.good {
                        Some(good) => format!("{} keeps the certificate it had", names(good)),
                        None => "it serves nothing".to_owned(),
                    };
                    tracing::error!("TLS: refused {}: {why}; {keeps}", file.display());
                    refused.push((file, why));
                }
            }
        }
        let good: Vec<Arc<Certificate>> = self.held.values().filter_map(|h| h.good.clone()).collect();
        let mut changed = std::mem::take(&mut self.force_change)
            || good.len() != before.len()
            || good.iter().zip(&before).any(|(g, b)| Arc::as_ptr(g) != *b);
        // A certificate that expires while served gives way to a valid one
        // that covers its names (`choice.rs`): the set changes then too.
        for (file, held) in &mut self.held {
            let expired = held.good.as_ref().is_some_and(|good| now > good.not_after);
            if expired != held.expired {
                held.expired = expired;
                changed = true;
                if expired {
                    tracing::warn!(
                        "TLS: {} has expired; it serves only names no valid certificate covers (replace it)",
                        file.display()
                    );
                }
            }
        }
        let default = self.default.as_ref().and_then(|d| self.held.get(d)).and_then(|h| h.good.clone());
        let set = CertificateSet::new(good, default, now);
        let refused_now: Vec<(&Path, &'static str)> =
            self.held.iter().filter_map(|(file, h)| Some((file.as_path(), h.refused?))).collect();
        metrics.tls.serve(set.all(), &refused_now);
        Scan { set, changed, refused }
    }
}

/// A path's certificate files: the path itself, or a folder's `*.pem` and
/// `*.crt` files (not hidden ones; not its subfolders), sorted.
fn list(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !(name.ends_with(".pem") || name.ends_with(".crt")) {
            continue;
        }
        // Followed links too (a Kubernetes secret's files are links).
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// A certificate's names, for a log line.
fn names(certificate: &Certificate) -> String {
    let names: Vec<String> = certificate.names.iter().map(ToString::to_string).collect();
    names.join(", ")
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::authority::{LocalAuthority, Validity};

    /// A scan notices a certificate that has expired since it was read:
    /// the set changes, and a valid wildcard takes its names over.
    #[test]
    fn a_scan_notices_a_certificate_that_expired_while_served() {
        let folder = std::env::temp_dir().join(format!("edgeroute-tls-expiry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        let ca = LocalAuthority::new("test").unwrap();
        let until = |year| Validity { not_before: (2020, 1, 1), not_after: (year, 1, 1) };
        std::fs::write(folder.join("a.pem"), ca.issue(&["a.example.com"], until(2031)).unwrap()).unwrap();
        std::fs::write(folder.join("wild.pem"), ca.issue(&["*.example.com"], until(2041)).unwrap()).unwrap();
        let metrics = Metrics::default();
        let (mut files, set) = CertificateFiles::open(std::slice::from_ref(&folder), None, 0, &metrics).unwrap();
        let chosen = |set: &CertificateSet| set.choose(Some("a.example.com")).unwrap().file.clone();
        assert_eq!(chosen(&set), folder.join("a.pem"));
        let in_2032 = 1_956_528_000;
        let scan = files.scan(in_2032, &metrics);
        assert!(scan.changed, "the expiry changed what is served");
        assert_eq!(chosen(&scan.set), folder.join("wild.pem"));
        assert!(!files.scan(in_2032, &metrics).changed, "said once");
        let _ = std::fs::remove_dir_all(&folder);
    }
}
