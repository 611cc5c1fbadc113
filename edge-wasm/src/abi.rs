//! The module's ABI (`docs/wasm-abi.md`). All multi-byte fields are
//! little-endian; every pointer is an offset into the module's memory.
#![allow(unsafe_code)] // the shared-memory accessors below (`with_state`, `region_bytes`); see each SAFETY note

use core::cell::{Cell, UnsafeCell};
use core::fmt::{self, Write};

use edgeroute_edge::format::MAX_LAYERS;
use edgeroute_edge::{
    FilteredLayers, Layer, LayerError, Reason, Resolution, Scheme, Snapshot, SnapshotError, SnapshotId, StateFilter,
};

/// Bumped on any change to this ABI.
pub const ABI_VERSION: u32 = 2;
/// Bytes of the request record one `resolve` accepts.
pub const INPUT_CAPACITY: usize = 16 * 1024;
/// A field of the request record: a tag byte and a `u32` length, then the value.
pub const FIELD_HEADER: usize = 5;

/// Tags of the request record's fields (`docs/wasm-abi.md`, "Resolving").
/// A module ignores tags it does not know, so that hosts can send the
/// attributes of later versions (a header value, a sticky key, the time)
/// to any module of ABI version 2.
pub mod field {
    /// The `Host` header value. Required.
    pub const HOST: u8 = 1;
    /// The request target: path, optional `?query`. Required.
    pub const TARGET: u8 = 2;
}
/// The fixed part of the output record.
pub const OUTPUT_HEADER: usize = 64;
/// Room for the strings an answer builds (domain, key, location, fallback):
/// enough for three times the input (percent-encoding) plus long prefixes.
pub const OUTPUT_DATA: usize = 64 * 1024;

/// `kind` byte of the output record.
pub mod kind {
    /// No answer: see the `error` byte.
    pub const ERROR: u8 = 0;
    pub const STATIC: u8 = 1;
    pub const REDIRECT: u8 = 2;
    pub const BALANCER: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const BAD_REQUEST: u8 = 5;
}

/// `error` byte of an output record of kind `ERROR`.
pub mod error {
    /// No snapshot has been committed.
    pub const NO_SNAPSHOT: u8 = 1;
    /// `host_len + path_len` exceeds [`INPUT_CAPACITY`](super::INPUT_CAPACITY).
    pub const INPUT_TOO_LONG: u8 = 2;
    /// The answer's strings do not fit the output data area.
    pub const OUTPUT_OVERFLOW: u8 = 3;
    /// The request record is malformed: a field runs past its end, a
    /// known field is given twice, or the host or the target is missing.
    pub const BAD_INPUT: u8 = 4;
}

/// `mode` argument of `edgeroute_commit`.
pub mod mode {
    /// Validate the structure; the host has checked the CRC-32C natively.
    pub const STRUCTURE: u32 = 0;
    /// Validate everything, the CRC-32C included.
    pub const FULL: u32 = 1;
    /// Check the header only: these exact bytes (the same memory image)
    /// were validated by another instance of this module already.
    pub const TRUSTED: u32 = 2;
}

/// Status codes of `edgeroute_commit` and `edgeroute_attach`.
pub mod commit {
    pub const OK: u32 = 0;
    /// Nothing was reserved, or the region was already committed.
    pub const NO_REGION: u32 = 1;
    pub const TOO_SHORT: u32 = 2;
    pub const BAD_MAGIC: u32 = 3;
    pub const BAD_ENDIANNESS: u32 = 4;
    pub const UNSUPPORTED_VERSION: u32 = 5;
    pub const BAD_CHECKSUM: u32 = 6;
    pub const TOO_LARGE: u32 = 7;
    /// The header, FST, a route, a string or a site record is malformed.
    pub const BAD_STRUCTURE: u32 = 8;
    /// `edgeroute_attach` was given a region outside free memory.
    pub const BAD_REGION: u32 = 9;
    /// Unknown commit mode.
    pub const BAD_MODE: u32 = 10;
    /// A layer was written on another base than the committed snapshot.
    pub const FOREIGN_BASE: u32 = 11;
    /// A layer was not written on the state's top (its parent or depth).
    pub const OUT_OF_ORDER: u32 = 12;
    /// The state holds `MAX_LAYERS` layers already.
    pub const TOO_MANY_LAYERS: u32 = 13;
    /// No snapshot is committed to put a layer on.
    pub const NO_BASE: u32 = 14;
    /// `edgeroute_layers_truncate` was asked to keep more layers than there are.
    pub const BAD_COUNT: u32 = 15;

