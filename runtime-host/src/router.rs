//! [`Router`]: the live snapshot, swapped atomically, and the per-thread
//! [`Worker`]s that answer from it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use edgeroute_edge::{Layer, Resolution, Snapshot, SnapshotId};

use crate::answer::Answer;
use crate::base_file::BaseFile;
use crate::engine::{EdgeEngine, EdgeInstance, EngineError, HostLayer, SnapshotModule};

/// Everything about the state being served (a base snapshot and the
/// layers on it), swapped as one value so that nothing is ever seen
/// half-swapped.
#[derive(Debug)]
pub struct Live {
    /// Increases by one with every successful swap.
    pub generation: u64,
    /// The state's id: the SHA-256 of its base's id and its layers' ids,
    /// the base's id when it has no layers (`docs/snapshot-format.md`).
    pub id: SnapshotId,
    /// The layers on the base, oldest first, validated natively.
    pub layers: Vec<Arc<HostLayer>>,
    /// When the state last changed (a layer, or a new base).
    pub changed_at: SystemTime,
    /// The base, shared by every state on it.
    pub base: Arc<Base>,
}

/// A base snapshot loaded into the edge module: shared by the states
/// built on it, so that a layer swap never touches it.
#[derive(Debug)]
pub struct Base {
    /// The snapshot's id (the SHA-256 of its bytes).
    pub id: SnapshotId,
    pub route_count: u32,
    pub size: usize,
    /// Checksum, the copy into its memfd, validation and the first instance.
    pub load_time: Duration,
    /// When it was loaded (its age, in the metrics).
    pub loaded_at: SystemTime,
    module: SnapshotModule,
    /// The instance that validated the snapshot, for the first worker.
    spare: Mutex<Option<EdgeInstance>>,
}

impl Base {
    /// Copies the base's bytes to `out` (to cache them), from its memfd.
    pub fn copy_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.module.file().copy_to(out)
    }
}

impl Live {
    /// The routes in the base.
    pub fn route_count(&self) -> u32 {
        self.base.route_count
    }

    /// The bytes of the layers.
    pub fn layer_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.bytes.len()).sum()
    }
}

/// Serves one snapshot at a time and swaps it atomically. It may start
/// without one (a host whose store and cache have none yet): its workers
/// then answer [`EngineError::NoSnapshot`] until the first swap.
#[derive(Debug)]
pub struct Router {
    engine: EdgeEngine,
    live: ArcSwapOption<Live>,
    generations: AtomicU64,
}

impl Router {
    /// Loads the first snapshot.
    pub fn new(engine: EdgeEngine, snapshot: &[u8]) -> Result<Router, EngineError> {
        let file = BaseFile::new(snapshot)?;
        let id = file.id();
        let base = Self::load_file(&engine, file, id)?;
        let live =
            Live { generation: 1, id: base.id, layers: Vec::new(), changed_at: base.loaded_at, base: Arc::new(base) };
        Ok(Router { engine, live: ArcSwapOption::from_pointee(live), generations: AtomicU64::new(1) })
    }

    /// A router with no snapshot yet.
    pub fn empty(engine: EdgeEngine) -> Router {
        Router { engine, live: ArcSwapOption::empty(), generations: AtomicU64::new(0) }
    }

    fn load(engine: &EdgeEngine, snapshot: &[u8], id: SnapshotId) -> Result<Base, EngineError> {
        Self::load_file(engine, BaseFile::new(snapshot)?, id)
    }

    fn load_file(engine: &EdgeEngine, file: BaseFile, id: SnapshotId) -> Result<Base, EngineError> {
        let start = Instant::now();
        let size = file.len();
        let (module, instance) = engine.load_file(file, id)?;
        let route_count = route_count(&module.file().map()?);
        Ok(Base {
            id,
            route_count,
            size,
            load_time: start.elapsed(),
            loaded_at: SystemTime::now(),
            module,
            spare: Mutex::new(Some(instance)),
        })
    }

