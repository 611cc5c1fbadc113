//! What a host following `edgeroute watch` fetches per change: loads a
//! generated table into a streamed table on moto's server, runs the
//! watcher (in process, default thresholds) on a directory store, makes
//! one-route changes one at a time (adds, then deletes of the names added),
//! and then replays the store's history as a host that sees every state
//! would fetch it: the pointer, each layer it does not hold yet, and the
//! base when it changes (a compaction). Prints the average and worst bytes
//! per change, the merges and compactions among them, and what the
//! compaction threshold makes a compaction cost per change in the long run.
//!
//! Past [`SEED_FROM`] routes the table is not loaded into moto and
//! Scanned (moto answers each page of a Scan by going through the whole
//! table: a bootstrap of 1M items did not end in an hour): the watcher
//! bootstraps on a one-item table, stops, and the store gets what a
//! bootstrap of the whole table would have written, the full compile as
//! the current state and a checkpoint whose items are the table's (the
//! product's own resume path, no Scan); the restarted watcher resumes from
//! it and follows the stream as after any restart.
//!
//!     scripts/setup.sh --tests
//!     cargo run --release -p edgeroute-benches-e2e --bin watch_fetch -- [ROUTES] [CHANGES]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use edgeroute_compiler::{compile, Options};
use edgeroute_control::publish;
use edgeroute_control::watch::{self, WatchOptions};
use edgeroute_edge::SnapshotId;
use edgeroute_store::{ObjectKind, Store, StoreLocation};
use edgeroute_tests::export::typed;
use edgeroute_tests::generate_table;
use edgeroute_tests_aws::{create_streamed_table, delete_items, put_items, Moto};
use serde_json::{json, Value as Json};

