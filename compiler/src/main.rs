//! `edgeroute`: compile routing tables into snapshots, resolve against them, inspect them.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use edgeroute_compiler::aws::{load_config, AwsOptions, RetryPolicy};
use edgeroute_compiler::dynamodb::{scan_table, ScanOptions, ScanProgress};
use edgeroute_compiler::env::{CreateRequest, Environments, HandleChoice, Randomness, Tables};
use edgeroute_compiler::export::Export;
use edgeroute_compiler::publish::{self, Published};
use edgeroute_compiler::store::{Store, StoreLocation};
use edgeroute_compiler::watch;
use edgeroute_compiler::{
    compile, elb, snapshot_id, source, CompileError, ItemError, Location, Options, Progress, Source,
};
use edgeroute_edge::{Domain, HostName, Resolution, Route, Snapshot, Trace};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "edgeroute",
    version,
    about = "Compile hostname routing tables into snapshots and resolve requests against them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a routing table and write a snapshot.
    Compile {
        /// The table: `dynamodb://TABLE` (the live table), `export:PATH` (a
        /// DynamoDB table export's folder, AWSDynamoDB/<export id>/), or a
        /// JSON file (JSON Lines or one array).
        #[arg(long, value_name = "SOURCE")]
        from: Source,
        /// Where to write the snapshot (written whole or not at all).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Leave invalid items out (and count them) instead of failing.
        #[arg(long)]
        skip_invalid: bool,
        #[command(flatten)]
        scan: ScanArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Resolve a request's Host and path against a snapshot.
    Resolve {
        #[arg(long, value_name = "FILE")]
        snapshot: PathBuf,
        /// The Host header value (put it after `--` if it starts with `-`).
        host: std::ffi::OsString,
        /// The request path, with optional ?query.
        #[arg(default_value = "/")]
        path: std::ffi::OsString,
        /// Print exactly one JSON object.
        #[arg(long, conflicts_with = "explain")]
        json: bool,
        /// Show the normalized host, the entries and keys tried, and why.
        #[arg(long)]
        explain: bool,
    },
    /// Publish a snapshot to a store: the object first, then the pointer
    /// (compare-and-swap; never over a pin).
    Publish {
        /// The snapshot file.
        snapshot: PathBuf,
        /// The store: dir:PATH or s3://BUCKET[/PREFIX].
        #[arg(long, value_name = "STORE")]
        to: StoreLocation,
        /// Where the table came from, for the pointer and the history.
        #[arg(long, value_name = "TEXT", default_value = "edgeroute publish")]
        source: String,
        /// Then delete snapshot objects beyond the N most recently published
        /// (never the current one).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        keep: Option<u64>,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Publish a new snapshot on every change to a DynamoDB table: follow
    /// its stream into an in-memory mirror, debounce, compile, publish.
    Watch {
        /// The table (its partition key is Domain).
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// The store: dir:PATH or s3://BUCKET[/PREFIX].
        #[arg(long, value_name = "STORE")]
        publish_to: StoreLocation,
        /// Quiet time after a change before publishing (a burst is one publish).
        #[arg(long, value_name = "MS", default_value_t = 100)]
        debounce_ms: u64,
        /// Without a stream: how often to scan the table.
        #[arg(long, value_name = "MS", default_value_t = 30_000)]
        scan_interval_ms: u64,
        #[command(flatten)]
        scan: ScanArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Point a store back at the previous (or the given) snapshot and pin
    /// it: publishers hold back until `unpin`.
    Rollback {
        #[arg(long, value_name = "STORE")]
        to: StoreLocation,
        /// The snapshot id to go back to (default: the current one's previous).
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Lift a rollback's pin: the next publish moves the pointer again.
    Unpin {
        store: StoreLocation,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// List the snapshots a store has published, oldest first.
    History {
        store: StoreLocation,
        /// One JSON pointer document per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        aws: AwsArgs,
    },
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
    /// Describe a snapshot: version, id, routes by kind, section sizes.
    Inspect {
        snapshot: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EnvCommand {
    /// Create the routing table (with its stream) and the state table, if missing.
    Init {
        #[command(flatten)]
        tables: TableArgs,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Create an environment: SERVICE-RANDOM-APP.DOMAIN for each service (or
    /// SERVICE-HANDLE-APP.DOMAIN), all routes in one transaction.
    Create {
        #[command(flatten)]
        tables: TableArgs,
        #[arg(long)]
        app: String,
        /// NAME=TARGET (a Target as in the table: s3://BUCKET/PREFIX, https://HOST, an ELB ARN); repeat per service.
        #[arg(long = "service", value_name = "NAME=TARGET", required = true)]
        services: Vec<String>,
        #[arg(long)]
        domain: String,
        /// Take a free handle from this pool (given back on delete).
        #[arg(long, value_name = "POOL", conflicts_with = "handle")]
        handle_pool: Option<String>,
        /// Use this handle as it is (not from a pool).
        #[arg(long, value_name = "NAME")]
        handle: Option<String>,
        /// Print {"env_id", "handle", "hostnames"} as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Remove an environment's routes (only those still its own) and give its handle back; harmless twice.
    Delete {
        #[command(flatten)]
        tables: TableArgs,
        env_id: String,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// List the environments that exist.
    List {
        #[command(flatten)]
        tables: TableArgs,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Point a service of an environment at a new Target (a new version).
    Deploy {
        #[command(flatten)]
        tables: TableArgs,
        env_id: String,
        service: String,
        #[arg(long)]
        target: String,
        /// The new asset list: one key per line, or a JSON array.
        #[arg(long, value_name = "FILE")]
        assets_file: Option<PathBuf>,
        #[arg(long, value_name = "NAME")]
        fallback: Option<String>,
        #[command(flatten)]
        aws: AwsArgs,
    },
}

#[derive(Subcommand)]
enum HandlesCommand {
    /// Add handles to a pool (a handle already there stays as it is).
    Add {
        #[command(flatten)]
        tables: TableArgs,
        pool: String,
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// List a pool's handles and who holds them.
    List {
        #[command(flatten)]
        tables: TableArgs,
        pool: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        aws: AwsArgs,
    },
}

/// The routing table and the state table beside it.
#[derive(clap::Args)]
struct TableArgs {
    /// The routing table (partition key Domain).
    #[arg(long, value_name = "TABLE")]
    table: String,
    /// The table of environments and handle pools [default: TABLE-edgeroute]
    #[arg(long, value_name = "TABLE")]
    state_table: Option<String>,
}

/// How to read a live table.
#[derive(clap::Args)]
#[command(next_help_heading = "DynamoDB")]
struct ScanArgs {
    /// Parallel Scan segments [default: one per 256 MiB of table, at least 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    segments: Option<u32>,
    /// Strongly consistent reads (they cost twice the read capacity).
    #[arg(long)]
    consistent: bool,
    /// Items per Scan page [default: full 1 MB pages]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    page_size: Option<u32>,
    /// Retries of one request on throttling, 5xx answers and dropped
    /// connections (exponential backoff with jitter, capped at 5 s).
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_retries: u32,
}

/// Where and as whom to talk to AWS (else the environment and ~/.aws say).
#[derive(clap::Args)]
#[command(next_help_heading = "AWS")]
struct AwsArgs {
    /// A profile from the AWS config files.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// The AWS region.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// Send every AWS request to this URL (a local server); also AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile { from, out, skip_invalid, scan, aws } => cmd_compile(&from, &out, skip_invalid, &scan, &aws),
        Command::Resolve { snapshot, host, path, json, explain } => {
            cmd_resolve(&snapshot, host.as_encoded_bytes(), path.as_encoded_bytes(), json, explain)
        }
        Command::Inspect { snapshot, json } => cmd_inspect(&snapshot, json),
        Command::Publish { snapshot, to, source, keep, aws } => cmd_publish(&snapshot, &to, &source, keep, &aws),
        Command::Watch { table, publish_to, debounce_ms, scan_interval_ms, scan, aws } => {
            let mut aws = Aws { args: &aws, runtime: None, config: None };
            (|| -> Result<()> {
                let config = aws.config()?;
                let store = Store::open(&publish_to, Some(&config))?;
                let retry = RetryPolicy { max_retries: scan.max_retries, ..RetryPolicy::default() };
                let options = watch::WatchOptions {
                    debounce: std::time::Duration::from_millis(debounce_ms),
                    scan_interval: std::time::Duration::from_millis(scan_interval_ms.max(100)),
                    scan: ScanOptions {
                        segments: scan.segments,
                        consistent: scan.consistent,
                        page_size: scan.page_size,
                        retry,
                    },
                    retry,
                    ..watch::WatchOptions::default()
                };
                eprintln!("info: watching {table}, publishing to {publish_to}");
                aws.runtime()?.block_on(async {
                    tokio::select! {
                        result = watch::watch(&config, &table, &store, &options) => result.map_err(anyhow::Error::from),
                        _ = tokio::signal::ctrl_c() => {
                            eprintln!("info: stopped");
                            Ok(())
                        }
                    }
                })
            })()
        }
        Command::Env { command } => cmd_env(command),
        Command::Handles { command } => cmd_handles(command),
        Command::Rollback { to, id, aws } => cmd_store(&to, &aws, |store, rt| {
            let p = rt.block_on(publish::rollback(store, id.as_deref()))?;
            println!("rolled back {to} to {} ({} routes) and pinned it", p.id, p.routes);
            println!("  publishers hold back until `edgeroute unpin {to}`");
            Ok(())
        }),
        Command::Unpin { store: to, aws } => cmd_store(&to, &aws, |store, rt| {
            match rt.block_on(publish::unpin(store))? {
                Some(p) => println!("unpinned {to}; {} stays current until the next publish", p.id),
                None => println!("{to} is not pinned"),
            }
            Ok(())
        }),
        Command::History { store: to, json, aws } => cmd_store(&to, &aws, |store, rt| {
            let history = rt.block_on(store.history())?;
            let current = rt.block_on(store.read_pointer())?.map(|(p, _)| p);
            let stored = rt.block_on(store.snapshot_ids())?;
            for p in &history {
                if json {
                    println!("{}", serde_json::to_string(p)?);
                    continue;
                }
                let mut marks = Vec::new();
                if current.as_ref().is_some_and(|c| c.id == p.id && c.created_at == p.created_at) {
                    marks.push(if current.as_ref().is_some_and(|c| c.pinned) { "current, pinned" } else { "current" });
                }
                if !stored.contains(&p.id) {
                    marks.push("pruned");
                }
                let marks = if marks.is_empty() { String::new() } else { format!("  [{}]", marks.join(", ")) };
                println!("{}  {}  {:>9} routes  {}{marks}", p.created_at, p.id, p.routes, p.source);
            }
            if history.is_empty() && !json {
                println!("{to} has published nothing yet");
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The environments of `tables`, through the AWS configuration of `args`.
fn environments<'a>(tables: &TableArgs, args: &'a AwsArgs) -> Result<(Environments, Aws<'a>)> {
    let mut aws = Aws { args, runtime: None, config: None };
    let config = aws.config()?;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let tables = Tables::new(&tables.table, tables.state_table.as_deref());
    Ok((Environments::new(client, tables, RetryPolicy::default()), aws))
}

fn cmd_env(command: EnvCommand) -> Result<()> {
    match command {
        EnvCommand::Init { tables, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let done = aws.runtime()?.block_on(envs.init())?;
            let t = envs.tables();
            for table in [&t.routes, &t.state] {
                let what = if done.created.contains(table) { "created" } else { "exists" };
                println!("{table}: {what}");
            }
            if done.stream_enabled {
                println!("{}: stream enabled (NEW_AND_OLD_IMAGES), for `edgeroute watch`", t.routes);
            }
            Ok(())
        }
        EnvCommand::Create { tables, app, services, domain, handle_pool, handle, json, aws } => {
            let services = services
                .iter()
                .map(|s| match s.split_once('=') {
                    Some((name, target)) if !name.is_empty() && !target.is_empty() => {
                        Ok((name.to_owned(), target.to_owned()))
                    }
                    _ => bail!("--service {s:?}: expected NAME=TARGET"),
                })
                .collect::<Result<Vec<_>>>()?;
            let handle = match (handle_pool, handle) {
                (Some(pool), _) => HandleChoice::Pool(pool),
                (None, Some(name)) => HandleChoice::Named(name),
                (None, None) => HandleChoice::Random,
            };
            let request = CreateRequest { app, services, domain, handle };
            let (envs, mut aws) = environments(&tables, &aws)?;
            let env = aws.runtime()?.block_on(envs.create(&request, &mut Randomness::Os))?;
            if json {
                println!("{}", env.json());
            } else {
                println!(
                    "created environment {}{}",
                    env.env_id,
                    env.handle.as_ref().map_or(String::new(), |h| format!(" (handle {h})"))
                );
                for (service, host) in &env.hostnames {
                    println!("  {service}  {host}");
                }
            }
            Ok(())
        }
        EnvCommand::Delete { tables, env_id, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let done = aws.runtime()?.block_on(envs.delete(&env_id))?;
            if done.already {
                println!("environment {env_id} was deleted already");
                return Ok(());
            }
            println!("deleted environment {env_id}: {} route(s) removed", done.removed.len());
            for host in &done.skipped {
                println!("  {host}: gone already, or another environment's now: left alone");
            }
            if let Some(handle) = &done.handle_returned {
                println!("  handle {handle} is free again");
            }
            Ok(())
        }
        EnvCommand::List { tables, json, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let list = aws.runtime()?.block_on(envs.list())?;
            if json {
                let all: Vec<_> = list
                    .iter()
                    .map(|e| {
                        let mut v = e.json();
                        v["app"] = e.app.clone().into();
                        v["created_at"] = e.created_at.clone().into();
                        v
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(all));
                return Ok(());
            }
            for e in &list {
                let handle = e.handle.as_deref().unwrap_or("-");
                let hosts: Vec<&str> = e.hostnames.values().map(String::as_str).collect();
                println!("{}  {}  {:<10} {:<12} {}", e.created_at, e.env_id, e.app, handle, hosts.join(" "));
            }
            if list.is_empty() {
                println!("no environments");
            }
            Ok(())
        }
        EnvCommand::Deploy { tables, env_id, service, target, assets_file, fallback, aws } => {
            let assets = match &assets_file {
                Some(file) => Some(read_assets(file)?),
                None => None,
            };
            let (envs, mut aws) = environments(&tables, &aws)?;
            let host = aws.runtime()?.block_on(envs.deploy(
                &env_id,
                &service,
                &target,
                assets.as_deref(),
                fallback.as_deref(),
            ))?;
            println!("{service} ({host}) -> {target}");
            Ok(())
        }
    }
}

/// An asset list: a JSON array of keys, or one key per line.
fn read_assets(file: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).with_context(|| format!("{}: not a JSON array of strings", file.display()));
    }
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

fn cmd_handles(command: HandlesCommand) -> Result<()> {
    match command {
        HandlesCommand::Add { tables, pool, names, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let added = aws.runtime()?.block_on(envs.add_handles(&pool, &names))?;
            let new = added.iter().filter(|(_, new)| *new).count();
            println!("pool {pool}: {new} handle(s) added");
            for (name, _) in added.iter().filter(|(_, new)| !*new) {
                println!("  {name}: in the pool already, left as it is");
            }
            Ok(())
        }
        HandlesCommand::List { tables, pool, json, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let handles = aws.runtime()?.block_on(envs.handles(&pool))?;
            if json {
                let all: Vec<_> =
                    handles.iter().map(|h| serde_json::json!({"name": h.name, "env_id": h.env_id})).collect();
                println!("{}", serde_json::Value::Array(all));
                return Ok(());
            }
            if handles.is_empty() {
                println!("pool {pool} has no handles");
            }
            for h in &handles {
                println!(
                    "{:<20} {}",
                    h.name,
                    h.env_id.as_deref().map_or("free".to_owned(), |e| format!("taken by {e}"))
                );
            }
            Ok(())
        }
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn validated(&self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
    }
    fn writing(&self) {
        self.0.set_message("writing snapshot");
    }
}

/// Draws a live scan: a spinner with items and items per second.
struct ScanBar {
    bar: ProgressBar,
    shown_retries: std::sync::atomic::AtomicU32,
}

/// Retry messages beyond this many are counted, not shown.
const SHOWN_RETRIES: u32 = 10;

impl ScanProgress for ScanBar {
    fn started(&self, segments: u32, estimated_items: u64) {
        self.bar.set_message(format!("{segments} segments, about {estimated_items} items by DynamoDB's count"));
    }
    fn scanned(&self, items: u64, _pages: u64, retries: u64) {
        self.bar.set_position(items);
        if retries > 0 {
            self.bar.set_prefix(format!("{retries} retries "));
        }
    }
    fn retrying(&self, segment: u32, why: &str) {
        let shown = self.shown_retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if shown <= SHOWN_RETRIES {
            self.bar.suspend(|| eprintln!("retrying: scan segment {segment}: {why}"));
        }
        if shown == SHOWN_RETRIES {
            self.bar.suspend(|| eprintln!("retrying: (further retries are counted, not shown)"));
        }
    }
}

/// The tokio runtime and AWS configuration, made on first use: a JSON
/// file whose ARN Targets all have their Origin never touches either.
struct Aws<'a> {
    args: &'a AwsArgs,
    runtime: Option<tokio::runtime::Runtime>,
    config: Option<aws_config::SdkConfig>,
}

impl Aws<'_> {
    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime> {
        if self.runtime.is_none() {
            self.runtime =
                Some(tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?);
        }
        Ok(self.runtime.as_ref().expect("just made"))
    }

    fn config(&mut self) -> Result<aws_config::SdkConfig> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
        }
        let options = AwsOptions {
            profile: self.args.profile.clone(),
            region: self.args.region.clone(),
            endpoint_url: self.args.endpoint_url.clone(),
        };
        let config = self.runtime()?.block_on(load_config(&options))?;
        self.config = Some(config.clone());
        Ok(config)
    }
}

fn cmd_compile(from: &Source, out: &Path, skip_invalid: bool, scan: &ScanArgs, aws: &AwsArgs) -> Result<()> {
    let retry = RetryPolicy { max_retries: scan.max_retries, ..RetryPolicy::default() };
    let mut aws = Aws { args: aws, runtime: None, config: None };
    let (file, export);
    let mut source_line = None;
    let mut items = match from {
        Source::File(path) => {
            file = source::read_file(path)?;
            source::parse_json_file(path, &file)?
        }
        Source::Export(_) | Source::ExportS3 { .. } => {
            let start = std::time::Instant::now();
            export = match from {
                Source::ExportS3 { bucket, folder } => {
                    let client = edgeroute_compiler::store::s3_client(&aws.config()?);
                    aws.runtime()?.block_on(Export::open_s3(&client, bucket, folder))?
                }
                Source::Export(path) => Export::open(path)?,
                _ => unreachable!("matched above"),
            };
            let items = export.items()?;
            source_line = Some(format!(
                "{from}: {} items in {:.2} s{}",
                items.len(),
                start.elapsed().as_secs_f64(),
                export.table_arn.as_deref().map(|t| format!(" (exported from {t})")).unwrap_or_default()
            ));
            items
        }
        Source::Table(table) => {
            let config = aws.config()?;
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} scanning {prefix}{pos} items, {per_sec} ({msg})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let progress = ScanBar { bar: bar.clone(), shown_retries: 0.into() };
            let options =
                ScanOptions { segments: scan.segments, consistent: scan.consistent, page_size: scan.page_size, retry };
            let scanned = aws.runtime()?.block_on(scan_table(&config, table, &options, &progress));
            bar.finish_and_clear();
            let scanned = scanned?;
            let secs = scanned.elapsed.as_secs_f64();
            source_line = Some(format!(
                "{from}: {} items in {secs:.2} s ({:.0} items/s; {} segments, {} pages, {} retries{})",
                scanned.items.len(),
                scanned.items.len() as f64 / secs.max(1e-9),
                scanned.segments,
                scanned.pages,
                scanned.retries,
                if scan.consistent { ", strongly consistent" } else { "" },
            ));
            scanned.items
        }
    };
    let arns = elb::arns_without_origin(&items);
    let mut elb_line = None;
    if !arns.is_empty() {
        let config = aws.config()?;
        let origins = aws.runtime()?.block_on(elb::describe_load_balancers(&config, &arns, &retry))?;
        let filled = elb::apply_origins(&mut items, &origins);
        let resolved = origins.values().filter(|o| o.is_ok()).count();
        elb_line = Some(format!(
            "{resolved} of {} ELB ARNs resolved through DescribeLoadBalancers ({filled} items)",
            arns.len()
        ));
    }
    // Only long compiles get a bar; indicatif hides it when stderr is not a terminal.
    let bar = if items.len() >= 50_000 { ProgressBar::new(items.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} validating {pos}/{len} items [{bar:30}] {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let compiled = match compile(items, Options { skip_invalid }, &Bar(bar.clone())) {
        Ok(c) => c,
        Err(CompileError::Invalid(errors)) => {
            bar.finish_and_clear();
            for e in &errors {
                eprintln!("invalid: {e}");
            }
            name_data_files(from, &errors);
            bail!(CompileError::Invalid(errors));
        }
        Err(e) => return Err(e.into()),
    };
    bar.finish_and_clear();
    for e in &compiled.skipped {
        eprintln!("skipped: {e}");
    }
    name_data_files(from, &compiled.skipped);
    write_atomically(out, &compiled.bytes)?;
    let s = compiled.stats;
    let per_route = compiled.bytes.len() as f64 / s.routes.max(1) as f64;
    println!(
        "compiled {} routes ({} static sites, {} balancers; {} wildcards) into {}",
        s.routes,
        s.static_sites,
        s.balancers,
        s.wildcards,
        out.display()
    );
    println!("  size    {} bytes ({per_route:.1} bytes/route)", compiled.bytes.len());
    println!("  id      {}", compiled.id);
    if !compiled.skipped.is_empty() {
        println!("  skipped {} invalid items", compiled.skipped.len());
    }
    if let Some(line) = source_line {
        println!("  source  {line}");
    }
    if let Some(line) = elb_line {
        println!("  elb     {line}");
    }
    Ok(())
}

/// Opens a store (with an AWS configuration for S3) and runs `f`.
fn cmd_store(
    to: &StoreLocation,
    aws: &AwsArgs,
    f: impl FnOnce(&Store, &tokio::runtime::Runtime) -> Result<()>,
) -> Result<()> {
    let mut aws = Aws { args: aws, runtime: None, config: None };
    let config = match to {
        StoreLocation::S3 { .. } => Some(aws.config()?),
        StoreLocation::Dir(_) => None,
    };
    let store = Store::open(to, config.as_ref())?;
    f(&store, aws.runtime()?)
}

fn cmd_publish(snapshot: &Path, to: &StoreLocation, source: &str, keep: Option<u64>, aws: &AwsArgs) -> Result<()> {
    let bytes = std::fs::read(snapshot).with_context(|| format!("cannot read snapshot {}", snapshot.display()))?;
    cmd_store(to, aws, |store, rt| {
        let published = rt
            .block_on(publish::publish(store, &bytes, source, 0))
            .with_context(|| format!("cannot publish {} to {to}", snapshot.display()))?;
        match published {
            Published::Current(p) => println!(
                "published {} ({} routes) to {to}; previous {}",
                p.id,
                p.routes,
                p.previous.as_deref().unwrap_or("none")
            ),
            Published::AlreadyCurrent(p) => println!("{} is already current in {to}", p.id),
            Published::HeldBack { pinned } => println!(
                "stored {} in {to} but held back: the store is pinned to {} (`edgeroute unpin {to}` to go on)",
                snapshot_id(&bytes),
                pinned.id
            ),
        }
        if let Some(keep) = keep {
            let deleted = rt.block_on(publish::prune(store, keep as usize))?;
            println!("pruned {} snapshot(s), kept the {keep} most recent and the current one", deleted.len());
        }
        Ok(())
    })
}

/// Says which files "data file N" in export errors are.
fn name_data_files(from: &Source, errors: &[ItemError]) {
    // For S3 exports the manifest is not kept; the numbers follow manifest-files.json.
    let Source::Export(dir) = from else { return };
    let mut numbers: Vec<u32> = errors
        .iter()
        .filter_map(|e| match e.location {
            Location::Export { file, .. } => Some(file),
            _ => None,
        })
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let Ok(listing) = std::fs::read_to_string(dir.join("manifest-files.json")) else { return };
    let keys: Vec<&str> = listing.lines().filter(|l| !l.trim().is_empty()).collect();
    for n in numbers {
        let key = keys
            .get(n as usize - 1)
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v["dataFileS3Key"].as_str().map(str::to_owned));
        if let Some(key) = key {
            eprintln!("note: data file {n} is {key}");
        }
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it
/// over `path`: readers see the old file or the new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().context("--out needs a file name")?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

fn load(path: &Path) -> Result<Snapshot<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
    Snapshot::from_bytes(bytes).with_context(|| format!("cannot use snapshot {}", path.display()))
}

/// Collects the steps of a resolve for `--explain`.
#[derive(Default)]
struct Explain {
    host: Option<String>,
    entries: Vec<(String, Option<u32>)>,
    assets: Vec<(String, bool)>,
}

impl Trace for Explain {
    const EXHAUSTIVE: bool = true;
    fn host(&mut self, host: HostName<'_>) {
        self.host = Some(host.to_string());
    }
    fn entry(&mut self, domain: Domain<'_>, route: Option<u32>) {
        self.entries.push((domain.to_string(), route));
    }
    fn asset(&mut self, name: &dyn fmt::Display, found: bool) {
        self.assets.push((name.to_string(), found));
    }
}

fn key_of(domain: &str) -> String {
    domain.rsplit('.').collect::<Vec<_>>().join(".")
}

fn cmd_resolve(snapshot: &Path, host: &[u8], path: &[u8], json: bool, explain: bool) -> Result<()> {
    let snap = load(snapshot)?;
    if json {
        println!("{}", snap.resolve(host, path).json());
        return Ok(());
    }
    if !explain {
        println!("{}", snap.resolve(host, path));
        return Ok(());
    }
    let mut trace = Explain::default();
    let r = snap.resolve_traced(host, path, &mut trace);
    let mut out = String::new();
    let shown = |b: &[u8]| String::from_utf8_lossy(b).escape_debug().to_string();
    let _ = writeln!(out, "request   Host \"{}\"  path \"{}\"", shown(host), shown(path));
    match &trace.host {
        None => {
            let _ = writeln!(out, "host      refused by rule 1");
        }
        Some(h) => {
            let _ = writeln!(out, "host      normalized to {h}");
            let _ = writeln!(out, "entries   (index keys have their labels reversed)");
            for (domain, route) in &trace.entries {
                let state = match route {
                    Some(at) => format!("present, record {at}"),
                    None => "absent".to_owned(),
                };
                let _ = writeln!(out, "          {domain:<40} key {:<40} {state}", key_of(domain));
            }
            match r.domain() {
                Some(d) if d.is_wildcard() => {
                    let _ = writeln!(out, "matched   {d} (no exact entry; the wildcard with the longest suffix)");
                }
                Some(d) => {
                    let _ = writeln!(out, "matched   {d} (exact entry)");
                }
                None if matches!(r, Resolution::NotFound) && trace.entries.iter().all(|e| e.1.is_none()) => {
                    let _ = writeln!(out, "matched   nothing: no exact entry and no wildcard covers this host");
                }
                None => {}
            }
            let matched = r.domain().and_then(|d| {
                trace.entries.iter().find(|(name, id)| id.is_some() && d == *name.as_str()).and_then(|e| e.1)
            });
            match matched.and_then(|at| snap.route_at(at)) {
                Some(Route::Static(site)) => {
                    let _ = writeln!(
                        out,
                        "route     static site s3://{}/{}; {}; fallback {}",
                        site.bucket,
                        site.prefix,
                        match site.assets {
                            Some(a) => format!("{} assets", a.len()),
                            None => "no Assets list (the bucket decides)".to_owned(),
                        },
                        site.fallback.unwrap_or("none")
                    );
                }
                Some(Route::Balancer(o)) => {
                    let _ = writeln!(
                        out,
                        "route     {}://{}:{} (the path does not matter)",
                        o.scheme.as_str(),
                        o.host,
                        o.port
                    );
                }
                None => {}
            }
            for (name, found) in &trace.assets {
                let _ = writeln!(out, "asset     {name:<40} {}", if *found { "present" } else { "absent" });
            }
        }
    }
    let _ = writeln!(out, "answer    {}", r.to_string().replace('\n', "\n          "));
    print!("{out}");
    Ok(())
}

fn cmd_inspect(path: &Path, json: bool) -> Result<()> {
    let snap = load(path)?;
    let bytes = snap.as_bytes();
    let id = snapshot_id(bytes);
    let (mut statics, mut with_assets, mut balancers, mut wildcards) = (0usize, 0usize, 0usize, 0usize);
    snap.for_each_route(|domain, route| {
        if domain.starts_with("*.") {
            wildcards += 1;
        }
        match route {
            Route::Static(s) => {
                statics += 1;
                with_assets += s.assets.is_some() as usize;
            }
            Route::Balancer(_) => balancers += 1,
        }
    });
    let routes = snap.route_count() as usize;
    let per_route = bytes.len() as f64 / routes.max(1) as f64;
    if json {
        let sections: serde_json::Map<String, serde_json::Value> =
            snap.sections().iter().map(|s| (s.kind.name().to_owned(), s.len.into())).collect();
        let v = serde_json::json!({
            "format_version": snap.format_version(),
            "id": id,
            "size": bytes.len(),
            "bytes_per_route": (per_route * 10.0).round() / 10.0,
            "routes": {
                "total": routes,
                "static": statics,
                "static_with_assets": with_assets,
                "balancer": balancers,
                "wildcard": wildcards,
            },
            "sections": sections,
        });
        println!("{v}");
        return Ok(());
    }
    println!("snapshot  {}", path.display());
    println!("format    version {}", snap.format_version());
    println!("id        {id}");
    println!("size      {} bytes ({per_route:.1} bytes/route)", bytes.len());
    println!(
        "routes    {routes}: {statics} static sites ({with_assets} with an Assets list), {balancers} balancers; {wildcards} wildcards"
    );
    print!("sections ");
    for s in snap.sections() {
        print!(" {} {} B", s.kind.name(), s.len);
    }
    println!();
    Ok(())
}
