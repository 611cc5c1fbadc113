//! [`Router`]: the live snapshot, swapped atomically, and the per-thread
//! [`Worker`]s that answer from it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use edgeroute_edge::{Resolution, Snapshot, SnapshotId};

use crate::answer::Answer;
use crate::engine::{EdgeEngine, EdgeInstance, EngineError, SnapshotModule};

/// Everything about the snapshot being served, swapped as one value so
/// that nothing is ever seen half-swapped.
#[derive(Debug)]
pub struct Live {
    /// Increases by one with every successful swap.
    pub generation: u64,
    /// The snapshot's id (the SHA-256 of its bytes).
    pub id: SnapshotId,
    pub route_count: u32,
    pub size: usize,
    /// Checksum, bake, compile and validation.
    pub load_time: Duration,
    /// When it was loaded (its age, in the metrics).
    pub loaded_at: SystemTime,
    module: SnapshotModule,
    /// The instance that validated the snapshot, for the first worker.
    spare: Mutex<Option<EdgeInstance>>,
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
        let live = Self::load(&engine, snapshot, SnapshotId::of(snapshot), 1)?;
        Ok(Router { engine, live: ArcSwapOption::from_pointee(live), generations: AtomicU64::new(1) })
    }

    /// A router with no snapshot yet.
    pub fn empty(engine: EdgeEngine) -> Router {
        Router { engine, live: ArcSwapOption::empty(), generations: AtomicU64::new(0) }
    }

    fn load(engine: &EdgeEngine, snapshot: &[u8], id: SnapshotId, generation: u64) -> Result<Live, EngineError> {
        let start = Instant::now();
        let (module, instance) = engine.load(snapshot)?;
        let route_count = route_count(snapshot);
        Ok(Live {
            generation,
            id,
            route_count,
            size: snapshot.len(),
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
        self.swap_identified(snapshot, SnapshotId::of(snapshot))
    }

    /// [`swap`](Self::swap) for a snapshot whose id (its [`SnapshotId`]) the
    /// caller has just computed from these bytes, e.g. to check them against
    /// a store's pointer: hashing 50 MB twice would cost a swap ~100 ms.
    pub fn swap_identified(&self, snapshot: &[u8], id: SnapshotId) -> Result<Arc<Live>, EngineError> {
        let live = self.loaded(snapshot, id)?;
        self.live.store(Some(live.clone()));
        Ok(live)
    }

    /// [`swap`](Self::swap), but only if there is no snapshot yet (a starting
    /// host's cached copy must never replace the store's, which may have
    /// been swapped in meanwhile). `None` when one was there.
    pub fn swap_if_empty(&self, snapshot: &[u8]) -> Result<Option<Arc<Live>>, EngineError> {
        let live = self.loaded(snapshot, SnapshotId::of(snapshot))?;
        let before = self.live.compare_and_swap(&None::<Arc<Live>>, Some(live.clone()));
        Ok(before.is_none().then_some(live))
    }

    /// A validated snapshot with the next generation: numbered only once it
    /// is good, and atomically, so that two swaps at once never share one
    /// (a worker tells snapshots apart by it).
    fn loaded(&self, snapshot: &[u8], id: SnapshotId) -> Result<Arc<Live>, EngineError> {
        let mut live = Self::load(&self.engine, snapshot, id, 0)?;
        live.generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Arc::new(live))
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

thread_local! {
    /// Each thread's worker, with the router it belongs to (several routers
    /// may share a process, as in tests; a thread keeps the last one's).
    static WORKER: RefCell<Option<(usize, Worker<'static>)>> = const { RefCell::new(None) };
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
            let spare = live.spare.lock().ok().and_then(|mut s| s.take());
            let instance = match spare {
                Some(i) => i,
                None => live.module.instance()?,
            };
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

    /// Makes this worker's next lookup trap (see
    /// [`EdgeInstance::expire_next_call`]). For tests of trap recovery.
    #[doc(hidden)]
    pub fn expire_next_call(&mut self) {
        if let Some((_, instance)) = self.current.as_mut() {
            instance.expire_next_call();
        }
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
