//! `edgeroute env …` and `edgeroute handles …`: preview environments and the
//! handle pools their hostnames can take names from; one function per
//! subcommand, each printing text or (`--json`) one JSON value.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use edgeroute_control::aws::RetryPolicy;
use edgeroute_control::env::{CreateRequest, Environments, HandleChoice, Randomness, Tables};
use serde_json::json;

use super::Aws;
use crate::flags::{
    AwsArgs, EnvCommand, EnvCreateArgs, EnvDeleteArgs, EnvDeployArgs, EnvGcArgs, EnvInitArgs, EnvListArgs,
    HandlesAddArgs, HandlesCommand, HandlesListArgs, HandlesReclaimArgs, TableArgs,
};

/// Runs one `edgeroute env` subcommand.
pub fn env(command: &EnvCommand) -> Result<()> {
    match command {
        EnvCommand::Init(args) => init(args),
        EnvCommand::Create(args) => create(args),
        EnvCommand::Delete(args) => delete(args),
        EnvCommand::List(args) => list(args),
        EnvCommand::Deploy(args) => deploy(args),
        EnvCommand::Gc(args) => gc(args),
    }
}

/// Runs one `edgeroute handles` subcommand.
pub fn handles(command: &HandlesCommand) -> Result<()> {
    match command {
        HandlesCommand::Add(args) => handles_add(args),
        HandlesCommand::List(args) => handles_list(args),
        HandlesCommand::Reclaim(args) => handles_reclaim(args),
    }
}

/// The environments of `tables`, through the AWS configuration of `args`.
fn environments(tables: &TableArgs, args: &AwsArgs) -> Result<(Environments, Aws)> {
    let mut aws = Aws::new(args.options());
    let config = aws.config()?;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let tables = Tables::new(&tables.table, tables.state_table.as_deref());
    Ok((Environments::new(client, tables, RetryPolicy::default()), aws))
}

/// `env init`: creates the routing table with its stream and the state
/// table, where they are missing.
fn init(args: &EnvInitArgs) -> Result<()> {
    let (envs, mut aws) = environments(&args.tables, &args.aws)?;
    let done = aws.block_on(envs.init())??;
    let t = envs.tables();
    let what = |table: &str| if done.created.iter().any(|c| c == table) { "created" } else { "exists" };
    if args.json {
        let v = json!({
            "routes": {"table": t.routes, "state": what(&t.routes), "stream_enabled": done.stream_enabled},
            "state": {"table": t.state, "state": what(&t.state)},
        });
        println!("{v}");
        return Ok(());
    }
    for table in [&t.routes, &t.state] {
        println!("{table}: {}", what(table));
    }
    if done.stream_enabled {
        println!("{}: stream enabled (NEW_AND_OLD_IMAGES), for `edgeroute watch`", t.routes);
    }
    Ok(())
}

/// `env create`: one hostname per service, all written in one transaction.
fn create(args: &EnvCreateArgs) -> Result<()> {
    let services = args
        .services
        .iter()
        .map(|s| match s.split_once('=') {
            Some((name, target)) if !name.is_empty() && !target.is_empty() => Ok((name.to_owned(), target.to_owned())),
            _ => bail!("--service {s:?}: expected NAME=TARGET"),
        })
        .collect::<Result<Vec<_>>>()?;
    let handle = match (&args.handle_pool, &args.handle) {
        (Some(pool), _) => HandleChoice::Pool(pool.clone()),
        (None, Some(name)) => HandleChoice::Named(name.clone()),
        (None, None) => HandleChoice::Random,
    };
    let request = CreateRequest { app: args.app.clone(), services, domain: args.domain.clone(), handle };
    let (envs, mut aws) = environments(&args.tables, &args.aws)?;
    let env = aws.block_on(envs.create(&request, &mut Randomness::Os))??;
    if args.json {
        println!("{}", env.json());
        return Ok(());
    }
    let handle = env.handle.as_ref().map_or(String::new(), |h| format!(" (handle {h})"));
    println!("created environment {}{handle}", env.env_id);
    for (service, host) in &env.hostnames {
        println!("  {service}  {host}");
    }
    Ok(())
}

/// `env delete`: removes the environment's routes that are still its own
/// and gives its handle back.
fn delete(args: &EnvDeleteArgs) -> Result<()> {
    let env_id = &args.env_id;
    let (envs, mut aws) = environments(&args.tables, &args.aws)?;
    let done = aws.block_on(envs.delete(env_id))??;
    if args.json {
        let v = json!({
            "env_id": env_id,
            "already_deleted": done.already,
            "removed": done.removed,
            "skipped": done.skipped,
            "handle_returned": done.handle_returned,
        });
        println!("{v}");
        return Ok(());
    }
    if done.already {
        println!("environment {env_id} was deleted already");
        return Ok(());
    }
    println!("deleted environment {env_id}: {} route(s) removed", done.removed.len());
    for host in &done.skipped {
        println!("  {host}: gone already, or another environment's now: left alone");
    }
    if let Some(handle) = &done.handle_returned {
        println!("  handle {handle} is free again");
    }
    Ok(())
}

