//! The wasmtime side: one engine with the edge module compiled once,
//! snapshot modules (the module and one base snapshot, in a sealed memfd
//! that every instance maps), and instances of them that answer requests.
//!
//! A base is validated natively, once, by the same `edge` code the module
//! runs (`Snapshot::from_bytes`); instances take it as trusted. Loading a
//! base compiles nothing and copies it once (into its memfd): an instance
//! grows its memory by the base's pages and maps the file over them,
//! copy-on-write, so every instance on every thread shares one copy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgeroute_edge::format::{CHECKSUM_LEN, HEADER_LEN};
use edgeroute_edge::{Snapshot, SnapshotError, SnapshotId};
use wasmtime::{Config, Engine, Instance, Memory, Module, Store, TypedFunc};

use edgeroute_edge_wasm::{self as abi, FIELD_HEADER, INPUT_CAPACITY};

use crate::answer::{Answer, OUTPUT_LEN};
use crate::base_file::{BaseFile, WASM_PAGE};
use crate::MODULE;

/// The epoch advances this often; a call's deadline is counted in ticks.
pub const TICK: Duration = Duration::from_millis(10);
/// Ticks a `resolve` call may run (a resolve takes about a microsecond).
const RESOLVE_TICKS: u64 = 10;
/// Ticks a commit or a layer push may run (a trusted commit reads a header;
/// a push copies and indexes one layer).
const COMMIT_TICKS_MIN: u64 = 500;

