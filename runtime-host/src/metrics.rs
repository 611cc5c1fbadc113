//! The host's counters, and their Prometheus text rendering for the admin
//! listener's `/metrics`.
//!
//! Everything is a relaxed atomic in fixed arrays: counting a request costs
//! two atomic adds and no lock or allocation, so it stays off the request's
//! critical path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::router::Live;
use crate::state::Freshness;

/// What a request was answered as: the resolution's kind, or `error` when
/// the router itself failed (the module trapped). A failed origin is
/// counted under its kind, with its status (502, 504), and in
/// `edgeroute_origin_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Static,
    Redirect,
    Balancer,
    NotFound,
    BadRequest,
    Error,
    /// A request over TLS for another table entry than its connection's
    /// name (SNI): 421.
    Misdirected,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Static,
        Outcome::Redirect,
        Outcome::Balancer,
        Outcome::NotFound,
        Outcome::BadRequest,
        Outcome::Error,
        Outcome::Misdirected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Static => "static",
            Outcome::Redirect => "redirect",
            Outcome::Balancer => "balancer",
            Outcome::NotFound => "not_found",
            Outcome::BadRequest => "bad_request",
            Outcome::Error => "error",
            Outcome::Misdirected => "misdirected",
        }
    }
}

/// Status codes are counted one by one, 0–599; an origin's nonstandard code
/// above that is counted as 599.
const STATUSES: usize = 600;

/// Upper bounds of the resolve-latency histogram, in nanoseconds: a resolve
/// through the module takes about a microsecond, so the buckets are fine there.
const RESOLVE_BUCKETS_NS: [u64; 12] =
    [500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000, 100_000_000];

/// Why the host closed a client's connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The client's address held its `--max-connections-per-client`.
    ClientCap,
    /// No byte within `--first-byte-timeout`.
    FirstByte,
    /// A request head not complete within `--header-timeout` of its first byte.
    Head,
    /// No request in flight for `--idle-timeout` (closed gracefully).
    Idle,
    /// A client that stopped reading its answer for `--idle-timeout`.
    Send,
    /// A WebSocket tunnel that carried nothing for `--idle-timeout`.
    TunnelIdle,
    /// A TLS handshake not done within `--header-timeout` of the accept.
    Handshake,
}

impl Closed {
    pub const ALL: [Closed; 7] = [
        Closed::ClientCap,
        Closed::FirstByte,
        Closed::Head,
        Closed::Idle,
        Closed::Send,
        Closed::TunnelIdle,
        Closed::Handshake,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Closed::ClientCap => "client_cap",
            Closed::FirstByte => "first_byte",
            Closed::Head => "head",
            Closed::Idle => "idle",
            Closed::Send => "send",
            Closed::TunnelIdle => "tunnel_idle",
            Closed::Handshake => "handshake",
        }
    }
}

/// How a TLS handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    Tls13,
    Tls12,
    /// A session resumed (no certificate, a cheaper key exchange).
    Tls13Resumed,
    Tls12Resumed,
    /// No certificate covers the name the client sent (or it sent none, and
    /// there is no default): refused with an alert.
    NoCertificate,
    /// The client's bytes were not a handshake rustls accepts, or it gave up.
    Failed,
    /// Not done within `--header-timeout`.
    TimedOut,
}

impl Handshake {
    const ALL: [Handshake; 7] = [
        Handshake::Tls13,
        Handshake::Tls12,
        Handshake::Tls13Resumed,
        Handshake::Tls12Resumed,
        Handshake::NoCertificate,
        Handshake::Failed,
        Handshake::TimedOut,
    ];

    /// Its `result` and `version` labels.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Handshake::Tls13 => ("ok", "TLSv1.3"),
            Handshake::Tls12 => ("ok", "TLSv1.2"),
            Handshake::Tls13Resumed => ("resumed", "TLSv1.3"),
            Handshake::Tls12Resumed => ("resumed", "TLSv1.2"),
            Handshake::NoCertificate => ("no_certificate", "none"),
            Handshake::Failed => ("failed", "none"),
            Handshake::TimedOut => ("timeout", "none"),
        }
    }
}

/// One certificate served, for its expiry gauge.
#[derive(Clone, Debug)]
struct Served {
    file: String,
    name: String,
    not_after: i64,
}

