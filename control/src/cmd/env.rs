//! `edgeroute env` and `edgeroute handles`: preview environments and the
//! handle pools their hostnames can take names from.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use edgeroute_control::aws::RetryPolicy;
use edgeroute_control::env::{CreateRequest, Environments, HandleChoice, Randomness, Tables};

use super::Aws;
use crate::flags::{AwsArgs, EnvCommand, HandlesCommand, TableArgs};

/// The environments of `tables`, through the AWS configuration of `args`.
fn environments(tables: &TableArgs, args: &AwsArgs) -> Result<(Environments, Aws)> {
    let mut aws = Aws::new(args.options());
    let config = aws.config()?;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let tables = Tables::new(&tables.table, tables.state_table.as_deref());
    Ok((Environments::new(client, tables, RetryPolicy::default()), aws))
}

/// Runs one `edgeroute env` command.
pub fn env(command: EnvCommand) -> Result<()> {
    match command {
        EnvCommand::Init { tables, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let done = aws.block_on(envs.init())??;
            let t = envs.tables();
            for table in [&t.routes, &t.state] {
                let what = if done.created.contains(table) { "created" } else { "exists" };
                println!("{table}: {what}");
            }
            if done.stream_enabled {
                println!("{}: stream enabled (NEW_AND_OLD_IMAGES), for `edgeroute watch`", t.routes);
            }
            Ok(())
        }
        EnvCommand::Create { tables, app, services, domain, handle_pool, handle, json, aws } => {
            let services = services
                .iter()
                .map(|s| match s.split_once('=') {
                    Some((name, target)) if !name.is_empty() && !target.is_empty() => {
                        Ok((name.to_owned(), target.to_owned()))
                    }
                    _ => bail!("--service {s:?}: expected NAME=TARGET"),
                })
                .collect::<Result<Vec<_>>>()?;
            let handle = match (handle_pool, handle) {
                (Some(pool), _) => HandleChoice::Pool(pool),
                (None, Some(name)) => HandleChoice::Named(name),
                (None, None) => HandleChoice::Random,
            };
            let request = CreateRequest { app, services, domain, handle };
            let (envs, mut aws) = environments(&tables, &aws)?;
            let env = aws.block_on(envs.create(&request, &mut Randomness::Os))??;
            if json {
                println!("{}", env.json());
            } else {
                println!(
                    "created environment {}{}",
                    env.env_id,
                    env.handle.as_ref().map_or(String::new(), |h| format!(" (handle {h})"))
                );
                for (service, host) in &env.hostnames {
                    println!("  {service}  {host}");
                }
            }
            Ok(())
        }
        EnvCommand::Delete { tables, env_id, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let done = aws.block_on(envs.delete(&env_id))??;
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
        EnvCommand::List { tables, json, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let list = aws.block_on(envs.list())??;
            if json {
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
        EnvCommand::Deploy { tables, env_id, service, target, assets_file, fallback, aws } => {
            let assets = match &assets_file {
                Some(file) => Some(read_assets(file)?),
                None => None,
            };
            let (envs, mut aws) = environments(&tables, &aws)?;
            let host =
                aws.block_on(envs.deploy(&env_id, &service, &target, assets.as_deref(), fallback.as_deref()))??;
            println!("{service} ({host}) -> {target}");
            Ok(())
        }
    }
}

/// An asset list: a JSON array of keys, or one key per line.
fn read_assets(file: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).with_context(|| format!("{}: not a JSON array of strings", file.display()));
    }
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

/// Runs one `edgeroute handles` command.
pub fn handles(command: HandlesCommand) -> Result<()> {
    match command {
        HandlesCommand::Add { tables, pool, names, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let added = aws.block_on(envs.add_handles(&pool, &names))??;
            let new = added.iter().filter(|(_, new)| *new).count();
            println!("pool {pool}: {new} handle(s) added");
            for (name, _) in added.iter().filter(|(_, new)| !*new) {
                println!("  {name}: in the pool already, left as it is");
            }
            Ok(())
        }
        HandlesCommand::List { tables, pool, json, aws } => {
            let (envs, mut aws) = environments(&tables, &aws)?;
            let handles = aws.block_on(envs.handles(&pool))??;
            if json {
                let all: Vec<_> =
                    handles.iter().map(|h| serde_json::json!({"name": h.name, "env_id": h.env_id})).collect();
                println!("{}", serde_json::Value::Array(all));
                return Ok(());
            }
            if handles.is_empty() {
                println!("pool {pool} has no handles");
            }
            for h in &handles {
                println!(
                    "{:<20} {}",
                    h.name,
                    h.env_id.as_deref().map_or("free".to_owned(), |e| format!("taken by {e}"))
                );
            }
            Ok(())
        }
    }
}
