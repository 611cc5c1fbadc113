//! `edgeroute watch`: publish a new snapshot on every change to the table.
//!
//! The watcher keeps a mirror of the table in memory, fed by the table's
//! DynamoDB Stream, and after each burst of changes (debounced) compiles
//! the mirror and publishes it. Bootstrap loses nothing: the stream
//! positions are taken first (`LATEST` on every open shard), then the
//! table is scanned, then the stream is applied from those positions;
//! records are keyed by Domain, so applying one the Scan already saw is
//! harmless. Shards are followed along their lineage (`lineage.rs`):
//! closed shards listed at bootstrap are never read, and a child is read
//! only after its parent was read to its end; an iterator that expires is
//! renewed after the last record read; data the stream has trimmed before
//! it was read, or a shard of unknown lineage, forces a new bootstrap. A table
//! without a stream is scanned periodically instead, and the log says so.
//!
//! Bad rows are left out of the snapshot and reported (a log line each
//! time the set changes, and a count in the pointer); they never block the
//! rest. Every publish logs its change-to-publish latency in stages.

use std::borrow::Cow;
use std::collections::HashMap;
mod checkpoint;
mod layers;
mod status;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, ShardIteratorType, StreamStatus};
use edgeroute_store::{LeaseRole, Store};
use tracing::{error, info, warn};

use crate::aws::{describe, retried, RetryPolicy};
use crate::elb;
use crate::lease::{HeldLease, LeaseError, LeaseOptions};
use crate::lineage::{Lineage, ListedShard};
use crate::publish::{self, publish_fenced, DropGuard, PublishError, Published};
use crate::scan::{scan_table, ScanOptions};
pub use checkpoint::{encode_items, ItemsKind};
use edgeroute_compiler::elb::{apply_origins, arns_without_origin, Origins};
use edgeroute_compiler::entry::ItemErrorKind;
use edgeroute_compiler::item::{dynamodb_type_name, Location, RawItem, Value};
use edgeroute_compiler::mirror::{table_key, Mirror};
pub use layers::{CompactionPolicy, COMPACT_AT_LAYERS, FAN_IN, MIN_AUTO_BYTES};
pub use status::{Phase, WatchStatus};

/// How to watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Quiet time after a change before compiling: a burst becomes one publish.
    pub debounce: Duration,
    /// A burst that never goes quiet is published after this long anyway.
    pub max_delay: Duration,
    /// Pause between polls of the stream when it had nothing new.
    pub idle_poll: Duration,
    /// Without a stream: how often to scan.
    pub scan_interval: Duration,
    /// How often to list the stream's shards for new ones (soon after a
    /// shard ends, too).
    pub describe_interval: Duration,
    pub scan: ScanOptions,
    pub retry: RetryPolicy,
    /// Hears about every publish (for benchmarks and embedding).
    pub reports: Option<tokio::sync::mpsc::UnboundedSender<PublishReport>>,
    /// How much of the live table one publish may drop (`--max-drop`).
    pub drop_guard: DropGuard,
    /// The store's lease: how long it holds, how often it is renewed.
    pub lease: LeaseOptions,
    /// The wait before bootstrapping again after an error.
    pub backoff: Backoff,
    /// When the layers are compacted into a new base.
    pub compaction: CompactionPolicy,
    /// How much history the watcher keeps (`None`: it never prunes).
    pub retention: Option<Retention>,
    /// What the admin listener reports.
    pub status: Arc<WatchStatus>,
}

/// One publish and how long its stages took.
#[derive(Clone, Debug)]
pub struct PublishReport {
    /// The state's id.
    pub id: String,
    pub routes: u64,
    pub skipped: u64,
    /// Layers on its base (0: a new base).
    pub layers: usize,
    /// How old the oldest change of the burst was when it was read from the stream.
    pub stream_delay: Duration,
    /// From reading that change to starting the compile.
    pub debounce: Duration,
    /// Writing the layer, or the whole snapshot.
    pub compile: Duration,
    pub upload: Duration,
    /// When the pointer was moved (before its history entry was written).
    pub published_at: Instant,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            idle_poll: Duration::from_millis(100),
            scan_interval: Duration::from_secs(30),
            describe_interval: Duration::from_secs(10),
            scan: ScanOptions::default(),
            retry: RetryPolicy::default(),
            reports: None,
            drop_guard: DropGuard::default(),
            lease: LeaseOptions::named("watch"),
            backoff: Backoff::default(),
            compaction: CompactionPolicy::default(),
            retention: Some(Retention::default()),
            status: Arc::default(),
        }
    }
}

/// How much history a watcher keeps: at 10 changes a second a store
/// gains 864,000 states a day. Every `every`, it prunes the history to
/// the newest `keep` states and the objects nothing kept names
/// ([`publish::prune_history`]), never touching anything younger than
/// `grace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub keep: usize,
    pub grace: Duration,
    pub every: Duration,
}

impl Default for Retention {
    /// The newest 1,000 states, and everything of the last 10 minutes, every minute.
    fn default() -> Retention {
        Retention { keep: 1000, grace: publish::PRUNE_GRACE, every: Duration::from_secs(60) }
    }
}