    /// What a status means, for hosts' error messages.
    pub fn describe(status: u32) -> &'static str {
        match status {
            OK => "ok",
            NO_REGION => "no region to commit",
            TOO_SHORT => "truncated",
            BAD_MAGIC => "not an edgeroute snapshot (bad magic bytes)",
            BAD_ENDIANNESS => "wrong endian marker",
            UNSUPPORTED_VERSION => "unsupported format version",
            BAD_CHECKSUM => "checksum mismatch",
            TOO_LARGE => "larger than 4 GiB",
            BAD_STRUCTURE => "malformed structure (header, index or route record)",
            BAD_REGION => "snapshot region outside free memory",
            BAD_MODE => "unknown commit mode",
            FOREIGN_BASE => "the layer was written on another base",
            OUT_OF_ORDER => "the layer is out of order (not written on the state's top)",
            TOO_MANY_LAYERS => "the state holds the most layers it may",
            NO_BASE => "no snapshot is committed to put a layer on",
            BAD_COUNT => "more layers to keep than there are",
            _ => "unknown status",
        }
    }
}

/// Output record field offsets.
pub mod out {
    pub const KIND: usize = 0;
    /// bad_request: 1 + index in `Reason::ALL`; balancer: 1 = http, 2 = https; error: an `error` code.
    pub const DETAIL: usize = 1;
    /// static/redirect: HTTP status; balancer: port.
    pub const STATUS_OR_PORT: usize = 2;
    /// (offset from the output record's start, length) of the matched Domain.
    pub const DOMAIN: usize = 4;
    /// (guest pointer into the snapshot, length): static bucket, balancer origin host.
    pub const TARGET: usize = 12;
    /// (offset, length): static key, redirect location.
    pub const KEY: usize = 20;
    /// (offset, length) of a static site's Fallback key, or offset `u32::MAX`.
    pub const FALLBACK: usize = 28;
    /// (offset, length) of a static site's not-found page (served with 404
    /// when the bucket has neither the key nor the Fallback), or offset `u32::MAX`.
    pub const NOT_FOUND_PAGE: usize = 36;
}

