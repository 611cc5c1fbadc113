//! `edgeroute-host`: resolve through the WebAssembly edge module.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use edgeroute_host::proxy::{Proxy, ProxyConfig, TlsName};
use edgeroute_host::server::{DataPlane, Limits, Workers};
use edgeroute_host::statics::{DirObjects, Objects, S3Objects};
use edgeroute_host::{demo, follow, Edge, EdgeEngine, Router};
use edgeroute_store::StoreLocation;

#[derive(Parser)]
#[command(name = "edgeroute-host", version, about = "The edgeroute data plane: the edge module in wasmtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Resolve a request through the WebAssembly module; prints exactly what
    /// `edgeroute resolve` prints for the same input.
    Resolve {
        #[arg(long, value_name = "FILE")]
        snapshot: PathBuf,
        /// The Host header value (put it after `--` if it starts with `-`).
        host: std::ffi::OsString,
        /// The request path, with optional ?query.
        #[arg(default_value = "/")]
        path: std::ffi::OsString,
        /// Print exactly one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Serve HTTP: route every request by its host and path through the
    /// edge module, from a snapshot file or following a store.
    Serve {
        #[command(flatten)]
        snapshots: SnapshotArgs,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// The demo: a built-in upstream on 127.0.0.1:9042 (the demo table's load
    /// balancer) and the router serving the demo snapshot and sites.
    Demo {
        #[arg(long, value_name = "FILE", default_value = "target/demo/demo.snap")]
        snapshot: PathBuf,
        /// Make the demo's requests, check the answers and exit.
        #[arg(long)]
        smoke: bool,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Time lookups through Wasm, the native resolver, fst and a HashMap.
    Bench {
        #[arg(long, value_name = "FILE")]
        snapshot: PathBuf,
        /// One `HOST PATH` per line (see `benches/src/bin/generate.rs`).
        #[arg(long, value_name = "FILE")]
        queries: PathBuf,
        /// Wasm worker threads, each resolving every query.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Where the routes come from: one file, or a store to follow.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct SnapshotArgs {
    /// Serve this snapshot file.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// Follow a store (dir:PATH or s3://BUCKET[/PREFIX]) and serve its current snapshot.
    #[arg(long, value_name = "STORE")]
    snapshots: Option<edgeroute_store::StoreLocation>,
}

#[derive(clap::Args)]
struct HttpArgs {
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// `/metrics` and `/health`; never on the public listener.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    admin_listen: SocketAddr,
    /// Static sites from this directory (`DIR/BUCKET/KEY`) instead of S3.
    #[arg(long, value_name = "DIR")]
    static_root: Option<PathBuf>,
    /// How often to look at the store's pointer (S3: a conditional GET).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    poll_ms: u64,
    /// Where the last good snapshot is kept, for a start without the store
    /// [default: ~/.cache/edgeroute/<store hash>]
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Every AWS request (the store, static sites) to this URL, with
    /// path-style S3 addressing (a local server); also AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// The name a TLS origin's certificate must carry, also sent as SNI.
    #[arg(long, value_enum, default_value = "origin")]
    origin_tls_name: TlsName,
    /// PEM certificates to trust for TLS origins, besides the system's.
    #[arg(long, value_name = "FILE")]
    origin_ca: Vec<PathBuf>,
    /// Keep a client's X-Forwarded-Proto instead of setting `http` (behind a
    /// load balancer that terminates TLS).
    #[arg(long)]
    trust_forwarded_proto: bool,
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    connect_timeout_ms: u64,
    /// The longest wait for an origin's response, and between two reads of its body.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    read_timeout_ms: u64,
    /// Threads serving requests, each with its own event loop
    /// [default: the CPUs this process may run on]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Connections served at once (all threads together); more wait in the backlog.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Largest request head (HTTP/1.1) or header list (HTTP/2); larger is a 431.
    #[arg(long, value_name = "BYTES", default_value_t = 65_536)]
    max_header_bytes: usize,
    /// On SIGTERM or Ctrl-C, how long to wait for requests in flight.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    drain_seconds: u64,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Resolve { snapshot, host, path, json } => {
            let bytes =
                std::fs::read(&snapshot).with_context(|| format!("cannot read snapshot {}", snapshot.display()))?;
            let router = Router::new(EdgeEngine::new()?, &bytes)
                .with_context(|| format!("cannot use snapshot {}", snapshot.display()))?;
            let mut worker = router.worker();
            let answer = worker.resolve(host.as_encoded_bytes(), path.as_encoded_bytes())?;
            if json {
                println!("{}", answer.json());
            } else {
                println!("{answer}");
            }
            Ok(())
        }
        Command::Serve { snapshots, http } => {
            // The following, admin and signals; requests are served on the
            // data plane's own threads (server::Workers).
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
            runtime.block_on(async {
                // AWS settings only when something is in S3 (a directory store
                // with --static-root never looks for credentials or a region).
                let needs_aws =
                    http.static_root.is_none() || matches!(snapshots.snapshots, Some(StoreLocation::S3 { .. }));
                let aws = if needs_aws { aws_config(&http).await } else { aws_config::SdkConfig::builder().build() };
                let (edge, follower) = match (&snapshots.snapshot, &snapshots.snapshots) {
                    (Some(file), _) => {
                        let bytes =
                            std::fs::read(file).with_context(|| format!("cannot read snapshot {}", file.display()))?;
                        let router = Router::new(EdgeEngine::new()?, &bytes)
                            .with_context(|| format!("cannot use snapshot {}", file.display()))?;
                        (Edge::leak(router), None)
                    }
                    (None, Some(location)) => {
                        let config = matches!(location, StoreLocation::S3 { .. }).then_some(&aws);
                        let store = edgeroute_store::Store::open(location, config)?;
                        let cache =
                            http.cache_dir.clone().unwrap_or_else(|| follow::default_cache(&location.to_string()));
                        let follower = follow::Follower::start(store, cache)
                            .await
                            .with_context(|| format!("cannot serve from {location}"))?;
                        (follower.edge(), Some(follower))
                    }
                    (None, None) => unreachable!("clap requires one"),
                };
                if let Some(follower) = follower {
                    let interval = Duration::from_millis(http.poll_ms.max(10));
                    tokio::spawn(async move { follower.follow(interval).await });
                }
                run_data_plane(edge, &http, &aws, shutdown_signal()).await
            })
        }
        Command::Demo { snapshot, smoke, mut http } => {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
            http.static_root.get_or_insert_with(|| PathBuf::from("snapshots/demo-sites"));
            runtime.block_on(run_demo(&snapshot, smoke, &http))
        }
        Command::Bench { snapshot, queries, threads, json } => {
            let bytes =
                std::fs::read(&snapshot).with_context(|| format!("cannot read snapshot {}", snapshot.display()))?;
            let text =
                std::fs::read_to_string(&queries).with_context(|| format!("cannot read {}", queries.display()))?;
            let queries = edgeroute_host::bench::parse_queries(&text);
            let report = edgeroute_host::bench::run(&bytes, &queries, threads)
                .with_context(|| format!("cannot bench snapshot {}", snapshot.display()))?;
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            Ok(())
        }
    }
}

/// AWS settings the usual way (environment, `~/.aws`), with `--endpoint-url` on top.
async fn aws_config(http: &HttpArgs) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = &http.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: draining requests in flight");
}

