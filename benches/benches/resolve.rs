//! Resolve speed on a 1M-route table: edgeroute's resolver against the
//! floor of any in-memory design, `HashMap<String, u32>::get` on the exact
//! hostname. The baseline does no host validation, no wildcard search and
//! no path rules; edgeroute does all of them. The summary at the end prints
//! ns per resolve for both and their ratio, from this run's estimates.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, Criterion, Throughput};
use edgeroute_compiler::Options;
use edgeroute_edge::Snapshot;
use edgeroute_tests::{compile_text, Rng};

const BATCH: usize = 1024;

fn requests(hosts: &[String]) -> Vec<(String, &'static str)> {
    let mut rng = Rng::new(99);
    let paths = ["/", "/index.html", "/app.js", "/docs/", "/settings/profile", "/api/v1/users?page=2"];
    (0..BATCH)
        .map(|i| {
            // Mostly hits, some wildcard hits and misses, like real traffic.
            let host = match i % 16 {
                0 => format!("feature-{}.pr-{}.previews.example.com", rng.below(1000), rng.below(50)),
                1 => format!("nope-{}.example.com", rng.below(1_000_000)),
                _ => rng.pick(hosts).clone(),
            };
            (host, *rng.pick(&paths))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let table = edgeroute_benches::table();
    let compiled = compile_text(&table.jsonl, Options::default()).expect("generated tables are valid");
    let snap = Snapshot::from_bytes(compiled.bytes).expect("valid snapshot");
    let map: HashMap<String, u32> = table.hosts.iter().enumerate().map(|(i, h)| (h.clone(), i as u32)).collect();
    let reqs = requests(&table.hosts);
    eprintln!("table: {} routes, snapshot {} bytes", snap.route_count(), snap.as_bytes().len());

    let mut group = c.benchmark_group("resolve_1m");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("edgeroute", |b| {
        b.iter(|| {
            for (host, path) in &reqs {
                black_box(snap.resolve(black_box(host.as_bytes()), black_box(path.as_bytes())));
            }
        })
    });
    group.bench_function("hashmap_get", |b| {
        b.iter(|| {
            for (host, _) in &reqs {
                black_box(map.get(black_box(host.as_str())));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);

/// Reads criterion's point estimate (mean, ns per batch) for one benchmark.
fn estimate(id: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let text = std::fs::read_to_string(dir.join("criterion/resolve_1m").join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if let (Some(ours), Some(base)) = (estimate("edgeroute"), estimate("hashmap_get")) {
        let (ours, base) = (ours / BATCH as f64, base / BATCH as f64);
        println!();
        println!("summary (this run, {} routes, mean per resolve):", edgeroute_benches::route_count());
        println!("  edgeroute resolve          {ours:>8.1} ns");
        println!("  HashMap<String,u32>::get   {base:>8.1} ns");
        println!("  ratio                      {:>8.2}x the HashMap baseline", ours / base);
    }
}
