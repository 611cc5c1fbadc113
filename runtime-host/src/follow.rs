//! [`Follower`]: keeps a host's [`HostState`] on a store's current snapshot
//! (`docs/publishing.md`, `docs/serving.md`). It is the source of updates
//! only: the router holds the live snapshot, and whoever starts the host
//! drives [`Follower::follow`] in the background.
//!
//! The host starts from the store's current snapshot or, when that cannot
//! be had (the store unreachable, the object missing or damaged), from the
//! last good snapshot it cached on disk, or from nothing (every request is
//! then a 503) while it keeps trying. It then polls the pointer: in S3 with
//! a conditional GET, so an unchanged pointer costs a 304.
//!
//! A pointer that names another snapshot is *wanted* until it is served:
//! - a **transient** failure to fetch its object (missing yet, denied, a
//!   5xx, a timeout) is retried with backoff from [`RETRY_FIRST`] doubling
//!   to [`RETRY_MAX`], whether or not the pointer changes again;
//! - a **definitive** refusal (bytes that are not its id, a snapshot the
//!   module refuses) is logged and counted once, and tried again only every
//!   [`RETRY_MAX`] (a damaged copy may be repaired in place: a publish of the
//!   same snapshot does not move the pointer) or on SIGHUP.
//!
//! Either way the current snapshot keeps serving, and [`Freshness`] counts
//! how long the host has been behind.
//!
//! [`Freshness`]: crate::state::Freshness

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use edgeroute_edge::SnapshotId;
use edgeroute_store::{
    write_file_atomically, write_file_atomically_with, ObjectKind, Pointer, Store, StoreError, StoreLocation, Version,
};

use crate::base_file::{BaseFile, BaseFileBuilder};
use crate::engine::HostLayer;
use crate::router::Live;
use crate::state::HostState;

/// The first pause before fetching a wanted snapshot again.
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between two fetches of a wanted snapshot.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a starting host waits for its store's snapshot before it
/// serves its cached one (the store's then replaces it when it comes).
pub const START_WAIT: Duration = Duration::from_secs(5);

/// Why a wanted snapshot is not served.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Until the pointer moves: damaged or replaced (`repairable`: fetched
    /// again every [`RETRY_MAX`], the object may be repaired in place), or
    /// invalid (its bytes are its id, so they never change).
    /// `what` names it: `snapshot ID`, `layer ID`, `state ID`.
    #[error("refused {what}: {why}")]
    Refused { what: String, why: String, repairable: bool },
    /// For now: fetched again after a pause.
    #[error("cannot fetch {what} yet: {source}")]
    Transient { what: String, source: StoreError },
}

/// What a host knows of its store: where it is, where the last good
/// snapshot is cached, and how far it has got with the store's pointer.
#[derive(Debug)]
pub struct Follower {
    store: Store,
    cache: PathBuf,
    progress: Mutex<Progress>,
    /// Writes the states served to the cache, off the follower's path.
    cache_writer: Arc<CacheWriter>,
}

/// The follower's position: the pointer's version last read, the snapshot
/// the store names that the host does not serve yet, and when to fetch it.
#[derive(Debug, Default)]
struct Progress {
    version: Option<Version>,
    wanted: Option<Pointer>,
    /// The wanted snapshot was refused (tried again only every [`RETRY_MAX`]).
    refused: bool,
    /// …and cannot be repaired: not fetched again until the pointer moves
    /// or SIGHUP.
    hold: bool,
    /// The pause before the next fetch, and when that is due.
    backoff: Option<(Duration, Instant)>,
    /// The last transient failure logged, so that it is said once.
    said: String,
}

/// Fetches an object. A missing object is transient: a pointer may be
/// read before its objects (a publisher killed between its writes, a
/// replica behind).
async fn fetch(store: &Store, kind: ObjectKind, id: &str) -> Result<Vec<u8>, FetchError> {
    store
        .get_object(kind, id)
        .await
        .map_err(|source| FetchError::Transient { what: format!("{} {id}", kind.noun()), source })
}