/// Binds the public and admin listeners and serves until `shutdown`.
async fn run_data_plane(
    edge: &'static Edge,
    http: &HttpArgs,
    aws: &aws_config::SdkConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let workers = bind(edge, http, aws).await?;
    shutdown.await;
    workers.shutdown().await;
    Ok(())
}

/// The data plane for `http`: its admin listener serving, and its public
/// listener bound and served by its threads.
async fn bind(edge: &'static Edge, http: &HttpArgs, aws: &aws_config::SdkConfig) -> Result<Workers> {
    if http.admin_listen == http.listen {
        anyhow::bail!("--admin-listen must differ from --listen: metrics are never served on the public listener");
    }
    let objects = match &http.static_root {
        Some(root) => Objects::Dir(DirObjects::new(root)),
        None => Objects::S3(S3Objects::new(aws)),
    };
    let mut extra_roots = Vec::new();
    for file in &http.origin_ca {
        extra_roots.push(std::fs::read(file).with_context(|| format!("cannot read --origin-ca {}", file.display()))?);
    }
    let proxy = Proxy::new(ProxyConfig {
        connect_timeout: Duration::from_millis(http.connect_timeout_ms),
        read_timeout: Duration::from_millis(http.read_timeout_ms),
        tls_name: http.origin_tls_name,
        extra_roots,
        trust_forwarded_proto: http.trust_forwarded_proto,
        ..ProxyConfig::default()
    })?;
    let listener =
        std::net::TcpListener::bind(http.listen).with_context(|| format!("cannot listen on {}", http.listen))?;
    let admin = tokio::net::TcpListener::bind(http.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-listen)", http.admin_listen))?;
    let threads = http.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let workers = Workers::start(&DataPlane { edge, objects, proxy }, listener, threads, limits(http))
        .context("cannot start the serving threads")?;
    let live = edge.router.live();
    tracing::info!(
        "listening on {} ({threads} thread(s)), serving {} ({} routes); metrics on http://{}/metrics",
        workers.local_addr(),
        live.id,
        live.route_count,
        admin.local_addr().unwrap_or(http.admin_listen)
    );
    tokio::spawn(edgeroute_host::admin::serve(edge, admin));
    Ok(workers)
}

