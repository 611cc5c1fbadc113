//! What the host reports on its admin listener (`edgeroute-admin`): its
//! counters and the snapshot it serves.

use edgeroute_admin::{Health, Status};

use crate::state::HostState;

impl Status for HostState {
    fn metrics(&self) -> String {
        self.metrics.render(&self.router.live())
    }

    fn health(&self) -> Health {
        let live = self.router.live();
        Health { ok: true, detail: format!("serving {} ({} routes)", live.id, live.route_count) }
    }
}
