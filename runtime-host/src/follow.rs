//! [`Follower`]: keeps a host's [`HostState`] on a store's current snapshot
//! (`docs/publishing.md`). It is the source of updates only: the router
//! holds the live snapshot, and whoever starts the host drives
//! [`Follower::follow`] in the background.
//!
//! The host starts from the store's current snapshot (or, when the store
//! cannot be reached, from the last good snapshot it cached on disk), then
//! polls the pointer: in S3 with a conditional GET, so an unchanged pointer
//! costs a 304. A new pointer's object is fetched, its SHA-256 checked
//! against the id, and swapped in only if the module accepts it; a
//! missing, corrupt or mismatching object is refused with a log line and a
//! count, and the current snapshot keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgeroute_edge::SnapshotId;
use edgeroute_store::{write_file_atomically, Pointer, Store, StoreError, StoreLocation, Version};

use crate::state::HostState;

/// Why the host could not start or follow its store.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot reach the store and there is no cached snapshot in {cache}: {source}")]
    NoStore { cache: PathBuf, source: StoreError },
    #[error("the store has no current snapshot yet (publish one first) and there is none cached in {cache}")]
    Empty { cache: PathBuf },
    #[error("snapshot {id}: {why}")]
    Refused { id: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a host knows of its store: where it is, where the last good
/// snapshot is cached, and the pointer's version last seen.
#[derive(Debug)]
pub struct Follower {
    store: Store,
    cache: PathBuf,
    version: Mutex<Option<Version>>,
}

/// Fetches a pointer's snapshot and checks that its bytes are its id.
async fn fetch(store: &Store, pointer: &Pointer) -> Result<Vec<u8>, ServeError> {
    let bytes = store.get_snapshot(&pointer.id).await.map_err(|e| match e {
        StoreError::NoSnapshot { .. } => {
            ServeError::Refused { id: pointer.id.clone(), why: "the object is missing".into() }
        }
        other => ServeError::Store(other),
    })?;
    Ok(bytes)
}

/// Checks that a fetched snapshot's bytes are its id; returns the id.
fn verify(bytes: &[u8], id: &str) -> Result<SnapshotId, ServeError> {
    let found = SnapshotId::of(bytes);
    // The pointer's id exactly as stores write it, lowercase hex (the id's
    // own comparison with text ignores case).
    let written = found.to_string();
    if written != id {
        return Err(ServeError::Refused {
            id: id.to_owned(),
            why: format!("the object's SHA-256 is {found} (damaged or replaced)"),
        });
    }
    Ok(found)
}

/// Keeps the last good snapshot on disk for a start without the store.
fn keep(cache: &Path, bytes: &[u8]) {
    let path = cache.join("current.snap");
    if let Err(e) = std::fs::create_dir_all(cache).and_then(|()| write_file_atomically(&path, bytes)) {
        tracing::warn!("cannot cache the snapshot in {}: {e}", path.display());
    }
}

impl Follower {
    /// Reads the first snapshot to serve: the store's current one, or the
    /// one cached in `cache` if the store cannot be reached. Returns the
    /// follower and the snapshot's bytes (checked against their id when
    /// they come from the store), from which the caller makes the router.
    pub async fn start(store: Store, cache: PathBuf) -> Result<(Follower, Vec<u8>), ServeError> {
        let cached = cache.join("current.snap");
        let (bytes, version) = match store.read_pointer().await {
            Ok(Some((pointer, version))) => {
                let bytes = fetch(&store, &pointer).await?;
                verify(&bytes, &pointer.id)?;
                keep(&cache, &bytes);
                (bytes, Some(version))
            }
            Ok(None) => match std::fs::read(&cached) {
                Ok(bytes) => (bytes, None),
                Err(_) => return Err(ServeError::Empty { cache }),
            },
            Err(source) => match std::fs::read(&cached) {
                Ok(bytes) => {
                    tracing::warn!(
                        "cannot reach the store ({source}); serving the cached snapshot {}",
                        cached.display()
                    );
                    (bytes, None)
                }
                Err(_) => return Err(ServeError::NoStore { cache, source }),
            },
        };
        Ok((Follower { store, cache, version: Mutex::new(version) }, bytes))
    }

    /// Looks at the pointer once and swaps if it moved. Returns the new id
    /// when a swap happened.
    pub async fn poll(&self, state: &'static HostState) -> Result<Option<String>, ServeError> {
        let known = self.version.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((pointer, version)) = self.store.read_pointer_if_changed(known.as_ref()).await? else {
            return Ok(None);
        };
        // Whatever happens to this pointer, it is not looked at again until it changes.
        *self.version.lock().unwrap_or_else(|p| p.into_inner()) = Some(version);
        if state.router.live().id == pointer.id.as_str() {
            return Ok(None);
        }
        let start = Instant::now();
        let result = async {
            let bytes = fetch(&self.store, &pointer).await?;
            // Hashing, loading and caching take milliseconds to seconds
            // (50 MB at 1M routes): never on the threads that serve requests.
            let (router, cache, id) = (&state.router, self.cache.clone(), pointer.id.clone());
            tokio::task::spawn_blocking(move || {
                let verified = verify(&bytes, &id)?;
                router
                    .swap_identified(&bytes, verified)
                    .map_err(|e| ServeError::Refused { id: id.clone(), why: e.to_string() })?;
                keep(&cache, &bytes);
                Ok(())
            })
            .await
            .map_err(|e| ServeError::Refused { id: pointer.id.clone(), why: e.to_string() })?
        }
        .await;
        match result {
            Ok(()) => {
                state.metrics.swaps.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "serving {} ({} routes; fetched and loaded in {} ms)",
                    pointer.id,
                    pointer.routes,
                    start.elapsed().as_millis()
                );
                Ok(Some(pointer.id))
            }
            Err(e @ ServeError::Refused { .. }) => {
                state.metrics.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!("refused {e}; still serving {}", state.router.live().id);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Keeps `state` on the store's current snapshot: polls forever, every
    /// `interval`; a directory store's pointer file is also watched for
    /// changes (inotify and the like), so that a new pointer is seen at
    /// once, with the polling as the fallback. Only changes of the pointer
    /// wake it: idle, it costs nothing but its polls.
    pub async fn follow(&self, state: &'static HostState, interval: Duration) {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let _watcher = self.store.dir().and_then(|dir| {
            let wake = wake.clone();
            let pointer = self.store.pointer_file()?;
            let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|event| changes(&event, &pointer)) {
                    wake.notify_one();
                }
            });
            let mut watcher = match watcher {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("cannot watch {} ({e}); polling every {} ms", dir.display(), interval.as_millis());
                    return None;
                }
            };
            match notify::Watcher::watch(&mut watcher, dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => Some(watcher),
                Err(e) => {
                    tracing::warn!("cannot watch {} ({e}); polling every {} ms", dir.display(), interval.as_millis());
                    None
                }
            }
        });
        let mut last_error = String::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = wake.notified() => {}
            }
            match self.poll(state).await {
                Ok(_) | Err(ServeError::Refused { .. }) => last_error.clear(),
                Err(e) => {
                    state.metrics.poll_errors.fetch_add(1, Ordering::Relaxed);
                    let text = e.to_string();
                    // Say it once, not every interval.
                    if text != last_error {
                        tracing::warn!("cannot read the store: {text}; still serving {}", state.router.live().id);
                        last_error = text;
                    }
                }
            }
        }
    }
}