    /// Validates `snapshot` in a fresh instance and, only if it is good,
    /// makes it the live one. Lookups in flight finish on the old one; a
    /// refused snapshot leaves the old one serving and comes back as the error.
    pub fn swap(&self, snapshot: &[u8]) -> Result<Arc<Live>, EngineError> {
        // Hashed as it is copied into its memfd: one pass over the bytes.
        let file = BaseFile::new(snapshot)?;
        let id = file.id();
        self.swap_state_file(file, id, Vec::new())
    }

    /// [`swap`](Self::swap), but only if there is no snapshot yet (a starting
    /// host's cached copy must never replace the store's, which may have
    /// been swapped in meanwhile). `None` when one was there.
    pub fn swap_if_empty(&self, snapshot: &[u8]) -> Result<Option<Arc<Live>>, EngineError> {
        let file = BaseFile::new(snapshot)?;
        let id = file.id();
        self.swap_state_file_if_empty(file, id, Vec::new())
    }

    /// [`swap_state`](Self::swap_state), but only if there is no state yet.
    pub fn swap_state_if_empty(
        &self,
        snapshot: &[u8],
        id: SnapshotId,
        layers: Vec<Arc<HostLayer>>,
    ) -> Result<Option<Arc<Live>>, EngineError> {
        check_layers(&id, &layers, None)?;
        let base = Arc::new(Self::load(&self.engine, snapshot, id)?);
        let live = self.numbered(base, layers);
        let before = self.live.compare_and_swap(&None::<Arc<Live>>, Some(live.clone()));
        Ok(before.is_none().then_some(live))
    }

    /// The state of `base` and `layers`, with the next generation: numbered
    /// only once it is good, and atomically, so that two swaps at once never
    /// share one (a worker tells snapshots apart by it).
    fn numbered(&self, base: Arc<Base>, layers: Vec<Arc<HostLayer>>) -> Arc<Live> {
        let ids: Vec<SnapshotId> = layers.iter().map(|l| l.id).collect();
        Arc::new(Live {
            generation: self.generations.fetch_add(1, Ordering::SeqCst) + 1,
            id: SnapshotId::of_state(&base.id, &ids),
            layers,
            changed_at: SystemTime::now(),
            base,
        })
    }

    /// Serves the state of base `base_id` (which must be the live one's
    /// base: its module is reused as it is) and `layers`, oldest first.
    /// Each layer must validate and stack in order on that base (checked
    /// here, natively: the instances then take them as trusted). A layer
    /// swap costs the serving threads the copy of the new layers into
    /// their instances, never a rebuild of the base. `None` when the live
    /// state is on another base (the caller loads that base instead).
    pub fn swap_layers(
        &self,
        base_id: SnapshotId,
        layers: Vec<Arc<HostLayer>>,
    ) -> Result<Option<Arc<Live>>, EngineError> {
        let Some(live) = self.live() else { return Ok(None) };
        if live.base.id != base_id {
            return Ok(None);
        }
        check_layers(&base_id, &layers, Some(&live))?;
        let next = self.numbered(live.base.clone(), layers);
        self.live.store(Some(next.clone()));
        Ok(Some(next))
    }

    /// [`swap_state`](Self::swap_state) for a base in a sealed memfd (as a
    /// follower fetches one): nothing is copied.
    pub fn swap_state_file(
        &self,
        file: BaseFile,
        id: SnapshotId,
        layers: Vec<Arc<HostLayer>>,
    ) -> Result<Arc<Live>, EngineError> {
        check_layers(&id, &layers, None)?;
        let base = Arc::new(Self::load_file(&self.engine, file, id)?);
        let next = self.numbered(base, layers);
        self.live.store(Some(next.clone()));
        Ok(next)
    }

