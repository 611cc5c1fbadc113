//! `edgeroute-host` is the data plane: it runs the edge module
//! (`edgeroute-edge-wasm`, built by this crate's build script and embedded
//! as [`MODULE`]) in wasmtime, and serves HTTP with it. The module is
//! compiled once; each base snapshot is validated natively, once, and held
//! in a sealed memfd ([`base_file`]) that every worker thread's instance
//! maps copy-on-write; a [`Router`] swaps states atomically; epoch
//! interruption bounds every call.
//!
//! A request's way through, one module per phase: the [`http`] listener and
//! its limits, the request's host ([`http::request`]), the resolve through
//! the thread's worker, and the dispatch ([`plane`]) to a static site
//! ([`statics`]), a proxied load balancer ([`proxy`]) or a short answer
//! ([`respond`]). Beside it: the [`HostState`] every listener shares, the
//! [`follow`]er that keeps the router on a store's current snapshot (and
//! [`reload`], on a snapshot file), and
//! what it reports on its [`admin`] listener (`edgeroute-admin`), and its
//! bounded S3 clients ([`aws`]). It never links the DynamoDB SDK.

pub mod admin;
pub mod answer;
pub mod aws;
pub mod base_file;
pub mod body;
pub mod engine;
pub mod follow;
pub mod http;
pub mod metrics;
pub mod plane;
pub mod probe;
pub mod proxy;
pub mod reload;
pub mod respond;
pub mod router;
pub mod state;
pub mod statics;
pub mod tls;
pub mod trust;

pub use crate::answer::Answer;
pub use crate::engine::{EdgeEngine, EdgeInstance, EngineError, HostLayer, SnapshotModule};
pub use crate::router::{Live, Router, Worker};
pub use crate::state::HostState;

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
    "edgeroute_layer_reserve",
    "edgeroute_layer_push",
    "edgeroute_layers_truncate",
    "edgeroute_layer_count",
    "edgeroute_input",
    "edgeroute_output",
    "edgeroute_resolve",
    "__data_end",
    "__heap_base",
];
