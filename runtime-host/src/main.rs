//! `edgeroute-host`: resolve through the WebAssembly edge module.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use edgeroute_host::{serve, EdgeEngine, Router};

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
    /// Serve HTTP from a store's current snapshot, following its pointer.
    /// Until the data plane lands, every request is answered with its
    /// resolution as JSON.
    Serve {
        /// The store: dir:PATH or s3://BUCKET[/PREFIX].
        #[arg(long, value_name = "STORE")]
        snapshots: edgeroute_store::StoreLocation,
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// How often to look at the pointer (S3: a conditional GET).
        #[arg(long, value_name = "MS", default_value_t = 250)]
        poll_ms: u64,
        /// Where the last good snapshot is kept, for a start without the store
        /// [default: ~/.cache/edgeroute/<store hash>]
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Every AWS request to this URL (a local server); also AWS_ENDPOINT_URL.
        #[arg(long, value_name = "URL")]
        endpoint_url: Option<String>,
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

fn main() -> ExitCode {
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
        Command::Serve { snapshots, listen, poll_ms, cache_dir, endpoint_url } => {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
            runtime.block_on(async {
                let config = match &snapshots {
                    edgeroute_store::StoreLocation::S3 { .. } => {
                        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                        if let Some(url) = &endpoint_url {
                            loader = loader.endpoint_url(url);
                        }
                        Some(loader.load().await)
                    }
                    edgeroute_store::StoreLocation::Dir(_) => None,
                };
                let store = edgeroute_store::Store::open(&snapshots, config.as_ref())?;
                let cache = cache_dir.unwrap_or_else(|| serve::default_cache(&snapshots.to_string()));
                let host =
                    serve::Host::start(store, cache).await.with_context(|| format!("cannot serve from {snapshots}"))?;
                // One host for the life of the process.
                let host: &'static serve::Host = Box::leak(Box::new(host));
                tokio::spawn(host.follow(std::time::Duration::from_millis(poll_ms.max(10))));
                serve::serve(host, listen).await?;
                Ok(())
            })
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
