//! Compiles one generated table from each source and prints how long each
//! takes, against the JSON file as the baseline: the live table through a
//! parallel Scan of moto's DynamoDB server on 127.0.0.1 (and of the same
//! pages replayed from memory, to time the client alone), the same items as a table export in AWS's layout, and the
//! JSON file. Checks that all give the same bytes.
//!
//!     scripts/setup.sh --tests   # installs moto into .tools/venv
//!     cargo run --release -p edgeroute-benches-e2e --bin sources -- [ITEMS]
//!
//! moto is a Python server: its Scan throughput is a floor for what the
//! scanner sustains, not DynamoDB's (which serves 1 MB pages per segment
//! in parallel, throttled by the table's read capacity).

use std::time::Instant;

use edgeroute_compiler::export::Export;
use edgeroute_compiler::{compile, source, Options};
use edgeroute_control::scan::{scan_table, ScanOptions};
use edgeroute_tests::export::{typed, write_export};
use edgeroute_tests::generate_table;
use edgeroute_tests_aws::{config_for, create_table, put_items, FaultProxy, Moto};
use serde_json::Value as Json;

fn main() {
    let n: usize = std::env::args().nth(1).map_or(100_000, |a| a.parse().expect("ITEMS is a number"));
    let table = generate_table(n, 42);
    let plain: Vec<Json> = table.jsonl.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let items: Vec<Json> = plain.iter().map(typed).collect();
    let n = items.len();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("{n} items ({} MB as JSON Lines), {cores} cores", table.jsonl.len() >> 20);

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let moto = Moto::start();
    let config = rt.block_on(moto.config());
    let start = Instant::now();
    rt.block_on(async {
        create_table(&config, "routes", "Domain").await;
        put_items(&config, "routes", &items).await;
    });
    println!("loaded moto with BatchWriteItem in {:.1} s\n", start.elapsed().as_secs_f64());

    let dir = std::env::temp_dir().join(format!("edgeroute-sources-{}", std::process::id()));
    let export_dir = write_export(&dir, "01764000000000-bench0001", &items, (n / 20_000).max(4));

    let mut rows: Vec<(String, f64, f64, Vec<u8>)> = Vec::new();
    // The JSON file: read, parse, compile.
    let file = dir.join("routes.jsonl");
    std::fs::write(&file, &table.jsonl).expect("write table");
    let start = Instant::now();
    let bytes = source::read_file(&file).expect("read");
    let parsed = source::parse_json(&bytes).expect("parse");
    let read = start.elapsed().as_secs_f64();
    let c = compile(parsed, Options::default(), &()).expect("compile");
    rows.push(("JSON file".into(), read, start.elapsed().as_secs_f64(), c.bytes));

    let start = Instant::now();
    let export = Export::open(&export_dir).expect("export");
    let parsed = export.items().expect("items");
    let read = start.elapsed().as_secs_f64();
    let c = compile(parsed, Options::default(), &()).expect("compile");
    rows.push(("export folder".into(), read, start.elapsed().as_secs_f64(), c.bytes));

    // The Scan through a proxy that records moto's pages, then again with
    // the pages replayed from memory: the second run is the client alone
    // (SDK, decoding, conversion), with moto's Python out of the way.
    let proxy = FaultProxy::replaying(&moto.endpoint);
    let proxied = rt.block_on(config_for(&proxy.endpoint));
    for (label, segments) in [("moto", 4), ("replayed pages", 4), ("replayed pages", 1)] {
        if segments == 1 {
            // Record the one-segment pages first (not timed).
            let options = ScanOptions { segments: Some(1), ..ScanOptions::default() };
            rt.block_on(scan_table(&proxied, "routes", &options, &())).expect("scan");
        }
        let options = ScanOptions { segments: Some(segments), ..ScanOptions::default() };
        let start = Instant::now();
        let scan = rt.block_on(scan_table(&proxied, "routes", &options, &())).expect("scan");
        let read = start.elapsed().as_secs_f64();
        assert_eq!(scan.items.len(), n);
        let c = compile(scan.items, Options::default(), &()).expect("compile");
        let name = format!("Scan, {label}, {segments} seg ({} pages)", scan.pages);
        rows.push((name, read, start.elapsed().as_secs_f64(), c.bytes));
    }

    let base = rows[0].2;
    println!("{:<40} {:>9} {:>12} {:>10} {:>9}", "source", "read s", "items/s", "compile s", "vs file");
    for (name, read, total, bytes) in &rows {
        println!("{name:<40} {read:>9.3} {:>12.0} {total:>10.3} {:>8.1}x", n as f64 / read, total / base);
        assert!(bytes == &rows[0].3, "{name} compiled to different bytes");
    }
    println!("\nall sources compiled to the same {} bytes", rows[0].3.len());
    let _ = std::fs::remove_dir_all(&dir);
}
