//! `edgeroute-compiler` is edgeroute's control plane: it reads a routing
//! table (a JSON file, a DynamoDB table through a parallel Scan, or a
//! DynamoDB table export), resolves ELB ARNs through the ELBv2 API,
//! validates and normalizes every item (`docs/table-schema.md`), and writes
//! the immutable snapshot that `edgeroute-edge` reads
//! (`docs/snapshot-format.md`). The `edgeroute` binary wraps it: `compile`,
//! `resolve`, `inspect`.

pub mod aws;
pub mod compile;
pub mod dynamodb;
pub mod elb;
pub mod env;
pub mod export;
pub mod incremental;
pub mod item;
pub mod publish;
/// Snapshot stores, from `edgeroute-store`.
pub use edgeroute_store as store;
pub mod route;
pub mod source;
pub mod watch;
pub mod writer;

pub use crate::compile::{compile, snapshot_id, CompileError, Compiled, Options, Progress, Stats};
pub use crate::item::{Location, RawItem, Value};
pub use crate::route::{normalize_domain, ItemError, ItemErrorKind, Route, Target};
pub use crate::source::Source;
pub use crate::writer::{write_sorted, WriteError};
