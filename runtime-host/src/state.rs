//! [`HostState`]: what every part of a running host shares, and
//! [`Freshness`]: how far the snapshot it serves lags its store.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgeroute_admin::{Health, HealthState};

use crate::metrics::Metrics;
use crate::router::{Live, Router};

/// The live snapshot (through its [`Router`]), the host's counters and how
/// fresh it is. One per process, referred to by the public and admin
/// listeners, the store follower and every worker thread.
#[derive(Debug)]
pub struct HostState {
    pub router: Router,
    pub metrics: Metrics,
    pub freshness: Freshness,
}

impl HostState {
    /// The host's state, made once, living as long as the process;
    /// `max_behind` is how long it may lag its store before `/health` says
    /// `degraded`.
    pub fn leak(router: Router, max_behind: Duration) -> &'static HostState {
        Box::leak(Box::new(HostState { router, metrics: Metrics::default(), freshness: Freshness::new(max_behind) }))
    }

    /// `/health`: `unavailable` (503) without a snapshot; `degraded` (200)
    /// when the store has named another snapshot, or could not be read, for
    /// longer than the `max_behind` allowance; `ok` otherwise.
    pub fn health(&self) -> Health {
        let Some(live) = self.router.live() else {
            let lag = self.freshness.lock();
            let why = lag.behind_why.clone().or_else(|| lag.unreadable_why.clone());
            let why = why.unwrap_or_else(|| "nothing published yet".into());
            return Health {
                state: HealthState::Unavailable,
                detail: format!("no snapshot to serve yet (answering 503): {why}"),
            };
        };
        let serving = format!("serving {} ({} routes)", live.id, live.route_count());
        let lag = self.freshness.lock();
        let now = Instant::now();
        let over = |since: Option<Instant>| since.map(|t| now - t).filter(|d| *d > self.freshness.max_behind);
        let behind_since = lag.behind(Some(&live));
        if let (Some(behind), Some(wanted)) = (over(behind_since), &lag.wanted) {
            let why = lag.behind_why.as_deref().unwrap_or("no reason known");
            return Health {
                state: HealthState::Degraded,
                detail: format!("the store has named {wanted} for {} s, still {serving}: {why}", behind.as_secs()),
            };
        }
        if let Some(unread) = over(lag.unreadable_since) {
            let why = lag.unreadable_why.as_deref().unwrap_or("no reason known");
            return Health {
                state: HealthState::Degraded,
                detail: format!("cannot read the store for {} s, still {serving}: {why}", unread.as_secs()),
            };
        }
        Health::ok(serving)
    }
}

/// How the host stands with its store: since when the store has named a
/// snapshot the host does not serve, since when its pointer cannot be read,
/// and why. Written by the follower, read by `/health` and `/metrics`.
#[derive(Debug)]
pub struct Freshness {
    lag: Mutex<Lag>,
    /// How long the host may lag before `/health` says `degraded`.
    pub max_behind: Duration,
}

/// See [`Freshness`].
#[derive(Clone, Debug, Default)]
pub struct Lag {
    /// When the store began to name a snapshot other than the one served.
    pub behind_since: Option<Instant>,
    /// The snapshot the store names, while the host is behind.
    pub wanted: Option<String>,
    /// Why the host is behind (the last failure to fetch `wanted`).
    pub behind_why: Option<String>,
    /// When reads of the store's pointer began to fail.
    pub unreadable_since: Option<Instant>,
    /// Why the pointer cannot be read (the last failure).
    pub unreadable_why: Option<String>,
}

impl Lag {
    /// Since when a host serving `live` has been behind: never while it
    /// serves what the store names (the swap is seen a moment before the
    /// follower marks the host caught up).
    fn behind(&self, live: Option<&Live>) -> Option<Instant> {
        let serves_it = live.is_some_and(|live| self.wanted.as_deref().is_some_and(|w| live.id == w));
        self.behind_since.filter(|_| !serves_it)
    }
}

impl Freshness {
    fn new(max_behind: Duration) -> Freshness {
        Freshness { lag: Mutex::new(Lag::default()), max_behind }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lag> {
        self.lag.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the current lag.
    pub fn lag(&self) -> Lag {
        self.lock().clone()
    }

    /// The store names `wanted`, which the host does not serve, because of
    /// `why`; the lag counts from the first such moment.
    pub fn behind(&self, wanted: &str, why: String) {
        let mut lag = self.lock();
        lag.behind_since.get_or_insert_with(Instant::now);
        lag.wanted = Some(wanted.to_owned());
        lag.behind_why = Some(why);
    }

    /// The store names `wanted`, which the host does not serve: the lag
    /// counts from the first such moment; the reason is kept if it is
    /// `wanted`'s (the last failure's), else it becomes `why()`.
    pub fn behind_since_now(&self, wanted: &str, why: impl FnOnce() -> String) {
        let mut lag = self.lock();
        lag.behind_since.get_or_insert_with(Instant::now);
        if lag.wanted.as_deref() != Some(wanted) || lag.behind_why.is_none() {
            lag.wanted = Some(wanted.to_owned());
            lag.behind_why = Some(why());
        }
    }

    /// The host serves what the store names.
    pub fn caught_up(&self) {
        let mut lag = self.lock();
        lag.behind_since = None;
        lag.wanted = None;
        lag.behind_why = None;
    }

    /// The store's pointer could not be read.
    pub fn unreadable(&self, why: String) {
        let mut lag = self.lock();
        lag.unreadable_since.get_or_insert_with(Instant::now);
        lag.unreadable_why = Some(why);
    }

    /// The store's pointer was read.
    pub fn readable(&self) {
        let mut lag = self.lock();
        lag.unreadable_since = None;
        lag.unreadable_why = None;
    }

    /// Seconds the host serving `live` has been behind its store (0 when it
    /// is not).
    pub fn behind_seconds(&self, live: Option<&Live>) -> f64 {
        self.lock().behind(live).map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Whether `/health` of a host serving `live` says `degraded` (lagging
    /// past the allowance).
    pub fn degraded(&self, live: Option<&Live>) -> bool {
        let lag = self.lock();
        let over = |since: Option<Instant>| since.is_some_and(|t| t.elapsed() > self.max_behind);
        live.is_some() && (over(lag.behind(live)) || over(lag.unreadable_since))
    }
}
