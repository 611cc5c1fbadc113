//! The edgeroute-host crate's integration tests, in one binary.

mod module {
    use edgeroute_host::{EXPORTS, MODULE};
    use wasmparser::{Parser, Payload};

    /// The module's size budget.
    const BUDGET: usize = 64 * 1024;

    #[test]
    fn module_has_no_imports_exactly_the_documented_exports_and_fits_its_budget() {
        let mut imports = 0;
        let mut exports = Vec::new();
        let mut memories = 0;
        for payload in Parser::new(0).parse_all(MODULE) {
            match payload.expect("the module parses") {
                Payload::ImportSection(reader) => imports += reader.count(),
                Payload::ExportSection(reader) => {
                    for e in reader {
                        exports.push(e.expect("export").name.to_owned());
                    }
                }
                Payload::MemorySection(reader) => memories += reader.count(),
                _ => {}
            }
        }
        assert_eq!(imports, 0, "the module must import nothing");
        let mut expected: Vec<String> = EXPORTS.iter().map(|s| s.to_string()).collect();
        expected.sort();
        exports.sort();
        assert_eq!(exports, expected);
        assert_eq!(memories, 1);
        println!("edge module: {} bytes (budget {BUDGET})", MODULE.len());
        assert!(MODULE.len() <= BUDGET, "the module is {} bytes, over its {BUDGET}-byte budget", MODULE.len());
        wasmparser::Validator::new().validate_all(MODULE).expect("the module validates");
    }
}

mod conformance {
    use edgeroute_host::{EdgeEngine, Router};
    use edgeroute_tests::{conformance, resolve_json, snapshot};

    #[test]
    fn conformance_corpus_through_wasm_matches_native() {
        let (table, cases) = conformance();
        let snap = snapshot(&table);
        let router = Router::new(EdgeEngine::new().unwrap(), snap.as_bytes()).unwrap();
        let mut worker = router.worker();
        for case in &cases {
            let native = resolve_json(&snap, &case.host, &case.path);
            let wasm = worker.resolve(case.host.as_bytes(), case.path.as_bytes()).unwrap();
            assert_eq!(wasm.json().to_string(), native, "host {:?} path {:?}", case.host, case.path);
            let expect: serde_json::Value = serde_json::from_str(case.expect.as_deref().unwrap()).unwrap();
            assert_eq!(serde_json::from_str::<serde_json::Value>(&native).unwrap(), expect);
        }
    }

    #[test]
    fn readable_answers_agree_too() {
        let (table, cases) = conformance();
        let snap = snapshot(&table);
        let router = Router::new(EdgeEngine::new().unwrap(), snap.as_bytes()).unwrap();
        let mut worker = router.worker();
        for case in cases.iter().step_by(3) {
            let native = snap.resolve(case.host.as_bytes(), case.path.as_bytes()).to_string();
            let wasm = worker.resolve(case.host.as_bytes(), case.path.as_bytes()).unwrap().to_string();
            assert_eq!(wasm, native);
        }
    }
}

mod swap {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    use edgeroute_host::{EdgeEngine, EngineError, Router, Worker};
    use edgeroute_tests::{fix_checksum, snapshot};

    const A: &str = r#"{"Domain":"a.example.com","Target":"s3://bucket/one"}
{"Domain":"*.w.example.com","Target":"http://10.0.0.1:8080"}"#;
    const B: &str = r#"{"Domain":"a.example.com","Target":"s3://bucket/two"}
{"Domain":"b.example.com","Target":"https://b.example.net"}"#;

    fn key(router: &Router, host: &str) -> String {
        router.worker().resolve(host.as_bytes(), b"/").unwrap().json().to_string()
    }

