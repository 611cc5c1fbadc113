//! Compile time and snapshot size for a 1M-route table, against the JSON
//! file it comes from. Goals: compile ≤ 3 s, snapshot ≤ 40 % of the JSON.
//! Run with `cargo bench -p edgeroute-benches --bench compile`.

use std::time::Instant;

use edgeroute_compiler::{compile, source, Options};
use edgeroute_edge::Snapshot;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes with --list; nothing to list.
    }
    let table = edgeroute_benches::table();
    let json_len = table.jsonl.len();
    let routes = table.hosts.len();
    let mut parse_s = Vec::new();
    let mut compile_s = Vec::new();
    let mut snapshot = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let items = source::parse_json(table.jsonl.as_bytes()).expect("valid JSON");
        let parsed = t.elapsed().as_secs_f64();
        let compiled = compile(items, Options::default(), &()).expect("valid table");
        parse_s.push(parsed);
        compile_s.push(t.elapsed().as_secs_f64());
        snapshot = compiled.bytes;
    }
    let runs: Vec<String> = compile_s.iter().map(|s| format!("{s:.3}")).collect();
    parse_s.sort_by(f64::total_cmp);
    compile_s.sort_by(f64::total_cmp);
    let t = Instant::now();
    let snap = Snapshot::from_bytes(snapshot.as_slice()).expect("valid snapshot");
    let load = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let crc = edgeroute_edge::crc32c(&snapshot);
    let crc_s = t.elapsed().as_secs_f64();
    std::hint::black_box(crc);

    println!("compile report ({} routes, best of 3)", snap.route_count());
    println!(
        "  JSON Lines file            {:>12} bytes ({:.1} bytes/route)",
        json_len,
        json_len as f64 / routes as f64
    );
    println!(
        "  snapshot                   {:>12} bytes ({:.1} bytes/route, {:.1} % of the JSON)",
        snapshot.len(),
        snapshot.len() as f64 / routes as f64,
        100.0 * snapshot.len() as f64 / json_len as f64
    );
    for s in snap.sections() {
        println!(
            "    {:<8}                 {:>12} bytes ({:.1} bytes/route)",
            s.kind.name(),
            s.len,
            s.len as f64 / routes as f64
        );
    }
    println!("  parse JSON                 {:>12.3} s", parse_s[0]);
    println!(
        "  parse + validate + write   {:>12.3} s   (goal: <= 3 s; runs in order: {} s)",
        compile_s[0],
        runs.join(", ")
    );
    println!("  Snapshot::from_bytes       {:>12.3} s   (checksum + full validation)", load);
    println!("    of which CRC-32C         {:>12.3} s   (portable slicing-by-8)", crc_s);
}
