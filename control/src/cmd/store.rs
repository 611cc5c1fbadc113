//! `edgeroute rollback`, `unpin` and `history`: a store's pointer and its past.

use anyhow::Result;
use edgeroute_control::publish;

use super::Aws;
use crate::flags::{HistoryArgs, RollbackArgs, UnpinArgs};

/// Points the store at an earlier snapshot and pins it there.
pub fn rollback(args: &RollbackArgs) -> Result<()> {
    let mut aws = Aws::new(args.aws.options());
    let store = aws.existing_store(&args.store)?;
    let pointer =
        aws.block_on(publish::rollback_manual(&store, args.id.as_deref(), &args.lease.manual("rollback")))??;
    if args.json {
        println!("{}", serde_json::to_string(&pointer)?);
        return Ok(());
    }
    let name = &args.store;
    println!("rolled back {name} to {} ({} routes) and pinned it", pointer.id, pointer.routes);
    println!("  publishers hold back until `edgeroute unpin --store {name}`");
    Ok(())
}

/// Lifts a rollback's pin.
pub fn unpin(args: &UnpinArgs) -> Result<()> {
    let name = args.store.location();
    let mut aws = Aws::new(args.aws.options());
    let store = aws.existing_store(name)?;
    let unpinned = aws.block_on(publish::unpin_manual(&store, &args.lease.manual("unpin")))??;
    if args.json {
        let v = serde_json::json!({ "store": name.to_string(), "unpinned": unpinned.is_some(), "pointer": unpinned });
        println!("{v}");
        return Ok(());
    }
    match unpinned {
        Some(p) => println!("unpinned {name}; {} stays current until the next publish", p.id),
        None => println!("{name} is not pinned"),
    }
    Ok(())
}

/// Lists what the store has published, oldest first, marking the current
/// snapshot and the ones pruned since.
pub fn history(args: &HistoryArgs) -> Result<()> {
    let name = args.store.location();
    let mut aws = Aws::new(args.aws.options());
    let store = aws.existing_store(name)?;
    let history = aws.block_on(store.history())??;
    if args.json {
        for p in &history {
            println!("{}", serde_json::to_string(p)?);
        }
        return Ok(());
    }
    let current = aws.block_on(store.read_pointer())??.map(|(p, _)| p);
    let stored = aws.block_on(store.snapshot_ids())??;
    for p in &history {
        let mut marks = Vec::new();
        if current.as_ref().is_some_and(|c| c.id == p.id && c.created_at == p.created_at) {
            marks.push(if current.as_ref().is_some_and(|c| c.pinned) { "current, pinned" } else { "current" });
        }
        if !stored.contains(&p.id) {
            marks.push("pruned");
        }
        let marks = if marks.is_empty() { String::new() } else { format!("  [{}]", marks.join(", ")) };
        println!("{}  {}  {:>9} routes  {}{marks}", p.created_at, p.id, p.routes, p.source);
    }
    if history.is_empty() {
        println!("{name} has published nothing yet");
    }
    Ok(())
}