    #[test]
    fn a_valid_swap_replaces_the_snapshot_and_workers_follow() {
        let (a, b) = (snapshot(A), snapshot(B));
        let router = Router::new(EdgeEngine::new().unwrap(), a.as_bytes()).unwrap();
        let first = router.live().unwrap();
        assert_eq!((first.generation, first.route_count()), (1, 2));
        let mut worker = router.worker();
        assert!(worker.resolve(b"a.example.com", b"/").unwrap().json().to_string().contains("one/index.html"));
        let live = router.swap(b.as_bytes()).unwrap();
        assert_eq!(live.generation, 2);
        assert_eq!(live.id, edgeroute_edge::SnapshotId::of(b.as_bytes()));
        // The same worker follows the swap on its next lookup.
        assert!(worker.resolve(b"a.example.com", b"/").unwrap().json().to_string().contains("two/index.html"));
        assert_eq!(worker.generation(), Some(2));
        assert!(key(&router, "b.example.com").contains("b.example.net"));
        assert_eq!(key(&router, "x.w.example.com"), r#"{"kind":"not_found"}"#);
        // The old snapshot's metadata stays consistent for whoever holds it.
        assert_eq!(first.id, edgeroute_edge::SnapshotId::of(a.as_bytes()));
    }

    #[test]
    fn an_idle_worker_lets_go_of_a_base_no_longer_served() {
        let (a, b) = (snapshot(A), snapshot(B));
        let router = Router::new(EdgeEngine::new().unwrap(), a.as_bytes()).unwrap();
        let mut worker = router.worker();
        worker.resolve(b"a.example.com", b"/").unwrap();
        let old = std::sync::Arc::downgrade(&router.live().unwrap().base);
        // The same base: kept.
        worker.release_stale();
        assert!(worker.generation().is_some());
        router.swap(b.as_bytes()).unwrap();
        assert!(old.upgrade().is_some(), "the idle worker still holds the old base");
        worker.release_stale();
        assert_eq!(worker.generation(), None);
        assert!(old.upgrade().is_none(), "the old base is gone once the worker let go");
        // The next lookup answers from the new base.
        assert!(worker.resolve(b"a.example.com", b"/").unwrap().json().to_string().contains("two/index.html"));
    }

    #[test]
    fn corrupt_or_truncated_snapshots_are_refused_and_the_old_one_keeps_answering() {
        let a = snapshot(A);
        let router = Router::new(EdgeEngine::new().unwrap(), a.as_bytes()).unwrap();
        let b = snapshot(B);
        let bytes = b.as_bytes();
        // Truncated: caught by the native checksum.
        let e = router.swap(&bytes[..bytes.len() - 7]).unwrap_err();
        assert!(matches!(e, EngineError::Checksum { .. }), "{e}");
        let e = router.swap(&bytes[..10]).unwrap_err();
        assert!(matches!(e, EngineError::TooShort { .. }), "{e}");
        // Bit flip: checksum.
        let mut flipped = bytes.to_vec();
        flipped[100] ^= 4;
        assert!(matches!(router.swap(&flipped).unwrap_err(), EngineError::Checksum { .. }));
        // Structural corruption with a correct checksum: refused by the
        // native validator (the module then takes the bytes as trusted).
        let mut broken = bytes.to_vec();
        let routes = b.sections()[1].offset;
        broken[routes] = 9;
        fix_checksum(&mut broken);
        let e = router.swap(&broken).unwrap_err();
        assert!(matches!(e, EngineError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("malformed"), "{e}");
        // Not a snapshot at all.
        let mut junk = vec![0u8; 200];
        fix_checksum(&mut junk);
        assert!(matches!(router.swap(&junk).unwrap_err(), EngineError::Invalid(_)));
        // Through all of it, the first snapshot answered and still does.
        assert_eq!(router.live().unwrap().generation, 1);
        assert!(key(&router, "a.example.com").contains("one/index.html"));
        assert!(key(&router, "x.w.example.com").contains("10.0.0.1"));
    }

    #[test]
    fn a_trap_is_an_error_and_the_worker_recovers() {
        let a = snapshot(A);
        let router = Router::new(EdgeEngine::new().unwrap(), a.as_bytes()).unwrap();
        let mut worker = router.worker();
        assert!(worker.resolve(b"a.example.com", b"/").is_ok());
        worker.expire_next_call();
        let e = worker.resolve(b"a.example.com", b"/").unwrap_err();
        assert!(matches!(e, EngineError::Trap(_)), "{e}");
        // The next lookup runs on a fresh instance of the same snapshot.
        let answer = worker.resolve(b"a.example.com", b"/").unwrap().json().to_string();
        assert!(answer.contains("one/index.html"), "{answer}");
        assert_eq!(router.live().unwrap().generation, 1);
    }

    /// One lookup of `a.example.com`: its answer must be the one of the
    /// generation the worker says it answered from. Returns that generation.
    fn checked_lookup(worker: &mut Worker<'_>) -> u64 {
        let answer = worker.resolve(b"a.example.com", b"/").unwrap().json().to_string();
        let generation = worker.generation().expect("a worker that answered has a generation");
        let want = if generation == 1 { "one/index.html" } else { "two/index.html" };
        assert!(answer.contains(want), "generation {generation} answered {answer}");
        generation
    }

    /// Threads that answer while the router swaps, each through its own
    /// worker as the serving threads have it (`Router::with_worker`): each
    /// answers from one snapshot or the other, never a mix; a lookup that
    /// starts after the swap has returned answers from the new snapshot;
    /// and once a thread has moved to it, it never goes back.
    #[test]
    fn many_threads_share_one_router_and_all_move_to_a_swap_for_good() {
        const THREADS: usize = 4;
        let (a, b) = (snapshot(A), snapshot(B));
        let router: &'static Router =
            Box::leak(Box::new(Router::new(EdgeEngine::new().unwrap(), a.as_bytes()).unwrap()));
        let started = Barrier::new(THREADS + 1);
        let swapped = AtomicBool::new(false);
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        let lookup = || router.with_worker(|worker| checked_lookup(worker));
                        assert_eq!(lookup(), 1);
                        started.wait();
                        let deadline = Instant::now() + Duration::from_secs(60);
                        let mut lookups = 0u64;
                        loop {
                            let after_swap = swapped.load(Ordering::SeqCst);
                            lookups += 1;
                            if lookup() == 2 {
                                break;
                            }
                            assert!(!after_swap, "a lookup that began after the swap answered from the old snapshot");
                            assert!(Instant::now() < deadline, "never moved to the new snapshot ({lookups} lookups)");
                        }
                        for _ in 0..500 {
                            assert_eq!(lookup(), 2, "went back to the old snapshot");
                        }
                        lookups
                    })
                })
                .collect();
            started.wait();
            router.swap(b.as_bytes()).unwrap();
            swapped.store(true, Ordering::SeqCst);
            for thread in threads {
                thread.join().unwrap();
            }
        });
        assert_eq!(router.live().unwrap().generation, 2);
    }

    #[test]
    fn oversized_requests_are_errors_not_traps() {
        let router = Router::new(EdgeEngine::new().unwrap(), snapshot(A).as_bytes()).unwrap();
        let mut worker = router.worker();
        let long = vec![b'a'; 20_000];
        assert!(matches!(worker.resolve(b"a.example.com", &long).unwrap_err(), EngineError::InputTooLong));
        assert!(worker.resolve(b"a.example.com", b"/").is_ok());
    }
}

