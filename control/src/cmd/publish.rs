//! `edgeroute publish`: one snapshot file into a store.

use anyhow::{bail, Context as _, Result};
use edgeroute_control::publish::{self, Published};
use edgeroute_edge::SnapshotId;

use super::Aws;
use crate::flags::PublishArgs;

/// Stores the snapshot and moves the store's pointer to it, then prunes old
/// snapshots if `--keep` says so. A snapshot that does not go live (held
/// back by a pin, or dropping more routes than `--max-drop` allows) is
/// stored, reported, and the command fails.
pub fn run(args: &PublishArgs) -> Result<()> {
    let file = args.snapshot.path();
    let store_name = &args.store;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read snapshot {}", file.display()))?;
    let mut aws = Aws::new(args.aws.options());
    let store = aws.store(&args.store)?;
    let published = aws
        .block_on(publish::publish_guarded(
            &store,
            &bytes,
            &args.source,
            0,
            args.drop_guard(),
            &args.lease.manual("publish"),
        ))?
        .with_context(|| format!("cannot publish {} to {store_name}", file.display()))?;
    let pruned = match args.keep {
        Some(keep) => {
            let grace = std::time::Duration::from_secs(args.keep_grace);
            Some(aws.block_on(publish::prune_with_grace(&store, keep as usize, grace))??)
        }
        None => None,
    };
    if args.json {
        let v = match &published {
            Published::Current(p) => serde_json::json!({
                "outcome": "published", "store": store_name.to_string(), "pointer": p,
            }),
            Published::AlreadyCurrent(p) => serde_json::json!({
                "outcome": "already_current", "store": store_name.to_string(), "pointer": p,
            }),
            Published::HeldBack { pinned } => serde_json::json!({
                "outcome": "held_back", "store": store_name.to_string(), "id": SnapshotId::of(&bytes).to_string(), "pinned": pinned,
            }),
            Published::DropRefused { current, routes, guard } => serde_json::json!({
                "outcome": "drop_refused", "store": store_name.to_string(), "id": SnapshotId::of(&bytes).to_string(),
                "routes": routes, "max_drop_percent": guard.max_drop_percent, "pointer": current,
            }),
        };
        let mut v = v;
        if let Some(pruned) = &pruned {
            v["pruned"] = serde_json::json!(pruned);
        }
        println!("{v}");
    } else {
        match &published {
            Published::Current(p) => println!(
                "published {} ({} routes) to {store_name}; previous {}",
                p.id,
                p.routes_estimate(),
                p.previous.as_deref().unwrap_or("none")
            ),
            Published::AlreadyCurrent(p) => println!("{} is already current in {store_name}", p.id),
            Published::HeldBack { pinned } => println!(
                "stored {} in {store_name} but held back: the store is pinned to {} (`edgeroute unpin --store {store_name}` to go on)",
                SnapshotId::of(&bytes),
                pinned.id
            ),
            Published::DropRefused { .. } => println!("stored {} in {store_name} but did not publish it", SnapshotId::of(&bytes)),
        }
        if let (Some(keep), Some(pruned)) = (args.keep, &pruned) {
            println!("pruned {} snapshot(s), kept the {keep} most recent and the current one", pruned.len());
        }
    }
    // What did not go live is not a success: a script must be able to tell.
    match published {
        Published::HeldBack { pinned } => {
            bail!("not published: {store_name} is pinned to {} by a rollback; `edgeroute unpin --store {store_name}` to go on", pinned.id)
        }
        Published::DropRefused { current, routes, guard } => bail!(
            "not published: the snapshot has {routes} routes where {store_name} serves {}, more than {} % fewer \
             (a wrong table, region or filter?); --allow-drop publishes it anyway",
            current.map_or(0, |p| p.routes_lower_bound()),
            guard.max_drop_percent
        ),
        Published::Current(_) | Published::AlreadyCurrent(_) => {}
    }
    Ok(())
}