/// A base snapshot's bytes, written into a sealed memfd as they arrive: the
/// copy the host serves from, never held in a buffer first (a 10M-route
/// base is 640 MB; with the base being served, two bases in memory at most).
async fn fetch_base(store: &Store, id: &str) -> Result<BaseFile, FetchError> {
    let transient = |source| FetchError::Transient { what: format!("snapshot {id}"), source };
    let local = |e: std::io::Error| FetchError::Refused {
        what: format!("snapshot {id}"),
        why: format!("cannot keep it in memory: {e}"),
        repairable: true,
    };
    let builder = BaseFileBuilder::new().map_err(local)?;
    let builder = store.get_object_into(ObjectKind::Snapshot, id, builder).await.map_err(transient)?;
    builder.finish().map_err(local)
}

/// An id as the pointer writes it; anything else is refused for good.
fn parse_id(id: &str) -> Result<SnapshotId, FetchError> {
    id.parse().map_err(|_| FetchError::Refused {
        what: format!("{id:?}"),
        why: "the pointer names no valid id".into(),
        repairable: false,
    })
}

/// The layers of `pointer`'s state: those the live state holds already
/// (same id, so the same bytes) are shared, the others fetched and checked
/// against their ids. Returns them and the bytes fetched.
async fn layers_of(
    store: &Store,
    pointer: &Pointer,
    live: Option<&Live>,
) -> Result<(Vec<Arc<HostLayer>>, usize), FetchError> {
    let mut layers = Vec::with_capacity(pointer.layers.len());
    let mut fetched = 0;
    for layer in &pointer.layers {
        let id = parse_id(&layer.id)?;
        if let Some(held) = live.into_iter().flat_map(|l| l.layers.iter()).find(|h| h.id == id) {
            layers.push(held.clone());
            continue;
        }
        let bytes = fetch(store, ObjectKind::Layer, &layer.id).await?;
        verify(&bytes, ObjectKind::Layer, &layer.id)?;
        fetched += bytes.len();
        layers.push(Arc::new(HostLayer { id, bytes }));
    }
    Ok((layers, fetched))
}

/// Checks that a fetched object's bytes are its id; returns the id.
fn verify(bytes: &[u8], kind: ObjectKind, id: &str) -> Result<SnapshotId, FetchError> {
    check_id(SnapshotId::of(bytes), kind, id)
}

/// Checks that `found`, a fetched object's SHA-256, is its id.
fn check_id(found: SnapshotId, kind: ObjectKind, id: &str) -> Result<SnapshotId, FetchError> {
    // The pointer's id exactly as stores write it, lowercase hex (the id's
    // own comparison with text ignores case).
    let written = found.to_string();
    if written != id {
        return Err(FetchError::Refused {
            what: format!("{} {id}", kind.noun()),
            why: format!("the object's SHA-256 is {found} (damaged or replaced)"),
            repairable: true,
        });
    }
    Ok(found)
}

/// The cache's files (`docs/publishing.md`, "Hosts"): bases under their
/// ids, layers under theirs, and the list that names the state's base and
/// layers, written last. `current.snap` is the cache of versions before
/// layers (a base alone), still read when there is no list.
const CACHED_LIST: &str = "current.state";
const CACHED_BASES: &str = "bases";
const CACHED_LAYERS: &str = "layers";
const CACHED_LEGACY: &str = "current.snap";

/// Keeps the state being served on disk for a start without the store:
/// its base (when `base` is given: it changed) and its layers, each under
/// its id, then the list that names them, atomically. Since the list is
/// written last and names objects by id, a crash between the writes
/// leaves the previous list, which still names what it named: the cache
/// is always a state that was served. Objects no longer listed go.
///
/// A state on a base whose bytes are not given and not cached yet (its
/// base's own caching has not run) is not written, since the list would
/// name a missing base: `Ok(false)`.
fn keep(cache: &Path, live: &Live) -> std::io::Result<bool> {
    for folder in [CACHED_BASES, CACHED_LAYERS] {
        std::fs::create_dir_all(cache.join(folder))?;
    }
    let base_name = format!("{}.snap", live.base.id);
    let path = cache.join(CACHED_BASES).join(&base_name);
    if !path.exists() {
        // From the base's memfd, through the file: no copy in memory.
        write_file_atomically_with(&path, |f| live.base.copy_to(f))?;
    }
    let mut names = Vec::new();
    for layer in &live.layers {
        let name = format!("{}.layer", layer.id);
        let path = cache.join(CACHED_LAYERS).join(&name);
        if !path.exists() {
            write_file_atomically(&path, &layer.bytes)?;
        }
        names.push(name);
    }
    let mut list = format!("{}\n", live.base.id);
    for layer in &live.layers {
        list.push_str(&format!("{}\n", layer.id));
    }
    write_file_atomically(&cache.join(CACHED_LIST), list.as_bytes())?;
    for (folder, keep) in [(CACHED_BASES, vec![base_name]), (CACHED_LAYERS, names)] {
        for entry in std::fs::read_dir(cache.join(folder))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(cache.join(folder).join(name));
            }
        }
    }
    let _ = std::fs::remove_file(cache.join(CACHED_LEGACY));
    Ok(true)
}