/// The TLS listener's counters, and the certificates it serves.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    handshakes: [AtomicU64; Handshake::ALL.len()],
    refused: [AtomicU64; crate::tls::Refusal::REASONS.len()],
    served: std::sync::Mutex<Vec<Served>>,
    /// Files refused the last time they were read, and why.
    refused_now: std::sync::Mutex<Vec<(String, &'static str)>>,
    /// Whether a TLS listener exists (else nothing of it is rendered).
    on: std::sync::atomic::AtomicBool,
}

impl TlsMetrics {
    /// Counts a handshake.
    pub fn handshake(&self, how: Handshake) {
        self.on.store(true, Ordering::Relaxed);
        self.handshakes[how as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Handshakes that ended `how` so far.
    pub fn handshakes(&self, how: Handshake) -> u64 {
        self.handshakes[how as usize].load(Ordering::Relaxed)
    }

    /// Counts a certificate file refused for `reason` (a [`Refusal::reason`]).
    ///
    /// [`Refusal::reason`]: crate::tls::Refusal::reason
    pub fn refused(&self, reason: &str) {
        self.on.store(true, Ordering::Relaxed);
        if let Some(i) = crate::tls::Refusal::REASONS.iter().position(|r| *r == reason) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The certificates served from now on, and the files refused the last
    /// time they were read (and why).
    pub fn serve(
        &self,
        certificates: &[std::sync::Arc<crate::tls::Certificate>],
        refused: &[(&std::path::Path, &'static str)],
    ) {
        *self.refused_now.lock().unwrap_or_else(|p| p.into_inner()) =
            refused.iter().map(|(file, why)| (file.display().to_string(), *why)).collect();
        self.on.store(true, Ordering::Relaxed);
        let served = certificates
            .iter()
            .map(|c| Served {
                file: c.file.display().to_string(),
                name: c.names.first().map(ToString::to_string).unwrap_or_default(),
                not_after: c.not_after,
            })
            .collect();
        *self.served.lock().unwrap_or_else(|p| p.into_inner()) = served;
    }

    fn render(&self, out: &mut String) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        out.push_str("# HELP edgeroute_tls_handshakes_total TLS handshakes on --tls-listen, by result (ok: a full handshake, resumed, no_certificate, failed, timeout) and the version agreed.\n");
        out.push_str("# TYPE edgeroute_tls_handshakes_total counter\n");
        for how in Handshake::ALL {
            let (result, version) = how.labels();
            let n = self.handshakes[how as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "edgeroute_tls_handshakes_total{{result=\"{result}\",version=\"{version}\"}} {n}");
        }
        out.push_str("# HELP edgeroute_tls_certificates_refused_total Certificate files refused (each kept its last good certificate, if it had one), by reason.\n");
        out.push_str("# TYPE edgeroute_tls_certificates_refused_total counter\n");
        for (i, reason) in crate::tls::Refusal::REASONS.iter().enumerate() {
            let n = self.refused[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "edgeroute_tls_certificates_refused_total{{reason=\"{reason}\"}} {n}");
        }
        out.push_str("# HELP edgeroute_tls_certificate_refused Certificate files refused the last time they were read (1), by file and reason; their names keep the certificate they had.\n");
        out.push_str("# TYPE edgeroute_tls_certificate_refused gauge\n");
        for (file, reason) in self.refused_now.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ =
                writeln!(out, "edgeroute_tls_certificate_refused{{file=\"{}\",reason=\"{reason}\"}} 1", label(file));
        }
        let served = self.served.lock().unwrap_or_else(|p| p.into_inner()).clone();
        out.push_str(
            "# HELP edgeroute_tls_certificates Certificates served.\n# TYPE edgeroute_tls_certificates gauge\n",
        );
        let _ = writeln!(out, "edgeroute_tls_certificates {}", served.len());
        out.push_str("# HELP edgeroute_tls_certificate_expiry_days Days until each certificate served expires (negative once it has), by file and first name.\n");
        out.push_str("# TYPE edgeroute_tls_certificate_expiry_days gauge\n");
        let now = crate::tls::folder::now();
        for c in served {
            let _ = writeln!(
                out,
                "edgeroute_tls_certificate_expiry_days{{file=\"{}\",name=\"{}\"}} {:.3}",
                label(&c.file),
                label(&c.name),
                (c.not_after - now) as f64 / 86_400.0
            );
        }
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Counters of one host process.
#[derive(Debug)]
pub struct Metrics {
    /// By outcome × status (index `outcome * STATUSES + status`).
    requests: Box<[AtomicU64]>,
    resolve_buckets: [AtomicU64; RESOLVE_BUCKETS_NS.len()],
    resolve_count: AtomicU64,
    resolve_sum_ns: AtomicU64,
    /// Snapshots swapped in since the start.
    pub swaps: AtomicU64,
    /// Snapshots refused for good (damaged, mismatching, invalid).
    pub refused: AtomicU64,
    /// Failed fetches of a snapshot the store names (missing yet, denied,
    /// 5xx, timed out), each retried with backoff.
    pub fetch_errors: AtomicU64,
    /// Failed reads of the store's pointer.
    pub poll_errors: AtomicU64,
    /// Connections open now, on the public listener.
    pub connections: AtomicU64,
    /// Requests being answered now.
    pub in_flight: AtomicU64,
    /// Origins that could not be reached or timed out.
    pub origin_errors: AtomicU64,
    /// Static objects S3 refused access to (403), answered 502.
    pub static_denied: AtomicU64,
    /// Connections the host closed itself, by [`Closed`] reason.
    closed: [AtomicU64; Closed::ALL.len()],
    /// Handshakes and certificates of the TLS listener.
    pub tls: TlsMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: (0..Outcome::ALL.len() * STATUSES).map(|_| AtomicU64::new(0)).collect(),
            resolve_buckets: Default::default(),
            resolve_count: AtomicU64::new(0),
            resolve_sum_ns: AtomicU64::new(0),
            swaps: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            fetch_errors: AtomicU64::new(0),
            poll_errors: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            origin_errors: AtomicU64::new(0),
            static_denied: AtomicU64::new(0),
            closed: Default::default(),
            tls: TlsMetrics::default(),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, outcome: Outcome, status: u16) {
        let status = usize::from(status).min(STATUSES - 1);
        self.requests[outcome as usize * STATUSES + status].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection the host closed itself.
    pub fn closed(&self, why: Closed) {
        self.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed for `why` so far.
    pub fn closed_count(&self, why: Closed) -> u64 {
        self.closed[why as usize].load(Ordering::Relaxed)
    }

    /// Counts one resolve and its latency.
    pub fn resolve(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        if let Some(i) = RESOLVE_BUCKETS_NS.iter().position(|&le| ns <= le) {
            self.resolve_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.resolve_count.fetch_add(1, Ordering::Relaxed);
        self.resolve_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4) of every counter, of
    /// the live snapshot (when there is one) and of the host's freshness.
    pub fn render(&self, live: Option<&Live>, freshness: &Freshness) -> String {
        let mut out = String::with_capacity(4096);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);

        out.push_str(
            "# HELP edgeroute_requests_total Requests answered, by what they resolved to and the status sent.\n",
        );
        out.push_str("# TYPE edgeroute_requests_total counter\n");
        for outcome in Outcome::ALL {
            for status in 0..STATUSES {
                let n = load(&self.requests[outcome as usize * STATUSES + status]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "edgeroute_requests_total{{kind=\"{}\",status=\"{status}\"}} {n}",
                        outcome.as_str()
                    );
                }
            }
        }

        out.push_str(
            "# HELP edgeroute_resolve_seconds Time to resolve a request's host and path in the edge module.\n",
        );
        out.push_str("# TYPE edgeroute_resolve_seconds histogram\n");
        let mut cumulative = 0;
        for (i, le) in RESOLVE_BUCKETS_NS.iter().enumerate() {
            cumulative += load(&self.resolve_buckets[i]);
            let _ = writeln!(out, "edgeroute_resolve_seconds_bucket{{le=\"{}\"}} {cumulative}", seconds(*le));
        }
        let count = load(&self.resolve_count);
        let _ = writeln!(out, "edgeroute_resolve_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "edgeroute_resolve_seconds_sum {}", seconds(load(&self.resolve_sum_ns)));
        let _ = writeln!(out, "edgeroute_resolve_seconds_count {count}");

        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        if let Some(live) = live {
            let _ = writeln!(
                out,
                "# HELP edgeroute_snapshot_info The state being served: its id, and its base snapshot's.\n# TYPE edgeroute_snapshot_info gauge\nedgeroute_snapshot_info{{id=\"{}\",base=\"{}\"}} 1",
                live.id, live.base.id
            );
            gauge(
                &mut out,
                "edgeroute_snapshot_routes",
                "Routes in the base snapshot being served (the layers on it add and delete more).",
                "gauge",
                live.route_count().to_string(),
            );
            gauge(
                &mut out,
                "edgeroute_snapshot_bytes",
                "Size of the base snapshot being served.",
                "gauge",
                live.base.size.to_string(),
            );
            let age = live.base.loaded_at.elapsed().unwrap_or_default();
            gauge(
                &mut out,
                "edgeroute_snapshot_age_seconds",
                "Seconds since the base snapshot being served was loaded.",
                "gauge",
                format!("{:.3}", age.as_secs_f64()),
            );
            gauge(
                &mut out,
                "edgeroute_snapshot_load_seconds",
                "Time it took to check and validate the base snapshot being served and map it into a first instance.",
                "gauge",
                format!("{:.6}", live.base.load_time.as_secs_f64()),
            );
            gauge(
                &mut out,
                "edgeroute_state_layers",
                "Layers on the base in the state being served.",
                "gauge",
                live.layers.len().to_string(),
            );
            gauge(
                &mut out,
                "edgeroute_state_layer_bytes",
                "Bytes of those layers.",
                "gauge",
                live.layer_bytes().to_string(),
            );
            let changed = live.changed_at.elapsed().unwrap_or_default();
            gauge(
                &mut out,
                "edgeroute_state_changed_seconds",
                "Seconds since the state being served last changed (a layer or a base).",
                "gauge",
                format!("{:.3}", changed.as_secs_f64()),
            );
        }
        gauge(
            &mut out,
            "edgeroute_snapshot_behind_seconds",
            "Seconds the store has named a snapshot this host does not serve (0: it serves the store's); it keeps growing after a refusal.",
            "gauge",
            format!("{:.3}", freshness.behind_seconds(live)),
        );
        gauge(
            &mut out,
            "edgeroute_health_degraded",
            "1 while /health says degraded: behind the store, or unable to read it, for longer than --max-behind.",
            "gauge",
            u8::from(freshness.degraded(live)).to_string(),
        );
        gauge(
            &mut out,
            "edgeroute_snapshot_serving",
            "1 once the host has a snapshot to serve; 0 while it answers 503.",
            "gauge",
            u8::from(live.is_some()).to_string(),
        );
        gauge(
            &mut out,
            "edgeroute_snapshot_swaps_total",
            "Snapshots swapped in since the start.",
            "counter",
            load(&self.swaps).to_string(),
        );
        gauge(
            &mut out,
            "edgeroute_snapshot_refused_total",
            "Snapshots refused for good (damaged, mismatching or invalid); the previous one kept serving.",
            "counter",
            load(&self.refused).to_string(),
        );
        gauge(
            &mut out,
            "edgeroute_snapshot_fetch_errors_total",
            "Failed fetches of the snapshot the store names (missing yet, denied, 5xx, timed out), each retried with backoff.",
            "counter",
            load(&self.fetch_errors).to_string(),
        );
        gauge(
            &mut out,
            "edgeroute_store_errors_total",
            "Failed reads of the store's pointer.",
            "counter",
            load(&self.poll_errors).to_string(),
        );
        gauge(
            &mut out,
            "edgeroute_connections",
            "Connections open on the public listener.",
            "gauge",
            load(&self.connections).to_string(),
        );
        out.push_str("# HELP edgeroute_connections_closed_total Connections the host closed itself: over the per-client cap, no first byte, a request head too slow, idle, a client that stopped reading, an idle tunnel, a TLS handshake too slow.\n");
        out.push_str("# TYPE edgeroute_connections_closed_total counter\n");
        for why in Closed::ALL {
            out.push_str(&format!(
                "edgeroute_connections_closed_total{{reason=\"{}\"}} {}\n",
                why.as_str(),
                load(&self.closed[why as usize])
            ));
        }
        gauge(
            &mut out,
            "edgeroute_requests_in_flight",
            "Requests being answered.",
            "gauge",
            load(&self.in_flight).to_string(),
        );
        gauge(
            &mut out,
            "edgeroute_origin_errors_total",
            "Requests whose origin (a load balancer or the static store) failed or timed out.",
            "counter",
            load(&self.origin_errors).to_string(),
        );
        gauge(
            &mut out,
            "edgeroute_static_denied_total",
            "Static objects S3 refused access to (403: expired credentials, a policy), answered 502; see --s3-403-is-missing.",
            "counter",
            load(&self.static_denied).to_string(),
        );
        self.tls.render(&mut out);
        out
    }
}

/// Nanoseconds as decimal seconds, exactly (no float rounding in bucket labels).
fn seconds(ns: u64) -> String {
    let frac = format!("{:09}", ns % 1_000_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}", ns / 1_000_000_000)
    } else {
        format!("{}.{frac}", ns / 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(500), "0.0000005");
        assert_eq!(seconds(1_000_000_000), "1");
        assert_eq!(seconds(2_500_000_000), "2.5");
    }
}
