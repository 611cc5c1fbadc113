//! `edgeroute-compiler` turns a routing table into a snapshot, and nothing
//! else: table in, snapshot out. It reads the table's items from bytes (a
//! JSON file, a DynamoDB table export's folder), validates and normalizes
//! every item (`docs/table-schema.md`), fills in ELB DNS names that the
//! caller looked up, and writes the immutable snapshot that
//! `edgeroute-edge` reads (`docs/snapshot-format.md`); the [`mirror`]
//! keeps a table in memory and rewrites its snapshot after each change.
//!
//! It talks to no network and starts no async runtime: reading live
//! DynamoDB tables, exports in S3, the ELBv2 API and publishing are the
//! control plane's (`edgeroute-control`, the `edgeroute` binary).

pub mod compile;
pub mod elb;
pub mod entry;
pub mod export;
pub mod item;
pub mod layer;
pub mod mirror;
mod pack;
pub mod source;
pub mod writer;

pub use crate::compile::{check, compile, CompileError, Compiled, Compiler, Options, Progress, Stats};
pub use crate::entry::{normalize_domain, Entry, ItemError, ItemErrorKind, Target};
pub use crate::item::{Location, RawItem, Value};
pub use crate::layer::{compact, merge_layers, read_changes, write_layer, Change, Changes};
pub use crate::writer::{write_sorted, Lineage, WriteError};