/// Why the watcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("table {table:?} does not exist (in this account, region and endpoint)")]
    NoTable { table: String },
    #[error("cannot describe table {table:?}: {why}")]
    Describe { table: String, why: String },
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    #[error("stream {stream}: {why}")]
    Stream { stream: String, why: String },
    #[error(transparent)]
    Publish(#[from] crate::publish::PublishError),
    #[error(transparent)]
    Elb(#[from] elb::ElbError),
    #[error("{0}")]
    LeaseLost(String),
    /// Failing for long with the lease held: it is given up for a standby.
    #[error("{0}")]
    GivingUp(String),
    #[error("stream {stream}: {NO_NEW_IMAGE}")]
    NoNewImage { stream: String },
}

impl WatchError {
    /// Whether the watcher stops on this error rather than bootstrap again:
    /// a stream without new images (a setting to change), and before the
    /// first bootstrap a table that does not exist or is not a routing
    /// table (a typo fails fast). Once it has run, every other error may
    /// pass (a table recreated, a permission restored).
    fn is_fatal(&self, has_run: bool) -> bool {
        use crate::scan::ScanError;
        match self {
            WatchError::NoNewImage { .. } => true,
            WatchError::NoTable { .. } | WatchError::Scan(ScanError::NoSuchTable { .. } | ScanError::Key { .. }) => {
                !has_run
            }
            _ => false,
        }
    }

    /// Its cause, as the restart counter labels it (one of [`status::CAUSES`]).
    fn cause(&self) -> &'static str {
        match self {
            WatchError::NoTable { .. } | WatchError::Describe { .. } => "describe_table",
            WatchError::Scan(_) => "scan",
            WatchError::Stream { .. } | WatchError::NoNewImage { .. } => "stream",
            WatchError::Publish(_) | WatchError::LeaseLost(_) | WatchError::GivingUp(_) => "store",
            WatchError::Elb(_) => "elb",
        }
    }
}

/// What a stream without new images is told.
const NO_NEW_IMAGE: &str = "records carry no new image: set the stream's view type to NEW_IMAGE or NEW_AND_OLD_IMAGES";

/// One open shard being read.
#[derive(Debug)]
struct Shard {
    id: String,
    iterator: Option<String>,
    /// The last record read, to renew an expired iterator after it.
    last_sequence: Option<String>,
    /// Opened at `LATEST` (at bootstrap): before its first record, an
    /// expired iterator cannot be renewed at the same position.
    from_latest: bool,
}

/// A burst of changes waiting to be published.
#[derive(Debug, Clone, Copy)]
struct Pending {
    first_seen: Instant,
    last_seen: Instant,
    /// The oldest change's age when it was read (the stream's own delay).
    stream_delay: Duration,
}

/// Watches `table` and publishes to `store` until `shutdown` completes
/// (then gives the store's lease back) or an error it cannot recover from
/// happens.
///
/// It publishes only while it holds the store's lease (`lease.rs`): it
/// stands by while another writer holds it, and when the lease is taken
/// from it (a forced manual write, or a standby after this one stalled)
/// it stands by again, takes the lease when it is free and mirrors the
/// table again.
pub async fn watch(
    config: &SdkConfig,
    table: &str,
    store: &Store,
    options: &WatchOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WatchError> {
    let lost = Arc::new(AtomicBool::new(false));
    let lease_until = Arc::new(AtomicU64::new(0));
    let mut publisher = Publisher {
        config,
        store,
        table,
        origins: Origins::new(),
        retry: options.retry,
        last_bad: 0,
        reports: options.reports.clone(),
        drop_guard: options.drop_guard,
        generation: 0,
        lease_lost: lost.clone(),
        lease_until: lease_until.clone(),
        last_published: None,
        taken_back: false,
        bootstraps: 0,
        failures: 0,
        failures_at_cap: 0,
        status: options.status.clone(),
        state: None,
        compaction: None,
        compaction_retry_at: None,
        compaction_policy: options.compaction,
        moved_at: None,
        checkpoint: None,
        retention: options.retention,
        last_prune: Instant::now(),
        known_entries: publish::KnownEntries::new(),
        burst_items: checkpoint::ItemSet::new(),
        positions: checkpoint::Positions::default(),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let mut lease = tokio::select! {
            lease = stand_by(store, &options.lease, &options.status) => lease,
            () = &mut shutdown => return Ok(()),
        };
        options.status.lease(Some(lease.generation()));
        lost.store(false, Ordering::SeqCst);
        lease_until.store(lease.expires_at_ms(), Ordering::SeqCst);
        publisher.generation = lease.generation();
        // Fence off the lease's previous holders at once, not only from this
        // watcher's first publish on: a stalled watcher that wakes finds a
        // pointer of a higher generation even if this one has nothing new to
        // write (the table unchanged since its pointer).
        match publish::claim(store, lease.generation()).await {
            Ok(()) => {}
            Err(PublishError::Fenced { current, .. }) => {
                warn!("the pointer already carries generation {current}: another writer took the lease meanwhile");
                options.status.lease_lost();
                publisher.taken_back = true;
                give_back(store, lease).await;
                continue;
            }
            Err(e) => warn!("cannot mark the pointer with this lease's generation yet ({e}); its first publish will"),
        }
        let end = {
            let mut follow = std::pin::pin!(follow_table(config, table, options, &mut publisher));
            let mut keep =
                std::pin::pin!(keep_lease(store, &mut lease, options.lease.renew_every, &lost, &lease_until));
            tokio::select! {
                end = &mut follow => end,
                () = &mut keep => unreachable!("it never ends"),
                () = &mut shutdown => {
                    // Stop cooperatively: no new publish starts, and one under
                    // way finishes (its pointer and history entry both written).
                    lost.store(true, Ordering::SeqCst);
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut follow).await;
                    Ok(())
                }
            }
        };
        match end {
            Ok(()) => {
                give_back(store, lease).await;
                return Ok(());
            }
            Err(WatchError::LeaseLost(why)) => {
                options.status.lease_lost();
                options.status.phase(Phase::StandingBy { holder: "another writer".into() });
                warn!("lost the store's lease: {why}; publishing stops until this watcher holds it again");
                publisher.taken_back = true;
                // Given back if it is still this watcher's after all (a
                // renewal that committed late): nobody waits for it to expire.
                give_back(store, lease).await;
            }
            Err(WatchError::GivingUp(why)) => {
                options.status.lease(None);
                warn!("giving the store's lease up ({why}): a standby watcher may do better; standing by");
                give_back(store, lease).await;
                publisher.taken_back = true;
                // Long enough for a standby to take it first.
                tokio::select! {
                    () = tokio::time::sleep(options.lease.renew_every + Duration::from_millis(100)) => {}
                    () = &mut shutdown => return Ok(()),
                }
            }
            Err(e) => {
                give_back(store, lease).await;
                return Err(e);
            }
        }
    }
}