struct State {
    input: [u8; INPUT_CAPACITY],
    output: [u8; OUTPUT_HEADER + OUTPUT_DATA],
    /// The region last reserved and not yet committed: (pointer, length).
    region: Option<(usize, usize)>,
    snapshot: Option<Snapshot<&'static [u8]>>,
    /// The committed snapshot's id, as the host gave it at commit.
    base_id: [u8; SnapshotId::LEN],
    /// The layers on it, oldest first: the first `layer_count` are set.
    layers: [Option<Layer<&'static [u8]>>; MAX_LAYERS],
    /// Each layer's id, as the host gave it at its push.
    layer_ids: [[u8; SnapshotId::LEN]; MAX_LAYERS],
    layer_count: usize,
    /// A filter over the keys of the first `layer_count` layers, so that a
    /// lookup none of them can decide skips them all at once.
    layer_filter: StateFilter,
    /// Where layers live: memory grown for them and reused after a
    /// truncation, so that following a store for days does not grow it.
    arena: Arena,
    /// The layer region last reserved and not yet pushed: (pointer, length).
    layer_region: Option<(usize, usize)>,
}

/// Memory for layers, used as a stack: layer `i` ends at `ends[i]`.
struct Arena {
    start: usize,
    capacity: usize,
    ends: [usize; MAX_LAYERS],
}

impl Arena {
    /// Where the next layer starts: after the top one.
    fn top(&self, count: usize) -> usize {
        if count == 0 {
            self.start
        } else {
            self.ends[count - 1]
        }
    }
}

/// The module's state, and whether [`with_state`] is lending it out.
struct Global {
    state: UnsafeCell<State>,
    in_use: Cell<bool>,
}

// SAFETY: the module runs single-threaded (wasm32 without the threads
// feature), so the cell is never reached from two threads. Native builds
// exist only to be linked by tools and must not call the exports from two
// threads at once.
unsafe impl Sync for Global {}

static GLOBAL: Global = Global {
    state: UnsafeCell::new(State {
        input: [0; INPUT_CAPACITY],
        output: [0; OUTPUT_HEADER + OUTPUT_DATA],
        region: None,
        snapshot: None,
        base_id: [0; SnapshotId::LEN],
        layers: [const { None }; MAX_LAYERS],
        layer_ids: [[0; SnapshotId::LEN]; MAX_LAYERS],
        layer_count: 0,
        layer_filter: StateFilter::new(),
        arena: Arena { start: 0, capacity: 0, ends: [0; MAX_LAYERS] },
        layer_region: None,
    }),
    in_use: Cell::new(false),
};

/// Runs `f` with the module's state, the only way to reach it. The
/// reference lives as long as the call to `f`, so it cannot be kept; each
/// export calls this once, and nothing inside `f` calls it again.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    // A nested call would make a second `&mut` to the state: trap instead.
    // (Exports do not call each other, and the module has no imports to be
    // re-entered through; this makes that a checked rule, for a load and
    // two stores per call.) A trap inside `f` leaves the flag set, so an
    // instance that trapped traps on every later call: docs/wasm-abi.md
    // tells hosts to discard it, as edgeroute-host does.
    if GLOBAL.in_use.replace(true) {
        panic!("the module's state is already in use");
    }
    // SAFETY: the one reference to the state while `f` runs: `in_use` was
    // false, so no other call of `with_state` is running, and nothing else
    // reaches `GLOBAL.state`; single-threaded, see `Global`'s `Sync`.
    let result = f(unsafe { &mut *GLOBAL.state.get() });
    GLOBAL.in_use.set(false);
    result
}

/// The bytes of a reserved or attached region, for the reader: memory the
/// module never frees, so they can back the committed snapshot (or a
/// layer) for as long as it is committed.
///
/// # Safety
///
/// `ptr..ptr + len` must be a region handed out by [`grow`] (fresh memory
/// that is never shrunk or freed), one that `edgeroute_attach` checked to
/// lie inside the memory and above every static the module uses, or a
/// part of the layer arena above every committed layer: so that it is in
/// bounds and no `&mut` to any of it exists. Arena memory is handed out
/// again only after `edgeroute_layers_truncate` dropped the layers that
/// referred to it, so no reference to it outlives its layer. The host
/// writes a region only before committing it (the ABI's rule); should a
/// host break that rule, the reader's checked accesses still keep every
/// read in bounds.
unsafe fn region_bytes(ptr: usize, len: usize) -> &'static [u8] {
    // SAFETY: the caller's contract above.
    unsafe { core::slice::from_raw_parts(ptr as *const u8, len) }
}

/// Fresh memory for `len` bytes; its address, or `None`.
#[cfg(target_arch = "wasm32")]
fn grow(len: usize) -> Option<usize> {
    let pages = len.div_ceil(65536).max(1);
    let old = core::arch::wasm32::memory_grow(0, pages);
    (old != usize::MAX).then(|| old * 65536)
}

/// Natively there is no `memory.grow`: the native build exists for its
/// constants (hosts link it to decode answers) and never hands out regions.
#[cfg(not(target_arch = "wasm32"))]
fn grow(_len: usize) -> Option<usize> {
    None
}

/// The ABI version this module speaks.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_abi_version() -> u32 {
    ABI_VERSION
}