mod cli {
    use std::process::Command;

    use edgeroute_tests::{conformance, snapshot};

    fn host_cli(args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_edgeroute-host")).args(args).output().expect("runs")
    }

    #[test]
    fn resolve_prints_what_edgeroute_resolve_prints() {
        let (table, cases) = conformance();
        let snap = snapshot(&table);
        let dir = std::env::temp_dir().join(format!("edgeroute-host-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.snap");
        std::fs::write(&file, snap.as_bytes()).unwrap();
        let file = file.to_str().unwrap();
        for case in cases.iter().filter(|c| !c.host.contains('\0')).step_by(9) {
            let native = snap.resolve(case.host.as_bytes(), case.path.as_bytes());
            let o = host_cli(&["resolve", "--snapshot", file, "--json", "--", &case.host, &case.path]);
            assert!(o.status.success());
            assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{}\n", native.json()), "{case:?}");
            let o = host_cli(&["resolve", "--snapshot", file, "--", &case.host, &case.path]);
            assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{native}\n"), "{case:?}");
        }
        // An unusable snapshot: a clear message and a failing exit code.
        std::fs::write(dir.join("bad.snap"), &snap.as_bytes()[..100]).unwrap();
        let o = host_cli(&["resolve", "--snapshot", dir.join("bad.snap").to_str().unwrap(), "a.dev"]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot use snapshot") && err.contains("checksum mismatch"), "{err}");
    }

    /// `edgeroute-host resolve --explain` prints what `edgeroute resolve
    /// --explain` prints: the same trace, for the module's answer.
    #[test]
    fn resolve_explain_traces_like_the_native_resolver() {
        let (table, cases) = conformance();
        let snap = snapshot(&table);
        let dir = std::env::temp_dir().join(format!("edgeroute-host-explain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.snap");
        std::fs::write(&file, snap.as_bytes()).unwrap();
        let file = file.to_str().unwrap();
        let mut explained = 0;
        for case in cases.iter().filter(|c| !c.host.contains('\0')).step_by(17) {
            let o = host_cli(&["resolve", "--snapshot", file, "--explain", "--", &case.host, &case.path]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let want = edgeroute_edge::explain(&snap, case.host.as_bytes(), case.path.as_bytes());
            assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{case:?}");
            explained += 1;
        }
        assert!(explained > 5);
    }

    /// A Host pasted as a URL, or written in Unicode, is refused with a
    /// hint that says what to type; `--listen 8080` says which address.
    #[test]
    fn refused_hosts_and_bare_ports_get_hints() {
        let snap = snapshot(r#"{"Domain":"xn--bcher-kva.example.com","Target":"s3://books/p"}"#);
        let dir = std::env::temp_dir().join(format!("edgeroute-host-hints-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("h.snap");
        std::fs::write(&file, snap.as_bytes()).unwrap();
        let file = file.to_str().unwrap();
        let o = host_cli(&["resolve", "--snapshot", file, "bücher.example.com"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.contains("hint: ") && err.contains("try xn--bcher-kva.example.com"), "{err}");
        let o = host_cli(&["resolve", "--snapshot", file, "https://xn--bcher-kva.example.com/katalog/"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("not a URL") && err.contains("\"/katalog/\""), "{err}");
        // A fine host gets no hint.
        let o = host_cli(&["resolve", "--snapshot", file, "xn--bcher-kva.example.com"]);
        assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = host_cli(&["serve", "--snapshot", file, "--listen", "8080"]);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("127.0.0.1:8080") && err.contains("0.0.0.0:8080"), "{err}");
    }

    /// An error is one line, each cause once: a store whose pointer cannot
    /// be read (here a folder where `current.json` should be a file).
    #[test]
    fn a_failing_store_is_one_line_with_the_os_error_once() {
        let dir = std::env::temp_dir().join(format!("edgeroute-host-badstore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("store/current.json")).unwrap();
        let store = format!("dir:{}", dir.join("store").display());
        // The host starts anyway (answering 503) and keeps trying: its log says why, once.
        let log = dir.join("host.log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgeroute-host"))
            .args(["serve", "--store", &store, "--cache-dir", dir.join("cache").to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--poll-ms", "50"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // Until it has said why it serves nothing, then a few polls more.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !std::fs::read_to_string(&log).unwrap().contains("answering 503") {
            assert!(std::time::Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = child.kill();
        let _ = child.wait();
        let err = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<_> = err.lines().filter(|l| l.contains("cannot read the store")).collect();
        assert!(!lines.is_empty(), "{err}");
        for line in &lines {
            assert_eq!(line.matches("os error 21").count(), 1, "{err}");
            assert!(line.contains("current.json"), "{err}");
        }
        assert!(lines.len() <= 2, "said at start, then once while it lasts: {err}");
    }

    /// [2/8] 8: following a store that does not exist is an error, and
    /// creates nothing (a typo must not become an empty store).
    #[test]
    fn serving_a_store_that_does_not_exist_creates_nothing() {
        let dir = std::env::temp_dir().join(format!("edgeroute-host-typo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let typo = dir.join("stroe");
        let store = format!("dir:{}", typo.display());
        let o = host_cli(&["serve", "--store", &store, "--cache-dir", dir.join("cache").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("no store at"), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(!typo.exists(), "serve created the store");
    }

    /// `serve --snapshots STORE`, the spelling of earlier releases, still
    /// means `--store STORE` (and is not in the help).
    #[test]
    fn the_old_store_flag_still_parses() {
        let dir = std::env::temp_dir().join(format!("edgeroute-host-nostore-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = format!("dir:{}", dir.join("no-such-store").display());
        let cache = dir.join("cache");
        for flag in ["--store", "--snapshots"] {
            let o = host_cli(&["serve", flag, &store, "--cache-dir", cache.to_str().unwrap()]);
            // Parsed (not a usage error, 2): it fails because there is no such store.
            assert_eq!(o.status.code(), Some(1), "{flag}: {}", String::from_utf8_lossy(&o.stderr));
            assert!(String::from_utf8_lossy(&o.stderr).contains("no store at"), "{flag}");
        }
        let help = String::from_utf8_lossy(&host_cli(&["serve", "--help"]).stdout).into_owned();
        assert!(help.contains("--store <STORE>") && !help.contains("--snapshots"), "{help}");
    }

    #[test]
    fn bench_prints_the_documented_json_keys() {
        let table = edgeroute_tests::generate_table(2_000, 3);
        let snap = snapshot(&table.jsonl);
        let dir = std::env::temp_dir().join(format!("edgeroute-host-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.snap"), snap.as_bytes()).unwrap();
        let queries: String = table.hosts.iter().take(500).map(|h| format!("{h} /\n")).collect();
        std::fs::write(dir.join("q.txt"), queries).unwrap();
        let o = host_cli(&[
            "bench",
            "--snapshot",
            dir.join("b.snap").to_str().unwrap(),
            "--queries",
            dir.join("q.txt").to_str().unwrap(),
            "--threads",
            "2",
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for key in [
            "wasm_p50_ns",
            "wasm_p99_ns",
            "wasm_mean_ns",
            "native_p50_ns",
            "native_p99_ns",
            "fst_p50_ns",
            "hashmap_p50_ns",
            "load_ms",
            "swap_ms",
            "peak_rss_bytes",
        ] {
            assert!(v[key].as_f64().is_some_and(|x| x >= 0.0), "{key} missing in {v}");
        }
        assert_eq!(v["queries"], 500);
        assert_eq!(v["threads"], 2);
        assert_eq!(v["routes"], 2_000);
    }
}

/// The data plane never links the DynamoDB SDK (nor the control plane,
/// which does, nor the compiler it has no use for): `edgeroute-host`'s
/// normal and build dependencies, as cargo resolves them from the lockfile.
#[test]
fn the_host_does_not_depend_on_the_dynamodb_sdk() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "-p", "edgeroute-host", "-e", "normal,build", "--prefix", "none", "--offline", "--locked"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.lines().any(|l| l.starts_with("wasmtime ")), "not the host's tree:\n{tree}");
    for forbidden in [
        "aws-sdk-dynamodb ",
        "aws-sdk-dynamodbstreams ",
        "aws-sdk-elasticloadbalancingv2 ",
        "edgeroute-control ",
        "edgeroute-compiler ",
    ] {
        assert!(!tree.lines().any(|l| l.starts_with(forbidden)), "edgeroute-host depends on {forbidden}");
    }
}