    /// [`swap_state_if_empty`](Self::swap_state_if_empty) for a base in a sealed memfd.
    pub fn swap_state_file_if_empty(
        &self,
        file: BaseFile,
        id: SnapshotId,
        layers: Vec<Arc<HostLayer>>,
    ) -> Result<Option<Arc<Live>>, EngineError> {
        check_layers(&id, &layers, None)?;
        let base = Arc::new(Self::load_file(&self.engine, file, id)?);
        let live = self.numbered(base, layers);
        let before = self.live.compare_and_swap(&None::<Arc<Live>>, Some(live.clone()));
        Ok(before.is_none().then_some(live))
    }

    /// Loads base `snapshot` (its id computed by the caller from these
    /// bytes) and serves it with `layers`, checked as
    /// [`swap_layers`](Self::swap_layers) checks them.
    pub fn swap_state(
        &self,
        snapshot: &[u8],
        id: SnapshotId,
        layers: Vec<Arc<HostLayer>>,
    ) -> Result<Arc<Live>, EngineError> {
        check_layers(&id, &layers, None)?;
        let base = Arc::new(Self::load(&self.engine, snapshot, id)?);
        let next = self.numbered(base, layers);
        self.live.store(Some(next.clone()));
        Ok(next)
    }

    /// The snapshot being served now, if there is one yet.
    pub fn live(&self) -> Option<Arc<Live>> {
        self.live.load_full()
    }

    /// A worker for the calling thread.
    pub fn worker(&self) -> Worker<'_> {
        Worker { router: self, current: None, answer: Answer::default() }
    }

    /// Runs `f` with the calling thread's own worker for this router, made
    /// on the thread's first call: a serving thread keeps one instance of
    /// the live module for its lifetime, and never shares it.
    pub fn with_worker<R>(&'static self, f: impl FnOnce(&mut Worker<'static>) -> R) -> R {
        WORKER.with(|slot| {
            let mut slot = slot.borrow_mut();
            let key = self as *const Router as usize;
            let worker = match &mut *slot {
                Some((k, worker)) if *k == key => worker,
                other => &mut other.insert((key, self.worker())).1,
            };
            f(worker)
        })
    }
}

/// How often a serving thread lets go of an instance on an old base.
pub const RELEASE_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    /// Each thread's worker, with the router it belongs to (several routers
    /// may share a process, as in tests; a thread keeps the last one's).
    static WORKER: RefCell<Option<(usize, Worker<'static>)>> = const { RefCell::new(None) };
}

/// Checks that `layers` validate and stack in order on base `base`.
///
/// Layers the `validated` state holds already (the same allocation) were
/// validated whole when they came; only their place is checked again
/// (O(1) each), so a swap costs the validation of its new layers alone.
fn check_layers(base: &SnapshotId, layers: &[Arc<HostLayer>], validated: Option<&Live>) -> Result<(), EngineError> {
    let mut top = *base;
    for (i, layer) in layers.iter().enumerate() {
        let refused =
            |e: edgeroute_edge::LayerError| EngineError::LayerRefused { id: layer.id.to_string(), why: leak(e) };
        let known = validated.is_some_and(|live| live.layers.iter().any(|held| Arc::ptr_eq(held, layer)));
        let parsed =
            if known { Layer::from_bytes_trusted(&layer.bytes[..]) } else { Layer::from_bytes(&layer.bytes[..]) };
        parsed.map_err(refused)?.check_on(base, &top, i).map_err(refused)?;
        top = layer.id;
    }
    Ok(())
}

/// A layer error's message, for [`EngineError::LayerRefused`].
fn leak(e: edgeroute_edge::LayerError) -> &'static str {
    use edgeroute_edge::LayerError as E;
    match e {
        E::Format(_) => "malformed (format, checksum or structure)",
        E::BadLineage | E::TombstoneCountMismatch { .. } => "its lineage section is inconsistent",
        E::ForeignBase { .. } => "it was written on another base",
        E::OutOfOrder { .. } => "it is out of order (not written on the state's top)",
        E::TooManyLayers => "the state holds the most layers it may; compact it",
        _ => "refused",
    }
}