/// The writer of the cache (see [`keep`]): one thread of its own, off the
/// follower's path (a base is 50 MB of writes and fsyncs at 1M routes,
/// which the next change must not wait for), fed through a slot that holds
/// the newest state only: when changes come faster than the disk, states
/// in between are skipped, and an older state is never written after a
/// newer one. A base's bytes come from its memfd, which the state holds.
#[derive(Debug)]
struct CacheWriter {
    cache: PathBuf,
    slot: Mutex<CacheSlot>,
    wake: std::sync::Condvar,
    started: std::sync::Once,
}

#[derive(Debug, Default)]
struct CacheSlot {
    /// The newest state not written yet.
    state: Option<Arc<Live>>,
    /// Whether the thread is writing (for [`CacheWriter::flush`]).
    busy: bool,
}

impl CacheWriter {
    fn new(cache: PathBuf) -> CacheWriter {
        CacheWriter {
            cache,
            slot: Mutex::new(CacheSlot::default()),
            wake: std::sync::Condvar::new(),
            started: std::sync::Once::new(),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, CacheSlot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for `live` to be cached; returns at once.
    fn submit(self: &Arc<Self>, live: Arc<Live>) {
        let mut slot = self.slot();
        slot.state = Some(live);
        drop(slot);
        self.wake.notify_all();
        self.started.call_once(|| {
            let writer = Arc::clone(self);
            let spawned = std::thread::Builder::new().name("edgeroute-cache".into()).spawn(move || writer.run());
            if let Err(e) = spawned {
                tracing::warn!("cannot start the cache writer ({e}): states will not be cached");
            }
        });
    }

    fn run(&self) {
        loop {
            let mut slot = self.slot();
            while slot.state.is_none() {
                slot = self.wake.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
            let Some(live) = slot.state.take() else { continue };
            slot.busy = true;
            drop(slot);
            let written = keep(&self.cache, &live);
            let mut slot = self.slot();
            slot.busy = false;
            if let Err(e) = written {
                tracing::warn!("cannot cache the state in {}: {e}", self.cache.display());
            }
            drop(slot);
            self.wake.notify_all();
        }
    }

    /// Waits until every state submitted is written (for tests).
    #[cfg(test)]
    fn flush(&self) {
        let mut slot = self.slot();
        while slot.state.is_some() || slot.busy {
            slot = self.wake.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The cached state: the base and the layers the list names, each checked
/// against its id; without a list, the cache of earlier versions (a base
/// alone). A list whose objects are missing or damaged is an error: never
/// a base without its layers.
fn cached(cache: &Path) -> std::io::Result<(BaseFile, SnapshotId, Vec<Arc<HostLayer>>)> {
    // A base goes from its file straight into a memfd, hashed on the way.
    let base_file = |path: &Path| -> std::io::Result<(BaseFile, SnapshotId)> {
        let file = BaseFile::read_from(&mut std::fs::File::open(path)?)?;
        let id = file.id();
        Ok((file, id))
    };
    let list = match std::fs::read_to_string(cache.join(CACHED_LIST)) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (base, id) = base_file(&cache.join(CACHED_LEGACY))?;
            return Ok((base, id, Vec::new()));
        }
        Err(e) => return Err(e),
    };
    let bad = |why: String| std::io::Error::other(format!("{}: {why}", cache.join(CACHED_LIST).display()));
    let mut ids = list.lines().map(|l| l.parse::<SnapshotId>().map_err(|_| bad(format!("{l:?} is not an id"))));
    let base_id = ids.next().ok_or_else(|| bad("empty".into()))??;
    let read = |folder: &str, name: String, id: SnapshotId| -> std::io::Result<Vec<u8>> {
        // The list names it: missing is a damaged cache, not an empty one.
        let bytes = std::fs::read(cache.join(folder).join(&name)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => bad(format!("the cached object {folder}/{name} it names is missing")),
            _ => e,
        })?;
        if SnapshotId::of(&bytes) != id {
            return Err(bad(format!("the cached object {id} is damaged")));
        }
        Ok(bytes)
    };
    let path = cache.join(CACHED_BASES).join(format!("{base_id}.snap"));
    let (base, found) = base_file(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            bad(format!("the cached object {CACHED_BASES}/{base_id}.snap it names is missing"))
        }
        _ => e,
    })?;
    if found != base_id {
        return Err(bad(format!("the cached object {base_id} is damaged")));
    }
    let mut layers = Vec::new();
    for id in ids {
        let id = id?;
        layers.push(Arc::new(HostLayer { id, bytes: read(CACHED_LAYERS, format!("{id}.layer"), id)? }));
    }
    Ok((base, base_id, layers))
}

/// What the host serves, for a log line.
fn serving(state: &HostState) -> String {
    state.router.live().map_or_else(|| "nothing (answering 503)".to_owned(), |live| live.id.to_string())
}

impl Follower {
    pub fn new(store: Store, cache: PathBuf) -> Follower {
        let cache_writer = Arc::new(CacheWriter::new(cache.clone()));
        Follower { store, cache, progress: Mutex::new(Progress::default()), cache_writer }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the first snapshot into `state`: the store's current one; else
    /// (the store cannot be read, has no pointer yet, its object cannot be
    /// fetched or is refused, or all that takes longer than [`START_WAIT`])
    /// the cached one; else none, and the host answers 503 until
    /// [`follow`](Self::follow) gets one. Never fails: every reason is
    /// logged, and the follower keeps trying.
    pub async fn start(&self, state: &'static HostState) {
        let attempt = self.poll(state);
        tokio::pin!(attempt);
        let (reason, pending) = tokio::select! {
            result = &mut attempt => match result {
                Ok(_) if state.router.live().is_some() => return,
                Ok(_) => ("the store has no current snapshot yet".to_owned(), false),
                Err(e) => (e.to_string(), false),
            },
            () = tokio::time::sleep(START_WAIT) => {
                (format!("the store's snapshot is not here after {} s", START_WAIT.as_secs()), true)
            }
        };
        self.fall_back(state, &reason).await;
        if pending {
            // The store's snapshot replaces the cached one if it comes.
            if let Err(e) = attempt.await {
                tracing::warn!("{e}; still serving {}", serving(state));
            }
        }
    }

    /// Serves the cached snapshot, if there is a good one, because of `reason`.
    async fn fall_back(&self, state: &'static HostState, reason: &str) {
        let cached_at = self.cache.clone();
        if state.router.live().is_some() {
            return; // The store's snapshot came first after all.
        }
        // Loading takes up to seconds: off the thread of the admin listener.
        let dir = self.cache.clone();
        let cached = cached_at.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            self::cached(&dir).map(|(base, id, layers)| state.router.swap_state_file_if_empty(base, id, layers))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match loaded {
            Ok(swapped) => match swapped {
                // The store's snapshot came first after all.
                Ok(None) => {}
                Ok(Some(live)) => {
                    tracing::warn!(
                        "{reason}; serving the cached snapshot {} ({}) until the store's can be had",
                        cached.display(),
                        live.id
                    );
                    self.settle(state);
                }
                Err(e) => tracing::error!(
                    "{reason}, and the cached snapshot {} is refused ({e}); answering 503 until the store's can be had",
                    cached_at.display()
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(
                    "{reason}, and nothing is cached in {}; answering 503 until the store has a snapshot",
                    self.cache.display()
                );
            }
            Err(e) => tracing::error!(
                "{reason}, and the cache {} cannot be read ({e}); answering 503 until the store has a snapshot",
                cached.display()
            ),
        }
    }

    /// Looks at the pointer once (if it moved), and fetches the snapshot
    /// the store names if the host does not serve it and a fetch is due.
    /// Returns the new id when a swap happened; an error when the pointer
    /// cannot be read or the wanted snapshot is not served.
    pub async fn poll(&self, state: &'static HostState) -> Result<Option<String>, FollowError> {
        let known = self.progress().version.clone();
        let mut unreadable = None;
        match self.store.read_pointer_if_changed(known.as_ref()).await {
            // The snapshot already wanted is still tried below: its object
            // may well be readable when the pointer is not.
            Err(e) => {
                state.metrics.poll_errors.fetch_add(1, Ordering::Relaxed);
                state.freshness.unreadable(e.to_string());
                unreadable = Some(e);
            }
            Ok(None) => state.freshness.readable(),
            Ok(Some((pointer, version))) => {
                state.freshness.readable();
                let mut progress = self.progress();
                progress.version = Some(version);
                progress.wanted = Some(pointer);
                progress.refused = false;
                progress.hold = false;
                progress.backoff = None;
                progress.said.clear();
            }
        }
        let fail = |e: Option<StoreError>| e.map_or(Ok(None), |e| Err(FollowError::Store(e)));
        let Some(pointer) = self.settle(state) else { return fail(unreadable) };
        {
            let progress = self.progress();
            if progress.hold || progress.backoff.is_some_and(|(_, due)| Instant::now() < due) {
                return fail(unreadable);
            }
        }
        let result = self.load(state, &pointer).await;
        let outcome = self.record(state, &pointer, result);
        match unreadable {
            Some(e) => Err(FollowError::Store(e)),
            None => outcome,
        }
    }

    /// Takes note of a fetch of the wanted `pointer`: caught up, or behind
    /// with the next fetch scheduled (or not, for a refusal that cannot
    /// be repaired).
    fn record(
        &self,
        state: &'static HostState,
        pointer: &Pointer,
        result: Result<(), FetchError>,
    ) -> Result<Option<String>, FollowError> {
        let e = match result {
            Ok(()) => {
                let mut progress = self.progress();
                let version = progress.version.take();
                *progress = Progress { version, ..Progress::default() };
                drop(progress);
                state.freshness.caught_up();
                return Ok(Some(pointer.id.clone()));
            }
            Err(e) => e,
        };
        // Meanwhile the same snapshot may have come another way (a start
        // whose cache holds it): then the host is not behind at all.
        if state.router.live().is_some_and(|live| live.id == pointer.id.as_str()) {
            self.settle(state);
            return Ok(None);
        }
        let mut progress = self.progress();
        match &e {
            FetchError::Refused { repairable, .. } => {
                // Said and counted once per pointer. Bytes that are not
                // their id are looked at again now and then (the object may
                // be repaired in place); a snapshot the module refuses
                // never changes, so it waits for the pointer to move.
                if !progress.refused {
                    state.metrics.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("{e}; still serving {}", serving(state));
                }
                progress.refused = true;
                progress.hold = !repairable;
                progress.backoff = Some((RETRY_MAX, Instant::now() + RETRY_MAX));
            }
            FetchError::Transient { source, .. } => {
                state.metrics.fetch_errors.fetch_add(1, Ordering::Relaxed);
                let pause = progress.backoff.map_or(RETRY_FIRST, |(last, _)| (last * 2).min(RETRY_MAX));
                progress.backoff = Some((pause, Instant::now() + pause));
                // Said once per cause, not on every retry.
                let cause = source.to_string();
                if progress.said != cause {
                    tracing::warn!(
                        "{e}; trying again in {} ms, then up to every {} s; still serving {}",
                        pause.as_millis(),
                        RETRY_MAX.as_secs(),
                        serving(state)
                    );
                    progress.said = cause;
                }
            }
        }
        drop(progress);
        state.freshness.behind(&pointer.id, e.to_string());
        Err(FollowError::Fetch(e))
    }

    /// Compares the wanted pointer with what is served: returns it if the
    /// host is behind it, else forgets it and marks the host caught up.
    fn settle(&self, state: &HostState) -> Option<Pointer> {
        let mut progress = self.progress();
        let wanted = progress.wanted.clone()?;
        if state.router.live().is_some_and(|live| live.id == wanted.id.as_str()) {
            progress.wanted = None;
            progress.backoff = None;
            drop(progress);
            state.freshness.caught_up();
            return None;
        }
        drop(progress);
        // The lag counts from the first look; the reason stays the last
        // failure's (set by `poll`), not this summary.
        state.freshness.behind_since_now(&wanted.id, || format!("snapshot {} not fetched yet", wanted.id));
        Some(wanted)
    }

    /// Fetches, checks and swaps in `pointer`'s state, and caches it: on
    /// the live state's base, only the layers it does not hold yet (a
    /// layer swap: the base's module is not touched); else the base too.
    async fn load(&self, state: &'static HostState, pointer: &Pointer) -> Result<(), FetchError> {
        let start = Instant::now();
        let live = state.router.live();
        let base_id = parse_id(&pointer.base.id)?;
        let (layers, mut fetched) = layers_of(&self.store, pointer, live.as_deref()).await?;
        let same_base = live.as_ref().is_some_and(|l| l.base.id == base_id);
        let base = if same_base {
            None
        } else {
            let file = fetch_base(&self.store, &pointer.base.id).await?;
            fetched += file.len();
            Some(file)
        };
        // Loading takes milliseconds to seconds (50 MB at 1M routes): never
        // on the threads that serve requests (nor on this task: the cache is
        // written by its own thread). The base was hashed as it arrived, on
        // the task that fetched it (or the blocking thread of a dir store).
        let router = &state.router;
        // What a refusal names: the snapshot, or the state of a base and layers.
        let what = match pointer.layers.len() {
            0 => format!("snapshot {}", pointer.id),
            _ => format!("state {}", pointer.id),
        };
        let label = what.clone();
        let base_ref = pointer.base.id.clone();
        let swapped = tokio::task::spawn_blocking(move || {
            let refused = |e: crate::engine::EngineError| FetchError::Refused {
                what: label.clone(),
                why: e.to_string(),
                repairable: false,
            };
            let live = match base {
                Some(file) => {
                    // Hashed as it arrived.
                    check_id(file.id(), ObjectKind::Snapshot, &base_ref)?;
                    router.swap_state_file(file, base_id, layers).map_err(refused)?
                }
                None => match router.swap_layers(base_id, layers.clone()).map_err(refused)? {
                    Some(live) => live,
                    // The live base changed meanwhile (a start from the cache): try again.
                    None => {
                        return Err(FetchError::Refused {
                            what: label.clone(),
                            why: "the base moved".into(),
                            repairable: true,
                        })
                    }
                },
            };
            Ok(live)
        })
        .await
        .map_err(|e| FetchError::Refused { what, why: e.to_string(), repairable: true })??;
        // Cached on a thread of its own: the next change need not wait for the disk.
        self.cache_writer.submit(swapped.clone());
        state.metrics.swaps.fetch_add(1, Ordering::Relaxed);
        if swapped.id != pointer.id.as_str() {
            // The pointer's id is not its base and layers' (a hand-made
            // pointer): served, since every object was its id, but said.
            tracing::warn!("the pointer names state {}, but its base and layers make {}", pointer.id, swapped.id);
        }
        tracing::info!(
            "serving {} (base {}, {} routes, and {} layer(s); {} bytes fetched, swapped in {} ms)",
            pointer.id,
            pointer.base.id,
            pointer.base.routes,
            pointer.layers.len(),
            fetched,
            start.elapsed().as_millis()
        );
        Ok(())
    }

    /// When the wanted snapshot's next fetch is due, if one is.
    fn retry_due(&self) -> Option<Instant> {
        let progress = self.progress();
        if progress.wanted.is_none() || progress.hold {
            return None;
        }
        progress.backoff.map(|(_, due)| due)
    }

    /// Makes the wanted snapshot's next fetch due now (SIGHUP), keeping
    /// the pause reached, so that the backoff goes on from there.
    fn retry_now(&self) {
        let mut progress = self.progress();
        progress.hold = false;
        progress.backoff = progress.backoff.map(|(pause, _)| (pause, Instant::now()));
    }

    /// Keeps `state` on the store's current snapshot: polls forever, every
    /// `interval`, and sooner when a wanted snapshot's retry is due; a
    /// directory store's pointer file is also watched for changes (inotify
    /// and the like), so that a new pointer is seen at once, with the
    /// polling as the fallback; SIGHUP wakes it too. Only changes of the
    /// pointer wake it: idle, it costs nothing but its polls.
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
        // SIGHUP makes it look at the pointer, and fetch what it names, at
        // once (as it reloads a `--snapshot FILE`), rather than end the host.
        let hangup = std::sync::Arc::new(tokio::sync::Notify::new());
        #[cfg(unix)]
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            let hangup = hangup.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    hangup.notify_one();
                }
            });
        }
        let mut last_error = String::new();
        // The first look is at once: a change made before the watcher was
        // set up (while `start` cached what it loaded, say) would wait for
        // the next poll otherwise.
        let mut first = true;
        loop {
            let pause =
                self.retry_due().map_or(interval, |due| due.saturating_duration_since(Instant::now()).min(interval));
            if !std::mem::take(&mut first) {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = wake.notified() => {}
                    _ = hangup.notified() => self.retry_now(),
                }
            }
            match self.poll(state).await {
                Ok(_) | Err(FollowError::Fetch(_)) => last_error.clear(),
                Err(FollowError::Store(e)) => {
                    let text = e.to_string();
                    // Say it once, not every interval.
                    if text != last_error {
                        tracing::warn!("cannot read the store: {text}; still serving {}", serving(state));
                        last_error = text;
                    }
                }
            }
        }
    }
}

