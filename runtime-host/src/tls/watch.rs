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
/// The scan that runs whatever the watch says.
pub const POLL: Duration = Duration::from_secs(30);
/// The scan's interval when the folders cannot be watched.
pub const POLL_UNWATCHED: Duration = Duration::from_secs(2);

/// Keeps `terminator` on the files, forever.
pub async fn follow(mut files: CertificateFiles, terminator: Arc<TlsTerminator>, metrics: &'static Metrics) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (_watcher, all_watched) = watch(&files, tx.clone());
    let poll = if all_watched { POLL } else { POLL_UNWATCHED };
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
        if tokio::time::timeout(poll, rx.recv()).await.is_ok_and(|got| got.is_none()) {
            return;
        }
        while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {}
        // Off the event loop: a folder of many files takes a while to read.
        let scanned = tokio::task::spawn_blocking(move || {
            let scan = files.scan(now(), metrics);
            (files, scan)
        })
        .await;
        let Ok((back, scan)) = scanned else {
            tracing::error!("TLS: reading the certificates failed; they are no longer followed");
            return;
        };
        files = back;
        if scan.changed {
            tracing::info!("TLS: serving {} certificate(s) from the next handshake on", scan.set.all().len());
            terminator.swap(scan.set);
        }
    }
}

/// Watches every folder of `files`; and whether every one is watched.
fn watch(
    files: &CertificateFiles,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> (Option<notify::RecommendedWatcher>, bool) {
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!("TLS: cannot watch the certificate folders ({e}): read every {POLL_UNWATCHED:?}");
            return (None, false);
        }
    };
    let mut all = true;
    for folder in files.folders() {
        if let Err(e) = notify::Watcher::watch(&mut watcher, &folder, notify::RecursiveMode::NonRecursive) {
            tracing::warn!("TLS: cannot watch {} ({e}): read every {POLL_UNWATCHED:?}", folder.display());
            all = false;
        }
    }
    (Some(watcher), all)
}