fn limits(http: &HttpArgs) -> Limits {
    Limits {
        max_connections: http.max_connections,
        max_header_bytes: http.max_header_bytes,
        drain: Duration::from_secs(http.drain_seconds),
        ..Limits::default()
    }
}

/// `edgeroute-host demo`: the built-in upstream and the router on the demo
/// snapshot; prints the requests to try, or with `smoke` makes them.
async fn run_demo(snapshot: &std::path::Path, smoke: bool, http: &HttpArgs) -> Result<()> {
    let bytes = std::fs::read(snapshot).with_context(|| {
        format!("cannot read the demo snapshot {} (scripts/demo.sh compiles it)", snapshot.display())
    })?;
    let router = Router::new(EdgeEngine::new()?, &bytes)
        .with_context(|| format!("cannot use snapshot {}", snapshot.display()))?;
    let edge = Edge::leak(router);
    let upstream = tokio::net::TcpListener::bind(demo::UPSTREAM)
        .await
        .with_context(|| format!("cannot start the demo upstream on {}", demo::UPSTREAM))?;
    tokio::spawn(demo::upstream(upstream));
    // Static sites come from the directory backend; AWS is never asked.
    let aws = aws_config::SdkConfig::builder().build();
    let workers = bind(edge, http, &aws).await?;
    let addr = workers.local_addr();
    let admin = http.admin_listen;
    if smoke {
        let failed = demo::smoke(addr, admin).await;
        workers.shutdown().await;
        if !failed.is_empty() {
            anyhow::bail!("{} demo check(s) failed:\n  {}", failed.len(), failed.join("\n  "));
        }
        println!("the demo answers as it should");
        return Ok(());
    }
    println!("edgeroute is routing the demo table on http://{addr} (Ctrl-C stops it). Try:\n");
    for check in demo::checks() {
        println!("  # {}\n  {}\n", check.what, check.curl(addr));
    }
    println!("  # the metrics\n  curl -s http://{admin}/metrics\n");
    shutdown_signal().await;
    workers.shutdown().await;
    Ok(())
}
