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
    }
}