/// Reserves `len` bytes of fresh memory for a snapshot and returns its
/// address (0 if memory cannot grow). The host writes the snapshot there,
/// then calls [`edgeroute_commit`]. A snapshot committed earlier keeps
/// answering until a new commit succeeds.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_reserve(len: u32) -> u32 {
    with_state(|s| {
        s.region = None;
        match grow(len as usize) {
            Some(ptr) => {
                s.region = Some((ptr, len as usize));
                ptr as u32
            }
            None => 0,
        }
    })
}

/// Names a snapshot that is already in memory (baked into the module's data
/// by the host, so that instances share it copy-on-write) as the region to
/// commit. It must lie within the memory and above the module's own
/// statics, or `BAD_REGION` comes back.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_attach(ptr: u32, len: u32) -> u32 {
    with_state(|s| {
        s.region = None;
        let (ptr, len) = (ptr as usize, len as usize);
        // Above every byte of the module's own state (a linker places the
        // statics, and the compiler orders a struct's fields, as it likes).
        let statics_end = core::ptr::addr_of!(GLOBAL) as usize + core::mem::size_of::<Global>();
        let fits = ptr >= statics_end && ptr.checked_add(len).is_some_and(|end| end <= memory_len());
        // Nor in the layer arena, whose memory the module hands out again.
        let arena = s.arena.start..s.arena.start + s.arena.capacity;
        let in_arena = !arena.is_empty() && ptr < arena.end && ptr + len > arena.start;
        if !fits || in_arena {
            return commit::BAD_REGION;
        }
        s.region = Some((ptr, len));
        commit::OK
    })
}

#[cfg(target_arch = "wasm32")]
fn memory_len() -> usize {
    core::arch::wasm32::memory_size(0) * 65536
}

#[cfg(not(target_arch = "wasm32"))]
fn memory_len() -> usize {
    0 // natively, only `edgeroute_reserve` hands out regions
}

/// Validates the reserved or attached region as a snapshot (see [`mode`])
/// and, if it is valid, makes it the one `resolve` answers from. On failure
/// the previous snapshot keeps answering.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_commit(mode: u32) -> u32 {
    with_state(|s| commit_region(s, mode))
}

fn commit_region(s: &mut State, mode: u32) -> u32 {
    let Some((ptr, len)) = s.region.take() else {
        return commit::NO_REGION;
    };
    // SAFETY: `s.region` is only ever set by `edgeroute_reserve` (a region
    // from `grow`) or by `edgeroute_attach` (after its bounds check).
    let bytes: &'static [u8] = unsafe { region_bytes(ptr, len) };
    let parsed = match mode {
        mode::FULL => Snapshot::from_bytes(bytes),
        mode::STRUCTURE => Snapshot::from_bytes_checksum_verified(bytes),
        mode::TRUSTED => Snapshot::from_bytes_trusted(bytes),
        _ => return commit::BAD_MODE,
    };
    match parsed {
        Ok(snap) => {
            s.snapshot = Some(snap);
            // The id the host gave, and a state without layers.
            s.base_id.copy_from_slice(&s.input[..SnapshotId::LEN]);
            truncate_layers(s, 0);
            s.layer_region = None;
            commit::OK
        }
        Err(e) => snapshot_status(e),
    }
}

/// The status code of a snapshot (or layer format) error.
fn snapshot_status(e: SnapshotError) -> u32 {
    {
        match e {
            SnapshotError::TooShort { .. } => commit::TOO_SHORT,
            SnapshotError::BadMagic => commit::BAD_MAGIC,
            SnapshotError::BadEndianness => commit::BAD_ENDIANNESS,
            SnapshotError::UnsupportedVersion { .. } => commit::UNSUPPORTED_VERSION,
            SnapshotError::BadChecksum { .. } => commit::BAD_CHECKSUM,
            SnapshotError::TooLarge => commit::TOO_LARGE,
            _ => commit::BAD_STRUCTURE,
        }
    }
}

