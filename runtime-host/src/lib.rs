//! `edgeroute-host` is the data plane: it runs the edge module
//! (`edgeroute-edge-wasm`, built by this crate's build script and embedded
//! as [`MODULE`]) in wasmtime, and serves HTTP with it. Each snapshot is
//! baked into the module's data, so every worker thread's instance shares its
//! pages copy-on-write; a [`Router`] swaps snapshots atomically, validating
//! each in a fresh instance first; epoch interruption bounds every call. The
//! [`server`] answers each request as its route says (a static site's object
//! from S3 or a directory, a redirect, a proxied load balancer), the
//! [`follow`]er keeps the router on a store's current snapshot, and the
//! [`admin`] listener exposes metrics. It never links the DynamoDB SDK.

pub mod admin;
pub mod answer;
pub mod bake;
pub mod bench;
pub mod body;
pub mod demo;
pub mod edge;
pub mod engine;
pub mod follow;
pub mod metrics;
pub mod proxy;
pub mod router;
pub mod server;
pub mod statics;

pub use crate::answer::Answer;
pub use crate::edge::Edge;
pub use crate::engine::{EdgeEngine, EdgeInstance, EngineError, SnapshotModule};
pub use crate::router::{Live, Router, Worker};

/// The edge module: `wasm32-unknown-unknown`, no imports, ABI version 1
/// (`docs/wasm-abi.md`).
pub const MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/edgeroute_edge.wasm"));

/// Exports of the module, all of them: the ABI's functions, its memory, and
/// two symbols the linker always adds.
pub const EXPORTS: &[&str] = &[
    "memory",
    "edgeroute_abi_version",
    "edgeroute_reserve",
    "edgeroute_attach",
    "edgeroute_commit",
    "edgeroute_route_count",
    "edgeroute_input",
    "edgeroute_output",
    "edgeroute_resolve",
    "__data_end",
    "__heap_base",
];
