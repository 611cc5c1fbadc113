//! The module's ABI (`docs/wasm-abi.md`). All multi-byte fields are
//! little-endian; every pointer is an offset into the module's memory.
#![allow(unsafe_code)] // the shared-memory accessors below (`with_state`, `region_bytes`); see each SAFETY note

use core::cell::{Cell, UnsafeCell};
use core::fmt::{self, Write};

use edgeroute_edge::{Reason, Resolution, Scheme, Snapshot, SnapshotError};

/// Bumped on any change to this ABI.
pub const ABI_VERSION: u32 = 1;
/// Bytes of `Host` + path one `resolve` accepts.
pub const INPUT_CAPACITY: usize = 16 * 1024;
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
}

struct State {
    input: [u8; INPUT_CAPACITY],
    output: [u8; OUTPUT_HEADER + OUTPUT_DATA],
    /// The region last reserved and not yet committed: (pointer, length).
    region: Option<(usize, usize)>,
    snapshot: Option<Snapshot<&'static [u8]>>,
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
/// module never frees, so they can back the committed snapshot for as long
/// as the module lives.
///
/// # Safety
///
/// `ptr..ptr + len` must be a region handed out by [`grow`] (fresh memory
/// that is never shrunk, freed or handed out again) or one that
/// `edgeroute_attach` checked to lie inside the memory and above every
/// static the module uses: so that it is in bounds and no `&mut` to any of
/// it exists. The host writes it only before committing (the ABI's rule);
/// should a host break that rule, the reader's checked accesses still keep
/// every read in bounds.
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
        if !fits {
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
            commit::OK
        }
        Err(e) => match e {
            SnapshotError::TooShort { .. } => commit::TOO_SHORT,
            SnapshotError::BadMagic => commit::BAD_MAGIC,
            SnapshotError::BadEndianness => commit::BAD_ENDIANNESS,
            SnapshotError::UnsupportedVersion { .. } => commit::UNSUPPORTED_VERSION,
            SnapshotError::BadChecksum { .. } => commit::BAD_CHECKSUM,
            SnapshotError::TooLarge => commit::TOO_LARGE,
            _ => commit::BAD_STRUCTURE,
        },
    }
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

/// Resolves the request whose `Host` value is the first `host_len` input
/// bytes and whose target (path, `?query`) is the next `path_len`. Fills the
/// output record and returns its `kind`. Allocates nothing.
#[cfg_attr(target_arch = "wasm32", no_mangle)]
pub extern "C" fn edgeroute_resolve(host_len: u32, path_len: u32) -> u32 {
    with_state(|s| resolve_input(s, host_len, path_len))
}

fn resolve_input(s: &mut State, host_len: u32, path_len: u32) -> u32 {
    let (header, data) = s.output.split_at_mut(OUTPUT_HEADER);
    header.fill(0);
    put_pair(header, out::FALLBACK, (u32::MAX, 0));
    let fail = |header: &mut [u8], code: u8| {
        header[out::KIND] = kind::ERROR;
        header[out::DETAIL] = code;
        kind::ERROR as u32
    };
    let Some(snap) = s.snapshot.as_ref() else {
        return fail(header, error::NO_SNAPSHOT);
    };
    let (host_len, path_len) = (host_len as usize, path_len as usize);
    let Some(end) = host_len.checked_add(path_len).filter(|&e| e <= INPUT_CAPACITY) else {
        return fail(header, error::INPUT_TOO_LONG);
    };
    let (host, path) = s.input[..end].split_at(host_len);
    let answer = snap.resolve(host, path);
    let mut cursor = Cursor { data, len: 0 };
    match encode(&answer, header, &mut cursor) {
        Ok(k) => k as u32,
        Err(fmt::Error) => fail(header, error::OUTPUT_OVERFLOW),
    }
}

fn encode(answer: &Resolution<'_, '_>, header: &mut [u8], c: &mut Cursor<'_>) -> Result<u8, fmt::Error> {
    let target = |s: &str| (s.as_ptr() as usize as u32, s.len() as u32);
    let k = match answer {
        Resolution::Static { domain, bucket, key, status, fallback } => {
            put_u16(header, out::STATUS_OR_PORT, *status);
            put_pair(header, out::DOMAIN, c.put_with(|out| domain.copy_to(out))?);
            put_pair(header, out::TARGET, target(bucket));
            put_pair(header, out::KEY, c.put_with(|out| key.copy_to(out))?);
            if let Some(f) = fallback {
                put_pair(header, out::FALLBACK, c.put_with(|out| f.copy_to(out))?);
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
