//! What a watcher reports on its admin listener (`edgeroute-admin`):
//! `/health` says what it is doing, `/metrics` counts what it did
//! (`docs/publishing.md` lists them).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeroute_admin::{Health, HealthState, Status};

/// What the watcher is doing now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Started, before its first lease.
    Starting,
    /// Another writer holds the store's lease.
    StandingBy { holder: String },
    /// Scanning the table into a new mirror.
    Bootstrapping,
    /// Following the table's stream, publishing on every change.
    Following,
    /// The table has no stream: scanning it periodically.
    Scanning,
    /// Waiting to bootstrap again after an error.
    BackingOff { cause: &'static str, why: String },
}

/// Counters and the phase of one watcher, shared with its admin listener.
#[derive(Debug)]
pub struct WatchStatus {
    phase: Mutex<Phase>,
    /// Bootstraps started again after an error, by cause.
    restarts: Mutex<BTreeMap<&'static str, u64>>,
    /// Publishes that did not go live, by reason.
    refused: Mutex<BTreeMap<&'static str, u64>>,
    bootstraps: AtomicU64,
    publishes: AtomicU64,
    publish_failures: AtomicU64,
    records: AtomicU64,
    shards: AtomicU64,
    lease_generation: AtomicU64,
    lease_held: AtomicU64,
    leases_lost: AtomicU64,
    lease_errors: AtomicU64,
    routes: AtomicU64,
    last_publish_ms: AtomicU64,
    merges: AtomicU64,
    compactions: AtomicU64,
    layers: AtomicU64,
    layer_bytes: AtomicU64,
    pruned_entries: AtomicU64,
    pruned_objects: AtomicU64,
}

impl Default for WatchStatus {
    fn default() -> WatchStatus {
        WatchStatus {
            phase: Mutex::new(Phase::Starting),
            restarts: Mutex::default(),
            refused: Mutex::default(),
            bootstraps: AtomicU64::new(0),
            publishes: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
            records: AtomicU64::new(0),
            shards: AtomicU64::new(0),
            lease_generation: AtomicU64::new(0),
            lease_held: AtomicU64::new(0),
            leases_lost: AtomicU64::new(0),
            lease_errors: AtomicU64::new(0),
            routes: AtomicU64::new(0),
            last_publish_ms: AtomicU64::new(0),
            merges: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            layers: AtomicU64::new(0),
            layer_bytes: AtomicU64::new(0),
            pruned_entries: AtomicU64::new(0),
            pruned_objects: AtomicU64::new(0),
        }
    }
}

/// Every restart cause, so that each series exists from the start at 0
/// (an alert on a rate needs the series before its first increase).
pub const CAUSES: &[&str] = &["describe_table", "scan", "elb", "stream", "stream_trimmed", "stream_lineage", "store"];

/// Every reason a publish is refused.
pub const REFUSALS: &[&str] = &["drop_guard", "pinned"];

