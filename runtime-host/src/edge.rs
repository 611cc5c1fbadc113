//! [`Edge`]: what every listener of a host shares.

use crate::metrics::Metrics;
use crate::router::Router;

/// The live snapshot (through its [`Router`]) and the host's counters. One
/// per process, referred to by the public and admin listeners, the store
/// follower and every worker thread.
#[derive(Debug)]
pub struct Edge {
    pub router: Router,
    pub metrics: Metrics,
}

impl Edge {
    /// An edge that lives as long as the process.
    pub fn leak(router: Router) -> &'static Edge {
        Box::leak(Box::new(Edge { router, metrics: Metrics::default() }))
    }
}
