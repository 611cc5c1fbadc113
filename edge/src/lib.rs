//! `edgeroute-edge` owns the snapshot format and resolves requests against it.
//!
//! A snapshot is one immutable file compiled from a routing table (see
//! `docs/snapshot-format.md`): an FST from hostnames to the offsets of their
//! route records, which hold their strings and asset lists in place (or
//! refer back to an earlier record's), closed by a CRC-32C.
//! [`Snapshot::from_bytes`] validates a snapshot once, in O(file size), and
//! never panics whatever the bytes; then [`Snapshot::resolve`] turns a
//! `Host` header and a request path into a [`Resolution`] by the rules of
//! `docs/resolve.md`, zero-copy, without allocating and without panicking.
//! The crate is `no_std` (the `std` feature only adds `std::error::Error`
//! and `explain`, which allocates), has no required dependency (`sha2`
//! comes only with the `hash` feature) and no `unsafe`, and builds for
//! `wasm32-unknown-unknown` as it is.
//!
//! A snapshot is named by its [`SnapshotId`], the SHA-256 of its bytes. The
//! optional `hash` feature adds `SnapshotId::of`, which computes it, and
//! with it the crate's one dependency, `sha2`; the WebAssembly module never
//! enables it.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(feature = "std", test))]
extern crate std;

mod crc32c;
mod error;
#[cfg(feature = "std")]
mod explain;
mod filter;
pub mod format;
mod fst;
mod host;
mod id;
mod json;
mod layer;
mod path;
mod resolve;
mod snapshot;
mod table;
mod wire;

pub use crate::crc32c::crc32c;
pub use crate::error::SnapshotError;
#[cfg(feature = "std")]
pub use crate::explain::explain;
pub use crate::filter::{filter_insert, filter_len, key_hash, StateFilter, STATE_FILTER_LEN};
pub use crate::fst::{FstError, MAX_KEY_LEN};
pub use crate::host::{HostName, MAX_HOST_LEN, MAX_LABEL_LEN};
pub use crate::id::{ParseSnapshotIdError, ShortId, SnapshotId};
pub use crate::json::Json;
pub use crate::layer::{Layer, LayerError};
pub use crate::resolve::{Domain, FilteredLayers, Key, Layers, Location, NoTrace, Reason, Resolution, Trace};
pub use crate::snapshot::{Assets, Origin, Route, Scheme, SectionInfo, Snapshot, StaticSite};
pub use crate::table::Record;
