//! `edgeroute watch`: publish on every change to a table.

use anyhow::Result;
use edgeroute_control::watch;

use super::Aws;
use crate::flags::WatchArgs;

/// Follows the table's stream (or scans it periodically) and publishes a
/// new snapshot after every burst of changes, until Ctrl-C.
pub fn run(args: &WatchArgs) -> Result<()> {
    let mut aws = Aws::new(args.aws.options());
    let config = aws.config()?;
    let store = aws.store(&args.store)?;
    let options = args.options();
    eprintln!("info: watching {}, publishing to {}", args.table, args.store);
    aws.block_on(async {
        // Ctrl-C or SIGTERM: the watcher gives the store's lease back and stops.
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        watch::watch(&config, &args.table, &store, &options, shutdown).await?;
        eprintln!("info: stopped");
        Ok(())
    })?
}