/// Why a [`Follower::poll`] did not leave the host on the store's snapshot.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot read the store: {0}")]
    Store(#[source] StoreError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
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

    /// The cache writer takes states faster than it writes them: the
    /// newest is written whole (its base's bytes kept from the state that
    /// brought them), a newer base replaces the older one on disk, and a
    /// state whose base never came with its bytes is not written (its list
    /// would name a missing base).
    #[test]
    fn the_cache_writer_leaves_the_newest_state_whole() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let base = std::fs::read(root.join("snapshots/demo.snap")).unwrap();
        let layer = std::fs::read(root.join("snapshots/demo-change.layer")).unwrap();
        let other = edgeroute_tests::compile_text(
            r#"{"Domain":"other.example.com","Target":"s3://other-bucket/site"}"#,
            edgeroute_compiler::Options::default(),
        )
        .unwrap();
        let (base_id, layer_id) = (SnapshotId::of(&base), SnapshotId::of(&layer));
        let router = crate::router::Router::new(crate::engine::EdgeEngine::new().unwrap(), &base).unwrap();
        let first = router.live().unwrap();
        let second =
            router.swap_layers(base_id, vec![Arc::new(HostLayer { id: layer_id, bytes: layer })]).unwrap().unwrap();
        let third = router.swap_state(&other.bytes, other.id, Vec::new()).unwrap();
        let dir = std::env::temp_dir().join(format!("edgeroute-cache-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let list = |cache: &Path| std::fs::read_to_string(cache.join(CACHED_LIST)).unwrap_or_default();
        let files = |cache: &Path, folder: &str| {
            let mut names: Vec<String> = std::fs::read_dir(cache.join(folder))
                .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            names.sort();
            names
        };

        // A base, then a layer on it before the writer has run: the newest whole.
        let cache = dir.join("a");
        let writer = Arc::new(CacheWriter::new(cache.clone()));
        writer.submit(first.clone());
        writer.submit(second.clone());
        writer.flush();
        assert_eq!(list(&cache), format!("{base_id}\n{layer_id}\n"));
        assert_eq!(std::fs::read(cache.join(CACHED_BASES).join(format!("{base_id}.snap"))).unwrap(), base);
        assert_eq!(files(&cache, CACHED_BASES), [format!("{base_id}.snap")]);
        assert_eq!(files(&cache, CACHED_LAYERS), [format!("{layer_id}.layer")]);
        assert_eq!(super::cached(&cache).unwrap().1, base_id);
        // A new base: the old base and its layer go.
        writer.submit(third.clone());
        writer.flush();
        assert_eq!(list(&cache), format!("{}\n", other.id));
        assert_eq!(files(&cache, CACHED_BASES), [format!("{}.snap", other.id)]);
        assert!(files(&cache, CACHED_LAYERS).is_empty());

        // A state on a base never submitted: written whole, its base's
        // bytes from the memfd the state holds.
        let cache = dir.join("b");
        let writer = Arc::new(CacheWriter::new(cache.clone()));
        writer.submit(second);
        writer.flush();
        assert_eq!(list(&cache), format!("{base_id}\n{layer_id}\n"));
        assert_eq!(std::fs::read(cache.join(CACHED_BASES).join(format!("{base_id}.snap"))).unwrap(), base);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
