//! `edgeroute-host`: resolve through the WebAssembly edge module.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use edgeroute_host::{EdgeEngine, Router};

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
