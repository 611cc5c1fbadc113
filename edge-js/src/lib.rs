//! `edgeroute-edge-js` is the edge resolver for JavaScript runtimes: a
//! wasm-bindgen build of `edgeroute-edge` that Node (Lambda@Edge),
//! Cloudflare's workerd and any other Wasm-capable JavaScript host load
//! unchanged. It owns only the binding: a [`RawRouter`] holds one validated
//! snapshot (copied into the module once) and two buffers the JavaScript
//! side reuses for every request. The caller writes `Host` and path into the
//! input buffer (`TextEncoder.encodeInto`) and [`RawRouter::resolve`] writes
//! the answer's JSON (the one encoding of `edgeroute resolve --json`) into the
//! output buffer, so a resolve allocates nothing in the guest; the package's
//! `index.js` wraps this into `Router.fromBytes` / `router.resolve`.
//!
//! The build and the package are described in `docs/javascript.md`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use edgeroute_edge::{Layer, Snapshot, SnapshotError, SnapshotId};
use wasm_bindgen::prelude::*;

/// The allocator, counting allocations so that tests can check that a
/// resolve makes none (`allocations()`).
struct Counting;

static ALLOCATIONS: AtomicU32 = AtomicU32::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter has no effect on the memory handed out.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) the module has made since it started.
#[wasm_bindgen]
pub fn allocations() -> u32 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Bytes of `Host` + path the input buffer starts with; it grows when a
/// longer request comes (`reserve`), once, and stays that size.
pub const INPUT_CAPACITY: usize = 16 * 1024;

/// One state (a base snapshot and the layers on it, oldest first) and the
/// buffers its resolves reuse.
#[wasm_bindgen]
#[derive(Debug)]
pub struct RawRouter {
    snapshot: Snapshot<Box<[u8]>>,
    id: SnapshotId,
    layers: Vec<Layer<Box<[u8]>>>,
    layer_ids: Vec<SnapshotId>,
    /// Layers being staged to replace those from `keep` on: each validated
    /// and checked on the ones before it as it comes, then committed at once.
    staged: Vec<(Layer<Box<[u8]>>, SnapshotId)>,
    keep: usize,
    input: Vec<u8>,
    output: String,
}

