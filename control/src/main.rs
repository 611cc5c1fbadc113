//! `edgeroute`: compile routing tables into snapshots, publish them, and
//! resolve requests against them. `main` only parses and dispatches: the
//! flags are [`flags`]'s, each command's work is its module in [`cmd`].

mod cmd;
mod flags;

use std::process::ExitCode;

use clap::Parser as _;

use crate::flags::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(args) => cmd::compile::run(&args),
        Command::Resolve(args) => cmd::resolve::run(&args),
        Command::Inspect(args) => cmd::inspect::run(&args),
        Command::Publish(args) => cmd::publish::run(&args),
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