/// Whether a file event may have changed the pointer `pointer`: a write,
/// rename, creation or removal of that file. Reads are not changes (the
/// follower's own reads of the pointer must not wake it again), and the
/// other files of the folder (snapshots, history, the lease, the lock)
/// never move the pointer.
fn changes(event: &notify::Event, pointer: &Path) -> bool {
    !matches!(event.kind, notify::EventKind::Access(_))
        && event.paths.iter().any(|path| path.file_name() == pointer.file_name())
}

/// The default cache folder for a store: one per store, under the user's cache.
pub fn default_cache(store: &StoreLocation) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("edgeroute").join(store.cache_name())
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, CreateKind, ModifyKind, RenameMode};
    use notify::{Event, EventKind};

    use super::*;

    #[test]
    fn only_writes_of_the_pointer_file_are_changes() {
        let pointer = Path::new("/store/current.json");
        let event = |kind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
        assert!(changes(&event(EventKind::Modify(ModifyKind::Name(RenameMode::To)), "/store/current.json"), pointer));
        assert!(changes(&event(EventKind::Create(CreateKind::File), "/store/current.json"), pointer));
        assert!(!changes(&event(EventKind::Access(AccessKind::Read), "/store/current.json"), pointer));
        assert!(!changes(&event(EventKind::Modify(ModifyKind::Any), "/store/lease.json"), pointer));
        assert!(!changes(&event(EventKind::Create(CreateKind::File), "/store/.lock"), pointer));
    }
}