#[wasm_bindgen]
impl RawRouter {
    /// Validates `bytes` as a snapshot (checksum and structure) and keeps
    /// them. wasm-bindgen copies the bytes into the module once, here.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: Vec<u8>) -> Result<RawRouter, JsError> {
        RawRouter::new(bytes).map_err(|e| JsError::new(&format!("not a usable snapshot: {e}")))
    }

    /// The snapshot's id: the lowercase hex SHA-256 of its bytes, as stores name it.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.id.to_string()
    }

    /// The state's id: the SHA-256 of the base's id and the layers' ids (the
    /// base's id without layers), as store pointers name states.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        SnapshotId::of_state(&self.id, &self.layer_ids).to_string()
    }

    /// How many layers the state has.
    #[wasm_bindgen(getter, js_name = layerCount)]
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Layer `i`'s id (from 0, the oldest).
    #[wasm_bindgen(js_name = layerId)]
    pub fn layer_id(&self, i: usize) -> Option<String> {
        self.layer_ids.get(i).map(SnapshotId::to_string)
    }

    /// Starts staging the layers that will follow the first `keep` (the
    /// layers a new state shares with this one); forgets anything staged.
    #[wasm_bindgen(js_name = beginLayers)]
    pub fn begin_layers(&mut self, keep: usize) -> Result<(), JsError> {
        if keep > self.layers.len() {
            return Err(JsError::new(&format!("the state has {} layers, not {keep}", self.layers.len())));
        }
        self.staged.clear();
        self.keep = keep;
        Ok(())
    }

    /// Stages one layer whose id (its SHA-256) must be `id`: validated
    /// whole and checked to stack on the layers before it and on this
    /// base. Nothing changes in the state until [`commit_layers`](Self::commit_layers).
    #[wasm_bindgen(js_name = stageLayer)]
    pub fn stage_layer(&mut self, bytes: Vec<u8>, id: &str) -> Result<(), JsError> {
        let found = SnapshotId::of(&bytes);
        if found != *id {
            return Err(JsError::new(&format!("layer {id}: its SHA-256 is {found}")));
        }
        let layer = Layer::from_bytes(bytes.into_boxed_slice())
            .map_err(|e| JsError::new(&format!("layer {id} is not usable: {e}")))?;
        let below = self.keep + self.staged.len();
        let top = match self.staged.last() {
            Some((_, id)) => *id,
            None => self.keep.checked_sub(1).map_or(self.id, |i| self.layer_ids[i]),
        };
        layer.check_on(&self.id, &top, below).map_err(|e| JsError::new(&format!("layer {id}: {e}")))?;
        self.staged.push((layer, found));
        Ok(())
    }

    /// Makes the state the first `keep` layers and the staged ones, at once,
    /// if that state's id is `state` (as the pointer names it); else
    /// changes nothing.
    #[wasm_bindgen(js_name = commitLayers)]
    pub fn commit_layers(&mut self, state: &str) -> Result<(), JsError> {
        let ids: Vec<SnapshotId> =
            self.layer_ids[..self.keep].iter().copied().chain(self.staged.iter().map(|(_, id)| *id)).collect();
        let found = SnapshotId::of_state(&self.id, &ids);
        if found != *state {
            self.staged.clear();
            return Err(JsError::new(&format!("its layers make state {found}, not {state}")));
        }
        self.layers.truncate(self.keep);
        self.layer_ids.truncate(self.keep);
        for (layer, id) in self.staged.drain(..) {
            self.layers.push(layer);
            self.layer_ids.push(id);
        }
        self.keep = self.layers.len();
        Ok(())
    }

    /// Bytes of the layers.
    #[wasm_bindgen(getter, js_name = layerBytes)]
    pub fn layer_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.as_bytes().len()).sum()
    }

    /// Routes in the snapshot.
    #[wasm_bindgen(getter)]
    pub fn routes(&self) -> u32 {
        self.snapshot.route_count()
    }

    /// Bytes in the snapshot.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        self.snapshot.as_bytes().len() as u32
    }

    /// Address of the input buffer in the module's memory.
    #[wasm_bindgen(js_name = inputPtr)]
    pub fn input_ptr(&mut self) -> *mut u8 {
        self.input.as_mut_ptr()
    }

    /// Bytes the input buffer holds.
    #[wasm_bindgen(js_name = inputCapacity)]
    pub fn input_capacity(&self) -> usize {
        self.input.len()
    }

    /// Grows the input buffer to at least `len` bytes (which moves it: read
    /// `inputPtr` again).
    pub fn reserve(&mut self, len: usize) {
        if len > self.input.len() {
            self.input.resize(len, 0);
        }
    }

    /// Resolves the request whose `Host` is the first `host_len` input bytes
    /// and whose target (path, `?query`) the next `path_len`, and writes the
    /// answer's JSON to the output buffer; returns its length (read it at
    /// `outputPtr`). Allocates nothing once the output buffer has grown to
    /// the answers it is asked for. Lengths beyond the input are a
    /// `RangeError`.
    pub fn resolve(&mut self, host_len: usize, path_len: usize) -> Result<usize, JsError> {
        let input = host_len
            .checked_add(path_len)
            .and_then(|end| self.input.get(..end))
            .ok_or_else(|| JsError::new("host and path lengths exceed the input buffer"))?;
        let (host, path) = input.split_at(host_len);
        let answer = self.snapshot.resolve_layered(self.layers.as_slice(), host, path);
        self.output.clear();
        // Writing to a String cannot fail; it grows only past its capacity.
        let _ = write!(self.output, "{}", answer.json());
        Ok(self.output.len())
    }

    /// Address of the last answer's JSON.
    #[wasm_bindgen(js_name = outputPtr)]
    pub fn output_ptr(&self) -> *const u8 {
        self.output.as_ptr()
    }
}

impl RawRouter {
    /// A router for `bytes`, validated whole.
    pub fn new(bytes: Vec<u8>) -> Result<RawRouter, SnapshotError> {
        let id = SnapshotId::of(&bytes);
        let snapshot = Snapshot::from_bytes(bytes.into_boxed_slice())?;
        let input = vec![0; INPUT_CAPACITY];
        // Room for the longest answers to the longest inputs without growing:
        // a key or location can be the path percent-encoded (3x).
        let output = String::with_capacity(3 * INPUT_CAPACITY + 1024);
        Ok(RawRouter {
            snapshot,
            id,
            layers: Vec::new(),
            layer_ids: Vec::new(),
            staged: Vec::new(),
            keep: 0,
            input,
            output,
        })
    }
}