/// Gives the lease back on the way out, so that a standby or the next
/// command need not wait for it to expire.
async fn give_back(store: &Store, lease: HeldLease) {
    match lease.release(store).await {
        Ok(_) => {}
        Err(e) => warn!("cannot give the store's lease back ({e}); it expires on its own"),
    }
}

/// Waits until the store's lease is free and takes it.
async fn stand_by(store: &Store, options: &LeaseOptions, status: &WatchStatus) -> HeldLease {
    let mut said = None;
    loop {
        let wait = match HeldLease::take(store, LeaseRole::Watcher, options, false).await {
            Ok(lease) => {
                info!("took the store's lease (generation {})", lease.generation());
                return lease;
            }
            Err(LeaseError::Held { lease, remaining }) => {
                status.phase(Phase::StandingBy { holder: lease.holder.clone() });
                if said.as_ref() != Some(&lease.token) {
                    info!(
                        "the store is leased to {} (generation {}): standing by until it is free",
                        lease.holder, lease.generation
                    );
                    said = Some(lease.token);
                }
                remaining.clamp(Duration::from_millis(10), options.renew_every)
            }
            Err(e) => {
                warn!(cause = "store", "cannot take the store's lease ({e}); trying again");
                status.lease_error();
                status.phase(Phase::BackingOff { cause: "store", why: format!("cannot take the store's lease: {e}") });
                options.renew_every
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Renews the lease every `every` while the watcher runs (and records
/// until when it holds in `until`); when it is lost (taken by another
/// writer, or run out while the store could not be reached, a renewal
/// that hangs included) it raises `lost`, which stops every publish, and
/// waits.
async fn keep_lease(store: &Store, lease: &mut HeldLease, every: Duration, lost: &AtomicBool, until: &AtomicU64) {
    loop {
        tokio::time::sleep(every).await;
        let renewed = tokio::time::timeout(lease.remaining(), lease.renew(store)).await;
        match renewed {
            Ok(Ok(())) => {
                until.store(lease.expires_at_ms(), Ordering::SeqCst);
                continue;
            }
            Ok(Err(LeaseError::Lost { by })) => {
                warn!("the store's lease was taken by {} (generation {})", by.holder, by.generation);
                break;
            }
            Ok(Err(e)) if lease.holds() => warn!("cannot renew the store's lease ({e}); trying again"),
            Ok(Err(e)) => {
                warn!("cannot renew the store's lease ({e}), and it has run out");
                break;
            }
            Err(_) => {
                warn!("renewing the store's lease took longer than the lease: it has run out");
                break;
            }
        }
    }
    lost.store(true, Ordering::SeqCst);
    std::future::pending().await
}

/// How long to wait before bootstrapping again after an error: `first`,
/// doubling on every failure in a row up to `max`; a bootstrap that
/// completes starts the count again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` failures in a row (the first is 0).
    pub fn after(&self, failures: u32) -> Duration {
        self.first.saturating_mul(1u32 << failures.min(20)).min(self.max)
    }
}

impl Default for Backoff {
    /// 1 s, doubling up to a minute.
    fn default() -> Backoff {
        Backoff { first: Duration::from_secs(1), max: Duration::from_secs(60) }
    }
}

/// Mirrors the table and publishes on every change until the lease is
/// lost or an error it cannot survive. Every other error (a Scan still
/// throttled after its retries, ELB throttling, the stream's errors, the
/// store down) starts a new bootstrap after a capped backoff, logged and
/// counted by cause.
async fn follow_table(
    config: &SdkConfig,
    table: &str,
    options: &WatchOptions,
    publisher: &mut Publisher<'_>,
) -> Result<(), WatchError> {
    // The counts live in the publisher: a watcher that gave its lease up
    // and took it back goes on at the longest backoff.
    loop {
        let (bootstraps, started) = (publisher.bootstraps, Instant::now());
        let restart = match mirror_and_follow(config, table, options, publisher).await {
            Ok(restart) => restart,
            Err(e @ WatchError::LeaseLost(_)) => return Err(e),
            Err(e) if e.is_fatal(publisher.bootstraps > 0) => return Err(e),
            Err(e) => Restart { cause: e.cause(), why: e.to_string() },
        };
        // The count starts again only after a bootstrap that then ran well
        // for a while: one that fails at once again must not Scan the whole
        // table every `first`.
        if publisher.bootstraps > bootstraps && started.elapsed() >= options.backoff.max {
            (publisher.failures, publisher.failures_at_cap) = (0, 0);
        }
        let wait = options.backoff.after(publisher.failures);
        publisher.failures = publisher.failures.saturating_add(1);
        options.status.restarted(restart.cause);
        if wait >= options.backoff.max {
            publisher.failures_at_cap += 1;
            if publisher.failures_at_cap > GIVE_UP_AFTER {
                publisher.failures_at_cap = 0;
                warn!(cause = restart.cause, "{}", restart.why);
                return Err(WatchError::GivingUp(format!(
                    "{GIVE_UP_AFTER} bootstraps in a row failed at the longest backoff; the last: {}",
                    restart.why
                )));
            }
        }
        warn!(cause = restart.cause, "{}; mirroring the table again in {:.1} s", restart.why, wait.as_secs_f64());
        options.status.phase(Phase::BackingOff { cause: restart.cause, why: restart.why });
        tokio::time::sleep(wait).await;
        if publisher.lease_lost.load(Ordering::SeqCst) {
            return Err(WatchError::LeaseLost("another writer holds it now".into()));
        }
    }
}

/// Empty pages in a row after which a shard read again after a resume
/// counts as caught up.
const CAUGHT_UP_AFTER: u8 = 3;

/// Failures in a row at the longest backoff after which a watcher gives
/// its lease up, so that a standby (in another zone, with other
/// credentials) may take over; alone, it takes the lease back.
const GIVE_UP_AFTER: u32 = 5;

/// One bootstrap: stream positions, Scan, publish, then the stream until
/// it asks for a new bootstrap ([`Restart`]) or an error.
async fn mirror_and_follow(
    config: &SdkConfig,
    table: &str,
    options: &WatchOptions,
    publisher: &mut Publisher<'_>,
) -> Result<Restart, WatchError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let streams = aws_sdk_dynamodbstreams::Client::new(config);
    options.status.phase(Phase::Bootstrapping);
    let described =
        retried(&options.retry, || dynamodb.describe_table().table_name(table).send()).await.map_err(|f| {
            match f.error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) {
                true => WatchError::NoTable { table: table.to_owned() },
                false => WatchError::Describe { table: table.to_owned(), why: describe(&f.error) },
            }
        })?;
    let description = described.table.unwrap_or_else(|| aws_sdk_dynamodb::types::TableDescription::builder().build());
    let stream = description
        .latest_stream_arn()
        .filter(|_| description.stream_specification().is_some_and(|s| s.stream_enabled()))
        .map(str::to_owned);
    let Some(stream) = stream else {
        warn!(
            "table {table} has no stream (enable one with NEW_IMAGE or NEW_AND_OLD_IMAGES); falling back to a Scan every {} s",
            options.scan_interval.as_secs_f64()
        );
        return scan_periodically(config, table, options, publisher).await;
    };
    let table_arn = description.table_arn().map(str::to_owned);
    if let Some(arn) = &table_arn {
        if let Some((mut mirror, mut following)) =
            checkpoint::resume(&streams, arn, &stream, options, publisher).await?
        {
            publisher.bootstraps += 1;
            options.status.bootstrapped();
            options.status.phase(Phase::Following);
            return read_shards(&streams, &mut following, &mut mirror, options, publisher).await;
        }
    }
    // Positions first, then the Scan, then the stream from those positions.
    let listed = list_shards(&streams, &stream, &options.retry).await?;
    let (lineage, latest) = Lineage::bootstrap(&listed);
    let mut shards = Vec::with_capacity(latest.len());
    for id in latest {
        let iterator = iterator_for(&streams, &stream, &id, ShardIteratorType::Latest, None, &options.retry).await?;
        shards.push(Shard { id, iterator: Some(iterator), last_sequence: None, from_latest: true });
    }
    let start = Instant::now();
    // Strongly consistent whatever `--consistent` says: the Scan reads
    // the table after the stream positions were taken, and an eventually
    // consistent read could miss a write made in between, which the
    // stream, read from those positions, would not replay either.
    let bootstrap = ScanOptions { consistent: true, ..options.scan };
    let scanned = scan_table(config, table, &bootstrap, &()).await?;
    let mut mirror = Mirror::new();
    let items: Vec<RawItem<'static>> = scanned.items.into_iter().filter_map(|(_, item)| item.ok()).collect();
    // The items as written, for the checkpoint.
    publisher.burst_items.clear();
    publisher.admit(&mut mirror, items, true).await?;
    info!(
        "mirrored {table}: {} items in {:.2} s; following {} shard(s) of {stream}",
        mirror.len(),
        start.elapsed().as_secs_f64(),
        shards.len()
    );
    publisher.publish(&mut mirror, None).await?;
    publisher.bootstraps += 1;
    options.status.bootstrapped();
    options.status.phase(Phase::Following);
    let mut following = Following { stream: stream.clone(), shards, lineage, replaying: Default::default() };
    publisher.positions = following.positions();
    if let Some(arn) = &table_arn {
        publisher.begin_checkpoint(arn, &stream).await;
    }
    read_shards(&streams, &mut following, &mut mirror, options, publisher).await
}

/// Why the stream asks for a new bootstrap.
struct Restart {
    /// One of [`status::CAUSES`].
    cause: &'static str,
    why: String,
}

/// The stream being followed: the shards being read, and their lineage
/// (`lineage.rs`: which shards to read, and when).
struct Following {
    stream: String,
    shards: Vec<Shard>,
    lineage: Lineage,
    /// Shards read again after a resume (from their start, when their
    /// position was not known; from their positions, when the store may be
    /// ahead of the checkpoint), with the empty pages each has returned in
    /// a row: nothing is published until each has caught up.
    replaying: std::collections::HashMap<String, u8>,
}

impl Following {
    /// Where each shard is, for the checkpoint.
    fn positions(&self) -> checkpoint::Positions {
        use checkpoint::{ShardPosition, ShardProgress};
        let (shards, childless) = self.lineage.export();
        let positions = shards
            .into_iter()
            .map(|(id, state)| {
                let open = self.shards.iter().find(|s| s.id == id);
                let (state, parent) = match state {
                    Some(None) => (ShardProgress::Reading, None),
                    Some(Some(parent)) => (ShardProgress::Waiting, Some(parent)),
                    None => (ShardProgress::Done, None),
                };
                let after = open.and_then(|s| s.last_sequence.clone());
                let from_latest = open.is_some_and(|s| s.from_latest) && after.is_none();
                ShardPosition { id, parent, state, after, from_latest }
            })
            .collect();
        checkpoint::Positions { shards: positions, childless, at_ms: checkpoint::now_ms() }
    }

    /// Starts reading `ids` from `TRIM_HORIZON` (children of shards read to their end).
    async fn start(
        &mut self,
        streams: &aws_sdk_dynamodbstreams::Client,
        ids: Vec<String>,
        retry: &RetryPolicy,
    ) -> Result<(), WatchError> {
        for id in ids {
            let iterator =
                iterator_for(streams, &self.stream, &id, ShardIteratorType::TrimHorizon, None, retry).await?;
            info!("following new shard {id}");
            self.shards.push(Shard { id, iterator: Some(iterator), last_sequence: None, from_latest: false });
        }
        Ok(())
    }
}

/// Reads every shard in turn, applies its records to the mirror, and
/// publishes after each debounced burst.
async fn read_shards(
    streams: &aws_sdk_dynamodbstreams::Client,
    following: &mut Following,
    mirror: &mut Mirror,
    options: &WatchOptions,
    publisher: &mut Publisher<'_>,
) -> Result<Restart, WatchError> {
    let stream = following.stream.clone();
    let stream = stream.as_str();
    let mut pending: Option<Pending> = None;
    let mut retry_at: Option<Instant> = None;
    let mut last_describe = Instant::now();
    loop {
        if publisher.lease_lost.load(Ordering::SeqCst) {
            return Err(WatchError::LeaseLost("another writer holds it now".into()));
        }
        let mut read_any = false;
        let mut closed = Vec::new();
        for shard in following.shards.iter_mut() {
            let Some(iterator) = shard.iterator.clone() else { continue };
            let answer = retried(&options.retry, || streams.get_records().shard_iterator(&iterator).send()).await;
            let out = match answer {
                Ok(out) => out,
                Err(f) if f.error.as_service_error().is_some_and(|e| e.is_expired_iterator_exception()) => {
                    let kind = match (&shard.last_sequence, shard.from_latest) {
                        (Some(_), _) => ShardIteratorType::AfterSequenceNumber,
                        // From its start again: its records are replayed in order.
                        (None, false) => ShardIteratorType::TrimHorizon,
                        // The position taken before the Scan is lost; from
                        // the start, records older than the Scan would be
                        // published over it.
                        (None, true) => {
                            return Ok(Restart {
                                cause: "stream",
                                why: format!(
                                "the iterator of shard {} expired before a record was read, and its position with it",
                                shard.id
                            ),
                            })
                        }
                    };
                    shard.iterator = Some(
                        iterator_for(streams, stream, &shard.id, kind, shard.last_sequence.as_deref(), &options.retry)
                            .await?,
                    );
                    continue;
                }
                Err(f) if f.error.as_service_error().is_some_and(|e| e.is_trimmed_data_access_exception()) => {
                    return Ok(Restart {
                        cause: "stream_trimmed",
                        why: format!("shard {} trimmed records before they were read", shard.id),
                    });
                }
                Err(f) => {
                    // Past its retries: start over rather than give up (the mirror is rebuilt).
                    return Ok(Restart {
                        cause: "stream",
                        why: format!("reading shard {}: {}", shard.id, describe(&f.error)),
                    });
                }
            };
            let now = SystemTime::now();
            for record in out.records() {
                let Some(change) = record.dynamodb() else { continue };
                if let Some(seq) = change.sequence_number() {
                    shard.last_sequence = Some(seq.to_owned());
                }
                let Some(AttributeValue::S(domain)) = change.keys().and_then(|k| k.get("Domain")) else { continue };
                match record.event_name() {
                    Some(OperationType::Remove) => {
                        mirror.set(domain, None);
                        publisher.burst_items.insert(domain.clone(), None);
                    }
                    _ => match change.new_image() {
                        Some(image) => publisher.admit(mirror, vec![stream_item(image)], true).await?,
                        None => return Err(WatchError::NoNewImage { stream: stream.to_owned() }),
                    },
                }
                let delay = change
                    .approximate_creation_date_time()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default();
                let at = Instant::now();
                pending = Some(match pending {
                    None => Pending { first_seen: at, last_seen: at, stream_delay: delay },
                    Some(p) => Pending { last_seen: at, stream_delay: p.stream_delay.max(delay), ..p },
                });
                read_any = true;
                publisher.status.records(1);
            }
            shard.iterator = out.next_shard_iterator().map(str::to_owned);
            // Caught up (or ended): its replay no longer holds publishes back.
            // One empty page is not enough: a shard may answer empty pages
            // before records that follow.
            if let Some(empty) = following.replaying.get_mut(&shard.id) {
                *empty = if out.records().is_empty() { empty.saturating_add(1) } else { 0 };
                if *empty >= CAUGHT_UP_AFTER || shard.iterator.is_none() {
                    following.replaying.remove(&shard.id);
                }
            }
            if shard.iterator.is_none() {
                closed.push(shard.id.clone());
            }
        }
        // A shard read to its end: its children (already listed) may be read now.
        following.shards.retain(|s| s.iterator.is_some());
        for id in &closed {
            let ready = following.lineage.finished(id);
            following.start(streams, ready, &options.retry).await?;
        }
        publisher.status.shards(following.shards.len());
        // New shards: list them after a shard ends (soon, until its
        // children show) and every `describe_interval`.
        let describe_every = match following.lineage.awaits_children() {
            true => options.describe_interval.min(Duration::from_secs(1)),
            false => options.describe_interval,
        };
        if !closed.is_empty() || last_describe.elapsed() >= describe_every {
            last_describe = Instant::now();
            let listed = list_shards(streams, stream, &options.retry).await?;
            let found = following.lineage.discover(&listed);
            if let Some((shard, parent)) = found.unknown.first() {
                let parent = parent.as_deref().unwrap_or("none");
                return Ok(Restart {
                    cause: "stream_lineage",
                    why: format!(
                        "shard {shard} appeared whose parent ({parent}) this watcher does not know, so its records cannot be ordered"
                    ),
                });
            }
            following.start(streams, found.start, &options.retry).await?;
        }
        if let Some(p) = pending {
            let now = Instant::now();
            let due = now.duration_since(p.last_seen) >= options.debounce
                || now.duration_since(p.first_seen) >= options.max_delay;
            if due && retry_at.is_none_or(|at| now >= at) && following.replaying.is_empty() {
                match publisher.publish(mirror, Some(p)).await {
                    Ok(()) => {
                        pending = None;
                        retry_at = None;
                        // Only a mirror the store holds all of is checkpointed
                        // (not one whose changes the drop guard held back).
                        if mirror.is_settled() {
                            publisher.checkpoint_burst(following.positions()).await;
                        }
                    }
                    Err(e @ WatchError::LeaseLost(_)) => return Err(e),
                    // The store may come back: keep the changes and try again shortly.
                    Err(e) => {
                        publisher.status.publish_failed();
                        error!("cannot publish ({e}); trying again in 1 s");
                        retry_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
            }
        }
        // Between bursts, and while one gathers (its debounce not over):
        // merges and compactions of the layers, one write at most. Not only
        // when nothing is pending: under a steady rate of changes there is
        // always a burst gathering, and merges of every tier past the first
        // would wait for a pause that never comes.
        let gathering = pending.as_ref().is_some_and(|p| {
            let now = Instant::now();
            now.duration_since(p.last_seen) < options.debounce && now.duration_since(p.first_seen) < options.max_delay
        });
        if pending.is_none() || gathering {
            match publisher.tidy().await {
                Ok(()) => {}
                Err(e @ WatchError::LeaseLost(_)) => return Err(e),
                Err(e) => warn!("cannot tidy the layers ({e}); trying again after the next change"),
            }
        }
        if !read_any {
            tokio::time::sleep(options.idle_poll.min(options.debounce)).await;
        }
    }
}

/// Every shard of the stream, as DescribeStream lists them (all pages).
async fn list_shards(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream: &str,
    retry: &RetryPolicy,
) -> Result<Vec<ListedShard>, WatchError> {
    let mut shards = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let out = retried(retry, || {
            streams.describe_stream().stream_arn(stream).set_exclusive_start_shard_id(start.clone()).send()
        })
        .await
        .map_err(|f| WatchError::Stream { stream: stream.to_owned(), why: describe(&f.error) })?;
        let Some(description) = out.stream_description else { break };
        // A disabled stream gets no new records (nor children for its
        // shards): bootstrap again, which finds the table's new stream, or
        // none and scans.
        if let Some(status @ (StreamStatus::Disabled | StreamStatus::Disabling)) = description.stream_status() {
            return Err(WatchError::Stream { stream: stream.to_owned(), why: format!("the stream is {status}") });
        }
        for shard in description.shards() {
            let Some(id) = shard.shard_id() else { continue };
            shards.push(ListedShard {
                id: id.to_owned(),
                parent: shard.parent_shard_id().map(str::to_owned),
                closed: shard.sequence_number_range().is_some_and(|r| r.ending_sequence_number().is_some()),
            });
        }
        match description.last_evaluated_shard_id() {
            Some(last) => start = Some(last.to_owned()),
            None => break,
        }
    }
    Ok(shards)
}

async fn iterator_for(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream: &str,
    shard: &str,
    kind: ShardIteratorType,
    after: Option<&str>,
    retry: &RetryPolicy,
) -> Result<String, WatchError> {
    let out = retried(retry, || {
        streams
            .get_shard_iterator()
            .stream_arn(stream)
            .shard_id(shard)
            .shard_iterator_type(kind.clone())
            .set_sequence_number(after.map(str::to_owned))
            .send()
    })
    .await
    .map_err(|f| WatchError::Stream { stream: stream.to_owned(), why: describe(&f.error) })?;
    out.shard_iterator
        .ok_or_else(|| WatchError::Stream { stream: stream.to_owned(), why: format!("no iterator for shard {shard}") })
}

/// Without a stream: a full Scan every interval, published when it differs.
async fn scan_periodically(
    config: &SdkConfig,
    table: &str,
    options: &WatchOptions,
    publisher: &mut Publisher<'_>,
) -> Result<Restart, WatchError> {
    loop {
        let scanned = scan_table(config, table, &options.scan, &()).await?;
        let mut mirror = Mirror::new();
        publisher
            .admit(&mut mirror, scanned.items.into_iter().filter_map(|(_, item)| item.ok()).collect(), false)
            .await?;
        publisher.publish(&mut mirror, None).await?;
        publisher.bootstraps += 1;
        options.status.bootstrapped();
        options.status.phase(Phase::Scanning);
        tokio::time::sleep(options.scan_interval).await;
    }
}

/// Compiles the mirror and publishes it, and says how long it all took.
struct Publisher<'a> {
    config: &'a SdkConfig,
    store: &'a Store,
    table: &'a str,
    /// ELB ARNs resolved so far (asked once per watcher, not per publish).
    origins: Origins,
    retry: RetryPolicy,
    last_bad: usize,
    reports: Option<tokio::sync::mpsc::UnboundedSender<PublishReport>>,
    drop_guard: DropGuard,
    /// The generation of the lease held: every pointer written carries it.
    generation: u64,
    /// Raised when the lease is lost: nothing more is published.
    lease_lost: Arc<AtomicBool>,
    /// Until when the lease holds by this watcher's record (ms since
    /// 1970): past it, nothing is published even if no renewal said so.
    lease_until: Arc<AtomicU64>,
    /// The last snapshot this watcher made current (or found current).
    last_published: Option<String>,
    /// The lease was taken from this watcher and it has it back: until its
    /// first publish, the table's state is published only if it changed
    /// since this watcher last published it (a forced publish lasts until
    /// the table's next change).
    taken_back: bool,
    /// Bootstraps completed (the table mirrored and published).
    bootstraps: u64,
    /// Bootstraps failed in a row, and of them at the longest backoff.
    failures: u32,
    failures_at_cap: u32,
    status: Arc<WatchStatus>,
    /// The state this watcher published last, while the store holds it:
    /// the next change is a layer on it.
    state: Option<layers::Published>,
    /// A compaction of that state under way.
    compaction: Option<layers::Compaction>,
    /// After a compaction failed: not before then.
    compaction_retry_at: Option<Instant>,
    compaction_policy: CompactionPolicy,
    /// When this watcher's last pointer write moved the pointer (for reports).
    moved_at: Option<Instant>,
    /// The checkpoint, once a bootstrap or a resume has made one.
    checkpoint: Option<checkpoint::Checkpointing>,
    /// How much history to keep, when it was last pruned, and the history
    /// entries read so far (entries never change).
    retention: Option<Retention>,
    last_prune: Instant,
    known_entries: publish::KnownEntries,
    /// The items changed since the last checkpoint, as written.
    burst_items: checkpoint::ItemSet,
    /// Where each shard was read to, and the shards awaiting children, as
    /// of the last publish.
    positions: checkpoint::Positions,
}

impl Publisher<'_> {
    /// Puts items into the mirror (validated there), after resolving the
    /// ELB ARNs it has not seen before.
    ///
    /// With `record`, each item goes into the checkpoint's burst as written,
    /// with the ELB DNS name resolved here for an ARN without an `Origin`
    /// (so that a resume builds the very routes published, asking ELB
    /// nothing).
    async fn admit(
        &mut self,
        mirror: &mut Mirror,
        items: Vec<RawItem<'static>>,
        record: bool,
    ) -> Result<(), WatchError> {
        let (mut keys, mut slots) = (Vec::with_capacity(items.len()), Vec::with_capacity(items.len()));
        for item in items {
            if let Some(key) = table_key(&item).map(str::to_owned) {
                keys.push(key);
                slots.push((Location::Index(0), Ok(item)));
            }
        }
        let written: Vec<Option<std::sync::Arc<str>>> = match record {
            true => slots.iter().map(|(_, item)| item.as_ref().ok().map(checkpoint::written)).collect(),
            false => Vec::new(),
        };
        let arns: std::collections::BTreeSet<String> =
            arns_without_origin(&slots).into_iter().filter(|a| !self.origins.contains_key(a)).collect();
        if !arns.is_empty() {
            self.origins.extend(elb::describe_load_balancers(self.config, &arns, &self.retry).await?);
        }
        apply_origins(&mut slots, &self.origins);
        if record {
            for ((key, (_, item)), as_written) in keys.iter().zip(&slots).zip(written) {
                let resolved = item.as_ref().ok().filter(|i| i.origin.is_some()).map(checkpoint::written);
                self.burst_items.insert(key.clone(), resolved.or(as_written));
            }
        }
        for (key, (_, item)) in keys.iter().zip(slots) {
            mirror.set(key, Some(item));
        }
        Ok(())
    }

    /// Publishes the mirror: a burst of changes as a layer on the state this
    /// watcher published last, else (a bootstrap, a store that holds
    /// another state) the whole table as a new base.
    async fn publish(&mut self, mirror: &mut Mirror, pending: Option<Pending>) -> Result<(), WatchError> {
        if self.lease_lost.load(Ordering::SeqCst) {
            return Err(WatchError::LeaseLost("another writer holds it now".into()));
        }
        let now_ms = crate::clock::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        if now_ms >= u128::from(self.lease_until.load(Ordering::SeqCst)) {
            self.lease_lost.store(true, Ordering::SeqCst);
            return Err(WatchError::LeaseLost("it ran out before it could be renewed".into()));
        }
        if let Some(p) = pending {
            if let layers::LayerOutcome::Done = self.publish_layer(mirror, p).await? {
                return Ok(());
            }
        }
        let result = self.publish_base(mirror, pending).await;
        // The base path needs no record of what changed: it writes it all.
        mirror.settle();
        result
    }

    /// The whole mirror as a new base.
    async fn publish_base(&mut self, mirror: &Mirror, pending: Option<Pending>) -> Result<(), WatchError> {
        self.forget_state();
        self.moved_at = None;
        let compile_start = Instant::now();
        let compiled = match mirror.build() {
            Ok(c) => c,
            Err(e) => {
                error!("cannot compile the mirror of {}: {e}", self.table);
                return Ok(());
            }
        };
        if compiled.skipped.len() != self.last_bad || !compiled.skipped.is_empty() && pending.is_none() {
            compiled.skipped.iter().for_each(warn_left_out);
        }
        self.last_bad = compiled.skipped.len();
        let compile_time = compile_start.elapsed();
        if pending.is_some() {
            // A change of the table: whatever was written meanwhile yields to it.
            self.taken_back = false;
        }
        // Back from a lost lease: a forced manual write made since stays
        // until the table's next change. Only a forced one: a pointer
        // another watcher wrote is the table's state, and is brought up to
        // date at once.
        // (The flag is cleared once the decision is made: a failed read
        // leaves it for the next bootstrap.)
        if self.taken_back
            && pending.is_none()
            && self.last_published.as_deref() == Some(compiled.id.to_string().as_str())
        {
            let forced = self.store.read_pointer().await.map_err(PublishError::from)?.filter(|(p, _)| p.forced);
            self.taken_back = false;
            if let Some((current, _)) = forced {
                info!(
                    "the table has not changed since this watcher last published it ({}); the store keeps {}, \
                     written with --force, until the table's next change",
                    compiled.id, current.id
                );
                return Ok(());
            }
        }
        let upload_start = Instant::now();
        let source = self.source();
        let skipped = compiled.skipped.len() as u64;
        let outcome =
            match publish_fenced(self.store, &compiled.bytes, &source, skipped, self.drop_guard, self.generation).await
            {
                Ok(outcome) => outcome,
                Err(PublishError::Fenced { current, .. }) => {
                    self.lease_lost.store(true, Ordering::SeqCst);
                    return Err(WatchError::LeaseLost(format!(
                        "the pointer carries generation {current}, above this watcher's {}",
                        self.generation
                    )));
                }
                Err(e) => return Err(e.into()),
            };
        let upload = upload_start.elapsed();
        self.taken_back = false;
        if let Published::Current(p) | Published::AlreadyCurrent(p) = &outcome {
            self.last_published = Some(p.id.clone());
        }
        match &outcome {
            Published::Current(p) => self.status.published(p.routes_estimate()),
            Published::AlreadyCurrent(_) => {}
            Published::HeldBack { .. } => self.status.refused("pinned"),
            Published::DropRefused { .. } => self.status.refused("drop_guard"),
        }
        match outcome {
            Published::Current(p) => {
                self.report(&p, pending, compile_start, compile_time, upload, "a new base");
                self.status.layers(0, 0);
                self.state = Some(layers::Published::of_base(p, compiled.bytes));
            }
            Published::AlreadyCurrent(p) => {
                info!("{} is already current", p.id);
                self.status.layers(0, 0);
                self.state = Some(layers::Published::of_base(p, compiled.bytes));
            }
            Published::HeldBack { pinned } => warn!(
                "holding back {}: the store is pinned to {} (rolled back; `edgeroute unpin` to go on)",
                compiled.id, pinned.id
            ),
            Published::DropRefused { current, routes, guard } => warn!(
                "holding back {} ({routes} routes): it drops more than {} % of the {} live routes; \
                 the last good snapshot stays (`--max-drop 100` lets mass deletions through)",
                compiled.id,
                guard.max_drop_percent,
                current.map_or(0, |p| p.routes_lower_bound())
            ),
        }
        Ok(())
    }

    /// What the pointers this watcher writes say they come from.
    fn source(&self) -> String {
        format!("dynamodb://{} (watch)", self.table)
    }
}

/// Says why an item is left out.
fn warn_left_out(e: &edgeroute_compiler::ItemError) {
    let domain = e.domain.as_deref().unwrap_or("?");
    match &e.kind {
        ItemErrorKind::Duplicate { domain: normalized, other_written, .. } => warn!(
            "left out Domain {domain:?}: the table also has {other_written:?}; both are {normalized:?} once normalized"
        ),
        kind => warn!("left out Domain {domain:?}: {kind}"),
    }
}

/// A stream image's attributes, typed loosely like any source's.
fn stream_item(image: &HashMap<String, AttributeValue>) -> RawItem<'static> {
    let take = |name: &str| image.get(name).map(stream_value);
    let mut item = RawItem {
        domain: take("Domain"),
        target: take("Target"),
        origin: take("Origin"),
        assets: take("Assets"),
        fallback: take("Fallback"),
        // A table's items are never deletions (only `apply`'s lines are).
        deleted: None,
        not_an_object: None,
        duplicate_attribute: None,
        miscased: Vec::new(),
    };
    item.note_unread_names(image.keys());
    item
}

fn stream_value(v: &AttributeValue) -> Value<'static> {
    let tag = match v {
        AttributeValue::S(s) => return Value::Str(Cow::Owned(s.clone())),
        AttributeValue::L(list) => return Value::List(list.iter().map(stream_value).collect()),
        AttributeValue::Ss(set) => return Value::List(set.iter().map(|s| Value::Str(Cow::Owned(s.clone()))).collect()),
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "a type this SDK does not know",
    };
    Value::Other(dynamodb_type_name(tag).unwrap_or(tag))
}
