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

use edgeroute_edge::{Snapshot, SnapshotError, SnapshotId};
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

/// One snapshot and the buffers its resolves reuse.
#[wasm_bindgen]
#[derive(Debug)]
pub struct RawRouter {
    snapshot: Snapshot<Box<[u8]>>,
    id: SnapshotId,
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
        let answer = self.snapshot.resolve(host, path);
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
        Ok(RawRouter { snapshot, id, input, output })
    }
}
