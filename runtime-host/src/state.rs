//! [`HostState`]: what every part of a running host shares.

use crate::metrics::Metrics;
use crate::router::Router;

/// The live snapshot (through its [`Router`]) and the host's counters. One
/// per process, referred to by the public and admin listeners, the store
/// follower and every worker thread.
#[derive(Debug)]
pub struct HostState {
    pub router: Router,
    pub metrics: Metrics,
}

impl HostState {
    /// The host's state, made once, living as long as the process.
    pub fn leak(router: Router) -> &'static HostState {
        Box::leak(Box::new(HostState { router, metrics: Metrics::default() }))
    }
}
