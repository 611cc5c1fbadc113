//! [`explain`]: a resolve, step by step, for a person (`--explain` in both
//! binaries). Needs `std`; the resolver itself never does.

use std::fmt::{self, Write as _};
use std::string::{String, ToString};
use std::vec::Vec;

use crate::resolve::{Domain, Resolution, Trace};
use crate::{HostName, Route, Snapshot};

/// Collects the steps of a resolve.
#[derive(Default)]
struct Steps {
    host: Option<String>,
    entries: Vec<(String, Option<u32>)>,
    assets: Vec<(String, bool)>,
}

impl Trace for Steps {
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

/// A domain's index key: its labels reversed.
fn key_of(domain: &str) -> String {
    domain.rsplit('.').collect::<Vec<_>>().join(".")
}

/// Resolves `host` and `path` against `snapshot` and tells how: the
/// normalized host, every table entry looked up (with its index key) and
/// whether it is there, the entry that matched and why, its route, the
/// asset keys tried, and the answer. Several lines, each ending in `\n`.
pub fn explain<D: AsRef<[u8]>>(snapshot: &Snapshot<D>, host: &[u8], path: &[u8]) -> String {
    let mut trace = Steps::default();
    let r = snapshot.resolve_traced(host, path, &mut trace);
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
                    Some(at) => std::format!("present, record {at}"),
                    None => "absent".into(),
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
            match matched.and_then(|at| snapshot.route_at(at)) {
                Some(Route::Static(site)) => {
                    let assets = match site.assets {
                        Some(a) => std::format!("{} assets", a.len()),
                        None => "no Assets list (the bucket decides)".into(),
                    };
                    let _ = writeln!(
                        out,
                        "route     static site s3://{}/{}; {assets}; fallback {}",
                        site.bucket,
                        site.prefix,
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
    out
}
