//! What a one-route change costs with layers, on a directory store, from
//! one run (`docs/benchmarks.md`, "Layers"):
//!
//! - from the start of `edgeroute apply` (the process) of one route to the
//!   moment a following `edgeroute-host serve` answers with it, 20 times:
//!   median and worst;
//! - the bytes each apply wrote to the store (layer, pointer, history
//!   entry) and the bytes the host fetched (its log says);
//! - a lookup through the base and a 10k-route layer against the base
//!   alone, through the WebAssembly module (`Worker`) and natively: 5
//!   alternating runs, medians, and their ratio.
//!
//! Run:
//!
//!     cargo build --release -p edgeroute-control -p edgeroute-host -p edgeroute-benches-e2e
//!     target/release/layers [ROUTES] [APPLIES]        (default 1000000 20)

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeroute_compiler::{read_changes, source, write_layer, Lineage, Options};
use edgeroute_edge::{Layer, Snapshot, SnapshotId};
use edgeroute_host::{EdgeEngine, HostLayer, Router, Worker};
use edgeroute_tests::{compile_text, generate_table, Rng};

fn bin(name: &str) -> PathBuf {
    let dir = std::env::current_exe().expect("exe").parent().expect("dir").to_owned();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: cargo build --release -p edgeroute-control -p edgeroute-host",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// The status of `GET /` with `Host: host`.
fn status(port: u16, host: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 16];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => bytes_under(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let routes: usize = args.next().map_or(1_000_000, |a| a.parse().expect("ROUTES"));
    let applies: usize = args.next().map_or(20, |a| a.parse().expect("APPLIES"));
    let dir = std::env::temp_dir().join(format!("edgeroute-layers-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sites/bench/site")).expect("dir");
    std::fs::write(dir.join("sites/bench/site/index.html"), "bench\n").expect("site");

    let table = generate_table(routes, 7);
    let t0 = Instant::now();
    let base = compile_text(&table.jsonl, Options::default()).expect("compile");
    println!("{routes} routes: base {} bytes, compiled in {:.1} s", base.bytes.len(), t0.elapsed().as_secs_f64());
    std::fs::write(dir.join("base.snap"), &base.bytes).expect("write");
    let store = format!("dir:{}", dir.join("store").display());
    let ok = |o: std::process::Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(Command::new(bin("edgeroute"))
        .args(["publish", "--snapshot", dir.join("base.snap").to_str().unwrap(), "--store", &store])
        .output()
        .expect("publish"));

    // The host, following the store.
    let (port, admin) = (free_port(), free_port());
    let log = dir.join("host.log");
    let mut host = Command::new(bin("edgeroute-host"))
        .args(["serve", "--store", &store, "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}"), "--poll-ms", "1000"])
        .args([
            "--static-root",
            dir.join("sites").to_str().unwrap(),
            "--cache-dir",
            dir.join("cache").to_str().unwrap(),
        ])
        .stderr(std::fs::File::create(&log).expect("log"))
        .stdout(Stdio::null())
        .spawn()
        .expect("edgeroute-host");
    let started = Instant::now();
    while status(port, table.hosts[0].as_str()).is_none_or(|s| s == 503) {
        assert!(started.elapsed() < Duration::from_secs(120), "the host never served");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("host serving after {:.1} s", started.elapsed().as_secs_f64());
    // Every serving thread instantiates the module at its first request
    // (tens of milliseconds at 1M routes): a host in service has done so
    // long before a change comes, so the clock starts on a warm host.
    let warm = Instant::now();
    for _ in 0..200 {
        // A name the table does not hold: answered by the resolver alone.
        status(port, "warm-up.invalid");
    }
    println!("warmed with 200 requests in {:.0} ms", warm.elapsed().as_secs_f64() * 1e3);
    // The host caches the base on disk after it serves it (50 MB of writes
    // and fsyncs at 1M routes), on its own thread: on this one machine the
    // store shares that disk, and an apply's fsyncs would wait behind them,
    // which a host and a store on their own machines never do. So the
    // clock starts once the cache is written.
    let cached = Instant::now();
    while !dir.join("cache/current.state").exists() {
        assert!(cached.elapsed() < Duration::from_secs(60), "the host never cached its base");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("the host's cache written {:.0} ms later", cached.elapsed().as_secs_f64() * 1e3);

    let mut served_ms = Vec::new();
    let mut written = Vec::new();
    for i in 0..applies {
        if i > 0 {
            // As a person or a pipeline applies: not back to back.
            std::thread::sleep(Duration::from_millis(50));
        }
        let name = format!("bench-{i}.example.com");
        let line = format!("{{\"Domain\":\"{name}\",\"Target\":\"s3://bench/site\"}}\n");
        let before = bytes_under(&dir.join("store"));
        let t0 = Instant::now();
        let mut apply = Command::new(bin("edgeroute"))
            .args(["apply", "--store", &store, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("apply");
        apply.stdin.take().expect("stdin").write_all(line.as_bytes()).expect("stdin");
        // Poll while the apply runs: its start is the clock's.
        while status(port, &name) != Some(200) {
            assert!(t0.elapsed() < Duration::from_secs(60), "{name} never served");
        }
        served_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        println!("  apply {i}: served after {:.1} ms", served_ms[i]);
        assert!(apply.wait().expect("apply").success());
        written.push(bytes_under(&dir.join("store")) - before);
    }
    let _ = host.kill();
    let _ = host.wait();
    let host_log = std::fs::read_to_string(&log).unwrap_or_default();
    let fetched: Vec<u64> = host_log
        .lines()
        .filter(|l| l.contains("layer(s);"))
        .filter_map(|l| l.split("; ").nth(1)?.split(' ').next()?.parse().ok())
        .skip(1) // the start: the base
        .collect();
    println!("\n{applies} applies of one route each at {routes} routes (dir store; the host watches the pointer file)");
    println!(
        "  apply start -> host serves it: median {:.1} ms, worst {:.1} ms",
        median(served_ms.clone()),
        served_ms.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "  bytes written to the store per apply (layer + pointer + history): median {}, worst {}",
        median(written.iter().map(|&b| b as f64).collect()),
        written.iter().max().unwrap_or(&0)
    );
    println!(
        "  bytes the host fetched per apply: median {}, worst {} ({} swaps logged)",
        if fetched.is_empty() { 0.0 } else { median(fetched.iter().map(|&b| b as f64).collect()) },
        fetched.iter().max().unwrap_or(&0),
        fetched.len()
    );

    // A lookup through the base and a 10k-route layer, against the base alone.
    let layer_lines: String = (0..10_000)
        .map(|i| format!("{{\"Domain\":\"layered-{i}.example.com\",\"Target\":\"https://layered.example.net\"}}\n"))
        .collect();
    let changes =
        read_changes(source::parse_json(layer_lines.as_bytes()).expect("json"), Options::default()).expect("changes");
    let layer = write_layer(Lineage { base: base.id, parent: base.id, depth: 1 }, &changes.changes).expect("layer");
    let layer_id = SnapshotId::of(&layer);
    let mut rng = Rng::new(11);
    let queries: Vec<&str> = (0..200_000).map(|_| table.hosts[rng.below(table.hosts.len())].as_str()).collect();
    // One instance for both, the layer swapped in and out between runs:
    // two instances of 50 MB each would differ in where their pages fall
    // more than the layer costs.
    let router = Router::new(EdgeEngine::new().expect("engine"), &base.bytes).expect("router");
    let host_layer = Arc::new(HostLayer { id: layer_id, bytes: layer.clone() });
    let mut worker = router.worker();
    let with_layer = |worker: &mut Worker<'_>, on: bool| {
        let layers = if on { vec![host_layer.clone()] } else { Vec::new() };
        router.swap_layers(base.id, layers).expect("swap").expect("base");
        // The worker takes the change at its next lookup: not a timed one.
        worker.resolve(b"warm-up.invalid", b"/").expect("resolve");
    };
    let native = Snapshot::from_bytes(&base.bytes[..]).expect("snapshot");
    let parsed = [Layer::from_bytes(&layer[..]).expect("layer")];
    // Each run goes through the queries in slices of 10k, each slice
    // alone and then with the layer, so that both see the same machine
    // (this one's speed drifts by more than the layer costs); a run's time
    // per lookup is the sum over its slices.
    const SLICE: usize = 10_000;
    let (mut wp, mut wl, mut np, mut nl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let mut ns = [0u128; 4];
        for (n, slice) in queries.chunks(SLICE).enumerate() {
            let mut time = |i: usize, f: &mut dyn FnMut(&str)| {
                let t0 = Instant::now();
                for q in slice {
                    f(q);
                }
                ns[i] += t0.elapsed().as_nanos();
            };
            // The second pass over a slice finds some of its index in the
            // caches: which mode goes first alternates.
            for layered in [n % 2 == 1, n % 2 == 0] {
                with_layer(&mut worker, layered);
                time(usize::from(layered), &mut |q| {
                    std::hint::black_box(worker.resolve(q.as_bytes(), b"/").expect("resolve").kind());
                });
            }
            for layered in [n % 2 == 1, n % 2 == 0] {
                time(2 + usize::from(layered), &mut |q| {
                    let answer = match layered {
                        true => native.resolve_layered(&parsed[..], q.as_bytes(), b"/"),
                        false => native.resolve(q.as_bytes(), b"/"),
                    };
                    std::hint::black_box(answer.kind());
                });
            }
        }
        let per = |i: usize| ns[i] as f64 / queries.len() as f64;
        wp.push(per(0));
        wl.push(per(1));
        np.push(per(2));
        nl.push(per(3));
    }
    let (wp, wl, np, nl) = (median(wp), median(wl), median(np), median(nl));
    println!("\na lookup of a base host, 200k uniform queries, 5 runs, each alternating in slices of 10k, medians");
    println!("  WebAssembly: base alone {wp:.0} ns, base + a 10k-route layer {wl:.0} ns: {:.2}x", wl / wp);
    println!("  native:      base alone {np:.0} ns, base + a 10k-route layer {nl:.0} ns: {:.2}x", nl / np);
    let _ = std::fs::remove_dir_all(&dir);
}