/// What can go wrong running the module.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("snapshot checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): truncated or corrupt")]
    Checksum { stored: u32, computed: u32 },
    #[error("snapshot is truncated: {len} bytes")]
    TooShort { len: usize },
    #[error("the snapshot is malformed: {0}")]
    Invalid(#[from] SnapshotError),
    #[error("cannot map the snapshot: {0}")]
    Map(#[from] std::io::Error),
    #[error("a {len}-byte snapshot does not fit in the module's 4 GiB memory")]
    TooLarge { len: usize },
    #[error("the edge module refused the snapshot: {0}")]
    Refused(&'static str),
    #[error("the edge module trapped or ran out of time: {0}")]
    Trap(String),
    #[error("the edge module does not speak ABI version {}", abi::ABI_VERSION)]
    Abi,
    #[error("the edge module refused layer {id}: {why}")]
    LayerRefused { id: String, why: &'static str },
    #[error("the request is longer than the module's {INPUT_CAPACITY}-byte input buffer")]
    InputTooLong,
    #[error("the module's answer is malformed")]
    BadAnswer,
    #[error("there is no snapshot to answer from yet")]
    NoSnapshot,
    #[error("the snapshot's bytes are {found}, not {expected}")]
    WrongId { expected: SnapshotId, found: SnapshotId },
}

fn trap(e: wasmtime::Error) -> EngineError {
    EngineError::Trap(format!("{e:#}"))
}

/// The engine and the edge module compiled for it, with its epoch ticker
/// (stopped when the last clone drops).
#[derive(Clone)]
pub struct EdgeEngine {
    engine: Engine,
    module: Module,
    _ticker: Arc<Ticker>,
}

struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for EdgeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EdgeEngine")
    }
}

impl EdgeEngine {
    pub fn new() -> Result<EdgeEngine, EngineError> {
        let mut config = Config::new();
        // Bound every call: a guest that loops is interrupted at its deadline.
        config.epoch_interruption(true);
        // The module's own data pages are shared by every instance.
        config.memory_init_cow(true);
        // A memory is a 4 GiB reservation that never moves when it grows: the
        // base mapped into it stays where it was mapped.
        config.memory_reservation(1 << 32);
        config.memory_may_move(false);
        let engine = Engine::new(&config).map_err(trap)?;
        let module = Module::new(&engine, MODULE).map_err(trap)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (weak, flag) = (engine.weak(), stop.clone());
        std::thread::Builder::new()
            .name("edgeroute-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| EngineError::Trap(e.to_string()))?;
        Ok(EdgeEngine { engine, module, _ticker: Arc::new(Ticker(stop)) })
    }

    /// Checks the snapshot natively (its length, its CRC-32C, then its
    /// whole structure, as `Snapshot::from_bytes` does), puts it in a sealed
    /// memfd, and makes a first instance of the module on it. The result
    /// can be instantiated on any number of threads, sharing the snapshot.
    pub fn load(&self, snapshot: &[u8], id: SnapshotId) -> Result<(SnapshotModule, EdgeInstance), EngineError> {
        self.load_file(BaseFile::new(snapshot)?, id)
    }

    /// [`load`](Self::load) for a snapshot already in a sealed memfd (as
    /// a follower fetches one): nothing is copied.
    pub fn load_file(&self, file: BaseFile, id: SnapshotId) -> Result<(SnapshotModule, EdgeInstance), EngineError> {
        // The file was hashed as it was written: the id the module is
        // committed with is its bytes', whatever the caller thought.
        if file.id() != id {
            return Err(EngineError::WrongId { expected: id, found: file.id() });
        }
        {
            // The bytes checked are the file's, which its seals keep as
            // they are; mapped only while they are checked.
            let snapshot = file.map()?;
            let len = snapshot.len();
            if len < HEADER_LEN + CHECKSUM_LEN {
                return Err(EngineError::TooShort { len });
            }
            if u32::try_from(len).is_err() {
                return Err(EngineError::TooLarge { len });
            }
            let body = len - CHECKSUM_LEN;
            let stored = u32::from_le_bytes(snapshot[body..].try_into().map_err(|_| EngineError::TooShort { len })?);
            let computed = crc32c::crc32c(&snapshot[..body]);
            if stored != computed {
                return Err(EngineError::Checksum { stored, computed });
            }
            // On every core: the walk of a base of millions of routes is
            // the load's cost (this thread is never a serving one).
            // Parts of a few MB at least: below that a thread costs more than it saves.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let threads = cores.min(len / (4 << 20)).max(1);
            Snapshot::from_bytes_checksum_verified_on(&snapshot[..], threads)?;
        }
        let sm = SnapshotModule { engine: self.clone(), file: Arc::new(file), id };
        let instance = sm.instance()?;
        Ok((sm, instance))
    }
}

/// The edge module with one base snapshot, validated.
#[derive(Clone)]
pub struct SnapshotModule {
    engine: EdgeEngine,
    file: Arc<BaseFile>,
    /// The snapshot's id, given to each instance at its commit: the base
    /// its layers must name.
    id: SnapshotId,
}

impl SnapshotModule {
    /// The snapshot's file (one copy, shared with every instance).
    pub fn file(&self) -> &BaseFile {
        &self.file
    }
}

/// A layer as the host holds it: its id and bytes, validated natively
/// (`Layer::from_bytes` and its place on the state) before any instance
/// sees it, so that instances take it as trusted.
#[derive(Debug)]
pub struct HostLayer {
    pub id: SnapshotId,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SnapshotModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotModule").field("id", &self.id).field("len", &self.file.len()).finish()
    }
}

impl SnapshotModule {
    /// A new instance answering from the snapshot: the module instantiated,
    /// its memory grown by the snapshot's pages and the snapshot's memfd
    /// mapped over them, then committed as trusted (validated natively).
    pub fn instance(&self) -> Result<EdgeInstance, EngineError> {
        let mut store = Store::new(&self.engine.engine, ());
        store.set_epoch_deadline(COMMIT_TICKS_MIN);
        let instance = Instance::new(&mut store, &self.engine.module, &[]).map_err(trap)?;
        let mut call = |name: &str| {
            instance.get_typed_func::<(), u32>(&mut store, name).and_then(|f| f.call(&mut store, ())).map_err(trap)
        };
        if call("edgeroute_abi_version")? != abi::ABI_VERSION {
            return Err(EngineError::Abi);
        }
        let input = call("edgeroute_input")? as usize;
        let output = call("edgeroute_output")? as usize;
        let attach = instance.get_typed_func::<(u32, u32), u32>(&mut store, "edgeroute_attach").map_err(trap)?;
        let commit_fn = instance.get_typed_func::<u32, u32>(&mut store, "edgeroute_commit").map_err(trap)?;
        // The base's id goes first in the input buffer: the module keeps it
        // to check the layers' lineage.
        let memory = instance.get_memory(&mut store, "memory").ok_or(EngineError::Abi)?;
        let len = self.file.len();
        let pages_before = memory.grow(&mut store, self.file.pages()).map_err(|_| EngineError::TooLarge { len })?;
        let ptr = usize::try_from(pages_before).map_err(|_| EngineError::TooLarge { len })? * WASM_PAGE;
        let end = ptr.checked_add(self.file.pages() as usize * WASM_PAGE).ok_or(EngineError::TooLarge { len })?;
        if end > memory.data_size(&store) || u32::try_from(ptr + len).is_err() {
            return Err(EngineError::TooLarge { len });
        }
        // SAFETY: `ptr..end` is the range the grow just made accessible in
        // this instance's memory, which this function owns through `store`
        // and nothing borrows; the memory never moves (`memory_may_move`
        // is off), and wasmtime unmaps its whole reservation, this mapping
        // included, when the store drops.
        #[allow(unsafe_code)]
        unsafe {
            self.file.map_over(memory.data_ptr(&store).add(ptr))?
        };
        let id_slot = input..input + SnapshotId::LEN;
        memory.data_mut(&mut store).get_mut(id_slot).ok_or(EngineError::Abi)?.copy_from_slice(self.id.as_bytes());
        let status = attach.call(&mut store, (ptr as u32, len as u32)).map_err(trap)?;
        if status != abi::commit::OK {
            return Err(EngineError::Refused(abi::commit::describe(status)));
        }
        let status = commit_fn.call(&mut store, abi::mode::TRUSTED).map_err(trap)?;
        if status != abi::commit::OK {
            return Err(EngineError::Refused(abi::commit::describe(status)));
        }
        let resolve = instance.get_typed_func::<u32, u32>(&mut store, "edgeroute_resolve").map_err(trap)?;
        let layer_reserve = instance.get_typed_func::<u32, u32>(&mut store, "edgeroute_layer_reserve").map_err(trap)?;
        let layer_push = instance.get_typed_func::<u32, u32>(&mut store, "edgeroute_layer_push").map_err(trap)?;
        let truncate = instance.get_typed_func::<u32, u32>(&mut store, "edgeroute_layers_truncate").map_err(trap)?;
        // The fixed buffers must lie inside the memory.
        let size = memory.data_size(&store);
        if input.checked_add(INPUT_CAPACITY).is_none_or(|e| e > size)
            || output.checked_add(OUTPUT_LEN).is_none_or(|e| e > size)
        {
            return Err(EngineError::Abi);
        }
        Ok(EdgeInstance {
            store,
            memory,
            resolve,
            layer_reserve,
            layer_push,
            truncate,
            layers: Vec::new(),
            input,
            output,
            expire_next: false,
        })
    }
}

/// One instance of a snapshot module, owned by one thread at a time.
pub struct EdgeInstance {
    store: Store<()>,
    memory: Memory,
    resolve: TypedFunc<u32, u32>,
    layer_reserve: TypedFunc<u32, u32>,
    layer_push: TypedFunc<u32, u32>,
    truncate: TypedFunc<u32, u32>,
    /// The ids of the layers pushed, oldest first.
    layers: Vec<SnapshotId>,
    input: usize,
    output: usize,
    /// Test hook: the next call gets a deadline that has already passed.
    expire_next: bool,
}

impl std::fmt::Debug for EdgeInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeInstance").finish_non_exhaustive()
    }
}

