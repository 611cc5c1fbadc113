//! `edgeroute-host serve --store STORE`: the host follows the store's
//! pointer, swaps in what is published, refuses damaged or missing
//! objects while the old snapshot keeps serving, follows rollbacks, and
//! starts from its cached copy when the store has nothing for it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgeroute_compiler::Options;
use edgeroute_control::publish;
use edgeroute_store::{Pointer, Store, StoreLocation};
use edgeroute_tests::compile_text;
use edgeroute_tests_aws::{aws_env, Moto};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A snapshot whose `probe.example.com` is the site in bucket `b-{version}`
/// (see [`sites`]).
fn snapshot(version: usize) -> Vec<u8> {
    let table = format!(
        "{{\"Domain\":\"probe.example.com\",\"Target\":\"s3://b-{version}/site\"}}\n{{\"Domain\":\"other.example.com\",\"Target\":\"https://o.example\"}}\n"
    );
    compile_text(&table, Options::default()).unwrap().bytes
}

/// The static sites of every snapshot version: `b-N/site/index.html` says `site b-N`.
fn sites() -> PathBuf {
    let root = std::env::temp_dir().join(format!("edgeroute-serve-{}-sites", std::process::id()));
    for version in 1..=7 {
        let dir = root.join(format!("b-{version}/site"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("site b-{version}\n")).unwrap();
    }
    root
}

fn id(bytes: &[u8]) -> String {
    edgeroute_edge::SnapshotId::of(bytes).to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A running `edgeroute-host serve`, killed on drop; its log goes to a file.
struct Served {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Served {
    fn start(store: &str, cache: &Path, env: &[(&str, String)]) -> Result<Served, String> {
        Served::start_polling(store, cache, env, 50)
    }

    fn start_polling(store: &str, cache: &Path, env: &[(&str, String)], poll_ms: u64) -> Result<Served, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = cache.with_extension(format!("{port}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgeroute-host"))
            .args(["serve", "--store", store, "--listen", &format!("127.0.0.1:{port}")])
            .args(["--poll-ms", &poll_ms.to_string(), "--admin-listen", "127.0.0.1:0"])
            .args(["--static-root", sites().to_str().unwrap()])
            .args(["--cache-dir", cache.to_str().unwrap()])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("edgeroute-host starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited {status}: {}", std::fs::read_to_string(&log).unwrap_or_default()));
            }
            assert!(Instant::now() < deadline, "the host did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Served { child, port, log })
    }

    /// `GET /` with `Host: host`: the snapshot header and the body.
    fn get(&self, host: &str) -> (String, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(stream, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let snapshot =
            head.lines().find_map(|l| l.strip_prefix("x-edgeroute-snapshot: ")).unwrap_or_default().to_owned();
        (snapshot, body.trim().to_owned())
    }

    /// Waits until the host serves snapshot `want` (by id).
    fn wait_for(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (served, body) = self.get("probe.example.com");
            if want.starts_with(&served) && !served.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "still serving {served} ({body}), not {want}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn follows_a_store(store: &Store, location: &str, cache: &Path, env: &[(&str, String)]) {
    let rt = runtime();
    rt.block_on(publish::publish(store, &snapshot(1), "test", 0)).unwrap();
    let host = Served::start(location, cache, env).unwrap();
    host.wait_for(&id(&snapshot(1)));
    assert!(host.get("probe.example.com").1.contains("site b-1"));

    // A publish is served.
    rt.block_on(publish::publish(store, &snapshot(2), "test", 0)).unwrap();
    host.wait_for(&id(&snapshot(2)));
    assert!(host.get("probe.example.com").1.contains("site b-2"));

    // A pointer to a damaged object, to a missing one, and to bytes that
    // hash right but are no snapshot: each refused, snapshot 2 keeps serving.
    let current = || rt.block_on(store.read_pointer()).unwrap().unwrap();
    let junk = b"EDGROUTE but not a snapshot at all".to_vec();
    // Each with the reason its log line must give.
    let cases: Vec<(String, Option<Vec<u8>>, &str)> = vec![
        (id(&snapshot(3)), Some(snapshot(4)), "the object's SHA-256 is"), // stored under the wrong id
        (id(&snapshot(5)), None, "the object is missing"),                // missing
        (id(&junk), Some(junk.clone()), ""),                              // right hash, not a snapshot
    ];
    for (bad_id, object, why) in cases {
        if let Some(bytes) = &object {
            rt.block_on(store.put_snapshot(&bad_id, bytes)).unwrap();
        }
        let (pointer, version) = current();
        let bad = Pointer { id: bad_id.clone(), previous: Some(pointer.id.clone()), ..pointer };
        assert!(rt.block_on(store.replace_pointer(&bad, Some(&version))).unwrap());
        // The follower's own line for this snapshot (a "connection refused"
        // or any other line that merely says "refused" does not count).
        let line = format!("refused snapshot {bad_id}: {why}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !host.log().lines().any(|l| l.contains(&line) && l.contains("still serving")) {
            assert!(Instant::now() < deadline, "never logged {line:?}: {}", host.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let (served, body) = host.get("probe.example.com");
        assert!(id(&snapshot(2)).starts_with(&served), "{served}");
        assert!(body.contains("site b-2"), "{body}");
    }

    // A publish after the bad pointers is served; a rollback is followed.
    rt.block_on(publish::publish(store, &snapshot(6), "test", 0)).unwrap();
    host.wait_for(&id(&snapshot(6)));
    rt.block_on(publish::rollback(store, Some(&id(&snapshot(2))))).unwrap();
    host.wait_for(&id(&snapshot(2)));
    // Pinned: a publish is held back and the host stays on the rollback.
    let held = rt.block_on(publish::publish(store, &snapshot(7), "test", 0)).unwrap();
    assert!(matches!(held, publish::Published::HeldBack { .. }));
    std::thread::sleep(Duration::from_millis(300));
    assert!(id(&snapshot(2)).starts_with(&host.get("probe.example.com").0));
}

#[test]
fn a_host_follows_a_directory_store_and_refuses_bad_objects() {
    let dir = scratch("dir");
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    follows_a_store(&store, &format!("dir:{}", dir.join("store").display()), &dir.join("cache"), &[]);
}

#[test]
fn a_host_follows_an_s3_store_on_moto() {
    let moto = Moto::start();
    let dir = scratch("s3");
    let rt = runtime();
    let config = rt.block_on(moto.config());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    rt.block_on(s3.create_bucket().bucket("edge").send()).unwrap();
    let location = StoreLocation::S3 { bucket: "edge".into(), prefix: "p".into() };
    let store = Store::open(&location, Some(&config)).unwrap();
    follows_a_store(&store, "s3://edge/p", &dir.join("cache"), &aws_env(&moto.endpoint));
}

#[test]
fn without_a_current_snapshot_the_host_exits_unless_it_has_a_cached_one() {
    let dir = scratch("start");
    // A store that exists but has published nothing yet (one that does not
    // exist at all is refused before: see host.rs).
    std::fs::create_dir_all(dir.join("store")).unwrap();
    let location = format!("dir:{}", dir.join("store").display());
    let cache = dir.join("cache");
    let err = Served::start(&location, &cache, &[]).err().expect("no snapshot anywhere: the host exits");
    assert!(err.contains("has no current snapshot yet"), "{err}");

    // An S3 store that cannot be reached, and no cache.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = aws_env(&format!("http://127.0.0.1:{port}"));
    let err = Served::start("s3://edge/p", &cache, &unreachable).err().expect("unreachable store: the host exits");
    assert!(err.contains("cannot reach the store and there is no cached snapshot"), "{err}");

    // Once it has served, its cache carries it over a store that is gone.
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    runtime().block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    drop(Served::start(&location, &cache, &[]).unwrap());
    let host = Served::start("s3://edge/p", &cache, &unreachable).unwrap();
    host.wait_for(&id(&snapshot(1)));
    assert!(host.log().contains("serving the cached snapshot"), "{}", host.log());
}

#[test]
fn a_directory_store_is_watched_not_only_polled() {
    let dir = scratch("inotify");
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    let rt = runtime();
    rt.block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    // Polling once an hour: only the file watcher can make the swap happen.
    let location = format!("dir:{}", dir.join("store").display());
    let host = Served::start_polling(&location, &dir.join("cache"), &[], 3_600_000).unwrap();
    host.wait_for(&id(&snapshot(1)));
    rt.block_on(publish::publish(&store, &snapshot(2), "test", 0)).unwrap();
    host.wait_for(&id(&snapshot(2)));
}

/// CPU time (user + system) a process has used, in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second (`getconf CLK_TCK`).
fn ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100)
}

/// The share of one core `pid` uses over `span`.
fn core_share(pid: u32, span: Duration) -> f64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(span);
    (cpu_ticks(pid) - before) as f64 / ticks_per_second() as f64 / span.as_secs_f64()
}

/// [4/8] 1: a host following a directory store reacts to changes of the
/// pointer only: idle, it uses under 5 % of a core, whether the pointer is
/// good or damaged (its own reads of the store must not wake it again).
#[test]
fn an_idle_host_following_a_directory_store_uses_almost_no_cpu() {
    let dir = scratch("idle");
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    let rt = runtime();
    rt.block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    let location = format!("dir:{}", dir.join("store").display());
    let host = Served::start_polling(&location, &dir.join("cache"), &[], 250).unwrap();
    host.wait_for(&id(&snapshot(1)));
    let pid = host.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let idle = core_share(pid, Duration::from_secs(3));
    assert!(idle < 0.05, "an idle host uses {:.0} % of a core; log:\n{}", idle * 100.0, host.log());

    std::fs::write(dir.join("store/current.json"), b"{").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let damaged = core_share(pid, Duration::from_secs(3));
    assert!(damaged < 0.05, "with a damaged pointer the host uses {:.0} % of a core", damaged * 100.0);
    // It still serves what it had.
    host.wait_for(&id(&snapshot(1)));
}

/// [4/8] 9: a mistyped `--static-root` is refused at start, naming the
/// folder, rather than accepted and every static request answered 404 as
/// if the host were unknown; a file there is refused too.
#[test]
fn a_static_root_that_is_not_a_folder_is_refused_at_start() {
    let dir = scratch("static-root");
    let snap = dir.join("routes.snap");
    std::fs::write(&snap, snapshot(1)).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    for root in [dir.join("no-such-folder"), file] {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgeroute-host"))
            .args(["serve", "--snapshot", snap.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", "127.0.0.1:0", "--static-root", root.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("--static-root {} was accepted", root.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains("--static-root") && err.contains(root.to_str().unwrap()), "{err}");
    }
}
