//! `edgeroute watch`: publish on every change to a table.

use anyhow::{Context as _, Result};
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
    aws.block_on(async {
        if let Some(addr) = args.admin_listen.0 {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for the admin endpoints (--admin-listen; `off` disables them)"))?;
            tracing::info!("admin endpoints on http://{}/metrics and /health", listener.local_addr()?);
            tokio::spawn(edgeroute_admin::serve(options.status.clone(), listener));
        }
        tracing::info!("watching {}, publishing to {}", args.table, args.store);
        // Ctrl-C or SIGTERM: the watcher gives the store's lease back and stops.
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        watch::watch(&config, &args.table, &store, &options, shutdown).await?;
        tracing::info!("stopped");
        Ok::<(), anyhow::Error>(())
    })?
}
