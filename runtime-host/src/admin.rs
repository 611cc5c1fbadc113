//! What the host reports on its admin listener (`edgeroute-admin`): its
//! counters, the snapshot it serves and how fresh it is.

use edgeroute_admin::{Health, Status};

use crate::state::HostState;

impl Status for HostState {
    fn metrics(&self) -> String {
        self.metrics.render(self.router.live().as_deref(), &self.freshness)
    }

    fn health(&self) -> Health {
        HostState::health(self)
    }
}