/// The snapshot's route count, from its header, section table and index
/// footer (O(1)): the module has validated the snapshot by then.
fn route_count(snapshot: &[u8]) -> u32 {
    Snapshot::from_bytes_trusted(snapshot).map_or(0, |s| s.route_count())
}

/// One thread's instance of the live snapshot module. It follows swaps
/// lazily: the first lookup after a swap instantiates the new module
/// (cheap: the snapshot's pages are mapped, not copied).
pub struct Worker<'r> {
    router: &'r Router,
    current: Option<(Arc<Live>, EdgeInstance)>,
    answer: Answer,
}

impl std::fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("generation", &self.generation()).finish()
    }
}

impl Worker<'_> {
    /// Resolves through the WebAssembly module. A trap (or a call that runs
    /// out of time) discards this worker's instance, so the next lookup
    /// starts from a fresh one, and comes back as an error.
    pub fn resolve(&mut self, host: &[u8], target: &[u8]) -> Result<Resolution<'_, '_>, EngineError> {
        let live = self.router.live.load();
        let Some(live) = live.as_ref() else { return Err(EngineError::NoSnapshot) };
        if self.generation() != Some(live.generation) {
            // The same base: this instance stays, and takes the new layers.
            let kept = match self.current.take() {
                Some((old, instance)) if Arc::ptr_eq(&old.base, &live.base) => Some(instance),
                _ => None,
            };
            let mut instance = match kept {
                Some(i) => i,
                None => match live.base.spare.lock().ok().and_then(|mut s| s.take()) {
                    Some(i) => i,
                    None => live.base.module.instance()?,
                },
            };
            if let Err(e) = instance.sync_layers(&live.layers) {
                // The layers were validated natively, so this is the
                // instance's trouble (a trap, memory that cannot grow):
                // once more in a fresh one, then the error.
                tracing::warn!("a worker could not take state {}'s layers ({e}); trying a fresh instance", live.id);
                instance = live.base.module.instance()?;
                instance.sync_layers(&live.layers)?;
            }
            self.current = Some((Arc::clone(live), instance));
        }
        let Some((_, instance)) = self.current.as_mut() else { return Err(EngineError::BadAnswer) };
        if let Err(e) = instance.resolve_into(host, target, &mut self.answer) {
            if matches!(e, EngineError::Trap(_) | EngineError::BadAnswer) {
                self.current = None;
            }
            return Err(e);
        }
        self.answer.resolution()
    }

    /// Lets go of this worker's instance if it is on a base the router no
    /// longer serves: an idle serving thread must not keep an old base (a
    /// memfd and its mapping) alive until its next request. Serving threads
    /// call it every [`RELEASE_EVERY`]; the next lookup makes a new instance.
    pub fn release_stale(&mut self) {
        let live = self.router.live.load();
        let stale = match (&self.current, live.as_ref()) {
            (Some((held, _)), Some(live)) => !Arc::ptr_eq(&held.base, &live.base),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if stale {
            self.current = None;
        }
    }

    /// Makes this worker's next lookup trap (see
    /// [`EdgeInstance::expire_next_call`]). For tests of trap recovery.
    #[doc(hidden)]
    pub fn expire_next_call(&mut self) {
        if let Some((_, instance)) = self.current.as_mut() {
            instance.expire_next_call();
        }
    }

    /// The memory of this worker's instance, in bytes (for tests).
    #[doc(hidden)]
    pub fn memory_bytes(&self) -> Option<usize> {
        self.current.as_ref().map(|(_, instance)| instance.memory_bytes())
    }

    /// The generation this worker answered from last.
    pub fn generation(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.0.generation)
    }

    /// The snapshot this worker answered from last.
    pub fn live(&self) -> Option<&Live> {
        self.current.as_ref().map(|c| &*c.0)
    }
}