/// Drops the layers above the first `keep`, and their arena memory.
fn truncate_layers(s: &mut State, keep: usize) {
    for layer in s.layers.iter_mut().skip(keep) {
        *layer = None;
    }
    s.layer_count = s.layer_count.min(keep);
    // The keys of the layers dropped may stay in the filter (it only ever
    // says "maybe" more often) until no layer is left; a rebuild would walk
    // every key kept on a serving thread.
    if s.layer_count == 0 {
        s.layer_filter.clear();
    }
}

/// Reserves `len` bytes for a layer on top of the committed layers and
/// returns its address (0 if memory cannot grow). The host writes the
/// layer there, then its id (32 bytes) at the start of the input buffer,
/// then calls [`edgeroute_layer_push`].
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_layer_reserve(len: u32) -> u32 {
    with_state(|s| {
        s.layer_region = None;
        match reserve_layer(s, len as usize) {
            Some(at) => {
                s.layer_region = Some((at, len as usize));
                at as u32
            }
            None => 0,
        }
    })
}

/// Room for `len` bytes on top of the layers: in the arena if it has it;
/// else the arena grows in place when it ends where memory does, or moves
/// (its layers copied) to fresh memory twice as large.
fn reserve_layer(s: &mut State, len: usize) -> Option<usize> {
    let n = s.layer_count;
    let (start, capacity) = (s.arena.start, s.arena.capacity);
    let at = s.arena.top(n);
    let used = at - start;
    let need = used.checked_add(len)?;
    if need <= capacity {
        return Some(at);
    }
    if capacity > 0 && start + capacity == memory_len() {
        let more = need - capacity;
        grow(more)?;
        s.arena.capacity += more.div_ceil(65536) * 65536;
        return Some(at);
    }
    let size = need.max(capacity.saturating_mul(2));
    let fresh = grow(size)?;
    if used > 0 {
        // SAFETY: `start..start + used` holds the committed layers (arena
        // memory), and `fresh..fresh + size` was just grown: both lie inside
        // the memory and do not overlap. No `&mut` to either exists; the
        // layers' shared views of the old copy are replaced below, and the
        // old memory is never handed out again as arena.
        unsafe { core::ptr::copy_nonoverlapping(start as *const u8, fresh as *mut u8, used) };
    }
    let mut from = fresh;
    for i in 0..n {
        let end = s.arena.ends[i] - start + fresh;
        // SAFETY: the copy just made of layer `i`, inside the new arena.
        let bytes: &'static [u8] = unsafe { region_bytes(from, end - from) };
        // These bytes were validated in place before the copy, so this
        // cannot fail; should it, a gap in the layers would hide the ones
        // above it: trap instead.
        match Layer::from_bytes_trusted(bytes) {
            Ok(layer) => s.layers[i] = Some(layer),
            Err(_) => panic!("a layer changed while it was copied"),
        }
        s.arena.ends[i] = end;
        from = end;
    }
    s.arena.start = fresh;
    s.arena.capacity = size.div_ceil(65536) * 65536;
    Some(fresh + used)
}

