//! [`Follower`]: keeps a host's [`Edge`] on a store's current snapshot
//! (`docs/publishing.md`).
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

use edgeroute_store::{write_file_atomically, Pointer, Store, StoreError, Version};

use crate::edge::Edge;
use crate::engine::EdgeEngine;
use crate::router::{snapshot_id, Router};

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

/// What a host knows of its store, and the [`Edge`] it keeps current.
#[derive(Debug)]
pub struct Follower {
    edge: &'static Edge,
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
fn verify(bytes: &[u8], id: &str) -> Result<String, ServeError> {
    let found = snapshot_id(bytes);
    if found != id {
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
    /// Starts from the store's current snapshot, or from the cached one in
    /// `cache` if the store cannot be reached. The [`Edge`] lives as long as
    /// the process (every listener and worker thread refers to it).
    pub async fn start(store: Store, cache: PathBuf) -> Result<Follower, ServeError> {
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
        let engine = EdgeEngine::new().map_err(|e| ServeError::Refused { id: String::new(), why: e.to_string() })?;
        let router = Router::new(engine, &bytes)
            .map_err(|e| ServeError::Refused { id: snapshot_id(&bytes), why: e.to_string() })?;
        let edge = Edge::leak(router);
        Ok(Follower { edge, store, cache, version: Mutex::new(version) })
    }

    /// The router and counters this follower keeps current.
    pub fn edge(&self) -> &'static Edge {
        self.edge
    }

    /// Looks at the pointer once and swaps if it moved. Returns the new id
    /// when a swap happened.
    pub async fn poll(&self) -> Result<Option<String>, ServeError> {
        let known = self.version.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((pointer, version)) = self.store.read_pointer_if_changed(known.as_ref()).await? else {
            return Ok(None);
        };
        // Whatever happens to this pointer, it is not looked at again until it changes.
        *self.version.lock().unwrap_or_else(|p| p.into_inner()) = Some(version);
        if pointer.id == self.edge.router.live().id {
            return Ok(None);
        }
        let start = Instant::now();
        let result = async {
            let bytes = fetch(&self.store, &pointer).await?;
            // Hashing, loading and caching take milliseconds to seconds
            // (50 MB at 1M routes): never on the threads that serve requests.
            let (router, cache, id) = (&self.edge.router, self.cache.clone(), pointer.id.clone());
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
                self.edge.metrics.swaps.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "serving {} ({} routes; fetched and loaded in {} ms)",
                    pointer.id,
                    pointer.routes,
                    start.elapsed().as_millis()
                );
                Ok(Some(pointer.id))
            }
            Err(e @ ServeError::Refused { .. }) => {
                self.edge.metrics.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!("refused {e}; still serving {}", self.edge.router.live().id);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Polls forever, every `interval`; a directory store is also watched
    /// for changes (inotify and the like), so that a new pointer is seen at
    /// once, with the polling as the fallback.
    pub async fn follow(&self, interval: Duration) {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let _watcher = self.store.dir().and_then(|dir| {
            let wake = wake.clone();
            let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
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
            match self.poll().await {
                Ok(_) | Err(ServeError::Refused { .. }) => last_error.clear(),
                Err(e) => {
                    self.edge.metrics.poll_errors.fetch_add(1, Ordering::Relaxed);
                    let text = e.to_string();
                    // Say it once, not every interval.
                    if text != last_error {
                        tracing::warn!("cannot read the store: {text}; still serving {}", self.edge.router.live().id);
                        last_error = text;
                    }
                }
            }
        }
    }
}

/// The default cache folder for a store: one per store, under the user's cache.
pub fn default_cache(store: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("edgeroute").join(&snapshot_id(store.as_bytes())[..16])
}