/// From this many routes on, the watcher resumes from a seeded checkpoint
/// instead of Scanning moto.
const SEED_FROM: usize = 200_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let routes: usize = args.next().map_or(1_000_000, |a| a.parse().expect("ROUTES"));
    let changes: usize = args.next().map_or(1000, |a| a.parse().expect("CHANGES"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let moto = Moto::start();
    let config = rt.block_on(moto.config());
    let table = generate_table(routes, 7);
    let seeded = routes >= SEED_FROM;
    let seed = json!({"Domain": "seed.example.com", "Target": "s3://sites/seed"});
    let items: Vec<Json> = match seeded {
        true => vec![typed(&seed)],
        false => table.jsonl.lines().map(|l| typed(&serde_json::from_str(l).expect("json"))).collect(),
    };
    let start = Instant::now();
    rt.block_on(async {
        create_streamed_table(&config, "routes").await;
        for chunk in items.chunks(10_000) {
            put_items(&config, "routes", chunk).await;
        }
    });
    println!("{} routes loaded into moto in {:.1} s", items.len(), start.elapsed().as_secs_f64());
    drop(items);

    let dir = std::env::temp_dir().join(format!("edgeroute-watch-fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let location = StoreLocation::Dir(dir.join("store"));
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    // One Scan segment: moto answers every segment's page by going through
    // the whole table, so four segments cost it four times as much.
    let scan = edgeroute_control::scan::ScanOptions { segments: Some(1), ..Default::default() };
    let options = WatchOptions { reports: Some(tx), scan, ..WatchOptions::default() };
    let policy = options.compaction;
    let run_watcher = |options: WatchOptions| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (watch_config, watch_location) = (config.clone(), location.clone());
        let task = rt.spawn(async move {
            let store = Store::open(&watch_location, None).expect("store");
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = watch::watch(&watch_config, "routes", &store, &options, shutdown).await {
                eprintln!("watch stopped: {e}");
            }
        });
        (stop, task)
    };
    let (stop, task) = run_watcher(options.clone());
    let first = rt.block_on(reports.recv()).expect("the bootstrap publish");
    println!("bootstrap publish: {} routes in {:.1} s", first.routes, start.elapsed().as_secs_f64());
    let _keep_running = if seeded {
        let store = Store::open(&location, None).expect("store");
        // The bootstrap's checkpoint, then the watcher stopped (its lease given back).
        let checkpoint = loop {
            if let Some((bytes, version)) = rt.block_on(store.read_checkpoint()).expect("checkpoint") {
                break (bytes, version);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = stop.send(());
        rt.block_on(task).expect("the watcher stops");
        let t = Instant::now();
        seed_store(&rt, &store, &table.jsonl, &seed, checkpoint);
        println!("store seeded with the {routes}-route table and its checkpoint in {:.1} s", t.elapsed().as_secs_f64());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        reports = rx;
        let restarted = run_watcher(WatchOptions { reports: Some(tx), ..options });
        // Resumed once its status says it follows the stream; a change
        // then comes through as after any restart.
        std::thread::sleep(Duration::from_secs(2));
        restarted
    } else {
        (stop, task)
    };
    let store = Store::open(&location, None).expect("store");
    let bootstrap = rt.block_on(store.history()).expect("history").len();

    let t0 = Instant::now();
    for i in 0..changes {
        let domain = format!("fetch-{}.example.com", i % (changes / 2).max(1));
        if i < changes / 2 {
            let item = json!({"Domain": {"S": domain}, "Target": {"S": format!("s3://sites/fetch-{i}")}});
            rt.block_on(put_items(&config, "routes", &[item]));
        } else {
            rt.block_on(delete_items(&config, "routes", &[&domain]));
        }
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), reports.recv()).await })
            .expect("published within a minute")
            .expect("the watcher runs");
    }
    println!("{changes} changes published in {:.1} s", t0.elapsed().as_secs_f64());
    // A merge or a compaction may follow the last change.
    std::thread::sleep(Duration::from_secs(5));

    // The history, replayed as a host that sees every state fetches it.
    let history_dir = dir.join("store").join("history");
    let mut names: Vec<_> =
        std::fs::read_dir(&history_dir).expect("history").map(|e| e.expect("entry").path()).collect();
    names.sort();
    let history = rt.block_on(store.history()).expect("history");
    assert_eq!(history.len(), names.len());
    let (mut total, mut worst, mut merges, mut compactions) = (0u64, 0u64, 0, 0);
    let mut held: HashSet<String> = history[bootstrap - 1].layer_ids().map(str::to_owned).collect();
    let mut base = history[bootstrap - 1].base.id.clone();
    let mut before = &history[bootstrap - 1];
    for (n, (pointer, name)) in history.iter().zip(&names).enumerate().skip(bootstrap) {
        let mut bytes = std::fs::metadata(name).expect("entry").len();
        if pointer.base.id != base {
            let layer_bytes: u64 = before.layers.iter().map(|l| l.size).sum();
            println!(
                "  state {}: a compaction (the state before had {} layers, {layer_bytes} bytes)",
                n - bootstrap + 1,
                before.layers.len()
            );
            bytes += pointer.base.size;
            base = pointer.base.id.clone();
            held.clear();
            compactions += 1;
        } else if pointer.layers.iter().any(|l| !held.contains(&l.id)) && pointer.layers.len() < held.len() {
            merges += 1;
        }
        for layer in &pointer.layers {
            if held.insert(layer.id.clone()) {
                bytes += layer.size;
            }
        }
        held.retain(|id| pointer.layers.iter().any(|l| l.id == *id));
        before = pointer;
        total += bytes;
        worst = worst.max(bytes);
    }
    let last = history.last().expect("a state");
    println!(
        "\n{changes} one-route changes at {routes} routes (default thresholds): {} states after the bootstrap \
         ({merges} merges, {compactions} compactions)",
        history.len() - bootstrap
    );
    println!(
        "  a host fetched {total} bytes: {:.0} per change on average, {worst} at worst (goal: 128 KB on average)",
        total as f64 / changes as f64
    );
    let (layer_bytes, records): (u64, u64) =
        (last.layers.iter().map(|l| l.size).sum(), last.layers.iter().map(|l| l.upserts + l.deletes).sum());
    let threshold = policy.bytes_for(last.base.size);
    let per_record = if records == 0 { 0.0 } else { layer_bytes as f64 / records as f64 };
    if per_record > 0.0 {
        let changes_per_compaction = threshold as f64 / per_record;
        println!(
            "  now: base {} bytes, {} layers of {layer_bytes} bytes ({records} records); compaction at {threshold} \
             layer bytes, about every {changes_per_compaction:.0} such changes: {:.0} bytes of base per change",
            last.base.size,
            last.layers.len(),
            last.base.size as f64 / changes_per_compaction
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes to the store what a bootstrap Scan of `jsonl` and the seed item
/// would have: the table's full compile as the current state, and the
/// bootstrap's checkpoint (its stream positions kept) naming that state and
/// an items object of every item as DynamoDB writes it.
fn seed_store(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    jsonl: &str,
    seed: &Json,
    (checkpoint, version): (Vec<u8>, edgeroute_store::Version),
) {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    let mut checkpoint: Json = serde_json::from_slice(&checkpoint).expect("checkpoint");
    let table_arn = checkpoint["table"].as_str().expect("a table").to_owned();
    let mut all: BTreeMap<String, Option<Arc<str>>> = BTreeMap::new();
    let mut text = String::with_capacity(jsonl.len() + 100);
    for line in jsonl.lines().chain(std::iter::once(seed.to_string().as_str())) {
        let item: Json = serde_json::from_str(line).expect("json");
        let key = item["Domain"].as_str().expect("a Domain").to_owned();
        all.insert(key, Some(Arc::from(typed(&item).to_string())));
        text.push_str(line);
        text.push('\n');
    }
    let items = watch::encode_items(watch::ItemsKind::All, &table_arn, &all);
    let items_id = SnapshotId::of(&items).to_string();
    let parsed = edgeroute_compiler::source::parse_json(text.as_bytes()).expect("table");
    let compiled = compile(parsed, Options { skip_invalid: true }, &()).expect("compile");
    rt.block_on(async {
        store.put_object(ObjectKind::Items, &items_id, &items).await.expect("items");
        let published = publish::publish(store, &compiled.bytes, "watch_fetch seed", compiled.skipped.len() as u64)
            .await
            .expect("publish");
        let publish::Published::Current(pointer) = published else { panic!("not published: {published:?}") };
        checkpoint["state"] = json!(pointer.id);
        checkpoint["items"] = json!(items_id);
        checkpoint["changes"] = json!([]);
        checkpoint["layer_tiers"] = json!([]);
        let bytes = serde_json::to_vec(&checkpoint).expect("json");
        store.replace_checkpoint(bytes, Some(&version)).await.expect("checkpoint replaced");
    });
}
