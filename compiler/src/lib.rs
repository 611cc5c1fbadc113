//! `edgeroute-compiler` is edgeroute's control plane: it reads a routing
//! table (today a JSON file; DynamoDB comes next), validates and normalizes
//! every item (`docs/table-schema.md`), and writes the immutable snapshot
//! that `edgeroute-edge` reads (`docs/snapshot-format.md`). The `edgeroute`
//! binary wraps it: `compile`, `resolve`, `inspect`.

pub mod compile;
pub mod item;
pub mod route;
pub mod source;
pub mod writer;

pub use crate::compile::{compile, snapshot_id, CompileError, Compiled, Options, Progress, Stats};
pub use crate::item::{Location, RawItem, Value};
pub use crate::route::{normalize_domain, ItemError, ItemErrorKind, Route, Target};
pub use crate::writer::{write_sorted, WriteError};
