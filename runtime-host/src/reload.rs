//! [`SnapshotFile`]: keeps a host that serves `--snapshot FILE` on that
//! file: it is read again when it changes (a file watcher on its folder,
//! which also sees a new file renamed over it) and on SIGHUP, as nginx and
//! HAProxy reload on a signal. Each new file is validated by the module
//! before it is swapped in; a bad one is refused, logged and counted, and
//! the old snapshot keeps serving. Like the store's [`Follower`], it is a
//! source of updates only: the router holds the live snapshot.
//!
//! [`Follower`]: crate::follow::Follower

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::state::HostState;

/// How long the file must be quiet before it is read: a file written in
/// place (not renamed over) sends several events, and is read once, whole.
const SETTLE: Duration = Duration::from_millis(100);

/// A snapshot file a host serves.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
}

/// What made the host look at its file again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    Changed,
    Signal,
}

impl SnapshotFile {
    pub fn new(path: impl Into<PathBuf>) -> SnapshotFile {
        SnapshotFile { path: path.into() }
    }

    /// Reloads the file into `state` whenever it changes or the process gets
    /// SIGHUP, forever.
    pub async fn follow(&self, state: &'static HostState) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let _watcher = self.watch(tx.clone());
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(mut hup) => {
                    tokio::spawn(async move {
                        while hup.recv().await.is_some() {
                            if tx.send(Cause::Signal).is_err() {
                                return;
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("cannot listen for SIGHUP ({e}): the snapshot file is reloaded on changes only")
                }
            }
        }
        while let Some(mut cause) = rx.recv().await {
            // Let a file being written settle; a signal among the events wins.
            while let Ok(Some(next)) = tokio::time::timeout(SETTLE, rx.recv()).await {
                if next == Cause::Signal {
                    cause = Cause::Signal;
                }
            }
            self.reload(state, cause).await;
        }
    }

    /// Watches the file's folder for changes of the file (a folder watch
    /// also sees a new file renamed over it, which a watch of the file
    /// itself would lose).
    fn watch(&self, tx: tokio::sync::mpsc::UnboundedSender<Cause>) -> Option<notify::RecommendedWatcher> {
        let folder = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self.path.file_name()?.to_owned();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let changed = !matches!(event.kind, notify::EventKind::Access(_))
                && event.paths.iter().any(|p| p.file_name() == Some(name.as_os_str()));
            if changed {
                let _ = tx.send(Cause::Changed);
            }
        })
        .map_err(|e| tracing::warn!("cannot watch {} ({e}): reloaded on SIGHUP only", self.path.display()))
        .ok()?;
        notify::Watcher::watch(&mut watcher, &folder, notify::RecursiveMode::NonRecursive)
            .map_err(|e| tracing::warn!("cannot watch {} ({e}): reloaded on SIGHUP only", folder.display()))
            .ok()?;
        Some(watcher)
    }

    /// Reads the file and swaps it in if it is another snapshot (off the
    /// serving threads: hashing and loading take up to seconds).
    async fn reload(&self, state: &'static HostState, cause: Cause) {
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || load(&path, state)).await;
        let why = if cause == Cause::Signal { "on SIGHUP" } else { "changed" };
        match result {
            Ok(Ok(Some(live))) => {
                state.metrics.swaps.fetch_add(1, Ordering::Relaxed);
                tracing::info!("{} {why}: serving {} ({} routes)", self.path.display(), live.id, live.route_count());
            }
            Ok(Ok(None)) => tracing::debug!("{} {why}: the same snapshot", self.path.display()),
            Ok(Err(e)) => {
                state.metrics.refused.fetch_add(1, Ordering::Relaxed);
                let serving = state.router.live().map_or_else(|| "nothing".to_owned(), |l| l.id.to_string());
                tracing::error!("refused {} ({why}): {e}; still serving {serving}", self.path.display());
            }
            Err(e) => tracing::error!("reloading {} failed: {e}", self.path.display()),
        }
    }
}

/// Why a snapshot file was not swapped in.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    Refused(#[from] crate::engine::EngineError),
}

/// Swaps in the snapshot at `path` unless it is the one being served.
fn load(path: &Path, state: &HostState) -> Result<Option<std::sync::Arc<crate::router::Live>>, ReloadError> {
    // Into a memfd as it is read, hashed on the way: one pass over the bytes.
    let mut file = std::fs::File::open(path).map_err(ReloadError::Read)?;
    let base = crate::base_file::BaseFile::read_from(&mut file).map_err(ReloadError::Read)?;
    let id = base.id();
    if state.router.live().is_some_and(|live| live.id == id) {
        return Ok(None);
    }
    Ok(Some(state.router.swap_state_file(base, id, Vec::new())?))
}
