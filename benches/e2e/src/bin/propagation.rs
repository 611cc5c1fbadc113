//! How fast a table change reaches a host: writes and deletes items in a
//! streamed table on moto's server, with `edgeroute watch` (in process)
//! publishing to a directory store and a host (`edgeroute-host`'s
//! `follow::Follower`, polling the pointer every 50 ms) following it, and times
//! each change from the write until the host answers with the new routing.
//! Prints p50/p99 of the whole and of each stage, so that moto's own
//! slowness (the stream stage) is visible.
//!
//!     scripts/setup.sh --tests
//!     cargo run --release -p edgeroute-benches-e2e --bin propagation -- [ROUTES] [CHANGES]

use std::time::{Duration, Instant};

use edgeroute_control::watch::{self, WatchOptions};
use edgeroute_edge::Resolution;
use edgeroute_host::follow::Follower;
use edgeroute_host::{EdgeEngine, HostState, Router};
use edgeroute_store::{Store, StoreLocation};
use edgeroute_tests::export::typed;
use edgeroute_tests::generate_table;
use edgeroute_tests_aws::{create_streamed_table, delete_items, put_items, Moto};
use serde_json::{json, Value as Json};

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1].as_secs_f64() * 1000.0;
    (at(0.5), at(0.99))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let routes: usize = args.next().map_or(1000, |a| a.parse().expect("ROUTES"));
    let changes: usize = args.next().map_or(40, |a| a.parse().expect("CHANGES"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let moto = Moto::start();
    let config = rt.block_on(moto.config());
    let table = generate_table(routes, 7);
    let items: Vec<Json> =
        table.jsonl.lines().map(|l| typed(&serde_json::from_str(l).expect("json"))).collect::<Vec<_>>();
    let start = Instant::now();
    rt.block_on(async {
        create_streamed_table(&config, "routes").await;
        put_items(&config, "routes", &items).await;
    });
    println!("{} routes loaded into moto in {:.1} s", items.len(), start.elapsed().as_secs_f64());

    let dir = std::env::temp_dir().join(format!("edgeroute-propagation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let location = StoreLocation::Dir(dir.join("store"));
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let options = WatchOptions { reports: Some(tx), ..WatchOptions::default() };
    let watch_config = config.clone();
    let watch_location = location.clone();
    rt.spawn(async move {
        let store = Store::open(&watch_location, None).expect("store");
        if let Err(e) = watch::watch(&watch_config, "routes", &store, &options, std::future::pending()).await {
            eprintln!("watch stopped: {e}");
        }
    });
    let first = rt.block_on(reports.recv()).expect("the bootstrap publish");
    println!("bootstrap publish: {} routes (compile {:?}, upload {:?})", first.routes, first.compile, first.upload);
    let follower = Follower::new(Store::open(&location, None).expect("store"), dir.join("cache"));
    let state = HostState::leak(Router::empty(EdgeEngine::new().expect("engine")), Duration::MAX);
    rt.block_on(follower.start(state));
    assert!(state.router.live().is_some(), "the host serves the bootstrap publish");
    rt.spawn(async move { follower.follow(state, Duration::from_millis(50)).await });
    let mut worker = state.router.worker();

    let (mut total, mut stream, mut debounce, mut compile, mut upload, mut hosting) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..changes {
        // Even changes add a host, odd ones delete the one added before.
        let domain = format!("bench-{}.example.com", i / 2);
        let t0 = Instant::now();
        if i % 2 == 0 {
            let item = json!({"Domain": {"S": domain}, "Target": {"S": format!("s3://sites/bench-{i}")}});
            rt.block_on(put_items(&config, "routes", &[item]));
        } else {
            rt.block_on(delete_items(&config, "routes", &[&domain]));
        }
        let want_found = i % 2 == 0;
        loop {
            let found = !matches!(worker.resolve(domain.as_bytes(), b"/").expect("resolve"), Resolution::NotFound);
            if found == want_found {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "change {i} never served");
            std::thread::sleep(Duration::from_micros(500));
        }
        let served = Instant::now();
        let mut report = None;
        while let Ok(r) = reports.try_recv() {
            report = Some(r);
        }
        // The host may serve the change before the watcher has sent its
        // report (it is sent once the pointer moved): wait for it then.
        let report = report
            .or_else(|| {
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), reports.recv()).await }).ok()?
            })
            .expect("the change was published");
        total.push(served - t0);
        stream.push(report.stream_delay);
        debounce.push(report.debounce);
        compile.push(report.compile);
        upload.push(report.upload);
        hosting.push(served.saturating_duration_since(report.published_at));
        std::thread::sleep(Duration::from_millis(150));
    }
    println!(
        "\n{changes} changes (adds and deletes) at {} routes; host polls every 50 ms; watch debounce 100 ms",
        items.len()
    );
    println!("{:<40} {:>10} {:>10}", "stage", "p50 ms", "p99 ms");
    for (name, v) in [
        ("write to served (total)", total),
        ("  stream (write to read, moto)", stream),
        ("  debounce", debounce),
        ("  compile", compile),
        ("  publish (object + pointer)", upload),
        ("  host (pointer to served)", hosting),
    ] {
        let (p50, p99) = percentiles(v);
        println!("{name:<40} {p50:>10.1} {p99:>10.1}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
