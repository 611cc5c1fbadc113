//! `edgeroute rollback`, `unpin`, `history` and `store migrate`: a store's
//! pointer and its past.

use anyhow::{Context as _, Result};
use edgeroute_control::publish;
use edgeroute_control::state::{self, Migrated};
use edgeroute_store::{ObjectKind, Pointer};

use super::Aws;
use crate::flags::{HistoryArgs, MigrateArgs, RollbackArgs, StoreCommand, UnpinArgs};

/// `edgeroute store …`.
pub fn store(command: &StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Migrate(args) => migrate(args),
    }
}

/// Rewrites a pointer of the form before layers in the form with them.
fn migrate(args: &MigrateArgs) -> Result<()> {
    let name = &args.store;
    let mut aws = Aws::new(args.aws.options());
    let store = aws.existing_store(name)?;
    let outcome = aws
        .block_on(state::migrate(&store, &args.lease.manual("store migrate")))?
        .with_context(|| format!("cannot migrate {name}"))?;
    let (what, pointer) = match &outcome {
        Migrated::Migrated(p) => ("migrated", Some(p)),
        Migrated::Already(p) => ("already", Some(p)),
        Migrated::Empty => ("empty", None),
    };
    if args.json {
        println!("{}", serde_json::json!({"outcome": what, "store": name.to_string(), "pointer": pointer}));
        return Ok(());
    }
    match outcome {
        Migrated::Migrated(p) => {
            println!("migrated {name}: its pointer (state {}) is in the form with layers (pointer version 2)", p.id);
            println!("  hosts and Lambdas of versions before layers now refuse it and keep what they serve");
        }
        Migrated::Already(p) => println!("{name} is migrated already (state {})", p.id),
        Migrated::Empty => println!("{name} has no pointer yet: its first publish writes the form with layers"),
    }
    Ok(())
}

/// A state in one phrase: its base, and its layers if any.
fn describe(p: &Pointer) -> String {
    let routes = match p.routes {
        Some(n) => format!("{n} routes"),
        None => format!("~{} routes", p.routes_estimate()),
    };
    match p.layers.len() {
        0 => routes,
        n => format!("{routes}, base {} + {n} layer(s)", &p.base.id[..p.base.id.len().min(12)]),
    }
}

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
    println!("rolled back {name} to {} ({}) and pinned it", pointer.id, describe(&pointer));
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
    let stored: std::collections::HashSet<String> = [ObjectKind::Snapshot, ObjectKind::Layer]
        .into_iter()
        .map(|kind| aws.block_on(store.objects(kind)))
        .collect::<Result<Result<Vec<_>, _>>>()??
        .into_iter()
        .flatten()
        .map(|(id, _)| id)
        .collect();
    for p in &history {
        let mut marks = Vec::new();
        if current.as_ref().is_some_and(|c| c.id == p.id && c.created_at == p.created_at) {
            marks.push(if current.as_ref().is_some_and(|c| c.pinned) { "current, pinned" } else { "current" });
        }
        if !stored.contains(&p.base.id) || p.layers.iter().any(|l| !stored.contains(&l.id)) {
            marks.push("pruned");
        }
        let marks = if marks.is_empty() { String::new() } else { format!("  [{}]", marks.join(", ")) };
        println!("{}  {}  {}  {}{marks}", p.created_at, p.id, describe(p), p.source);
    }
    if history.is_empty() {
        println!("{name} has published nothing yet");
    }
    Ok(())
}