/// `env list`: the environments that exist, oldest first.
fn list(args: &EnvListArgs) -> Result<()> {
    let (envs, mut aws) = environments(&args.tables, &args.aws)?;
    let list = aws.block_on(envs.list())??;
    if args.json {
        let all: Vec<_> = list
            .iter()
            .map(|e| {
                let mut v = e.json();
                v["app"] = e.app.clone().into();
                v["created_at"] = e.created_at.clone().into();
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(all));
        return Ok(());
    }
    for e in &list {
        let handle = e.handle.as_deref().unwrap_or("-");
        let hosts: Vec<&str> = e.hostnames.values().map(String::as_str).collect();
        println!("{}  {}  {:<10} {:<12} {}", e.created_at, e.env_id, e.app, handle, hosts.join(" "));
    }
    if list.is_empty() {
        println!("no environments");
    }
    Ok(())
}

/// `env deploy`: points one service of an environment at a new Target.
fn deploy(args: &EnvDeployArgs) -> Result<()> {
    let assets = match &args.assets_file {
        Some(file) => Some(read_assets(file)?),
        None => None,
    };
    let (envs, mut aws) = environments(&args.tables, &args.aws)?;
    let deployed = envs.deploy(&args.env_id, &args.service, &args.target, assets.as_deref(), args.fallback.as_deref());
    let host = aws.block_on(deployed)??;
    if args.json {
        let v = json!({"env_id": args.env_id, "service": args.service, "hostname": host, "target": args.target});
        println!("{v}");
        return Ok(());
    }
    println!("{} ({host}) -> {}", args.service, args.target);
    Ok(())
}

/// An asset list: a JSON array of keys, or one key per line.
fn read_assets(file: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).with_context(|| format!("{}: not a JSON array of strings", file.display()));
    }
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

/// `handles add`: adds handles to a pool; one already there is left as it is.
fn handles_add(args: &HandlesAddArgs) -> Result<()> {
    let pool = &args.pool;
    let (envs, mut aws) = environments(&args.tables, &args.aws)?;
    let added = aws.block_on(envs.add_handles(pool, &args.names))??;
    let (new, kept): (Vec<_>, Vec<_>) = added.iter().partition(|(_, new)| *new);
    if args.json {
        let names = |list: &[&(String, bool)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        println!("{}", json!({"pool": pool, "added": names(&new), "already_there": names(&kept)}));
        return Ok(());
    }
    println!("pool {pool}: {} handle(s) added", new.len());
    for (name, _) in kept {
        println!("  {name}: in the pool already, left as it is");
    }
    Ok(())
}

/// `handles list`: a pool's handles and the environment holding each.
fn handles_list(args: &HandlesListArgs) -> Result<()> {
    let pool = &args.pool;
    let (envs, mut aws) = environments(&args.tables, &args.aws)?;
    let handles = aws.block_on(envs.handles(pool))??;
    if args.json {
        let all: Vec<_> = handles.iter().map(|h| json!({"name": h.name, "env_id": h.env_id})).collect();
        println!("{}", serde_json::Value::Array(all));
        return Ok(());
    }
    if handles.is_empty() {
        println!("pool {pool} has no handles");
    }
    for h in &handles {
        println!("{:<20} {}", h.name, h.env_id.as_deref().map_or("free".to_owned(), |e| format!("taken by {e}")));
    }
    Ok(())
}

/// `handles reclaim`: returns the handles whose holder does not exist or is
/// deleted, taken longer ago than the grace period.
fn handles_reclaim(args: &HandlesReclaimArgs) -> Result<()> {
    let (envs, mut aws) = environments(&args.tables, &args.aws)?;
    let reclaimed = aws.block_on(envs.reclaim(&args.pool, args.grace.grace()))??;
    print_reclaimed(&reclaimed, args.json, &format!("pool {}", args.pool));
    Ok(())
}

/// `env gc`: finishes deletes killed half way, then reclaims in every pool.
fn gc(args: &EnvGcArgs) -> Result<()> {
    let (envs, mut aws) = environments(&args.tables, &args.aws)?;
    let collected = aws.block_on(envs.gc(args.grace.grace()))??;
    if args.json {
        println!("{}", serde_json::to_value(&collected)?);
        if !collected.failed.is_empty() {
            bail!("{} repair(s) failed: {}", collected.failed.len(), collected.failed.join("; "));
        }
        return Ok(());
    }
    for env_id in &collected.finished {
        println!("finished deleting environment {env_id}");
    }
    print_reclaimed(&collected.reclaimed, false, "any pool");
    if !collected.failed.is_empty() {
        bail!(
            "{} repair(s) failed (the rest were done; run it again): {}",
            collected.failed.len(),
            collected.failed.join("; ")
        );
    }
    Ok(())
}

fn print_reclaimed(reclaimed: &[edgeroute_control::env::Reclaimed], as_json: bool, scope: &str) {
    if as_json {
        println!("{}", json!({ "reclaimed": reclaimed }));
        return;
    }
    if reclaimed.is_empty() {
        println!("no handle to reclaim in {scope}");
    }
    for r in reclaimed {
        println!(
            "returned handle {} to pool {} (held by {}, which does not exist or is deleted)",
            r.handle, r.pool, r.env_id
        );
    }
}