/// Validates the reserved layer (see [`mode`]) and, if it is valid and was
/// written on the state's top (the committed snapshot, or the last layer
/// pushed), puts it on top. Its id (the SHA-256 of its bytes, 32 bytes) is
/// read from the start of the input buffer; the next layer must name it as
/// its parent. On failure the state is unchanged.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_layer_push(mode: u32) -> u32 {
    with_state(|s| {
        let Some((ptr, len)) = s.layer_region.take() else { return commit::NO_REGION };
        if s.snapshot.is_none() {
            return commit::NO_BASE;
        }
        // SAFETY: `s.layer_region` is only set by `edgeroute_layer_reserve`,
        // to arena memory above every committed layer (or fresh memory).
        let bytes: &'static [u8] = unsafe { region_bytes(ptr, len) };
        let parsed = match mode {
            mode::FULL => Layer::from_bytes(bytes),
            mode::STRUCTURE => Layer::from_bytes_checksum_verified(bytes),
            mode::TRUSTED => Layer::from_bytes_trusted(bytes),
            _ => return commit::BAD_MODE,
        };
        let layer = match parsed {
            Ok(layer) => layer,
            Err(LayerError::Format(e)) => return snapshot_status(e),
            Err(_) => return commit::BAD_STRUCTURE,
        };
        let n = s.layer_count;
        let base = SnapshotId::from_digest(s.base_id);
        let top = if n == 0 { base } else { SnapshotId::from_digest(s.layer_ids[n - 1]) };
        match layer.check_on(&base, &top, n) {
            Ok(()) => {}
            Err(LayerError::ForeignBase { .. }) => return commit::FOREIGN_BASE,
            Err(LayerError::TooManyLayers) => return commit::TOO_MANY_LAYERS,
            Err(_) => return commit::OUT_OF_ORDER,
        }
        s.layer_ids[n].copy_from_slice(&s.input[..SnapshotId::LEN]);
        s.layer_filter.add(&layer);
        s.layers[n] = Some(layer);
        s.arena.ends[n] = ptr + len;
        s.layer_count = n + 1;
        commit::OK
    })
}

/// Keeps the first `keep` layers and drops the others (a host following a
/// state that is not an extension of the one it holds: a rollback, a
/// rebase); their memory is reused by the next reservations.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_layers_truncate(keep: u32) -> u32 {
    with_state(|s| {
        let keep = keep as usize;
        if keep > s.layer_count {
            return commit::BAD_COUNT;
        }
        truncate_layers(s, keep);
        s.layer_region = None;
        commit::OK
    })
}

/// Layers on the committed snapshot.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_layer_count() -> u32 {
    with_state(|s| s.layer_count as u32)
}

/// Routes in the committed snapshot (0 without one).
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_route_count() -> u32 {
    with_state(|s| s.snapshot.as_ref().map_or(0, |snap| snap.route_count()))
}

/// Address of the input buffer ([`INPUT_CAPACITY`] bytes).
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_input() -> u32 {
    with_state(|s| s.input.as_ptr() as usize as u32)
}

/// Address of the output record ([`OUTPUT_HEADER`] + [`OUTPUT_DATA`] bytes).
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_output() -> u32 {
    with_state(|s| s.output.as_ptr() as usize as u32)
}

/// Writes into the output data area, remembering where each string went.
struct Cursor<'a> {
    data: &'a mut [u8],
    len: usize,
}

impl Cursor<'_> {
    /// Lets `copy` fill the free space in bulk; returns where its bytes went.
    fn put_with(&mut self, copy: impl FnOnce(&mut [u8]) -> Option<usize>) -> Result<(u32, u32), fmt::Error> {
        let start = self.len;
        let n = copy(self.data.get_mut(start..).ok_or(fmt::Error)?).ok_or(fmt::Error)?;
        self.len += n;
        Ok(((OUTPUT_HEADER + start) as u32, n as u32))
    }

    fn put_display(&mut self, d: &dyn fmt::Display) -> Result<(u32, u32), fmt::Error> {
        let start = self.len;
        write!(self, "{d}")?;
        Ok(((OUTPUT_HEADER + start) as u32, (self.len - start) as u32))
    }
}

impl Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.data.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn put_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_pair(out: &mut [u8], at: usize, (a, b): (u32, u32)) {
    out[at..at + 4].copy_from_slice(&a.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&b.to_le_bytes());
}

/// Resolves the request whose record (fields of [`field`]) is the first
/// `len` input bytes, against the committed snapshot and its layers. Fills
/// the output record and returns its `kind`. Allocates nothing.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_resolve(len: u32) -> u32 {
    with_state(|s| resolve_input(s, len))
}

