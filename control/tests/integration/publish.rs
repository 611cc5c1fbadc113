//! Publishing to stores (a directory, and S3 on moto's server): objects
//! written once, the pointer replaced by compare-and-swap, rollback and
//! pins, history, pruning, and concurrent publishers that never lose an
//! update.

use std::path::PathBuf;
use std::process::{Command, Output};

use edgeroute_compiler::Options;
use edgeroute_control::publish::{self, Published};
use edgeroute_store::{Pointer, Store, StoreLocation};
use edgeroute_tests::compile_text;
use edgeroute_tests_aws::{aws_env, Moto};

fn edgeroute(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeroute"));
    cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-publish-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A distinct small snapshot for each `n`.
fn snapshot(n: usize) -> Vec<u8> {
    let table: String = (0..=n)
        .map(|i| format!("{{\"Domain\":\"env-{i}.example.com\",\"Target\":\"s3://sites/env-{i}\"}}\n"))
        .collect();
    compile_text(&table, Options::default()).unwrap().bytes
}

fn id(bytes: &[u8]) -> String {
    edgeroute_edge::SnapshotId::of(bytes).to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
}

#[test]
fn publish_rollback_pin_unpin_history_and_prune_in_a_directory() {
    let dir = scratch("cli");
    let store = dir.join("store");
    let to = format!("dir:{}", store.display());
    let (a, b) = (dir.join("a.snap"), dir.join("b.snap"));
    std::fs::write(&a, snapshot(1)).unwrap();
    std::fs::write(&b, snapshot(2)).unwrap();
    let (ida, idb) = (id(&snapshot(1)), id(&snapshot(2)));
    let run = |args: &[&str]| {
        let o = edgeroute(args, &[]);
        assert_ok(&o);
        text(&o.stdout)
    };
    assert!(run(&["publish", "--snapshot", a.to_str().unwrap(), "--store", &to]).contains(&format!("published {ida}")));
    let out = run(&["publish", "--snapshot", b.to_str().unwrap(), "--store", &to, "--source", "dynamodb://routes"]);
    assert!(out.contains(&format!("published {idb} (3 routes) to {to}; previous {ida}")), "{out}");
    assert!(run(&["publish", "--snapshot", b.to_str().unwrap(), "--store", &to]).contains("is already current"));
    // The objects are content-addressed; the pointer says what is live.
    assert_eq!(std::fs::read(store.join(format!("snapshots/{ida}.snap"))).unwrap(), snapshot(1));
    let pointer: Pointer = serde_json::from_slice(&std::fs::read(store.join("current.json")).unwrap()).unwrap();
    assert_eq!((pointer.id.as_str(), pointer.previous.as_deref()), (idb.as_str(), Some(ida.as_str())));
    assert_eq!((pointer.routes, pointer.source.as_str(), pointer.pinned), (Some(3), "dynamodb://routes", false));

    // Rollback to the previous one pins the store; publishing holds back.
    assert!(run(&["rollback", "--store", &to]).contains(&format!("rolled back {to} to {ida}")));
    let c = dir.join("c.snap");
    std::fs::write(&c, snapshot(3)).unwrap();
    // Held back: said, and not a success ([2/8] 6).
    let o = edgeroute(&["publish", "--snapshot", c.to_str().unwrap(), "--store", &to], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("held back: the store is pinned"), "{}", text(&o.stdout));
    let pointer: Pointer = serde_json::from_slice(&std::fs::read(store.join("current.json")).unwrap()).unwrap();
    assert_eq!((pointer.id.as_str(), pointer.pinned), (ida.as_str(), true));
    // The held-back snapshot is stored all the same.
    assert!(store.join(format!("snapshots/{}.snap", id(&snapshot(3)))).exists());
    let history = run(&["history", "--store", &to]);
    assert!(history.lines().last().unwrap().contains("[current, pinned]"), "{history}");
    assert!(run(&["unpin", "--store", &to]).contains("unpinned"));
    assert!(run(&["unpin", "--store", &to]).contains("is not pinned"));
    let out = run(&["publish", "--snapshot", c.to_str().unwrap(), "--store", &to, "--keep", "2", "--keep-grace", "0"]);
    assert!(out.contains(&format!("published {}", id(&snapshot(3)))), "{out}");
    assert!(out.contains("pruned 1 snapshot(s)"), "{out}");
    // Kept: c (current) and a (the rollback); b is gone and the history says so.
    assert!(!store.join(format!("snapshots/{idb}.snap")).exists());
    let history = run(&["history", "--store", &to]);
    assert_eq!(history.lines().count(), 4, "{history}");
    assert!(history.lines().nth(1).unwrap().contains("[pruned]"), "{history}");
    // Rollback to an explicit id that is not there, and a bad snapshot, are refused.
    let o = edgeroute(&["rollback", "--store", &to, "--id", &idb], &[]);
    assert!(!o.status.success() && text(&o.stderr).contains("is not in the store"), "{}", text(&o.stderr));
    std::fs::write(dir.join("junk.snap"), b"not a snapshot").unwrap();
    let o = edgeroute(&["publish", "--snapshot", dir.join("junk.snap").to_str().unwrap(), "--store", &to], &[]);
    assert!(!o.status.success() && text(&o.stderr).contains("not a valid snapshot"), "{}", text(&o.stderr));
    let o = edgeroute(&["history", "--store", "ftp://x"], &[]);
    assert!(!o.status.success() && text(&o.stderr).contains("a store is dir:PATH or s3://"), "{}", text(&o.stderr));
}

/// [2/8] 7: a rollback goes back through the history, never forward to
/// the snapshot it rolled away from; with no earlier state it is an error
/// and the pointer stays.
#[test]
fn rollback_twice_goes_further_back_never_forward() {
    let dir = scratch("rollback-twice");
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    let rt = runtime();
    let (a, b, c) = (snapshot(1), snapshot(2), snapshot(3));
    for bytes in [&a, &b, &c] {
        rt.block_on(publish::publish(&store, bytes, "test", 0)).unwrap();
    }
    let current = || rt.block_on(store.read_pointer()).unwrap().unwrap().0;
    // c is bad: back to b, then b is bad too: back to a (not forward to c).
    assert_eq!(rt.block_on(publish::rollback(&store, None)).unwrap().id, id(&b));
    assert_eq!(rt.block_on(publish::rollback(&store, None)).unwrap().id, id(&a));
    assert_eq!(current().id, id(&a));
    // Nothing before a: an error, and the pointer stays on a.
    let e = rt.block_on(publish::rollback(&store, None)).unwrap_err();
    assert!(e.to_string().contains("no earlier"), "{e}");
    assert_eq!((current().id, current().pinned), (id(&a), true));
    // After an unpin and a new publish, a rollback goes back to what was
    // current before it (a), not to what the rollbacks rolled away from.
    rt.block_on(publish::unpin(&store)).unwrap();
    let d = snapshot(4);
    rt.block_on(publish::publish(&store, &d, "test", 0)).unwrap();
    assert_eq!(rt.block_on(publish::rollback(&store, None)).unwrap().id, id(&a));
    // `--id` names any state, forward ones included.
    assert_eq!(rt.block_on(publish::rollback(&store, Some(&id(&c)))).unwrap().id, id(&c));
}

/// [2/8] 6: a publish that would drop most of the routes, or all of them
/// (a wrong table, region or filter), is refused unless `--allow-drop`, and
/// a publish that does not go live (refused, or held back by a pin) exits
/// non-zero, so that a script can tell.
#[test]
fn a_publish_that_drops_most_routes_or_is_held_back_fails_and_changes_nothing() {
    let dir = scratch("drop-guard");
    let to = format!("dir:{}", dir.join("store").display());
    let file = |name: &str, routes: usize| {
        let table: String = (0..routes)
            .map(|i| format!("{{\"Domain\":\"r{i}.example.com\",\"Target\":\"s3://sites/{name}\"}}\n"))
            .collect();
        let path = dir.join(format!("{name}.snap"));
        std::fs::write(&path, compile_text(&table, Options::default()).unwrap().bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ten, three, six, none) = (file("ten", 10), file("three", 3), file("six", 6), file("none", 0));
    let current =
        || -> Pointer { serde_json::from_slice(&std::fs::read(dir.join("store/current.json")).unwrap()).unwrap() };
    let publish = |args: &[&str]| edgeroute(&[&["publish", "--store", &to, "--snapshot"][..], args].concat(), &[]);
    assert_ok(&publish(&[&ten]));
    // 10 → 3 routes drops 70 %; 10 → 0 drops all: refused, the pointer stays.
    for small in [&three, &none] {
        let o = publish(&[small]);
        assert_eq!(o.status.code(), Some(1), "{small}: {}", text(&o.stdout));
        assert!(text(&o.stderr).contains("--allow-drop"), "{}", text(&o.stderr));
        assert_eq!(current().routes, Some(10));
    }
    // Within the default share (10 → 6), or allowed: published.
    assert_ok(&publish(&[&six]));
    assert_ok(&publish(&[&ten]));
    assert_ok(&publish(&[&three, "--allow-drop"]));
    assert_eq!(current().routes, Some(3));
    // Held back by a pin: stored, not live, and not a success.
    assert_ok(&edgeroute(&["rollback", "--store", &to], &[]));
    let o = publish(&[&ten]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("pinned"), "{}", text(&o.stderr));
}

/// [2/8] 5: pruning never deletes an object that a concurrent publisher
/// has put but not yet pointed to (objects younger than the grace period
/// stay), while old objects beyond `keep` still go.
#[test]
fn prune_keeps_an_object_a_concurrent_publisher_just_put() {
    let dir = scratch("prune-race");
    let root = dir.join("store");
    let store = Store::open(&StoreLocation::Dir(root.clone()), None).unwrap();
    let rt = runtime();
    let (a, b, c, d) = (snapshot(1), snapshot(2), snapshot(3), snapshot(4));
    for bytes in [&a, &b, &c] {
        rt.block_on(publish::publish(&store, bytes, "test", 0)).unwrap();
    }
    // a and b were published hours ago.
    let object = |bytes: &[u8]| root.join(format!("snapshots/{}.snap", id(bytes)));
    let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3600);
    for old in [&a, &b] {
        std::fs::File::options().write(true).open(object(old)).unwrap().set_modified(hours_ago).unwrap();
    }
    // A second publisher has stored d and is about to swap the pointer.
    rt.block_on(store.put_snapshot(&id(&d), &d)).unwrap();
    let deleted = rt.block_on(publish::prune(&store, 1)).unwrap();
    assert!(object(&d).exists(), "pruned the object another publisher is about to point to");
    assert!(object(&c).exists(), "pruned the current snapshot");
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(!object(&a).exists() && !object(&b).exists());
}

/// [2/8] 5: an object already stored under a snapshot's id is checked, not
/// trusted: a damaged copy (a torn upload, a bad disk) is written again
/// when that snapshot is published, so that the pointer never names bytes
/// that are not its id. On a directory store and on S3.
#[test]
fn publishing_over_a_damaged_copy_of_the_same_snapshot_repairs_it() {
    let check = |store: &Store, rt: &tokio::runtime::Runtime| {
        let bytes = snapshot(5);
        let damaged: Vec<u8> = bytes.iter().map(|b| b ^ 0x5a).collect();
        rt.block_on(store.put_snapshot(&id(&bytes), &damaged)).unwrap();
        rt.block_on(publish::publish(store, &bytes, "test", 0)).unwrap();
        let stored = rt.block_on(store.get_snapshot(&id(&bytes))).unwrap();
        assert!(stored == bytes, "the pointer names {} but the object is still the damaged copy", id(&bytes));
    };
    let rt = runtime();
    let dir = scratch("repair");
    check(&Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap(), &rt);
    let moto = Moto::start();
    let config = rt.block_on(moto.config());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    rt.block_on(s3.create_bucket().bucket("repair").send()).unwrap();
    let location = StoreLocation::S3 { bucket: "repair".into(), prefix: "p".into() };
    check(&Store::open(&location, Some(&config)).unwrap(), &rt);
}

#[test]
fn a_damaged_snapshot_object_is_not_rolled_back_to() {
    let dir = scratch("damaged");
    let store = Store::open(&StoreLocation::Dir(dir.clone()), None).unwrap();
    let rt = runtime();
    rt.block_on(publish::publish(&store, &snapshot(1), "t", 0)).unwrap();
    rt.block_on(publish::publish(&store, &snapshot(2), "t", 0)).unwrap();
    let path = dir.join(format!("snapshots/{}.snap", id(&snapshot(1))));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = rt.block_on(publish::rollback(&store, None)).unwrap_err().to_string();
    assert!(err.contains("is damaged"), "{err}");
    let (pointer, _) = rt.block_on(store.read_pointer()).unwrap().unwrap();
    assert_eq!(pointer.id, id(&snapshot(2)));
}

/// `n` publishers at once, each with its own snapshot: every one of them
/// becomes current exactly once, and each pointer's `previous` is the
/// pointer it replaced, so the history is one unbroken chain.
fn concurrent_publishers_lose_nothing(store: Store, n: usize) {
    let rt = runtime();
    let store = std::sync::Arc::new(store);
    let snapshots: Vec<Vec<u8>> = (0..n).map(|i| snapshot(10 + i)).collect();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for bytes in snapshots.clone() {
            let store = store.clone();
            tasks.spawn(async move { publish::publish(&store, &bytes, "concurrent", 0).await });
        }
        while let Some(done) = tasks.join_next().await {
            assert!(matches!(done.unwrap().unwrap(), Published::Current(_)));
        }
    });
    let history = rt.block_on(store.history()).unwrap();
    let mut ids: Vec<&str> = history.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected: Vec<String> = snapshots.iter().map(|s| id(s)).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
    // One chain: the history's order, each built on the one before.
    let mut previous = None;
    let mut by_previous: std::collections::HashMap<Option<String>, &Pointer> =
        history.iter().map(|p| (p.previous.clone(), p)).collect();
    assert_eq!(by_previous.len(), n, "two publishers built on the same pointer: {history:#?}");
    for _ in 0..n {
        let next = by_previous.remove(&previous).expect("the chain is unbroken");
        previous = Some(next.id.clone());
    }
    let (current, _) = rt.block_on(store.read_pointer()).unwrap().unwrap();
    assert_eq!(Some(current.id), previous);
}