impl WatchStatus {
    pub(crate) fn phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    pub(crate) fn restarted(&self, cause: &'static str) {
        *self.restarts.lock().unwrap_or_else(|e| e.into_inner()).entry(cause).or_default() += 1;
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()).entry(reason).or_default() += 1;
    }

    pub(crate) fn bootstrapped(&self) {
        self.bootstraps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn published(&self, routes: u64) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
        self.routes.store(routes, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        self.last_publish_ms.store(u64::try_from(now.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The state last made current has `layers` layers of `bytes` in all.
    pub(crate) fn layers(&self, layers: usize, bytes: u64) {
        self.layers.store(layers as u64, Ordering::Relaxed);
        self.layer_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn pruned(&self, entries: usize, objects: usize) {
        self.pruned_entries.fetch_add(entries as u64, Ordering::Relaxed);
        self.pruned_objects.fetch_add(objects as u64, Ordering::Relaxed);
    }

    pub(crate) fn merged(&self) {
        self.merges.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn compacted(&self) {
        self.compactions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn publish_failed(&self) {
        self.publish_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn records(&self, n: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn shards(&self, n: usize) {
        self.shards.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn lease(&self, generation: Option<u64>) {
        self.lease_held.store(u64::from(generation.is_some()), Ordering::Relaxed);
        if let Some(generation) = generation {
            self.lease_generation.store(generation, Ordering::Relaxed);
        }
    }

    pub(crate) fn lease_error(&self) {
        self.lease_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn lease_lost(&self) {
        self.leases_lost.fetch_add(1, Ordering::Relaxed);
        self.lease(None);
    }

    /// How many bootstraps were started again after an error, by cause.
    pub fn restarts(&self) -> BTreeMap<&'static str, u64> {
        self.restarts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Status for WatchStatus {
    fn metrics(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: &AtomicU64| vec![(String::new(), v.load(Ordering::Relaxed))];
        let by = |map: &Mutex<BTreeMap<&'static str, u64>>, all: &[&'static str], label: &str| {
            let map = map.lock().unwrap_or_else(|e| e.into_inner());
            all.iter().map(|k| (format!("{{{label}=\"{k}\"}}"), map.get(k).copied().unwrap_or(0))).collect::<Vec<_>>()
        };
        metric(
            "edgeroute_watch_restarts_total",
            "counter",
            "Bootstraps started again after an error it could survive, by cause.",
            &by(&self.restarts, CAUSES, "cause"),
        );
        metric(
            "edgeroute_watch_bootstraps_total",
            "counter",
            "Scans of the table into a new mirror.",
            &one(&self.bootstraps),
        );
        metric("edgeroute_watch_publishes_total", "counter", "Snapshots made current.", &one(&self.publishes));
        metric(
            "edgeroute_watch_publish_failures_total",
            "counter",
            "Publishes that failed (the store unreachable); the changes are kept and tried again.",
            &one(&self.publish_failures),
        );
        metric(
            "edgeroute_watch_publishes_refused_total",
            "counter",
            "Snapshots held back: by the drop guard (--max-drop), or by a pinned store.",
            &by(&self.refused, REFUSALS, "reason"),
        );
        metric("edgeroute_watch_stream_records_total", "counter", "Stream records applied.", &one(&self.records));
        metric("edgeroute_watch_shards_reading", "gauge", "Stream shards being read.", &one(&self.shards));
        metric(
            "edgeroute_watch_lease_held",
            "gauge",
            "1 while this watcher holds the store's lease.",
            &one(&self.lease_held),
        );
        metric(
            "edgeroute_watch_lease_generation",
            "gauge",
            "The generation of the lease last held (every pointer written carries it).",
            &one(&self.lease_generation),
        );
        metric(
            "edgeroute_watch_leases_lost_total",
            "counter",
            "Times the lease was taken by another writer or ran out.",
            &one(&self.leases_lost),
        );
        metric(
            "edgeroute_watch_lease_errors_total",
            "counter",
            "Failures to read or take the store's lease (the store unreachable) while standing by.",
            &one(&self.lease_errors),
        );
        metric("edgeroute_watch_routes", "gauge", "Routes in the snapshot last made current.", &one(&self.routes));
        metric(
            "edgeroute_watch_layers",
            "gauge",
            "Layers on the base of the state last made current.",
            &one(&self.layers),
        );
        metric(
            "edgeroute_watch_layer_bytes",
            "gauge",
            "Bytes of those layers (a compaction merges them into a new base past its threshold).",
            &one(&self.layer_bytes),
        );
        metric(
            "edgeroute_watch_layer_merges_total",
            "counter",
            "Merges of a full tier of layers into one.",
            &one(&self.merges),
        );
        metric(
            "edgeroute_watch_compactions_total",
            "counter",
            "Compactions of the layers into a new base made current.",
            &one(&self.compactions),
        );
        metric(
            "edgeroute_watch_pruned_entries_total",
            "counter",
            "History entries pruned (beyond the states kept).",
            &one(&self.pruned_entries),
        );
        metric(
            "edgeroute_watch_pruned_objects_total",
            "counter",
            "Snapshots, layers and checkpoint items pruned (named by nothing kept).",
            &one(&self.pruned_objects),
        );
        let last = self.last_publish_ms.load(Ordering::Relaxed) / 1000;
        metric(
            "edgeroute_watch_last_publish_timestamp_seconds",
            "gauge",
            "When a snapshot was last made current (0: never).",
            &[(String::new(), last)],
        );
        out
    }

    fn health(&self) -> Health {
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (ok, detail) = match phase {
            Phase::Starting => (false, "starting".to_owned()),
            Phase::StandingBy { holder } => (true, format!("standing by: the store is leased to {holder}")),
            Phase::Bootstrapping => (false, "mirroring the table".to_owned()),
            Phase::Following => (true, "following the table's stream".to_owned()),
            Phase::Scanning => (true, "scanning the table periodically (it has no stream)".to_owned()),
            Phase::BackingOff { cause, why } => {
                (false, format!("mirroring the table again after an error ({cause}): {why}"))
            }
        };
        Health { state: if ok { HealthState::Ok } else { HealthState::Unavailable }, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_a_series_from_the_start_and_health_follows_the_phase() {
        let status = WatchStatus::default();
        let text = status.metrics();
        for cause in CAUSES {
            assert!(text.contains(&format!("edgeroute_watch_restarts_total{{cause=\"{cause}\"}} 0")), "{text}");
        }
        status.restarted("scan");
        status.restarted("scan");
        assert!(status.metrics().contains("edgeroute_watch_restarts_total{cause=\"scan\"} 2"));
        assert!(status.health().state == HealthState::Unavailable);
        status.phase(Phase::Following);
        assert!(status.health().state == HealthState::Ok);
        status.phase(Phase::BackingOff { cause: "store", why: "down".into() });
        let health = status.health();
        assert!(health.state == HealthState::Unavailable && health.detail.contains("(store): down"), "{health:?}");
    }
}
