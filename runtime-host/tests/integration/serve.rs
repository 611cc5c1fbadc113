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
use edgeroute_store::{BaseRef, Pointer, Store, StoreLocation};
use edgeroute_tests::compile_text;
use edgeroute_tests_aws::{aws_env, Moto};

/// This process's folder for scratch files.
fn scratch_root() -> PathBuf {
    let root = std::env::temp_dir().join(format!("edgeroute-serve-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    root
}

pub(super) fn scratch(name: &str) -> PathBuf {
    let dir = scratch_root().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A snapshot whose `probe.example.com` is the site in bucket `b-{version}`
/// (see [`sites`]).
pub(super) fn snapshot(version: usize) -> Vec<u8> {
    let table = format!(
        "{{\"Domain\":\"probe.example.com\",\"Target\":\"s3://b-{version}/site\"}}\n{{\"Domain\":\"other.example.com\",\"Target\":\"https://o.example\"}}\n"
    );
    compile_text(&table, Options::default()).unwrap().bytes
}

/// The static sites of every snapshot version: `b-N/site/index.html` says `site b-N`.
pub(super) fn sites() -> PathBuf {
    let root = std::env::temp_dir().join(format!("edgeroute-serve-{}-sites", std::process::id()));
    for version in 1..=7 {
        let dir = root.join(format!("b-{version}/site"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("site b-{version}\n")).unwrap();
    }
    root
}

pub(super) fn id(bytes: &[u8]) -> String {
    edgeroute_edge::SnapshotId::of(bytes).to_string()
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A running `edgeroute-host serve`, killed on drop; its log goes to a file.
pub(super) struct Served {
    pub(super) child: Child,
    pub(super) port: u16,
    pub(super) admin: u16,
    log: PathBuf,
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Served {
    pub(super) fn start(store: &str, cache: &Path, env: &[(&str, String)]) -> Result<Served, String> {
        Served::start_polling(store, cache, env, 50)
    }

    fn start_polling(store: &str, cache: &Path, env: &[(&str, String)], poll_ms: u64) -> Result<Served, String> {
        Served::start_with(store, cache, env, &["--poll-ms", &poll_ms.to_string()])
    }

    /// `serve --store STORE` with `extra` flags.
    fn start_with(store: &str, cache: &Path, env: &[(&str, String)], extra: &[&str]) -> Result<Served, String> {
        let (sites, cache) = (sites(), cache.to_str().unwrap());
        let mut args = vec!["--store", store, "--static-root", sites.to_str().unwrap(), "--cache-dir", cache];
        args.extend(extra);
        Served::run(&args, env)
    }

    /// `edgeroute-host serve ARGS` on a free port, with a free admin port;
    /// `Err` with its log if it exits before it listens.
    pub(super) fn run(args: &[&str], env: &[(&str, String)]) -> Result<Served, String> {
        Served::run_at(free_port(), args, env)
    }

    /// [`Served::run`] on `port`.
    pub(super) fn run_at(port: u16, args: &[&str], env: &[(&str, String)]) -> Result<Served, String> {
        let admin = std::iter::repeat_with(free_port).find(|&p| p != port).unwrap();
        let log = scratch_root().join(format!("host-{port}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgeroute-host"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(args)
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
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!(
                    "did not listen within 60 s: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Served { child, port, admin, log })
    }

    /// Waits until the host serves `bytes` and has cached them in `cache`
    /// (just after the swap).
    fn wait_cached(&self, cache: &Path, bytes: &[u8]) {
        self.wait_for(&id(bytes));
        self.wait_until("the snapshot cached", 30, |_| {
            let list = std::fs::read_to_string(cache.join("current.state")).unwrap_or_default();
            list.trim() == id(bytes)
                && std::fs::read(cache.join(format!("bases/{}.snap", id(bytes)))).ok().as_deref() == Some(bytes)
        });
    }

    /// `GET path` on the admin listener: the status and the body.
    pub(super) fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, "127.0.0.1", path)
    }

    /// A metric's value (the first sample whose name starts the line).
    pub(super) fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Waits until `check` holds, for at most `secs` seconds.
    pub(super) fn wait_until(&self, what: &str, secs: u64, mut check: impl FnMut(&Served) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !check(self) {
            assert!(Instant::now() < deadline, "never: {what}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /` with `Host: host`: the snapshot header and the body.
    pub(super) fn get(&self, host: &str) -> (String, String) {
        let (_, head, body) = raw_get(self.port, host, "/");
        let snapshot =
            head.lines().find_map(|l| l.strip_prefix("x-edgeroute-snapshot: ")).unwrap_or_default().to_owned();
        (snapshot, body.trim().to_owned())
    }

    /// Waits until the host serves snapshot `want` (by id).
    pub(super) fn wait_for(&self, want: &str) {
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

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `GET path` with `Host: host` on `port`: the status, the head and the body.
pub(super) fn raw_get(port: u16, host: &str, path: &str) -> (u16, String, String) {
    raw_get_within(port, host, path, Duration::from_secs(60)).unwrap()
}

/// [`raw_get`], failing with what came so far if the answer has not
/// ended (the connection closed) within `limit`.
pub(super) fn raw_get_within(
    port: u16,
    host: &str,
    path: &str,
    limit: Duration,
) -> Result<(u16, String, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let deadline = Instant::now() + limit;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            // A reset after a partial answer ends it too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                return Err(format!(
                    "no end of the answer within {limit:?} ({e}); so far: {:?}",
                    String::from_utf8_lossy(&response)
                ))
            }
        }
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no head: {response:?}"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no status: {head}"))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

/// The status and body of `GET path` on `port`.
pub(super) fn http_get(port: u16, host: &str, path: &str) -> (u16, String) {
    let (status, _, body) = raw_get(port, host, path);
    (status, body)
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
    // hash right but are no snapshot: the first and last refused for good,
    // the missing one tried again (it may yet arrive); snapshot 2 keeps serving.
    let junk = b"EDGROUTE but not a snapshot at all".to_vec();
    // Each with the start of the follower's own line for it (a "connection
    // refused" or any other line that merely says "refused" does not count).
    let cases: Vec<(String, Option<Vec<u8>>, String)> = vec![
        // Stored under the wrong id.
        (
            id(&snapshot(3)),
            Some(snapshot(4)),
            format!("refused snapshot {}: the object's SHA-256 is", id(&snapshot(3))),
        ),
        (id(&snapshot(5)), None, format!("cannot fetch snapshot {} yet", id(&snapshot(5)))),
        (id(&junk), Some(junk.clone()), format!("refused snapshot {}: ", id(&junk))),
    ];
    for (bad_id, object, line) in cases {
        if let Some(bytes) = &object {
            rt.block_on(store.put_snapshot(&bad_id, bytes)).unwrap();
        }
        point_at(store, &bad_id);
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
    let (moto, store) = moto_store();
    let dir = scratch("s3");
    follows_a_store(&store, "s3://edge/p", &dir.join("cache"), &aws_env(&moto.endpoint));
}

/// A store with nothing published yet, or one that cannot be reached: the
/// host serves its cached copy (see also
/// `health_is_503_without_a_snapshot_degraded_when_behind_and_ok_otherwise`
/// for a host with no cache).
#[test]
fn without_the_store_s_snapshot_the_host_serves_its_cached_one() {
    let dir = scratch("start");
    let location = format!("dir:{}", dir.join("store").display());
    let cache = dir.join("cache");
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    runtime().block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    Served::start(&location, &cache, &[]).unwrap().wait_cached(&cache, &snapshot(1));

    // An S3 store that cannot be reached.
    let unreachable = aws_env(&format!("http://127.0.0.1:{}", free_port()));
    let host = Served::start("s3://edge/p", &cache, &unreachable).unwrap();
    host.wait_for(&id(&snapshot(1)));
    assert!(host.log().contains("serving the cached snapshot"), "{}", host.log());
    drop(host);

    // A store that has published nothing yet.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let host = Served::start(&format!("dir:{}", empty.display()), &cache, &[]).unwrap();
    host.wait_for(&id(&snapshot(1)));
    assert!(host.log().contains("the store has no current snapshot yet"), "{}", host.log());
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

    // Behind a snapshot whose object is missing, then with the pointer
    // damaged too: the fetches keep their backoff (0.25 s … 30 s), the
    // pointer its polls.
    point_at(&store, &id(&snapshot(2)));
    host.wait_until("behind", 30, |h| h.metric("edgeroute_snapshot_behind_seconds") > 0.0);
    std::fs::write(dir.join("store/current.json"), b"{").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let damaged = core_share(pid, Duration::from_secs(3));
    assert!(damaged < 0.05, "with a damaged pointer the host uses {:.0} % of a core", damaged * 100.0);
    let errors = host.metric("edgeroute_store_errors_total");
    assert!(errors < 40.0, "{errors} failed reads of the pointer in about 4 s at --poll-ms 250");
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

/// moto, with an empty store `s3://edge/p` on it.
fn moto_store() -> (Moto, Store) {
    let moto = Moto::start();
    let config = runtime().block_on(moto.config());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    runtime().block_on(s3.create_bucket().bucket("edge").send()).unwrap();
    let store = Store::open(&StoreLocation::S3 { bucket: "edge".into(), prefix: "p".into() }, Some(&config)).unwrap();
    (moto, store)
}

/// Points the store at snapshot `id` (whose object may be missing or damaged).
fn point_at(store: &Store, id: &str) {
    let rt = runtime();
    let (pointer, version) = rt.block_on(store.read_pointer()).unwrap().unwrap();
    let base = BaseRef { id: id.to_owned(), ..pointer.base.clone() };
    let next = Pointer { id: id.to_owned(), base, previous: Some(pointer.id.clone()), ..pointer };
    assert!(rt.block_on(store.replace_pointer(&next, Some(&version))).unwrap());
}

/// [4/8] 2: a pointer whose object is not there yet (a publisher killed
/// between its two writes, a slow replica) is a transient failure: the host
/// keeps trying with backoff and serves the object once it arrives, and
/// `edgeroute_snapshot_behind_seconds` says how long it has been behind.
/// A damaged object is refused for good, and the gauge keeps growing.
fn catches_up_with_an_object_that_arrives_late(store: &Store, location: &str, cache: &Path, env: &[(&str, String)]) {
    let rt = runtime();
    rt.block_on(publish::publish(store, &snapshot(1), "test", 0)).unwrap();
    let host = Served::start(location, cache, env).unwrap();
    host.wait_for(&id(&snapshot(1)));
    assert_eq!(host.metric("edgeroute_snapshot_behind_seconds"), 0.0);

    point_at(store, &id(&snapshot(2)));
    host.wait_until("behind the store", 30, |h| h.metric("edgeroute_snapshot_behind_seconds") > 0.0);
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(id(&snapshot(1)).starts_with(&host.get("probe.example.com").0));
    rt.block_on(store.put_snapshot(&id(&snapshot(2)), &snapshot(2))).unwrap();
    host.wait_for(&id(&snapshot(2)));
    assert_eq!(host.metric("edgeroute_snapshot_behind_seconds"), 0.0);

    // Stored under the wrong id: refused once, never served, and the gauge grows.
    let damaged = id(&snapshot(3));
    rt.block_on(store.put_snapshot(&damaged, &snapshot(4))).unwrap();
    point_at(store, &damaged);
    host.wait_until("the damaged snapshot refused", 30, |h| {
        h.log().contains(&format!("refused snapshot {damaged}: the object's SHA-256 is"))
    });
    let before = host.metric("edgeroute_snapshot_behind_seconds");
    std::thread::sleep(Duration::from_millis(1_200));
    let after = host.metric("edgeroute_snapshot_behind_seconds");
    assert!(after > before && after >= 1.0, "behind {before} s, then {after} s");
    assert_eq!(host.metric("edgeroute_snapshot_refused_total"), 1.0, "refused once, not on every poll");
    assert!(id(&snapshot(2)).starts_with(&host.get("probe.example.com").0));
}

#[test]
fn a_directory_store_s_late_object_is_served_once_it_arrives() {
    let dir = scratch("late-dir");
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    let location = format!("dir:{}", dir.join("store").display());
    catches_up_with_an_object_that_arrives_late(&store, &location, &dir.join("cache"), &[]);
}

#[test]
fn an_s3_store_s_late_object_is_served_once_it_arrives() {
    let (moto, store) = moto_store();
    let dir = scratch("late-s3");
    catches_up_with_an_object_that_arrives_late(&store, "s3://edge/p", &dir.join("cache"), &aws_env(&moto.endpoint));
}

/// [4/8] 2: a missing object is fetched again with backoff (0.25 s, 0.5 s,
/// 1 s, 2 s, …), not on every poll of the pointer (every 50 ms here).
#[test]
fn a_missing_object_is_fetched_again_with_backoff_not_on_every_poll() {
    let (moto, store) = moto_store();
    let dir = scratch("backoff");
    let rt = runtime();
    rt.block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    let wanted = id(&snapshot(2));
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = (fetches.clone(), wanted.clone());
    let proxy = edgeroute_tests_aws::FaultProxy::start(&moto.endpoint, move |req| {
        if req.method == "GET" && req.path.contains(&counted.1) {
            counted.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        None
    });
    let host = Served::start("s3://edge/p", &dir.join("cache"), &aws_env(&proxy.endpoint)).unwrap();
    host.wait_for(&id(&snapshot(1)));
    point_at(&store, &wanted);
    host.wait_until("the first fetch", 30, |_| fetches.load(std::sync::atomic::Ordering::Relaxed) > 0);
    std::thread::sleep(Duration::from_secs(3));
    // In 3 s: at most the fetches at 0.25, 0.75, 1.75 s and maybe 3.75 s
    // (each of up to 2 attempts), where polling would make 60.
    let n = fetches.load(std::sync::atomic::Ordering::Relaxed);
    assert!((2..=10).contains(&n), "{n} fetches of the missing object in about 3 s");
    assert!(host.metric("edgeroute_snapshot_fetch_errors_total") >= 2.0);
    rt.block_on(store.put_snapshot(&wanted, &snapshot(2))).unwrap();
    host.wait_for(&wanted);
}

/// [4/8] 3: at start, a readable pointer whose object is missing, damaged
/// or briefly unreachable does not stop the host: it serves its cached
/// copy and keeps trying.
#[test]
fn at_start_an_object_missing_damaged_or_unreachable_falls_back_to_the_cache() {
    let dir = scratch("start-cache");
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    let location = format!("dir:{}", dir.join("store").display());
    let cache = dir.join("cache");
    let rt = runtime();
    rt.block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    Served::start(&location, &cache, &[]).unwrap().wait_cached(&cache, &snapshot(1));

    // Missing: the cache serves until the object arrives.
    point_at(&store, &id(&snapshot(2)));
    let host = Served::start(&location, &cache, &[]).expect("a missing object does not stop the host");
    host.wait_for(&id(&snapshot(1)));
    assert!(host.log().contains("serving the cached snapshot"), "{}", host.log());
    rt.block_on(store.put_snapshot(&id(&snapshot(2)), &snapshot(2))).unwrap();
    host.wait_for(&id(&snapshot(2)));
    host.wait_cached(&cache, &snapshot(2));
    drop(host);

    // Damaged: refused, the cache (now snapshot 2) serves.
    let damaged = id(&snapshot(3));
    rt.block_on(store.put_snapshot(&damaged, &snapshot(4))).unwrap();
    point_at(&store, &damaged);
    let host = Served::start(&location, &cache, &[]).expect("a damaged object does not stop the host");
    host.wait_for(&id(&snapshot(2)));
    host.wait_until("the damaged snapshot refused", 30, |h| h.log().contains(&format!("refused snapshot {damaged}")));
    drop(host);

    // Briefly unreachable in S3: its first GETs fail with 500.
    let (moto, s3_store) = moto_store();
    rt.block_on(publish::publish(&s3_store, &snapshot(5), "test", 0)).unwrap();
    let failures = std::sync::atomic::AtomicU64::new(0);
    let proxy = edgeroute_tests_aws::FaultProxy::start(&moto.endpoint, move |req| {
        let snapshot_get = req.method == "GET" && req.path.contains(".snap");
        (snapshot_get && failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 8)
            .then_some(edgeroute_tests_aws::Fault::ServerError)
    });
    let s3_cache = dir.join("s3-cache");
    std::fs::create_dir_all(&s3_cache).unwrap();
    std::fs::write(s3_cache.join("current.snap"), snapshot(1)).unwrap();
    let host = Served::start("s3://edge/p", &s3_cache, &aws_env(&proxy.endpoint))
        .expect("an object that cannot be fetched yet does not stop the host");
    host.wait_for(&id(&snapshot(5)));
    assert!(host.log().contains("serving the cached snapshot"), "{}", host.log());
}

/// [4/8] 5: `/health` says what the host serves. No snapshot anywhere: the
/// host starts anyway, answers 503 everywhere and keeps trying; serving but
/// behind the store longer than `--max-behind`: 200 `degraded`; else ok.
#[test]
fn health_is_503_without_a_snapshot_degraded_when_behind_and_ok_otherwise() {
    let dir = scratch("health");
    std::fs::create_dir_all(dir.join("store")).unwrap();
    let location = format!("dir:{}", dir.join("store").display());
    let host = Served::start_with(&location, &dir.join("cache"), &[], &["--poll-ms", "50", "--max-behind", "1"])
        .expect("the host starts without a snapshot");
    let (status, body) = host.admin_get("/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no snapshot"), "{body}");
    let (status, _) = http_get(host.port, "probe.example.com", "/");
    assert_eq!(status, 503);

    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    let rt = runtime();
    rt.block_on(publish::publish(&store, &snapshot(1), "test", 0)).unwrap();
    host.wait_for(&id(&snapshot(1)));
    let (status, body) = host.admin_get("/health");
    assert_eq!((status, body.starts_with("ok")), (200, true), "{body}");

    let damaged = id(&snapshot(3));
    rt.block_on(store.put_snapshot(&damaged, &snapshot(4))).unwrap();
    point_at(&store, &damaged);
    host.wait_until("degraded", 30, |h| {
        let (status, body) = h.admin_get("/health");
        status == 200 && body.starts_with("degraded") && body.contains(&damaged[..12])
    });
    // The reason is the refusal's, not a summary.
    assert!(host.admin_get("/health").1.contains("SHA-256"), "{}", host.admin_get("/health").1);
    assert_eq!(host.metric("edgeroute_health_degraded"), 1.0);
    // Caught up again: ok.
    rt.block_on(publish::publish(&store, &snapshot(5), "test", 0)).unwrap();
    host.wait_for(&id(&snapshot(5)));
    let (status, body) = host.admin_get("/health");
    assert_eq!((status, body.starts_with("ok")), (200, true), "{body}");
    assert_eq!(host.metric("edgeroute_health_degraded"), 0.0);

    // An S3 store that cannot be reached, and no cache: it starts and says so.
    let unreachable = aws_env(&format!("http://127.0.0.1:{}", free_port()));
    let host = Served::start("s3://edge/p", &dir.join("cache-s3"), &unreachable)
        .expect("an unreachable store does not stop the host");
    assert_eq!(host.admin_get("/health").0, 503);
}

/// [4/8] 5: the admin listener (metrics, health) stays on loopback unless
/// `--admin-public` says otherwise.
#[test]
fn a_public_admin_address_is_refused_unless_asked_for() {
    let dir = scratch("admin-public");
    let snap = dir.join("routes.snap");
    std::fs::write(&snap, snapshot(1)).unwrap();
    // The exit code (`None`: it serves /health on the public address) and the log.
    let run = |extra: &[&str]| {
        let admin = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgeroute-host"))
            .args(["serve", "--snapshot", snap.to_str().unwrap(), "--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--admin-listen", &format!("0.0.0.0:{admin}"), "--static-root", sites().to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code();
            }
            if TcpStream::connect(("127.0.0.1", admin)).is_ok() && http_get(admin, "127.0.0.1", "/health").0 == 200 {
                break None;
            }
            assert!(Instant::now() < deadline, "neither exited nor served /health in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (code, err)
    };
    let (code, err) = run(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--admin-public") && err.contains("0.0.0.0"), "{err}");
    let (code, err) = run(&["--admin-public"]);
    assert_eq!(code, None, "with --admin-public it serves: {err}");
}

/// [4/8] 10: `serve --snapshot FILE` reloads the file when it changes and
/// on SIGHUP, as nginx and HAProxy reload on a signal: validated first, a
/// bad file refused, logged and counted while the old snapshot serves.
#[test]
fn a_snapshot_file_is_reloaded_when_it_changes_and_on_sighup() {
    let dir = scratch("reload");
    let file = dir.join("routes.snap");
    std::fs::write(&file, snapshot(1)).unwrap();
    let sites = sites();
    let host =
        Served::run(&["--snapshot", file.to_str().unwrap(), "--static-root", sites.to_str().unwrap()], &[]).unwrap();
    host.wait_for(&id(&snapshot(1)));

    // Replaced as deploy tools do (a new file renamed over it).
    let next = dir.join("routes.snap.new");
    std::fs::write(&next, snapshot(2)).unwrap();
    std::fs::rename(&next, &file).unwrap();
    host.wait_for(&id(&snapshot(2)));

    // A bad file: refused and counted; snapshot 2 keeps serving.
    std::fs::write(&next, b"EDGROUTE but not a snapshot").unwrap();
    std::fs::rename(&next, &file).unwrap();
    host.wait_until("the bad file refused", 30, |h| h.metric("edgeroute_snapshot_refused_total") >= 1.0);
    assert!(host.log().contains(&format!("refused {}", file.display())), "{}", host.log());
    let refused = host.metric("edgeroute_snapshot_refused_total");
    assert!(id(&snapshot(2)).starts_with(&host.get("probe.example.com").0));

    // SIGHUP reads the file again, changed or not.
    let hup = |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    hup(host.child.id());
    host.wait_until("the bad file refused again", 30, |h| h.metric("edgeroute_snapshot_refused_total") > refused);
    std::fs::write(&next, snapshot(3)).unwrap();
    std::fs::rename(&next, &file).unwrap();
    host.wait_for(&id(&snapshot(3)));
    hup(host.child.id());
    std::thread::sleep(Duration::from_millis(500));
    assert!(id(&snapshot(3)).starts_with(&host.get("probe.example.com").0), "SIGHUP does not stop the host");
}
