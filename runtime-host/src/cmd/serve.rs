//! `edgeroute-host serve`: the data plane, from a snapshot file or a store.

use anyhow::{Context as _, Result};
use edgeroute_host::follow::{default_cache, Follower};
use edgeroute_host::{EdgeEngine, HostState, Router};
use edgeroute_store::{Store, StoreLocation};

use edgeroute_host::aws::InS3;
use edgeroute_host::reload::SnapshotFile;

use super::{load_router, shutdown_signal, start, static_objects};
use crate::flags::ServeArgs;

/// Serves until SIGTERM or Ctrl-C, then drains. The host's shared state
/// (the router and its counters) is made here, once, from the snapshot
/// file or the store's current snapshot; a store is then followed in the
/// background. Requests are served on the data plane's own threads; this
/// thread runs the follower, the admin listener and the signals.
pub fn run(args: &ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    runtime.block_on(async {
        // AWS settings only when something is in S3: a directory store with
        // --static-root never looks for credentials or a region.
        let in_s3 = match (&args.routes.store, &args.origins.static_root) {
            (Some(StoreLocation::S3 { .. }), _) => InS3::Store,
            (_, None) => InS3::StaticSites,
            (_, Some(_)) => InS3::Nothing,
        };
        let settings = args.aws.settings();
        let aws = edgeroute_host::aws::load(&settings, in_s3).await?;
        // Checked before the store is read: a typo is refused at once.
        let objects = static_objects(&args.origins, aws.as_ref(), &settings.limits)?;
        let max_behind = args.follower.max_behind();
        // From here on SIGHUP reloads (the file, or the store's pointer); it
        // must never end the host, not even while it starts.
        #[cfg(unix)]
        let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        let (state, follower) = match (&args.routes.snapshot, &args.routes.store) {
            (Some(file), _) => (HostState::leak(load_router(file)?, max_behind), None),
            (None, Some(location)) => {
                let store = match (location, &aws) {
                    (StoreLocation::S3 { bucket, prefix }, Some(config)) => Store::S3 {
                        client: edgeroute_host::aws::s3_client(config, &settings.limits),
                        bucket: bucket.clone(),
                        prefix: prefix.clone(),
                    },
                    _ => Store::open_existing(location, None)?,
                };
                let cache = args.follower.cache_dir.clone().unwrap_or_else(|| default_cache(location));
                // The host starts whatever the store and the cache hold: with
                // no snapshot at all it answers 503 and keeps trying.
                let state = HostState::leak(Router::empty(EdgeEngine::new()?), max_behind);
                (state, Some(Follower::new(store, cache)))
            }
            (None, None) => unreachable!("clap requires one"),
        };
        // Listening first: `/health` answers (503 until there is a snapshot)
        // however long the store takes.
        let workers = start(state, &args.listener, &args.origins, objects).await?;
        if let Some(follower) = follower {
            // In the background: SIGTERM drains even while the host starts.
            let interval = args.follower.poll_interval();
            tokio::spawn(async move {
                follower.start(state).await;
                follower.follow(state, interval).await
            });
        }
        if let Some(file) = &args.routes.snapshot {
            let file = SnapshotFile::new(file);
            tokio::spawn(async move { file.follow(state).await });
        }
        shutdown_signal().await;
        workers.shutdown().await;
        Ok(())
    })
}