impl EdgeInstance {
    /// Makes the next call run out of time at once (an epoch interrupt, the
    /// same trap a hung guest gets). For tests of trap recovery.
    #[doc(hidden)]
    pub fn expire_next_call(&mut self) {
        self.expire_next = true;
    }

    /// Resolves one request in the guest and copies the answer into
    /// `answer`. Bounds-checked writes in, bounds-checked reads out.
    pub fn resolve_into(&mut self, host: &[u8], target: &[u8], answer: &mut Answer) -> Result<(), EngineError> {
        let n = 2 * FIELD_HEADER + host.len() + target.len();
        if n > INPUT_CAPACITY {
            return Err(EngineError::InputTooLong);
        }
        let mem = self.memory.data_mut(&mut self.store);
        let input = mem.get_mut(self.input..self.input + n).ok_or(EngineError::Abi)?;
        // The request record: the host field, then the target field.
        let mut at = 0;
        for (tag, value) in [(abi::field::HOST, host), (abi::field::TARGET, target)] {
            input[at] = tag;
            input[at + 1..at + FIELD_HEADER].copy_from_slice(&(value.len() as u32).to_le_bytes());
            input[at + FIELD_HEADER..at + FIELD_HEADER + value.len()].copy_from_slice(value);
            at += FIELD_HEADER + value.len();
        }
        self.store.set_epoch_deadline(if std::mem::take(&mut self.expire_next) { 0 } else { RESOLVE_TICKS });
        self.resolve.call(&mut self.store, n as u32).map_err(trap)?;
        answer.read(self.memory.data(&self.store), self.output)
    }

    /// The size of the instance's memory, in bytes. For tests that layer
    /// swaps reuse it.
    #[doc(hidden)]
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Makes the instance's layers `layers` (oldest first): the layers it
    /// holds that begin the new list stay, the others are dropped, and the
    /// rest are pushed, as trusted (the host validated them). A layer swap
    /// costs a copy of the new layers' bytes into the instance.
    pub fn sync_layers(&mut self, layers: &[Arc<HostLayer>]) -> Result<(), EngineError> {
        let keep = self.layers.iter().zip(layers).take_while(|(held, new)| **held == new.id).count();
        self.store.set_epoch_deadline(COMMIT_TICKS_MIN);
        if keep < self.layers.len() {
            let status = self.truncate.call(&mut self.store, keep as u32).map_err(trap)?;
            if status != abi::commit::OK {
                return Err(EngineError::Refused(abi::commit::describe(status)));
            }
            self.layers.truncate(keep);
        }
        for layer in &layers[keep..] {
            let refused = |why| EngineError::LayerRefused { id: layer.id.to_string(), why };
            let len = u32::try_from(layer.bytes.len()).map_err(|_| refused("larger than 4 GiB"))?;
            let ptr = self.layer_reserve.call(&mut self.store, len).map_err(trap)? as usize;
            if ptr == 0 {
                return Err(refused("the module's memory cannot grow"));
            }
            let mem = self.memory.data_mut(&mut self.store);
            mem.get_mut(ptr..ptr + layer.bytes.len()).ok_or(EngineError::Abi)?.copy_from_slice(&layer.bytes);
            mem.get_mut(self.input..self.input + SnapshotId::LEN)
                .ok_or(EngineError::Abi)?
                .copy_from_slice(layer.id.as_bytes());
            let status = self.layer_push.call(&mut self.store, abi::mode::TRUSTED).map_err(trap)?;
            if status != abi::commit::OK {
                return Err(refused(abi::commit::describe(status)));
            }
            self.layers.push(layer.id);
        }
        Ok(())
    }
}