/// The host and the target in a request record; unknown fields skipped.
fn request_fields(record: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut host, mut target) = (None, None);
    let mut rest = record;
    while !rest.is_empty() {
        let tag = *rest.first()?;
        let len = u32::from_le_bytes(rest.get(1..FIELD_HEADER)?.try_into().ok()?) as usize;
        let value = rest.get(FIELD_HEADER..FIELD_HEADER.checked_add(len)?)?;
        let slot = match tag {
            field::HOST => &mut host,
            field::TARGET => &mut target,
            _ => {
                rest = &rest[FIELD_HEADER + len..];
                continue;
            }
        };
        if slot.replace(value).is_some() {
            return None; // given twice
        }
        rest = &rest[FIELD_HEADER + len..];
    }
    Some((host?, target?))
}

fn resolve_input(s: &mut State, len: u32) -> u32 {
    let (header, data) = s.output.split_at_mut(OUTPUT_HEADER);
    header.fill(0);
    put_pair(header, out::FALLBACK, (u32::MAX, 0));
    put_pair(header, out::NOT_FOUND_PAGE, (u32::MAX, 0));
    let fail = |header: &mut [u8], code: u8| {
        header[out::KIND] = kind::ERROR;
        header[out::DETAIL] = code;
        kind::ERROR as u32
    };
    let Some(snap) = s.snapshot.as_ref() else {
        return fail(header, error::NO_SNAPSHOT);
    };
    let Some(record) = s.input.get(..len as usize) else {
        return fail(header, error::INPUT_TOO_LONG);
    };
    let Some((host, path)) = request_fields(record) else {
        return fail(header, error::BAD_INPUT);
    };
    let layers = &s.layers[..s.layer_count];
    let filtered = FilteredLayers { layers, filter: &s.layer_filter };
    let answer = match layers.is_empty() {
        true => snap.resolve(host, path),
        false => snap.resolve_layered(&filtered, host, path),
    };
    let mut cursor = Cursor { data, len: 0 };
    match encode(&answer, header, &mut cursor) {
        Ok(k) => k as u32,
        Err(fmt::Error) => fail(header, error::OUTPUT_OVERFLOW),
    }
}

fn encode(answer: &Resolution<'_, '_>, header: &mut [u8], c: &mut Cursor<'_>) -> Result<u8, fmt::Error> {
    let target = |s: &str| (s.as_ptr() as usize as u32, s.len() as u32);
    let k = match answer {
        Resolution::Static { domain, bucket, key, status, fallback, not_found_page } => {
            put_u16(header, out::STATUS_OR_PORT, *status);
            put_pair(header, out::DOMAIN, c.put_with(|out| domain.copy_to(out))?);
            put_pair(header, out::TARGET, target(bucket));
            put_pair(header, out::KEY, c.put_with(|out| key.copy_to(out))?);
            if let Some(f) = fallback {
                put_pair(header, out::FALLBACK, c.put_with(|out| f.copy_to(out))?);
            }
            if let Some(page) = not_found_page {
                put_pair(header, out::NOT_FOUND_PAGE, c.put_with(|out| page.copy_to(out))?);
            }
            kind::STATIC
        }
        Resolution::Redirect { domain, location, status } => {
            put_u16(header, out::STATUS_OR_PORT, *status);
            put_pair(header, out::DOMAIN, c.put_with(|out| domain.copy_to(out))?);
            put_pair(header, out::KEY, c.put_display(location)?);
            kind::REDIRECT
        }
        Resolution::Balancer { domain, origin, port, scheme } => {
            header[out::DETAIL] = match scheme {
                Scheme::Http => 1,
                Scheme::Https => 2,
            };
            put_u16(header, out::STATUS_OR_PORT, *port);
            put_pair(header, out::DOMAIN, c.put_with(|out| domain.copy_to(out))?);
            put_pair(header, out::TARGET, target(origin));
            kind::BALANCER
        }
        Resolution::NotFound => kind::NOT_FOUND,
        Resolution::BadRequest(reason) => {
            header[out::DETAIL] = 1 + Reason::ALL.iter().position(|r| r == reason).unwrap_or(0) as u8;
            kind::BAD_REQUEST
        }
    };
    header[out::KIND] = k;
    Ok(k)
}
