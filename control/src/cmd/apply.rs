//! `edgeroute apply` and `edgeroute compact`: a store's state changed by a
//! layer, and its layers merged into a new base.

use std::io::Read as _;

use anyhow::{bail, Context as _, Result};
use edgeroute_compiler::elb::{apply_origins, arns_without_origin};
use edgeroute_compiler::{read_changes, source, CompileError, Options};
use edgeroute_control::aws::RetryPolicy;
use edgeroute_control::elb;
use edgeroute_control::state::{self, Applied, Compacted};

use super::{compile, Aws};
use crate::flags::{ApplyArgs, CompactArgs};

/// Reads the changes (every bad line reported), then writes them as one
/// layer on the store's current state and prints the new state; with
/// `--dry-run`, prints what they would change instead.
pub fn apply(args: &ApplyArgs) -> Result<()> {
    let (name, bytes) = if args.file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("cannot read the changes from standard input")?;
        ("standard input".to_owned(), bytes)
    } else {
        let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
        (args.file.display().to_string(), bytes)
    };
    let mut items = source::parse_json(&bytes).with_context(|| format!("{name} is not valid JSON"))?;
    let options = Options { skip_invalid: args.skip_invalid };
    let mut aws = Aws::new(args.aws.options());
    // ELB ARN Targets without Origin are looked up as `compile` does them:
    // every bad line is reported first, before anything asks AWS.
    let arns = arns_without_origin(&items);
    if !arns.is_empty() {
        let pending = compile::set_pending_origins(&mut items, &arns);
        if let Err(CompileError::Invalid(errors)) = read_changes(items.clone(), options) {
            return Err(invalid_lines(&name, &errors));
        }
        for &i in &pending {
            if let Ok(raw) = &mut items[i].1 {
                raw.origin = None;
            }
        }
        let needing = compile::items_needing(&items, &pending);
        let config = aws.config().with_context(|| compile::needs_elb(&needing, needing.len(), arns.len()))?;
        let origins = aws
            .block_on(elb::describe_load_balancers(&config, &arns, &RetryPolicy::default()))?
            .with_context(|| compile::needs_elb(&needing, needing.len(), arns.len()))?;
        apply_origins(&mut items, &origins);
    }
    let changes = match read_changes(items, options) {
        Ok(changes) => changes,
        Err(CompileError::Invalid(errors)) => return Err(invalid_lines(&name, &errors)),
        Err(e) => return Err(e.into()),
    };
    for e in &changes.skipped {
        eprintln!("left out: {e}");
    }
    if changes.changes.is_empty() {
        bail!("{name} holds no change to apply");
    }
    let store_name = &args.store;
    let store = aws.existing_store(store_name)?;
    if args.dry_run {
        let current = aws.block_on(store.read_pointer())??.map(|(p, _)| p);
        let current = current.with_context(|| format!("{store_name} has no current state: publish a base first"))?;
        let loaded = aws.block_on(state::load(&store, &current))??;
        let effect = state::effect(&loaded, &changes.changes);
        if args.json {
            let v = serde_json::json!({"dry_run": true, "state": current.id, "effect": effect, "skipped": changes.skipped.len()});
            println!("{v}");
        } else {
            println!("on state {} of {store_name}, these changes would:", current.id);
            for (what, names) in [
                ("add", &effect.added),
                ("replace", &effect.replaced),
                ("leave as they are", &effect.unchanged),
                ("remove", &effect.removed),
                ("delete names it does not hold", &effect.absent),
            ] {
                if !names.is_empty() {
                    println!("  {what} ({}): {}", names.len(), names.join(", "));
                }
            }
            println!("nothing written (--dry-run)");
        }
        return Ok(());
    }
    let outcome = aws
        .block_on(state::apply(
            &store,
            &changes.changes,
            &args.source,
            changes.skipped.len() as u64,
            &args.lease.manual("apply"),
        ))?
        .with_context(|| format!("cannot apply {name} to {store_name}"))?;
    match outcome {
        Applied::Current { pointer, layer, attempts } => {
            if args.json {
                let v = serde_json::json!({
                    "outcome": "applied",
                    "store": store_name.to_string(),
                    "state": pointer.id,
                    "base": pointer.base,
                    "layers": pointer.layers,
                    "layer": layer,
                    "upserts": changes.upserts(),
                    "deletes": changes.deletes(),
                    "skipped": changes.skipped.len(),
                    "attempts": attempts,
                });
                println!("{v}");
            } else {
                println!(
                    "applied {} upsert(s) and {} delete(s) to {store_name} as layer {} ({} bytes)",
                    changes.upserts(),
                    changes.deletes(),
                    layer.id,
                    layer.size
                );
                println!(
                    "state {}: base {} and {} layer(s), {} bytes of layers",
                    pointer.id,
                    pointer.base.id,
                    pointer.layers.len(),
                    pointer.layers.iter().map(|l| l.size).sum::<u64>()
                );
            }
            Ok(())
        }
        Applied::HeldBack { pinned } => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"outcome": "held_back", "store": store_name.to_string(), "pinned": pinned})
                );
            }
            bail!(
                "not applied: {store_name} is pinned to {} by a rollback; `edgeroute unpin --store {store_name}` to go on",
                pinned.id
            )
        }
    }
}

/// Prints every bad line and says that nothing was applied.
fn invalid_lines(name: &str, errors: &[edgeroute_compiler::ItemError]) -> anyhow::Error {
    for e in errors {
        eprintln!("{e}");
    }
    anyhow::anyhow!(
        "{} invalid line(s) in {name}; nothing applied (use --skip-invalid to leave them out)",
        errors.len()
    )
}

/// Merges the current state's layers into a new base and prints the state.
pub fn compact(args: &CompactArgs) -> Result<()> {
    let mut aws = Aws::new(args.aws.options());
    let store_name = &args.store;
    let store = aws.existing_store(store_name)?;
    let started = std::time::Instant::now();
    let outcome = aws
        .block_on(state::compact(&store, "edgeroute compact", &args.lease.manual("compact")))?
        .with_context(|| format!("cannot compact {store_name}"))?;
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Compacted::Current { pointer, merged, rebased } => {
            if args.json {
                let v = serde_json::json!({
                    "outcome": "compacted", "store": store_name.to_string(), "state": pointer.id, "base": pointer.base,
                    "layers": pointer.layers, "merged": merged, "rebased": rebased, "seconds": seconds,
                });
                println!("{v}");
            } else {
                println!(
                    "compacted {merged} layer(s) of {store_name} into base {} ({} routes, {} bytes) in {seconds:.2} s",
                    pointer.base.id, pointer.base.routes, pointer.base.size
                );
                if rebased > 0 {
                    println!("  {rebased} layer(s) applied meanwhile were rebased onto it; state {}", pointer.id);
                }
            }
            Ok(())
        }
        Compacted::NothingToDo(pointer) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"outcome": "nothing_to_do", "store": store_name.to_string(), "state": pointer.id})
                );
            } else {
                println!("{store_name} has no layers to compact (state {})", pointer.id);
            }
            Ok(())
        }
        Compacted::HeldBack { pinned } => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"outcome": "held_back", "store": store_name.to_string(), "pinned": pinned})
                );
            }
            bail!(
                "not compacted: {store_name} is pinned to {} by a rollback; `edgeroute unpin --store {store_name}` to go on",
                pinned.id
            )
        }
    }
}
