//! The `edgeroute` command line, all of it: every command, flag and
//! positional, and the configured objects they become ([`AwsArgs::options`],
//! [`ScanArgs::options`], [`WatchArgs::options`]). As in ripgrep's
//! `flags/`, nothing else in the binary looks at an argument.
//!
//! One spelling per thing: a store is `--store STORE`, a snapshot file
//! `--snapshot FILE`. The spellings of earlier releases (`--to`,
//! `--publish-to`, and positionals) still parse, hidden from `--help`, so
//! that scripts written against them keep working.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
pub use edgeroute_cli::resolve::ResolveArgs;
use edgeroute_control::aws::{AwsOptions, RetryPolicy};
use edgeroute_control::lease::LeaseOptions;
use edgeroute_control::publish::{DropGuard, Manual};
use edgeroute_control::scan::ScanOptions;
use edgeroute_control::watch::{Backoff, CompactionPolicy, Retention, WatchOptions};
use edgeroute_control::Source;
use edgeroute_store::StoreLocation;

/// What `--help` says about exit statuses, and what `main` returns.
pub const EXIT_STATUS: &str = "\
Exit status:
  0  done
  1  failed: the error says what is wrong and what to do
  2  wrong usage (an unknown flag, a missing or malformed value)";

#[derive(Debug, Parser)]
#[command(
    name = "edgeroute",
    version,
    about = "Compile hostname routing tables into snapshots, publish them to stores, and resolve requests against them",
    after_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a routing table and write a snapshot.
    Compile(CompileArgs),
    /// Validate a routing table and write nothing (exit 0: valid; 1: bad
    /// items, or the table could not be read; 2: wrong usage), as `nginx -t`.
    Check(CheckArgs),
    /// Resolve a request's Host and path against a snapshot.
    Resolve(ResolveArgs),
    /// Describe a snapshot: version, id, routes by kind, section sizes.
    Inspect(InspectArgs),
    /// Publish a snapshot to a store: the object first, then the pointer
    /// (compare-and-swap; never over a pin).
    Publish(PublishArgs),
    /// Apply changes to a store's current state as one layer: JSON Lines of
    /// items to upsert and `{"Domain": …, "Deleted": true}` lines to delete.
    /// Reads only the pointer; never compacts.
    Apply(ApplyArgs),
    /// Merge a store's layers into a new base snapshot (the bytes a full
    /// compile of the same table gives); layers applied meanwhile are
    /// rebased onto it.
    Compact(CompactArgs),
    /// The store itself: `edgeroute store migrate`.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Publish a new snapshot on every change to a DynamoDB table: read
    /// its stream into an in-memory mirror, debounce, compile, publish.
    Watch(WatchArgs),
    /// Point a store back at the previous (or the given) snapshot and pin
    /// it: publishers hold back until `unpin`.
    Rollback(RollbackArgs),
    /// Lift a rollback's pin: the next publish moves the pointer again.
    Unpin(UnpinArgs),
    /// List the snapshots a store has published, oldest first.
    History(HistoryArgs),
    /// Preview environments: one hostname per service, written and removed together.
    Env {
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// Handle pools: names reserved in advance for environments' hostnames.
    Handles {
        #[command(subcommand)]
        command: HandlesCommand,
    },
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The table: `dynamodb://TABLE` (the live table), `export:PATH` (a
    /// DynamoDB table export's folder, AWSDynamoDB/<export id>/, or
    /// `export:s3://BUCKET/FOLDER`), or a JSON file (JSON Lines or one array).
    #[arg(long, value_name = "SOURCE")]
    pub from: Source,
    /// Where to write the snapshot (written whole or not at all).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Leave invalid items out (and count them) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// How much of a JSON Lines file is read, validated and packed at a time
    /// (tests use small chunks to see a table cross them).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, hide = true)]
    pub chunk_bytes: usize,
    #[command(flatten)]
    pub scan: ScanArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The table, in any form `compile --from` takes.
    #[arg(value_name = "TABLE")]
    pub from: Source,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub scan: ScanArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// A snapshot file: `--snapshot FILE`, or the positional of earlier releases.
#[derive(Debug, Args)]
pub struct SnapshotFile {
    /// The snapshot file.
    #[arg(long = "snapshot", value_name = "FILE", required_unless_present = "snapshot_positional")]
    snapshot: Option<PathBuf>,
    /// The snapshot file, as earlier releases took it.
    #[arg(value_name = "FILE", hide = true, conflicts_with = "snapshot")]
    snapshot_positional: Option<PathBuf>,
}

impl SnapshotFile {
    /// The file, however it was given.
    pub fn path(&self) -> &std::path::Path {
        self.snapshot.as_ref().or(self.snapshot_positional.as_ref()).expect("clap requires one")
    }
}

/// A store: `--store STORE`, or the positional of earlier releases.
#[derive(Debug, Args)]
pub struct StoreOrPositional {
    /// The store: dir:PATH or s3://BUCKET[/PREFIX].
    #[arg(long = "store", value_name = "STORE", required_unless_present = "store_positional")]
    store: Option<StoreLocation>,
    /// The store, as earlier releases took it.
    #[arg(value_name = "STORE", hide = true, conflicts_with = "store")]
    store_positional: Option<StoreLocation>,
}

impl StoreOrPositional {
    /// The store, however it was given.
    pub fn location(&self) -> &StoreLocation {
        self.store.as_ref().or(self.store_positional.as_ref()).expect("clap requires one")
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub snapshot: SnapshotFile,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub snapshot: SnapshotFile,
    /// The store: dir:PATH or s3://BUCKET[/PREFIX].
    #[arg(long = "store", alias = "to", value_name = "STORE")]
    pub store: StoreLocation,
    /// Where the table came from, for the pointer and the history.
    #[arg(long, value_name = "TEXT", default_value = "edgeroute publish")]
    pub source: String,
    /// Then delete snapshot objects beyond the N most recently published
    /// (never the current one).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: Option<u64>,
    /// With --keep: objects written less than this long ago are never
    /// deleted (a concurrent publisher may be about to point to one).
    #[arg(long, value_name = "SECONDS", default_value_t = 600, requires = "keep")]
    pub keep_grace: u64,
    /// Refuse a snapshot with fewer than (100 − PERCENT) % of the current
    /// routes, or none (a wrong table, region or filter, most often).
    #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_drop: u8,
    /// Publish whatever the snapshot drops, an empty one included.
    #[arg(long, conflicts_with = "max_drop")]
    pub allow_drop: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

impl PublishArgs {
    /// How much of the current table this publish may drop.
    pub fn drop_guard(&self) -> DropGuard {
        if self.allow_drop {
            DropGuard::OFF
        } else {
            DropGuard { max_drop_percent: self.max_drop }
        }
    }
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The table (its partition key is Domain; its stream NEW_AND_OLD_IMAGES).
    #[arg(long, value_name = "TABLE")]
    pub table: String,
    /// The store: dir:PATH or s3://BUCKET[/PREFIX].
    #[arg(long = "store", alias = "publish-to", value_name = "STORE")]
    pub store: StoreLocation,
    /// Quiet time after a change before publishing (a burst is one publish).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub debounce_ms: u64,
    /// Without a stream: how often to scan the table.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub scan_interval_ms: u64,
    /// How often to list the stream's shards for new ones (and every
    /// second while a shard that ended has shown no children).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub describe_interval_ms: u64,
    /// How long the store's lease holds unless renewed: how long a
    /// standby waits after this watcher dies without giving it back.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub lease_ms: u64,
    /// How often the lease is renewed (below --lease-ms).
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub lease_renew_ms: u64,
    /// After an error it can survive (throttling past its retries, the
    /// stream's or the store's errors), wait this long before mirroring
    /// the table again; the wait doubles on every failure in a row…
    #[arg(long, value_name = "MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub restart_backoff_ms: u64,
    /// …up to this.
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub restart_backoff_max_ms: u64,
    /// The admin listener: GET /metrics (Prometheus) and /health. Keep it
    /// off public interfaces. `off` disables it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9902", value_parser = parse_admin_listen)]
    pub admin_listen: AdminListen,
    /// Hold back a snapshot with fewer than (100 − PERCENT) % of the live
    /// routes, or none; 100 lets real mass deletions through.
    #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_drop: u8,
    /// Compact the layers into a new base (in the background) when they
    /// hold this many bytes. Default: an eighth of the base, at least 1 MiB.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub compact_bytes: Option<u64>,
    /// …or when they hold this many records (changes). Default: no limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub compact_entries: Option<u64>,
    /// Keep the newest N states of the history (and their objects); older
    /// entries, and objects nothing kept names, are pruned. 0: never prune.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub keep_states: usize,
    /// Never prune what is younger than this (a concurrent publisher stores
    /// its object before it moves the pointer to it).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub keep_grace: u64,
    /// How often to prune.
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub prune_interval_ms: u64,
    #[command(flatten)]
    pub scan: ScanArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

impl WatchArgs {
    /// The watcher's settings.
    pub fn options(&self) -> WatchOptions {
        let scan = self.scan.options();
        WatchOptions {
            debounce: Duration::from_millis(self.debounce_ms),
            scan_interval: Duration::from_millis(self.scan_interval_ms.max(100)),
            describe_interval: Duration::from_millis(self.describe_interval_ms.max(100)),
            retry: scan.retry,
            scan,
            drop_guard: DropGuard { max_drop_percent: self.max_drop },
            lease: LeaseOptions {
                ttl: Duration::from_millis(self.lease_ms),
                // At least three times a lease: one lost renewal must not lose it.
                renew_every: Duration::from_millis(self.lease_renew_ms.min(self.lease_ms / 3)),
                ..LeaseOptions::named("watch")
            },
            backoff: Backoff {
                first: Duration::from_millis(self.restart_backoff_ms),
                max: Duration::from_millis(self.restart_backoff_max_ms.max(self.restart_backoff_ms)),
            },
            compaction: CompactionPolicy { bytes: self.compact_bytes, entries: self.compact_entries },
            retention: (self.keep_states > 0).then(|| Retention {
                keep: self.keep_states,
                grace: Duration::from_secs(self.keep_grace),
                every: Duration::from_millis(self.prune_interval_ms),
            }),
            ..WatchOptions::default()
        }
    }
}

/// How a command that writes the pointer takes the store's lease.
#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// Write even while a watcher holds the store's lease: take the lease
    /// over, write, give it back. The watcher publishes the table's state
    /// again at the table's next change (a rollback pins, so it stays).
    #[arg(long)]
    pub force: bool,
    /// How long the lease this command takes holds if it dies before
    /// giving it back.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub lease_ms: u64,
}

impl LeaseArgs {
    /// The lease settings of command `what`.
    pub fn manual(&self, what: &str) -> Manual {
        let named = Manual::named(what);
        Manual { force: self.force, lease: LeaseOptions { ttl: Duration::from_millis(self.lease_ms), ..named.lease } }
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The changes: JSON Lines (or one array) of table items to upsert and
    /// `{"Domain": "…", "Deleted": true}` lines to delete; `-` reads
    /// standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The store: dir:PATH or s3://BUCKET[/PREFIX].
    #[arg(long = "store", value_name = "STORE")]
    pub store: StoreLocation,
    /// Leave invalid lines out (and count them) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Print what would change (names added, replaced, unchanged, removed,
    /// absent), reading the state; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the changes came from, for the pointer and the history.
    #[arg(long, value_name = "TEXT", default_value = "edgeroute apply")]
    pub source: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The store: dir:PATH or s3://BUCKET[/PREFIX].
    #[arg(long = "store", value_name = "STORE")]
    pub store: StoreLocation,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Rewrite the store's pointer in the form with layers (pointer
    /// version 2). Readers of earlier versions refuse that form (they keep
    /// serving what they have): upgrade every host and Lambda first.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store: dir:PATH or s3://BUCKET[/PREFIX].
    #[arg(long = "store", value_name = "STORE")]
    pub store: StoreLocation,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The store: dir:PATH or s3://BUCKET[/PREFIX].
    #[arg(long = "store", alias = "to", value_name = "STORE")]
    pub store: StoreLocation,
    /// The state to go back to: its id, or a unique prefix of at least 4
    /// hex digits [default: the state before the current one]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Print the new pointer as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    #[command(flatten)]
    pub store: StoreOrPositional,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lease: LeaseArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub store: StoreOrPositional,
    /// One JSON pointer document per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create the routing table (with its stream) and the state table, if missing.
    Init(EnvInitArgs),
    /// Create an environment: SERVICE-RANDOM-APP.DOMAIN for each service (or
    /// SERVICE-HANDLE-APP.DOMAIN), all routes in one transaction.
    Create(EnvCreateArgs),
    /// Remove an environment's routes (only those still its own) and give its handle back; harmless twice.
    Delete(EnvDeleteArgs),
    /// Finish deletes that were killed half way, and reclaim the handles of
    /// environments that do not exist or are deleted, in every pool.
    Gc(EnvGcArgs),
    /// List the environments that exist.
    List(EnvListArgs),
    /// Point a service of an environment at a new Target (a new version).
    Deploy(EnvDeployArgs),
}

#[derive(Debug, Args)]
pub struct EnvInitArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct EnvCreateArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    /// The application: the last label before DOMAIN (a-z, 0-9, -).
    #[arg(long, value_name = "APP")]
    pub app: String,
    /// NAME=TARGET (a Target as in the table: s3://BUCKET/PREFIX, https://HOST, an ELB ARN); repeat per service.
    #[arg(long = "service", value_name = "NAME=TARGET", required = true)]
    pub services: Vec<String>,
    /// The domain the hostnames end in, e.g. preview.example.com.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: String,
    /// Take a free handle from this pool (given back on delete).
    #[arg(long, value_name = "POOL", conflicts_with = "handle")]
    pub handle_pool: Option<String>,
    /// Use this handle as it is (not from a pool).
    #[arg(long, value_name = "HANDLE")]
    pub handle: Option<String>,
    /// Print {"env_id", "handle", "hostnames"} as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct EnvDeleteArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    /// The environment's id, as `env create` and `env list` print it.
    #[arg(value_name = "ENV_ID")]
    pub env_id: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct EnvListArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    /// Print one JSON array instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct EnvDeployArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    /// The environment's id, as `env create` and `env list` print it.
    #[arg(value_name = "ENV_ID")]
    pub env_id: String,
    /// The service to point elsewhere, as named by `env create --service`.
    #[arg(value_name = "SERVICE")]
    pub service: String,
    /// The new Target (s3://BUCKET/PREFIX, https://HOST, an ELB ARN).
    #[arg(long, value_name = "TARGET")]
    pub target: String,
    /// The new asset list: one key per line, or a JSON array.
    #[arg(long, value_name = "FILE")]
    pub assets_file: Option<PathBuf>,
    /// The new Fallback: the asset key served for paths that name no asset.
    #[arg(long, value_name = "KEY")]
    pub fallback: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Subcommand)]
pub enum HandlesCommand {
    /// Add handles to a pool (a handle already there stays as it is).
    Add(HandlesAddArgs),
    /// List a pool's handles and who holds them.
    List(HandlesListArgs),
    /// Return to the pool the handles held by environments that do not
    /// exist (a create killed half way) or are deleted.
    Reclaim(HandlesReclaimArgs),
}

#[derive(Debug, Args)]
pub struct HandlesReclaimArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    /// The pool's name.
    #[arg(value_name = "POOL")]
    pub pool: String,
    #[command(flatten)]
    pub grace: GraceArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct EnvGcArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    #[command(flatten)]
    pub grace: GraceArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// How old a handle's take must be before it may be reclaimed.
#[derive(Debug, Args)]
pub struct GraceArgs {
    /// Only handles taken longer ago than this: a create under way holds
    /// its handle before its environment exists, for as long as its
    /// retries last (minutes, at worst).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub grace_seconds: u64,
}

impl GraceArgs {
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_seconds)
    }
}

#[derive(Debug, Args)]
pub struct HandlesAddArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    /// The pool's name.
    #[arg(value_name = "POOL")]
    pub pool: String,
    /// The handles to add (a-z, 0-9, -).
    #[arg(value_name = "HANDLE", required = true)]
    pub names: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct HandlesListArgs {
    #[command(flatten)]
    pub tables: TableArgs,
    /// The pool's name.
    #[arg(value_name = "POOL")]
    pub pool: String,
    /// Print one JSON array instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// The routing table and the state table beside it.
#[derive(Debug, Args)]
pub struct TableArgs {
    /// The routing table (partition key Domain).
    #[arg(long, value_name = "TABLE")]
    pub table: String,
    /// The table of environments and handle pools [default: TABLE-edgeroute]
    #[arg(long, value_name = "TABLE")]
    pub state_table: Option<String>,
}

/// How to read a live table.
#[derive(Debug, Args)]
#[command(next_help_heading = "DynamoDB")]
pub struct ScanArgs {
    /// Parallel Scan segments [default: one per 256 MiB of table, at least 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub segments: Option<u32>,
    /// Strongly consistent reads (they cost twice the read capacity); `watch`'s
    /// bootstrap Scan always is.
    #[arg(long)]
    pub consistent: bool,
    /// Items per Scan page [default: full 1 MB pages]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,
    /// Retries of one request on throttling, 5xx answers and dropped
    /// connections (exponential backoff with jitter, capped at 5 s).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_retries: u32,
}

impl ScanArgs {
    /// The Scan's settings, with the retry policy every AWS request of the
    /// command uses.
    pub fn options(&self) -> ScanOptions {
        ScanOptions {
            segments: self.segments,
            consistent: self.consistent,
            page_size: self.page_size,
            retry: RetryPolicy { max_retries: self.max_retries, ..RetryPolicy::default() },
        }
    }
}

/// Where and as whom to talk to AWS (else the environment and ~/.aws say).
#[derive(Debug, Args)]
#[command(next_help_heading = "AWS")]
pub struct AwsArgs {
    /// A profile from the AWS config files.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// The AWS region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Send every AWS request to this URL (a local server); also AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

impl AwsArgs {
    /// Where and as whom to talk to AWS.
    pub fn options(&self) -> AwsOptions {
        AwsOptions {
            profile: self.profile.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
        }
    }
}

/// `--admin-listen`: an address, or none (`off`).
#[derive(Clone, Copy, Debug)]
pub struct AdminListen(pub Option<std::net::SocketAddr>);

fn parse_admin_listen(text: &str) -> Result<AdminListen, String> {
    match text {
        "off" => Ok(AdminListen(None)),
        _ => text
            .parse()
            .map(|addr| AdminListen(Some(addr)))
            .map_err(|e| format!("{e}: give HOST:PORT (e.g. 127.0.0.1:9902) or off")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every flag and positional a user can see says what it is.
    #[test]
    fn every_visible_argument_has_a_help_line() {
        let missing = edgeroute_cli::help::undocumented(&Cli::command());
        assert!(missing.is_empty(), "no help line: {missing:#?}");
    }
}
