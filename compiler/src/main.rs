//! `edgeroute`: compile routing tables into snapshots, resolve against them, inspect them.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use edgeroute_compiler::{compile, snapshot_id, source, CompileError, Options, Progress};
use edgeroute_edge::{Domain, HostName, Resolution, Route, Snapshot, Trace};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "edgeroute",
    version,
    about = "Compile hostname routing tables into snapshots and resolve requests against them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a routing table and write a snapshot.
    Compile {
        /// The table: a JSON file, as JSON Lines or one array.
        #[arg(long, value_name = "SOURCE")]
        from: PathBuf,
        /// Where to write the snapshot (written whole or not at all).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Leave invalid items out (and count them) instead of failing.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Resolve a request's Host and path against a snapshot.
    Resolve {
        #[arg(long, value_name = "FILE")]
        snapshot: PathBuf,
        /// The Host header value (put it after `--` if it starts with `-`).
        host: std::ffi::OsString,
        /// The request path, with optional ?query.
        #[arg(default_value = "/")]
        path: std::ffi::OsString,
        /// Print exactly one JSON object.
        #[arg(long, conflicts_with = "explain")]
        json: bool,
        /// Show the normalized host, the entries and keys tried, and why.
        #[arg(long)]
        explain: bool,
    },
    /// Describe a snapshot: version, id, routes by kind, section sizes.
    Inspect {
        snapshot: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile { from, out, skip_invalid } => cmd_compile(&from, &out, skip_invalid),
        Command::Resolve { snapshot, host, path, json, explain } => {
            cmd_resolve(&snapshot, host.as_encoded_bytes(), path.as_encoded_bytes(), json, explain)
        }
        Command::Inspect { snapshot, json } => cmd_inspect(&snapshot, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn validated(&self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
    }
    fn writing(&self) {
        self.0.set_message("writing snapshot");
    }
}

fn cmd_compile(from: &Path, out: &Path, skip_invalid: bool) -> Result<()> {
    let bytes = source::read_file(from)?;
    let items = source::parse_json_file(from, &bytes)?;
    // Only long compiles get a bar; indicatif hides it when stderr is not a terminal.
    let bar = if items.len() >= 50_000 { ProgressBar::new(items.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} validating {pos}/{len} items [{bar:30}] {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let compiled = match compile(items, Options { skip_invalid }, &Bar(bar.clone())) {
        Ok(c) => c,
        Err(CompileError::Invalid(errors)) => {
            bar.finish_and_clear();
            for e in &errors {
                eprintln!("invalid: {e}");
            }
            bail!(CompileError::Invalid(errors));
        }
        Err(e) => return Err(e.into()),
    };
    bar.finish_and_clear();
    for e in &compiled.skipped {
        eprintln!("skipped: {e}");
    }
    write_atomically(out, &compiled.bytes)?;
    let s = compiled.stats;
    let per_route = compiled.bytes.len() as f64 / s.routes.max(1) as f64;
    println!(
        "compiled {} routes ({} static sites, {} balancers; {} wildcards) into {}",
        s.routes,
        s.static_sites,
        s.balancers,
        s.wildcards,
        out.display()
    );
    println!("  size    {} bytes ({per_route:.1} bytes/route)", compiled.bytes.len());
    println!("  id      {}", compiled.id);
    if !compiled.skipped.is_empty() {
        println!("  skipped {} invalid items", compiled.skipped.len());
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it
/// over `path`: readers see the old file or the new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().context("--out needs a file name")?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

fn load(path: &Path) -> Result<Snapshot<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
    Snapshot::from_bytes(bytes).with_context(|| format!("cannot use snapshot {}", path.display()))
}

/// Collects the steps of a resolve for `--explain`.
#[derive(Default)]
struct Explain {
    host: Option<String>,
    entries: Vec<(String, Option<u32>)>,
    assets: Vec<(String, bool)>,
}

impl Trace for Explain {
    const EXHAUSTIVE: bool = true;
    fn host(&mut self, host: HostName<'_>) {
        self.host = Some(host.to_string());
    }
    fn entry(&mut self, domain: Domain<'_>, route: Option<u32>) {
        self.entries.push((domain.to_string(), route));
    }
    fn asset(&mut self, name: &dyn fmt::Display, found: bool) {
        self.assets.push((name.to_string(), found));
    }
}

fn key_of(domain: &str) -> String {
    domain.rsplit('.').collect::<Vec<_>>().join(".")
}

fn cmd_resolve(snapshot: &Path, host: &[u8], path: &[u8], json: bool, explain: bool) -> Result<()> {
    let snap = load(snapshot)?;
    if json {
        println!("{}", snap.resolve(host, path).json());
        return Ok(());
    }
    if !explain {
        println!("{}", snap.resolve(host, path));
        return Ok(());
    }
    let mut trace = Explain::default();
    let r = snap.resolve_traced(host, path, &mut trace);
    let mut out = String::new();
    let shown = |b: &[u8]| String::from_utf8_lossy(b).escape_debug().to_string();
    let _ = writeln!(out, "request   Host \"{}\"  path \"{}\"", shown(host), shown(path));
    match &trace.host {
        None => {
            let _ = writeln!(out, "host      refused by rule 1");
        }
        Some(h) => {
            let _ = writeln!(out, "host      normalized to {h}");
            let _ = writeln!(out, "entries   (index keys have their labels reversed)");
            for (domain, route) in &trace.entries {
                let state = match route {
                    Some(at) => format!("present, record {at}"),
                    None => "absent".to_owned(),
                };
                let _ = writeln!(out, "          {domain:<40} key {:<40} {state}", key_of(domain));
            }
            match r.domain() {
                Some(d) if d.is_wildcard() => {
                    let _ = writeln!(out, "matched   {d} (no exact entry; the wildcard with the longest suffix)");
                }
                Some(d) => {
                    let _ = writeln!(out, "matched   {d} (exact entry)");
                }
                None if matches!(r, Resolution::NotFound) && trace.entries.iter().all(|e| e.1.is_none()) => {
                    let _ = writeln!(out, "matched   nothing: no exact entry and no wildcard covers this host");
                }
                None => {}
            }
            let matched = r.domain().and_then(|d| {
                trace.entries.iter().find(|(name, id)| id.is_some() && d == *name.as_str()).and_then(|e| e.1)
            });
            match matched.and_then(|at| snap.route_at(at)) {
                Some(Route::Static(site)) => {
                    let _ = writeln!(
                        out,
                        "route     static site s3://{}/{}; {}; fallback {}",
                        site.bucket,
                        site.prefix,
                        match site.assets {
                            Some(a) => format!("{} assets", a.len()),
                            None => "no Assets list (the bucket decides)".to_owned(),
                        },
                        site.fallback.unwrap_or("none")
                    );
                }
                Some(Route::Balancer(o)) => {
                    let _ = writeln!(
                        out,
                        "route     {}://{}:{} (the path does not matter)",
                        o.scheme.as_str(),
                        o.host,
                        o.port
                    );
                }
                None => {}
            }
            for (name, found) in &trace.assets {
                let _ = writeln!(out, "asset     {name:<40} {}", if *found { "present" } else { "absent" });
            }
        }
    }
    let _ = writeln!(out, "answer    {}", r.to_string().replace('\n', "\n          "));
    print!("{out}");
    Ok(())
}

fn cmd_inspect(path: &Path, json: bool) -> Result<()> {
    let snap = load(path)?;
    let bytes = snap.as_bytes();
    let id = snapshot_id(bytes);
    let (mut statics, mut with_assets, mut balancers, mut wildcards) = (0usize, 0usize, 0usize, 0usize);
    snap.for_each_route(|domain, route| {
        if domain.starts_with("*.") {
            wildcards += 1;
        }
        match route {
            Route::Static(s) => {
                statics += 1;
                with_assets += s.assets.is_some() as usize;
            }
            Route::Balancer(_) => balancers += 1,
        }
    });
    let routes = snap.route_count() as usize;
    let per_route = bytes.len() as f64 / routes.max(1) as f64;
    if json {
        let sections: serde_json::Map<String, serde_json::Value> =
            snap.sections().iter().map(|s| (s.kind.name().to_owned(), s.len.into())).collect();
        let v = serde_json::json!({
            "format_version": snap.format_version(),
            "id": id,
            "size": bytes.len(),
            "bytes_per_route": (per_route * 10.0).round() / 10.0,
            "routes": {
                "total": routes,
                "static": statics,
                "static_with_assets": with_assets,
                "balancer": balancers,
                "wildcard": wildcards,
            },
            "sections": sections,
        });
        println!("{v}");
        return Ok(());
    }
    println!("snapshot  {}", path.display());
    println!("format    version {}", snap.format_version());
    println!("id        {id}");
    println!("size      {} bytes ({per_route:.1} bytes/route)", bytes.len());
    println!(
        "routes    {routes}: {statics} static sites ({with_assets} with an Assets list), {balancers} balancers; {wildcards} wildcards"
    );
    print!("sections ");
    for s in snap.sections() {
        print!(" {} {} B", s.kind.name(), s.len);
    }
    println!();
    Ok(())
}