#[test]
fn concurrent_publishers_to_a_directory_lose_nothing() {
    let dir = scratch("concurrent");
    concurrent_publishers_lose_nothing(Store::open(&StoreLocation::Dir(dir), None).unwrap(), 12);
}

#[test]
fn s3_store_on_moto_publishes_rolls_back_and_never_loses_an_update() {
    let moto = Moto::start();
    let dir = scratch("s3");
    let env = aws_env(&moto.endpoint);
    let rt = runtime();
    let config = rt.block_on(moto.config());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    rt.block_on(s3.create_bucket().bucket("edge-snapshots").send()).unwrap();

    // Through the CLI, with the AWS settings from the environment.
    let to = "s3://edge-snapshots/previews";
    let (a, b) = (dir.join("a.snap"), dir.join("b.snap"));
    std::fs::write(&a, snapshot(1)).unwrap();
    std::fs::write(&b, snapshot(2)).unwrap();
    for file in [&a, &b] {
        let o = edgeroute(&["publish", "--snapshot", file.to_str().unwrap(), "--store", to], &env);
        assert_ok(&o);
    }
    let key = format!("previews/snapshots/{}.snap", id(&snapshot(1)));
    let object = rt.block_on(s3.get_object().bucket("edge-snapshots").key(&key).send()).unwrap();
    assert_eq!(rt.block_on(object.body.collect()).unwrap().to_vec(), snapshot(1));
    let o = edgeroute(&["rollback", "--store", to], &env);
    assert_ok(&o);
    let o = edgeroute(&["history", "--store", to, "--json"], &env);
    assert_ok(&o);
    let history: Vec<Pointer> = text(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(history.len(), 3);
    assert!(history[2].pinned && history[2].id == id(&snapshot(1)));
    // Pruning reads the objects' write times from S3: just written, so kept
    // under the grace period; without one, b (neither recent nor current) goes.
    let previews =
        Store::open(&StoreLocation::S3 { bucket: "edge-snapshots".into(), prefix: "previews".into() }, Some(&config))
            .unwrap();
    assert_eq!(rt.block_on(publish::prune(&previews, 1)).unwrap(), Vec::<String>::new());
    let pruned = rt.block_on(publish::prune_with_grace(&previews, 1, std::time::Duration::ZERO)).unwrap();
    assert_eq!(pruned, vec![id(&snapshot(2))]);

    // A stale version loses the conditional put.
    let store =
        Store::open(&StoreLocation::S3 { bucket: "edge-snapshots".into(), prefix: "race".into() }, Some(&config))
            .unwrap();
    rt.block_on(publish::publish(&store, &snapshot(1), "t", 0)).unwrap();
    let (pointer, stale) = rt.block_on(store.read_pointer()).unwrap().unwrap();
    rt.block_on(publish::publish(&store, &snapshot(2), "t", 0)).unwrap();
    assert!(!rt.block_on(store.replace_pointer(&pointer, Some(&stale))).unwrap());
    assert!(!rt.block_on(store.replace_pointer(&pointer, None)).unwrap());

    let store =
        Store::open(&StoreLocation::S3 { bucket: "edge-snapshots".into(), prefix: "concurrent".into() }, Some(&config))
            .unwrap();
    concurrent_publishers_lose_nothing(store, 6);
}

/// [2/8] 4, the pieces: a lease is refused while held, taken over only by
/// force, renewed only by its holder; a pointer write below the pointer's
/// generation is refused (the fence), on either kind of store.
fn the_lease_fences_writers(store: &Store) {
    use edgeroute_control::lease::{HeldLease, LeaseError, LeaseOptions};
    use edgeroute_store::LeaseRole;
    let rt = runtime();
    rt.block_on(async {
        let options = |who: &str| LeaseOptions {
            ttl: std::time::Duration::from_secs(30),
            renew_every: std::time::Duration::from_secs(1),
            holder: who.into(),
        };
        let mut watcher = HeldLease::take(store, LeaseRole::Watcher, &options("watcher"), false).await.unwrap();
        let first = watcher.generation();
        assert!(publish::publish_fenced(store, &snapshot(1), "w", 0, Default::default(), first).await.is_ok());
        // Held: another watcher and a command are refused, and say by whom.
        let err = HeldLease::take(store, LeaseRole::Watcher, &options("standby"), false).await.unwrap_err();
        assert!(matches!(&err, LeaseError::Held { lease, .. } if lease.holder == "watcher"), "{err}");
        let err = publish::publish(store, &snapshot(2), "manual", 0).await.unwrap_err().to_string();
        assert!(err.contains("leased to watcher") && err.contains("--force"), "{err}");
        watcher.renew(store).await.unwrap();

        // Forced: a command takes it over, writes a higher generation, gives it back.
        let forced = publish::Manual { force: true, ..publish::Manual::named("publish") };
        let published =
            publish::publish_guarded(store, &snapshot(2), "forced", 0, Default::default(), &forced).await.unwrap();
        let Published::Current(pointer) = published else { panic!("{published:?}") };
        assert!(pointer.generation > first);
        // The old holder can neither renew nor write below it.
        assert!(matches!(watcher.renew(store).await, Err(LeaseError::Lost { .. })));
        let err = publish::publish_fenced(store, &snapshot(3), "w", 0, Default::default(), first).await.unwrap_err();
        assert!(matches!(err, publish::PublishError::Fenced { current, .. } if current == pointer.generation), "{err}");
        assert_eq!(rt_pointer(store).await.id, pointer.id);
        // A new holder fences the old one off at once by claiming the pointer,
        // even with nothing of its own to write.
        let stalled = HeldLease::take(store, LeaseRole::Watcher, &options("stalled"), true).await.unwrap();
        let (old, _) = store.read_pointer().await.unwrap().unwrap();
        let successor = HeldLease::take(store, LeaseRole::Watcher, &options("successor"), true).await.unwrap();
        publish::claim(store, successor.generation()).await.unwrap();
        let claimed = rt_pointer(store).await;
        assert_eq!((claimed.id.as_str(), claimed.generation), (old.id.as_str(), successor.generation()));
        let err = publish::publish_fenced(store, &snapshot(7), "w", 0, Default::default(), stalled.generation())
            .await
            .unwrap_err();
        assert!(matches!(err, publish::PublishError::Fenced { .. }), "{err}");
        assert_eq!(rt_pointer(store).await.id, old.id);
        assert!(successor.release(store).await.unwrap(), "the holder gives its lease back");
        assert!(!stalled.release(store).await.unwrap(), "a lease taken over is not given back by its old holder");

        // Released: the next writer need not wait, and goes higher still.
        let next = HeldLease::take(store, LeaseRole::Watcher, &options("next"), false).await.unwrap();
        assert!(next.generation() > claimed.generation);
        next.release(store).await.unwrap();
        assert!(matches!(publish::publish(store, &snapshot(3), "manual", 0).await, Ok(Published::Current(_))));
    });
}

async fn rt_pointer(store: &Store) -> Pointer {
    store.read_pointer().await.unwrap().unwrap().0
}

#[test]
fn the_lease_fences_writers_in_a_directory_and_in_s3() {
    let dir = scratch("lease");
    the_lease_fences_writers(&Store::open(&StoreLocation::Dir(dir), None).unwrap());
    let moto = Moto::start();
    let rt = runtime();
    let config = rt.block_on(moto.config());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    rt.block_on(s3.create_bucket().bucket("leased").send()).unwrap();
    let location = StoreLocation::S3 { bucket: "leased".into(), prefix: "p".into() };
    the_lease_fences_writers(&Store::open(&location, Some(&config)).unwrap());
}

/// [2/8] 5: in S3 a snapshot goes up with its SHA-256 as
/// `x-amz-checksum-sha256` (S3 refuses an upload that does not match it and
/// keeps it), and a copy already stored is checked by a HEAD that asks for
/// that checksum, not downloaded; one without it is downloaded and
/// compared. moto neither checks nor keeps checksums: the proxy records
/// the requests, and answers the HEAD as S3 does.
#[test]
fn an_s3_copy_is_checked_by_its_stored_checksum_without_a_download() {
    use edgeroute_tests_aws::{Fault, FaultProxy};
    use std::sync::{Arc, Mutex};
    let moto = Moto::start();
    let rt = runtime();
    let config = rt.block_on(moto.config());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    rt.block_on(s3.create_bucket().bucket("sums").send()).unwrap();
    // What S3 would keep: each object's checksum, as its PUT sent it.
    // (None: there, without a checksum.)
    let sums = Arc::new(Mutex::new(std::collections::HashMap::<String, Option<(String, usize)>>::new()));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (kept, recorded) = (sums.clone(), seen.clone());
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        let path = r.path.split('?').next().unwrap_or_default().to_owned();
        if !path.contains("/snapshots/") {
            return None;
        }
        let header = |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        recorded.lock().unwrap().push(format!(
            "{} {path} {}",
            r.method,
            header("x-amz-checksum-sha256").unwrap_or_default()
        ));
        match r.method.as_str() {
            "PUT" => {
                let mut kept = kept.lock().unwrap();
                // `If-None-Match: *` over an object that is there: refused, nothing kept.
                if header("if-none-match").is_none() || !kept.contains_key(&path) {
                    kept.insert(path, header("x-amz-checksum-sha256").map(|sum| (sum, r.raw.len())));
                }
                None
            }
            "HEAD" if header("x-amz-checksum-mode").as_deref() == Some("ENABLED") => {
                let (sum, len) = kept.lock().unwrap().get(&path).cloned()??;
                Some(Fault::Headers(200, vec![("x-amz-checksum-sha256", sum), ("content-length", len.to_string())]))
            }
            _ => None,
        }
    });
    let proxied = rt.block_on(edgeroute_tests_aws::config_for(&proxy.endpoint));
    let store = Store::open(&StoreLocation::S3 { bucket: "sums".into(), prefix: "p".into() }, Some(&proxied)).unwrap();
    let bytes = snapshot(4);
    rt.block_on(store.put_snapshot(&id(&bytes), &bytes)).unwrap();
    let expected = {
        use sha2::Digest as _;
        aws_smithy_types::base64::encode(sha2::Sha256::digest(&bytes))
    };
    let requests = seen.lock().unwrap().clone();
    assert!(requests.iter().any(|r| r.starts_with("PUT ") && r.ends_with(&expected)), "{expected}: {requests:?}");
    seen.lock().unwrap().clear();
    rt.block_on(store.put_snapshot(&id(&bytes), &bytes)).unwrap();
    let requests = seen.lock().unwrap().clone();
    // The conditional PUT (refused: the object is there), then the HEAD; no download, no rewrite.
    assert!(requests.iter().any(|r| r.starts_with("HEAD ")), "{requests:?}");
    assert!(!requests.iter().any(|r| r.starts_with("GET ")), "checked by download: {requests:?}");
    assert_eq!(requests.iter().filter(|r| r.starts_with("PUT ")).count(), 1, "rewritten: {requests:?}");

    // Written without the checksum (by hand): downloaded and compared, and kept when equal.
    let other = snapshot(6);
    let key = format!("p/snapshots/{}.snap", id(&other));
    rt.block_on(s3.put_object().bucket("sums").key(&key).body(other.clone().into()).send()).unwrap();
    sums.lock().unwrap().insert(format!("/sums/{key}"), None);
    seen.lock().unwrap().clear();
    rt.block_on(store.put_snapshot(&id(&other), &other)).unwrap();
    let requests = seen.lock().unwrap().clone();
    assert!(requests.iter().any(|r| r.starts_with("GET ")), "{requests:?}");
    assert_eq!(requests.iter().filter(|r| r.starts_with("PUT ")).count(), 1, "rewritten though equal: {requests:?}");
}
