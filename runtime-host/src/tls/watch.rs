//! The driver of certificate reloads: it scans [`CertificateFiles`] when
//! their folders change (inotify, through `notify`), on SIGHUP, and every
//! [`POLL`] in any case (a folder on a file system without inotify, a
//! certificate that waits to become valid; with no watch at all, every
//! [`POLL_UNWATCHED`]), and swaps each new set into the [`TlsTerminator`].
//! Handshakes from then on use it; connections already open keep theirs.

use std::sync::Arc;
use std::time::Duration;

use super::folder::{now, CertificateFiles};
use super::handshake::TlsTerminator;
use crate::metrics::Metrics;

/// How long the folders must be quiet before they are read: a file
/// written in place sends several events, and is read once, whole.
const SETTLE: Duration = Duration::from_millis(200);
/// The longest wait for quiet: a folder that is never quiet (a certificate
/// file named on its own, in a busy folder) is read this often at most.
const SETTLE_AT_MOST: Duration = Duration::from_secs(2);
/// The scan that runs whatever the watch says.
pub const POLL: Duration = Duration::from_secs(30);
/// The scan's interval while a folder cannot be watched.
pub const POLL_UNWATCHED: Duration = Duration::from_secs(2);

/// Keeps `terminator` on the files, forever.
pub async fn follow(files: CertificateFiles, terminator: Arc<TlsTerminator>, metrics: &'static Metrics) {
    follow_with(files, terminator, metrics, Watching::Folders).await
}

/// How changes are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watching {
    /// inotify on the folders, and a scan every [`POLL`] (every
    /// [`POLL_UNWATCHED`] while a folder cannot be watched).
    Folders,
    /// No watch: a scan every so often (the fallback, on its own).
    Poll(Duration),
}

/// [`follow`], watching as `watching` says.
pub async fn follow_with(
    mut files: CertificateFiles,
    terminator: Arc<TlsTerminator>,
    metrics: &'static Metrics,
    watching: Watching,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watch = match watching {
        Watching::Folders => Some(Watch::new(&files, tx.clone())),
        Watching::Poll(_) => None,
    };
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => tracing::warn!("cannot listen for SIGHUP ({e}): certificates are read again on changes only"),
    }
    loop {
        let poll = match (&watch, watching) {
            (_, Watching::Poll(every)) => every,
            (Some(watch), _) if watch.complete => POLL,
            _ => POLL_UNWATCHED,
        };
        if tokio::time::timeout(poll, rx.recv()).await.is_ok_and(|got| got.is_none()) {
            return;
        }
        let settled_by = tokio::time::Instant::now() + SETTLE_AT_MOST;
        while tokio::time::Instant::now() < settled_by {
            if !matches!(tokio::time::timeout(SETTLE, rx.recv()).await, Ok(Some(()))) {
                break;
            }
        }
        // Off the event loop: a folder of many files takes a while to read.
        let scanned = tokio::task::spawn_blocking(move || {
            // A file that makes a parser panic must not end the reloads.
            let scan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| files.scan(now(), metrics)));
            (files, scan)
        })
        .await;
        let Ok((back, scan)) = scanned else {
            tracing::error!("TLS: reading the certificates failed; they are no longer followed");
            return;
        };
        files = back;
        match scan {
            Ok(scan) if scan.changed => {
                tracing::info!("TLS: serving {} certificate(s) from the next handshake on", scan.set.all().len());
                terminator.swap(scan.set);
            }
            Ok(_) => {}
            Err(_) => {
                metrics.tls.refused("bad_certificate");
                files.reread_all();
                tracing::error!(
                    "TLS: reading the certificates panicked; the ones served stay, and every file is read again at the next scan"
                );
            }
        }
        // A folder replaced (renamed over, a link retargeted) is another
        // folder than the one watched: watched again.
        if watch.as_ref().is_some_and(Watch::stale) {
            tracing::info!("TLS: a certificate folder was replaced, or is back; watching it again");
            watch = Some(Watch::new(&files, tx.clone()));
            // What changed between the scan and the new watch is read now.
            let _ = tx.send(());
        }
    }
}

/// The inotify watch of the folders, and what each folder was when watched.
struct Watch {
    _watcher: Option<notify::RecommendedWatcher>,
    /// Each folder and its inode then (`None`: it was not there).
    folders: Vec<(std::path::PathBuf, Option<u64>)>,
    /// Every folder is watched.
    complete: bool,
}

/// A folder's inode, following links.
fn inode(folder: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(folder).ok().map(|m| m.ino())
}

impl Watch {
    /// Watches every folder of `files`; any event, or an error of the watch
    /// itself (its queue overflowed: events were lost), asks for a scan.
    fn new(files: &CertificateFiles, tx: tokio::sync::mpsc::UnboundedSender<()>) -> Watch {
        let folders = files.folders().to_vec();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_err() || event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                let _ = tx.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(e) => {
                tracing::warn!("TLS: cannot watch the certificate folders ({e}): read every {POLL_UNWATCHED:?}");
                let folders = folders.into_iter().map(|f| (inode(&f), f)).map(|(at, f)| (f, at)).collect();
                return Watch { _watcher: None, folders, complete: false };
            }
        };
        let mut complete = true;
        let mut watched = Vec::new();
        for folder in folders {
            let at = inode(&folder);
            match notify::Watcher::watch(&mut watcher, &folder, notify::RecursiveMode::NonRecursive) {
                Ok(()) => watched.push((folder, at)),
                Err(e) => {
                    tracing::warn!("TLS: cannot watch {} ({e}): read every {POLL_UNWATCHED:?}", folder.display());
                    complete = false;
                    watched.push((folder, at));
                }
            }
        }
        Watch { _watcher: Some(watcher), folders: watched, complete }
    }

    /// A folder is not the one it was when watched (replaced, or there
    /// now where it was not).
    fn stale(&self) -> bool {
        self.folders.iter().any(|(folder, at)| inode(folder) != *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::authority::{LocalAuthority, Validity};
    use crate::tls::CertificateSet;

    fn names(set: &CertificateSet) -> Vec<String> {
        set.all().iter().flat_map(|c| c.names.iter().map(ToString::to_string)).collect()
    }

    /// Without a watch (no inotify), a scan every so often still finds a
    /// replaced certificate, and swaps it in.
    #[tokio::test]
    async fn polling_alone_finds_a_replaced_certificate() {
        let folder = std::env::temp_dir().join(format!("edgeroute-tls-poll-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        let ca = LocalAuthority::new("test").unwrap();
        std::fs::write(folder.join("a.pem"), ca.issue(&["a.example.com"], Validity::current()).unwrap()).unwrap();
        let metrics: &'static Metrics = Box::leak(Box::default());
        let (files, set) = CertificateFiles::open(std::slice::from_ref(&folder), None, 16, metrics).unwrap();
        assert_eq!(names(&set), ["a.example.com"]);
        let terminator = Arc::new(TlsTerminator::new(set));
        let following =
            tokio::spawn(follow_with(files, terminator.clone(), metrics, Watching::Poll(Duration::from_millis(50))));
        let pem = ca.issue(&["b.example.com"], Validity::current()).unwrap();
        std::fs::write(folder.join(".a.tmp"), pem).unwrap();
        std::fs::rename(folder.join(".a.tmp"), folder.join("a.pem")).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while names(&terminator.certificates()) != ["b.example.com"] {
            assert!(tokio::time::Instant::now() < deadline, "never swapped in");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        following.abort();
        let _ = std::fs::remove_dir_all(&folder);
    }
}
