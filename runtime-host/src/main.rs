//! `edgeroute-host`: resolve and serve HTTP through the WebAssembly edge
//! module. `main` only sets up logging, parses and dispatches: the flags
//! are [`flags`]'s, each command's work is its module in [`cmd`].

mod cmd;
mod flags;

use std::process::ExitCode;

use clap::Parser as _;

use crate::flags::{Cli, Command};

fn main() -> ExitCode {
    // The SDK's own warnings (instance-metadata lookups, with debug dumps)
    // are left out by default: the host says in one line what is missing,
    // and each failed request's log line gives the SDK's reason.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aws_config=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match Cli::parse().command {
        Command::Resolve(args) => cmd::resolve::run(&args),
        Command::Serve(args) => cmd::serve::run(&args),
        Command::Demo(args) => cmd::demo::run(&args),
        Command::Bench(args) => cmd::bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", edgeroute_cli::report::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
