//! `edgeroute`: compile routing tables into snapshots, publish them, and
//! resolve requests against them. `main` only sets up logging, parses and
//! dispatches: the flags are [`flags`]'s, each command's work is its
//! module in [`cmd`].

mod cmd;
mod flags;

use std::process::ExitCode;

use clap::Parser as _;

use crate::flags::{Cli, Command};

fn main() -> ExitCode {
    // Log lines (the watcher's, and warnings such as a forced lease) go to
    // stderr through `tracing`: edgeroute's at `info`, its libraries' (the
    // AWS SDK's) at `error` (the errors edgeroute reports say it all, in one
    // line), unless `RUST_LOG` says otherwise; a command's own output stays
    // on stdout.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,edgeroute=info,edgeroute_control=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(args) => cmd::compile::run(&args),
        Command::Check(args) => cmd::compile::check(&args),
        Command::Resolve(args) => cmd::resolve::run(&args),
        Command::Inspect(args) => cmd::inspect::run(&args),
        Command::Publish(args) => cmd::publish::run(&args),
        Command::Apply(args) => cmd::apply::apply(&args),
        Command::Compact(args) => cmd::apply::compact(&args),
        Command::Store { command } => cmd::store::store(&command),
        Command::Watch(args) => cmd::watch::run(&args),
        Command::Rollback(args) => cmd::store::rollback(&args),
        Command::Unpin(args) => cmd::store::unpin(&args),
        Command::History(args) => cmd::store::history(&args),
        Command::Env { command } => cmd::env::env(&command),
        Command::Handles { command } => cmd::env::handles(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", edgeroute_cli::report::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
