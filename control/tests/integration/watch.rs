//! `edgeroute watch` against moto's DynamoDB and DynamoDB Streams: every
//! change is published, bad rows are left out and counted, bootstrap under
//! concurrent writes loses nothing, a pinned store is held back, a restart
//! rebuilds the mirror, and a table without a stream is scanned instead.
//! The tests wait for behaviour (eventually published), never for a time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgeroute_control::publish;
use edgeroute_edge::Snapshot;
use edgeroute_store::{Pointer, Store, StoreLocation};
use edgeroute_tests_aws::{
    aws_env, create_streamed_table, create_table, delete_items, put_items, Fault, FaultProxy, Moto,
};
use serde_json::{json, Value as Json};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-watch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The table `routes` on `moto`, streamed, holding `items`; the
/// configuration to reach it.
fn streamed_routes(moto: &Moto, rt: &tokio::runtime::Runtime, items: &[Json]) -> aws_config::SdkConfig {
    let config = rt.block_on(moto.config());
    rt.block_on(async {
        create_streamed_table(&config, "routes").await;
        put_items(&config, "routes", items).await;
    });
    config
}

fn item(domain: &str) -> Json {
    json!({"Domain": {"S": domain}, "Target": {"S": format!("s3://sites/{}", domain.split('.').next().unwrap())}})
}

/// A running `edgeroute watch`, killed on drop.
struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    fn start(table: &str, store: &Path, endpoint: &str, extra: &[&str]) -> Watcher {
        Watcher::start_to(table, &format!("dir:{}", store.display()), store, endpoint, extra)
    }

    /// Publishing to `publish_to`; the log goes beside `near`.
    fn start_to(table: &str, publish_to: &str, near: &Path, endpoint: &str, extra: &[&str]) -> Watcher {
        let log = near.with_file_name(format!("watch-{}.log", unique_name()));
        let child = Command::new(env!("CARGO_BIN_EXE_edgeroute"))
            .args(["watch", "--table", table, "--store", publish_to, "--debounce-ms", "30"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .envs(aws_env(endpoint))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("edgeroute watch starts");
        Watcher { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` from its admin listener (the address its log gives):
    /// the status code and the body.
    fn admin(&self, path: &str) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let log = self.log();
        let addr = log
            .split("admin endpoints on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no admin address in the log:\n{log}"));
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        (status, body)
    }

    /// Waits until `ok` holds for the published snapshot (and its pointer).
    fn wait_for(
        &self,
        store: &Path,
        what: &str,
        ok: impl Fn(&Pointer, &Snapshot<Vec<u8>>) -> bool,
    ) -> (Pointer, Snapshot<Vec<u8>>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((pointer, snapshot)) = current(store) {
                if ok(&pointer, &snapshot) {
                    return (pointer, snapshot);
                }
            }
            assert!(Instant::now() < deadline, "never published: {what}\nlog:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

impl Drop for Watcher {
    /// Stops it as a service manager would: SIGTERM (it gives the store's
    /// lease back), then SIGKILL if it has not ended within 5 s.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store's current pointer and snapshot (the snapshot checked against its id).
fn current(store: &Path) -> Option<(Pointer, Snapshot<Vec<u8>>)> {
    current_of(&Store::open(&StoreLocation::Dir(store.to_owned()), None).ok()?)
}

fn current_of(store: &Store) -> Option<(Pointer, Snapshot<Vec<u8>>)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (pointer, _) = rt.block_on(store.read_pointer()).ok()??;
    let snapshot = snapshot_of(store, &pointer)?;
    Some((pointer, snapshot))
}

/// The state `pointer` names as one snapshot: every object checked against
/// its id, the layers stacked on the base, compacted.
fn snapshot_of(store: &Store, pointer: &Pointer) -> Option<Snapshot<Vec<u8>>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let state = rt.block_on(edgeroute_control::state::load(store, pointer)).ok()?;
    let merged = edgeroute_compiler::compact(&state.base, &state.layers).unwrap();
    Some(Snapshot::from_bytes(merged.bytes).expect("a published state compacts to a valid snapshot"))
}

fn serves(snapshot: &Snapshot<Vec<u8>>, host: &str) -> bool {
    !matches!(snapshot.resolve(host.as_bytes(), b"/"), edgeroute_edge::Resolution::NotFound)
}

#[test]
fn every_change_is_published_and_bad_rows_are_left_out_and_counted() {
    let moto = Moto::start();
    let dir = scratch("changes");
    let store = dir.join("store");
    let rt = runtime();
    let initial: Vec<Json> = (0..50).map(|i| item(&format!("env-{i}.example.com"))).collect();
    let config = streamed_routes(&moto, &rt, &initial);
    let watcher = Watcher::start("routes", &store, &moto.endpoint, &[]);
    watcher.wait_for(&store, "the initial 50 routes", |p, _| p.routes == Some(50));

    rt.block_on(async {
        put_items(&config, "routes", &[item("new.example.com")]).await;
        put_items(&config, "routes", &[json!({"Domain": {"S": "bad.example.com"}, "Target": {"N": "7"}})]).await;
        delete_items(&config, "routes", &["env-0.example.com"]).await;
    });
    let (pointer, snapshot) = watcher.wait_for(&store, "new added, env-0 removed, bad left out", |p, s| {
        serves(s, "new.example.com") && !serves(s, "env-0.example.com") && p.skipped == 1
    });
    assert_eq!(pointer.routes, Some(50));
    assert!(serves(&snapshot, "env-49.example.com"));
    assert!(!serves(&snapshot, "bad.example.com"));
    assert_eq!(pointer.source, "dynamodb://routes (watch)");
    let log = watcher.log();
    assert!(
        log.contains("left out Domain \"bad.example.com\": attribute Target must be a string, not a number (N)"),
        "{log}"
    );
    // The publish's log line comes just after its pointer.
    let staged = |log: &str| {
        log.lines().any(|l| {
            l.contains(&pointer.id)
                && l.contains(" ms: stream ")
                && l.contains(", debounce ")
                && l.contains(", compile ")
                && l.contains(", upload ")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !staged(&watcher.log()) {
        assert!(Instant::now() < deadline, "no staged latency for {}:\n{}", pointer.id, watcher.log());
        std::thread::sleep(Duration::from_millis(25));
    }

    // A pinned store is held back; unpinning lets the next change through.
    // Both write the pointer while the watcher holds the lease: forced.
    let dir_store = Store::open(&StoreLocation::Dir(store.clone()), None).unwrap();
    let forced = |what| publish::Manual { force: true, ..publish::Manual::named(what) };
    rt.block_on(publish::rollback_manual(&dir_store, None, &forced("rollback"))).unwrap();
    rt.block_on(put_items(&config, "routes", &[item("during-pin.example.com")]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !watcher.log().contains("holding back") {
        assert!(Instant::now() < deadline, "{}", watcher.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    let (pinned, snapshot) = current(&store).unwrap();
    assert!(pinned.pinned && !serves(&snapshot, "during-pin.example.com"));
    rt.block_on(publish::unpin_manual(&dir_store, &forced("unpin"))).unwrap();
    rt.block_on(put_items(&config, "routes", &[item("after-pin.example.com")]));
    watcher.wait_for(&store, "after unpin", |_, s| {
        serves(s, "during-pin.example.com") && serves(s, "after-pin.example.com")
    });

    // A restart rebuilds the mirror, changes made while down included.
    drop(watcher);
    rt.block_on(async {
        delete_items(&config, "routes", &["env-1.example.com"]).await;
        put_items(&config, "routes", &[item("while-down.example.com")]).await;
    });
    let watcher = Watcher::start("routes", &store, &moto.endpoint, &[]);
    watcher.wait_for(&store, "changes made while down", |_, s| {
        serves(s, "while-down.example.com") && !serves(s, "env-1.example.com")
    });
}

#[test]
fn bootstrap_under_concurrent_writes_loses_nothing() {
    let moto = Moto::start();
    let dir = scratch("bootstrap");
    let store = dir.join("store");
    let rt = runtime();
    let config = rt.block_on(moto.config());
    rt.block_on(async {
        create_streamed_table(&config, "routes").await;
        let initial: Vec<Json> = (0..2000).map(|i| item(&format!("old-{i}.example.com"))).collect();
        put_items(&config, "routes", &initial).await;
    });
    // Writes go on while the watcher takes its positions and scans.
    let writer = {
        let config = config.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            for batch in 0..20 {
                let items: Vec<Json> = (0..10).map(|i| item(&format!("new-{batch}-{i}.example.com"))).collect();
                rt.block_on(put_items(&config, "routes", &items));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let watcher = Watcher::start("routes", &store, &moto.endpoint, &["--segments", "4", "--page-size", "100"]);
    writer.join().unwrap();
    let (pointer, snapshot) = watcher.wait_for(&store, "all 2200 routes", |p, _| p.routes == Some(2200));
    for batch in 0..20 {
        for i in 0..10 {
            assert!(serves(&snapshot, &format!("new-{batch}-{i}.example.com")));
        }
    }
    assert_eq!(pointer.skipped, 0);
}

#[test]
fn a_table_without_a_stream_is_scanned_periodically() {
    let moto = Moto::start();
    let dir = scratch("no-stream");
    let store = dir.join("store");
    let rt = runtime();
    let config = rt.block_on(moto.config());
    rt.block_on(async {
        create_table(&config, "routes", "Domain").await;
        put_items(&config, "routes", &[item("a.example.com")]).await;
    });
    let watcher = Watcher::start("routes", &store, &moto.endpoint, &["--scan-interval-ms", "200"]);
    watcher.wait_for(&store, "a", |_, s| serves(s, "a.example.com"));
    rt.block_on(put_items(&config, "routes", &[item("b.example.com")]));
    watcher.wait_for(&store, "b", |_, s| serves(s, "b.example.com"));
    assert!(watcher.log().contains("has no stream"), "{}", watcher.log());
    assert!(watcher.log().contains("falling back to a Scan every 0.2 s"), "{}", watcher.log());
}

/// A stream whose shard splits, answered by the test itself (moto's
/// streams have one shard that never closes): the parent shard closes
/// after one record, its child appears in DescribeStream, the child's
/// iterator expires once. Table calls go on to moto.
fn split_stream(request: &edgeroute_tests_aws::Request, state: &std::sync::Mutex<u32>) -> Option<Fault> {
    let op = request.target.strip_prefix("DynamoDBStreams_20120810.")?;
    let arn = request.body["StreamArn"].as_str().unwrap_or("arn:stream").to_owned();
    let record = |seq: u32, event: &str, domain: &str| {
        let mut change = json!({
            "ApproximateCreationDateTime": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64(),
            "Keys": {"Domain": {"S": domain}},
            "SequenceNumber": seq.to_string(),
            "SizeBytes": 64,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        });
        if event != "REMOVE" {
            change["NewImage"] = item(domain);
        }
        json!({"eventID": seq.to_string(), "eventName": event, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
               "awsRegion": "us-east-1", "dynamodb": change})
    };
    let mut phase = state.lock().unwrap();
    let answer = match op {
        "DescribeStream" => {
            let parent = if *phase == 0 {
                json!({"ShardId": "shardId-parent", "SequenceNumberRange": {"StartingSequenceNumber": "100"}})
            } else {
                json!({"ShardId": "shardId-parent", "SequenceNumberRange": {"StartingSequenceNumber": "100", "EndingSequenceNumber": "199"}})
            };
            let mut shards = vec![parent];
            if *phase > 0 {
                shards.push(json!({"ShardId": "shardId-child", "ParentShardId": "shardId-parent",
                                   "SequenceNumberRange": {"StartingSequenceNumber": "200"}}));
            }
            json!({"StreamDescription": {"StreamArn": arn, "StreamLabel": "split", "StreamStatus": "ENABLED",
                   "StreamViewType": "NEW_AND_OLD_IMAGES", "TableName": "routes", "Shards": shards}})
        }
        "GetShardIterator" => {
            let shard = request.body["ShardId"].as_str().unwrap_or_default();
            let kind = request.body["ShardIteratorType"].as_str().unwrap_or_default();
            let iterator = match (shard, kind) {
                ("shardId-parent", _) => "parent-0",
                ("shardId-child", "TRIM_HORIZON") => "child-0",
                ("shardId-child", "AFTER_SEQUENCE_NUMBER") if request.body["SequenceNumber"] == "201" => "child-renewed",
                other => panic!("unexpected GetShardIterator {other:?}"),
            };
            json!({"ShardIterator": iterator})
        }
        "GetRecords" => match request.body["ShardIterator"].as_str().unwrap_or_default() {
            "parent-0" => json!({"Records": [record(101, "INSERT", "split-a.example.com")], "NextShardIterator": "parent-1"}),
            "parent-1" => {
                // The parent is closed: no next iterator.
                *phase = 1;
                json!({"Records": []})
            }
            "child-0" => json!({"Records": [record(200, "INSERT", "split-b.example.com"),
                                            record(201, "REMOVE", "base-2.example.com")],
                                "NextShardIterator": "child-stale"}),
            "child-stale" => {
                return Some(Fault::Answer(
                    400,
                    "application/x-amz-json-1.0",
                    r#"{"__type":"com.amazonaws.dynamodb.v20120810#ExpiredIteratorException","message":"Iterator expired"}"#.into(),
                ))
            }
            "child-renewed" => {
                *phase = 2;
                json!({"Records": [record(202, "INSERT", "split-c.example.com")], "NextShardIterator": "child-idle"})
            }
            "child-idle" => json!({"Records": [], "NextShardIterator": "child-idle"}),
            other => panic!("unexpected iterator {other}"),
        },
        other => panic!("unexpected streams call {other}"),
    };
    Some(Fault::Answer(200, "application/x-amz-json-1.0", answer.to_string()))
}

#[test]
fn a_split_shard_is_followed_into_its_child_and_an_expired_iterator_is_renewed() {
    let moto = Moto::start();
    let dir = scratch("split");
    let store = dir.join("store");
    let rt = runtime();
    streamed_routes(&moto, &rt, &[item("base-1.example.com"), item("base-2.example.com")]);
    let state = std::sync::Mutex::new(0);
    let proxy = FaultProxy::start(&moto.endpoint, move |r| split_stream(r, &state));
    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &[]);
    watcher.wait_for(&store, "records of the parent, the child, and after the renewed iterator", |_, s| {
        serves(s, "base-1.example.com")
            && !serves(s, "base-2.example.com")
            && serves(s, "split-a.example.com")
            && serves(s, "split-b.example.com")
            && serves(s, "split-c.example.com")
    });
    assert!(watcher.log().contains("following new shard shardId-child"), "{}", watcher.log());
}

/// What a lineage double saw the watcher do wrong.
#[derive(Default)]
struct LineageDouble {
    /// 0: bootstrap; 1: `live` has split into `child` (and `sibling` closed).
    phase: u32,
    /// GetRecords calls on `live` since the split; its last record comes late.
    live_reads_after_split: u32,
    /// `live` was read to its end.
    live_done: bool,
    /// `child`'s record was handed out.
    child_read: bool,
    /// Every wrong request: a closed shard replayed, a child read before its parent's end.
    wrong: Vec<String>,
}

/// [2/8] 1: a stream whose history holds a closed shard (`old`, with stale
/// records of routes since deleted or changed), answered by the test
/// itself as a real stream would answer (moto's streams have one shard that
/// never closes). At bootstrap `old` is closed, `live` (its child) and
/// `sibling` are open; on the test's signal `live` splits into `child`,
/// `sibling` closes, and `live` still holds one record (ordered before
/// `child`'s record of the same key) that it hands out only a few reads
/// later. Table calls go on to moto.
fn lineage_stream(request: &edgeroute_tests_aws::Request, state: &std::sync::Mutex<LineageDouble>) -> Option<Fault> {
    let op = request.target.strip_prefix("DynamoDBStreams_20120810.")?;
    let arn = request.body["StreamArn"].as_str().unwrap_or("arn:stream").to_owned();
    let record = |seq: u32, event: &str, domain: &str, bucket: &str| {
        json!({"eventID": seq.to_string(), "eventName": event, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
               "awsRegion": "us-east-1", "dynamodb": {
                   "Keys": {"Domain": {"S": domain}}, "SequenceNumber": seq.to_string(), "SizeBytes": 64,
                   "StreamViewType": "NEW_AND_OLD_IMAGES", "NewImage": item_in(domain, bucket)}})
    };
    let mut s = state.lock().unwrap();
    let answer = match op {
        "DescribeStream" => {
            let range = |start: u32, end: Option<u32>| match end {
                Some(end) => {
                    json!({"StartingSequenceNumber": start.to_string(), "EndingSequenceNumber": end.to_string()})
                }
                None => json!({"StartingSequenceNumber": start.to_string()}),
            };
            let split = s.phase > 0;
            let mut shards = vec![
                json!({"ShardId": "shardId-old", "SequenceNumberRange": range(100, Some(199))}),
                json!({"ShardId": "shardId-live", "ParentShardId": "shardId-old",
                       "SequenceNumberRange": range(200, split.then_some(299))}),
                json!({"ShardId": "shardId-sibling", "SequenceNumberRange": range(500, split.then_some(599))}),
            ];
            if split {
                shards.push(json!({"ShardId": "shardId-child", "ParentShardId": "shardId-live",
                                   "SequenceNumberRange": range(300, None)}));
            }
            json!({"StreamDescription": {"StreamArn": arn, "StreamLabel": "lineage", "StreamStatus": "ENABLED",
                   "StreamViewType": "NEW_AND_OLD_IMAGES", "TableName": "routes", "Shards": shards}})
        }
        "GetShardIterator" => {
            let shard = request.body["ShardId"].as_str().unwrap_or_default();
            // Open shards at bootstrap from the position taken before the
            // Scan; a child born later from its start.
            let kind = request.body["ShardIteratorType"].as_str().unwrap_or_default();
            let expected = if shard == "shardId-child" { "TRIM_HORIZON" } else { "LATEST" };
            if kind != expected {
                s.wrong.push(format!("opened {shard} at {kind}, not {expected}"));
            }
            let iterator = match shard {
                "shardId-old" => {
                    s.wrong.push("replayed the closed shard shardId-old".into());
                    "old-0"
                }
                "shardId-live" => "live-0",
                "shardId-sibling" => "sibling-0",
                "shardId-child" => {
                    if !s.live_done {
                        s.wrong.push("read shardId-child before its parent shardId-live was read to its end".into());
                    }
                    "child-0"
                }
                other => panic!("unexpected GetShardIterator {other:?}"),
            };
            json!({"ShardIterator": iterator})
        }
        "GetRecords" => match request.body["ShardIterator"].as_str().unwrap_or_default() {
            // The stale history: a route deleted since, and an old target of one changed since.
            "old-0" => json!({"Records": [record(101, "INSERT", "deleted.example.com", "stale"),
                                          record(102, "MODIFY", "changed.example.com", "stale")]}),
            "live-0" if s.phase == 0 => json!({"Records": [], "NextShardIterator": "live-0"}),
            "live-0" => {
                s.live_reads_after_split += 1;
                if s.live_reads_after_split < 4 {
                    json!({"Records": [], "NextShardIterator": "live-0"})
                } else {
                    json!({"Records": [record(250, "MODIFY", "order.example.com", "older")], "NextShardIterator": "live-end"})
                }
            }
            "live-end" => {
                s.live_done = true;
                json!({"Records": []})
            }
            "sibling-0" if s.phase == 0 => json!({"Records": [], "NextShardIterator": "sibling-0"}),
            "sibling-0" => json!({"Records": []}),
            "child-0" => {
                s.child_read = true;
                json!({"Records": [record(300, "MODIFY", "order.example.com", "newer"),
                                   record(301, "INSERT", "split.example.com", "fresh")],
                       "NextShardIterator": "child-idle"})
            }
            "child-idle" => json!({"Records": [], "NextShardIterator": "child-idle"}),
            other => panic!("unexpected iterator {other}"),
        },
        other => panic!("unexpected streams call {other}"),
    };
    Some(Fault::Answer(200, "application/x-amz-json-1.0", answer.to_string()))
}

/// The bucket a host's static answer reads from, if it has one.
fn bucket_of(snapshot: &Snapshot<Vec<u8>>, host: &str) -> Option<String> {
    match snapshot.resolve(host.as_bytes(), b"/") {
        edgeroute_edge::Resolution::Static { bucket, .. } => Some(bucket.to_owned()),
        _ => None,
    }
}

fn item_in(domain: &str, bucket: &str) -> Json {
    json!({"Domain": {"S": domain}, "Target": {"S": format!("s3://{bucket}")}})
}

/// [2/8] 1: closed shards are history the Scan already holds; a shard born
/// during the run is read only after its parent was read to its end.
#[test]
fn closed_shards_are_not_replayed_and_a_child_is_read_after_its_parent() {
    let moto = Moto::start();
    let dir = scratch("lineage");
    let store = dir.join("store");
    let rt = runtime();
    streamed_routes(&moto, &rt, &[item_in("changed.example.com", "fresh"), item_in("order.example.com", "oldest")]);
    let state = std::sync::Arc::new(std::sync::Mutex::new(LineageDouble::default()));
    let double = state.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| lineage_stream(r, &double));
    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &[]);
    watcher.wait_for(&store, "the bootstrap", |_, s| bucket_of(s, "order.example.com").as_deref() == Some("oldest"));

    state.lock().unwrap().phase = 1;
    eventually(&watcher, "both halves of the split read, or a wrong read", || {
        let s = state.lock().unwrap();
        (s.live_done && s.child_read) || !s.wrong.is_empty()
    });
    let wrong = state.lock().unwrap().wrong.clone();
    assert!(wrong.is_empty(), "the watcher broke the stream's lineage: {wrong:?}\nlog:\n{}", watcher.log());
    let (_, snapshot) = watcher.wait_for(&store, "the child's records", |_, s| serves(s, "split.example.com"));
    assert_eq!(bucket_of(&snapshot, "order.example.com").as_deref(), Some("newer"), "records applied out of order");
    assert_eq!(bucket_of(&snapshot, "changed.example.com").as_deref(), Some("fresh"), "a changed route went back");
    assert!(!serves(&snapshot, "deleted.example.com"), "a deleted route came back");
    assert!(watcher.log().contains("following new shard shardId-child"), "{}", watcher.log());
}

/// [2/8] 2: the bootstrap Scan reads the table after the stream positions
/// it took, so it must be strongly consistent, or a write between the two
/// could be in neither. moto's Scan is always consistent: the test looks
/// at the requests themselves, through a recording proxy.
#[test]
fn the_bootstrap_scan_is_strongly_consistent() {
    let moto = Moto::start();
    let dir = scratch("consistent");
    let store = dir.join("store");
    let rt = runtime();
    streamed_routes(&moto, &rt, &[item("a.example.com"), item("b.example.com")]);
    let scans = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Json>::new()));
    let recorded = scans.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        if r.target.ends_with(".Scan") {
            recorded.lock().unwrap().push(r.body.clone());
        }
        None
    });
    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &[]);
    watcher.wait_for(&store, "the bootstrap publish", |_, s| serves(s, "a.example.com") && serves(s, "b.example.com"));
    let scans = scans.lock().unwrap();
    assert!(!scans.is_empty(), "no Scan went through the proxy");
    for body in scans.iter() {
        assert_eq!(body["ConsistentRead"], json!(true), "an eventually consistent bootstrap Scan: {body}");
    }
}

/// Waits until `ok` holds, or fails with the watcher's log.
fn eventually(watcher: &Watcher, what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}\nlog:\n{}", watcher.log());
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_store_outage_and_a_stream_error_are_ridden_out() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let moto = Moto::start();
    let dir = scratch("outages");
    let rt = runtime();
    let config = rt.block_on(moto.config());
    rt.block_on(async {
        create_streamed_table(&config, "routes").await;
        put_items(&config, "routes", &[item("a.example.com")]).await;
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
        s3.create_bucket().bucket("edge").send().await.unwrap();
    });
    // 1: every S3 PUT fails; 2: the next GetRecords is refused (not transient).
    let phase = std::sync::Arc::new(AtomicU32::new(0));
    let state = phase.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| match state.load(Ordering::SeqCst) {
        1 if r.method == "PUT" && r.path.starts_with("/edge/") => Some(Fault::ServerError),
        2 if r.target == "DynamoDBStreams_20120810.GetRecords" => {
            state.store(0, Ordering::SeqCst);
            Some(Fault::Answer(
                400,
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazon.coral.service#AccessDeniedException","message":"injected"}"#.into(),
            ))
        }
        _ => None,
    });
    let store = Store::open(&StoreLocation::S3 { bucket: "edge".into(), prefix: "p".into() }, Some(&config)).unwrap();
    let watcher = Watcher::start_to("routes", "s3://edge/p", &dir.join("store"), &proxy.endpoint, &[]);
    let serving = |host: &str| current_of(&store).is_some_and(|(_, s)| serves(&s, host));
    eventually(&watcher, "the first publish", || serving("a.example.com"));

    phase.store(1, Ordering::SeqCst);
    rt.block_on(put_items(&config, "routes", &[item("b.example.com")]));
    eventually(&watcher, "a failed publish", || watcher.log().contains("cannot publish"));
    assert!(!serving("b.example.com"));
    phase.store(0, Ordering::SeqCst);
    eventually(&watcher, "b, once the store is back", || serving("b.example.com"));

    phase.store(2, Ordering::SeqCst);
    eventually(&watcher, "a new bootstrap", || watcher.log().contains("mirroring the table again"));
    rt.block_on(put_items(&config, "routes", &[item("c.example.com")]));
    eventually(&watcher, "c, after the new bootstrap", || serving("c.example.com") && serving("b.example.com"));
}

fn edgeroute(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgeroute")).args(args).output().expect("edgeroute runs")
}

/// Sends `signal` (STOP, CONT) to a watcher: a stalled process, as a long
/// GC pause or a frozen VM makes one.
fn signal(watcher: &Watcher, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &watcher.child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// [2/8] 4: a manual publish while a watcher holds the store's lease is
/// refused unless `--force`; a forced one goes live and lasts until the
/// table's next change, which the watcher then publishes over it, fenced
/// by a higher generation (the table is the source of truth).
#[test]
fn a_manual_publish_over_a_running_watcher_is_refused_unless_forced() {
    let moto = Moto::start();
    let dir = scratch("forced");
    let store = dir.join("store");
    let to = format!("dir:{}", store.display());
    let rt = runtime();
    let config = streamed_routes(&moto, &rt, &[item("a.example.com"), item("b.example.com")]);
    let watcher = Watcher::start("routes", &store, &moto.endpoint, &["--lease-ms", "1000", "--lease-renew-ms", "200"]);
    let (live, _) =
        watcher.wait_for(&store, "a and b", |_, s| serves(s, "a.example.com") && serves(s, "b.example.com"));

    // An older table's snapshot: only a.
    let (table, old) = (dir.join("old.json"), dir.join("old.snap"));
    std::fs::write(&table, "{\"Domain\":\"a.example.com\",\"Target\":\"s3://sites/a\"}\n").unwrap();
    let out = edgeroute(&["compile", "--from", table.to_str().unwrap(), "--out", old.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manual = ["publish", "--snapshot", old.to_str().unwrap(), "--store", &to, "--allow-drop"];
    let out = edgeroute(&manual);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a manual publish went over a running watcher: {stderr}");
    assert!(stderr.contains("lease") && stderr.contains("--force"), "{stderr}");
    assert_eq!(current(&store).unwrap().0, live, "a refused publish changed the pointer");

    let out = edgeroute(&[&manual[..], &["--force"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (forced, snapshot) = current(&store).unwrap();
    assert!(!serves(&snapshot, "b.example.com"));
    assert!(forced.generation > live.generation && forced.forced, "{forced:?} after {live:?}");
    // The watcher notices (its renewal fails), takes the lease back, and
    // mirrors the table again, but leaves the forced snapshot live.
    eventually(&watcher, "the watcher taking its lease back", || {
        watcher.log().matches("took the store's lease").count() >= 2
            && watcher.log().contains("written with --force, until the table's next change")
    });
    let (still, _) = current(&store).unwrap();
    assert_eq!(still.id, forced.id, "the watcher put the table's old state back over the forced publish");
    assert!(still.generation > forced.generation, "the pointer does not carry the watcher's new lease: {still:?}");

    // The table's next change is published over it, with a higher generation still.
    rt.block_on(put_items(&config, "routes", &[item("c.example.com")]));
    let (after, _) = watcher.wait_for(&store, "the table's state after the change", |_, s| {
        serves(s, "a.example.com") && serves(s, "b.example.com") && serves(s, "c.example.com")
    });
    assert!(after.generation > forced.generation, "{after:?} after {forced:?}");
    // Until then the forced snapshot stayed: the watcher did not put the table's old state back.
    let history = rt.block_on(Store::open(&StoreLocation::Dir(store.clone()), None).unwrap().history()).unwrap();
    let at = history.iter().rposition(|p| p.id == forced.id).unwrap();
    assert_eq!(history[at + 1].id, after.id, "{history:#?}");
    assert!(watcher.log().contains("lease"), "{}", watcher.log());
}

/// [2/8] 4: two watchers on one table and one store: one publishes, the
/// other stands by; when the first stalls past its lease the second takes
/// over, and the first, woken, cannot put its older state over the
/// newer one (its generation is fenced off); it stands by in turn.
#[test]
fn two_watchers_on_one_store_take_turns_and_a_stalled_one_cannot_regress_it() {
    let moto = Moto::start();
    let dir = scratch("two-watchers");
    let store = dir.join("store");
    let rt = runtime();
    let config = streamed_routes(&moto, &rt, &[item("a.example.com")]);
    let lease = ["--lease-ms", "1000", "--lease-renew-ms", "200"];
    let first = Watcher::start("routes", &store, &moto.endpoint, &lease);
    first.wait_for(&store, "a", |_, s| serves(s, "a.example.com"));
    let mut second = Watcher::start("routes", &store, &moto.endpoint, &lease);
    eventually(&second, "the second watcher standing by", || second.log().contains("standing by"));
    rt.block_on(put_items(&config, "routes", &[item("b.example.com")]));
    first.wait_for(&store, "b, by the first", |_, s| serves(s, "b.example.com"));

    signal(&first, "STOP");
    eventually(&second, "the second taking over", || second.log().contains("took the store's lease"));
    rt.block_on(put_items(&config, "routes", &[item("c.example.com")]));
    second.wait_for(&store, "c, by the second", |_, s| serves(s, "c.example.com"));
    rt.block_on(delete_items(&config, "routes", &["b.example.com"]));
    second.wait_for(&store, "b deleted", |_, s| serves(s, "c.example.com") && !serves(s, "b.example.com"));

    // The first wakes with changes it has not read: whatever it tries, it is fenced off.
    signal(&first, "CONT");
    eventually(&first, "the first standing by again", || first.log().matches("standing by").count() >= 1);
    rt.block_on(put_items(&config, "routes", &[item("d.example.com")]));
    second.wait_for(&store, "d", |_, s| serves(s, "d.example.com") && !serves(s, "b.example.com"));

    // Then the second goes away; the first takes over with the table's state.
    let _ = second.child.kill();
    let _ = second.child.wait();
    rt.block_on(put_items(&config, "routes", &[item("e.example.com")]));
    first.wait_for(&store, "e, by the first again", |_, s| {
        serves(s, "e.example.com") && serves(s, "d.example.com") && !serves(s, "b.example.com")
    });

    // The history never went back: generations never fall, and b never returned once deleted.
    let opened = Store::open(&StoreLocation::Dir(store.clone()), None).unwrap();
    let history = rt.block_on(opened.history()).unwrap();
    let mut deleted = false;
    for (i, pointer) in history.iter().enumerate() {
        if i > 0 {
            assert!(pointer.generation >= history[i - 1].generation, "a generation fell: {history:#?}");
        }
        let has_b = serves(&snapshot_of(&opened, pointer).unwrap(), "b.example.com");
        deleted |= !has_b && i > 0;
        assert!(!(deleted && has_b), "b came back at entry {i}: {history:#?}\n{}\n{}", first.log(), second.log());
    }
}

/// Waits until `ok` holds, failing at once if the watcher has ended.
fn survives_until(watcher: &mut Watcher, what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ok() {
        if let Ok(Some(status)) = watcher.child.try_wait() {
            panic!("the watcher ended ({status}) before {what}\nlog:\n{}", watcher.log());
        }
        assert!(Instant::now() < deadline, "never: {what}\nlog:\n{}", watcher.log());
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// ELBv2's answer when it throttles.
const ELB_THROTTLED: &str = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>5b3f0c1e-test</RequestId></ErrorResponse>"#;

/// The faults of [`errors_it_can_survive_do_not_end_the_watcher`], in the
/// order the test sets them; each lifts itself after `count` hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Survivable {
    None,
    /// Every Scan throttled, past the watcher's retries.
    ScanThrottled,
    /// Every DescribeLoadBalancers throttled.
    ElbThrottled,
    /// One GetRecords refused (a new bootstrap), then DescribeStream
    /// failing, then the store's PUTs failing during that bootstrap.
    StreamRefused,
    DescribeStreamFailing,
    StoreDown,
}

/// [2/8] 3: a Scan still throttled after its retries, ELB throttling,
/// DescribeStream errors and a store outage at bootstrap are ridden out
/// (a new bootstrap after a backoff), not the end of the watcher.
#[test]
fn errors_it_can_survive_do_not_end_the_watcher() {
    use std::sync::{Arc, Mutex};
    let moto = Moto::start();
    let dir = scratch("survive");
    let rt = runtime();
    let config = rt.block_on(moto.config());
    let (arn, _) = moto.create_load_balancer("survivor");
    rt.block_on(async {
        create_streamed_table(&config, "routes").await;
        put_items(&config, "routes", &[item("a.example.com")]).await;
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
        s3.create_bucket().bucket("edge").send().await.unwrap();
    });
    let state = Arc::new(Mutex::new((Survivable::ScanThrottled, 0u32)));
    let faults = state.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        let mut s = faults.lock().unwrap();
        let form = String::from_utf8_lossy(&r.raw);
        let (fault, lasts) = match s.0 {
            Survivable::ScanThrottled if r.target.ends_with(".Scan") => (Fault::Throttle, 12),
            Survivable::ElbThrottled if form.contains("Action=DescribeLoadBalancers") => {
                (Fault::Answer(400, "text/xml", ELB_THROTTLED.into()), 4)
            }
            Survivable::StreamRefused if r.target.ends_with(".GetRecords") => {
                *s = (Survivable::DescribeStreamFailing, 0);
                return Some(Fault::Answer(
                    400,
                    "application/x-amz-json-1.0",
                    r#"{"__type":"com.amazon.coral.service#AccessDeniedException","message":"injected"}"#.into(),
                ));
            }
            Survivable::DescribeStreamFailing if r.target.ends_with(".DescribeStream") => (Fault::ServerError, 4),
            // The bootstrap after it resumes from the checkpoint: the store
            // fails it when it reads the pointer (or, had it scanned, when
            // it stores the new base).
            Survivable::StoreDown
                if r.method == "PUT" && r.path.starts_with("/edge/p/snapshots/")
                    || r.method == "GET" && r.path.starts_with("/edge/p/current.json") =>
            {
                (Fault::ServerError, 6)
            }
            _ => return None,
        };
        s.1 += 1;
        if s.1 >= lasts {
            let next = match s.0 {
                Survivable::DescribeStreamFailing => Survivable::StoreDown,
                _ => Survivable::None,
            };
            *s = (next, 0);
        }
        Some(fault)
    });
    let store = Store::open(&StoreLocation::S3 { bucket: "edge".into(), prefix: "p".into() }, Some(&config)).unwrap();
    let serving = |host: &str| current_of(&store).is_some_and(|(_, s)| serves(&s, host));
    let fast = ["--max-retries", "1", "--restart-backoff-ms", "100", "--restart-backoff-max-ms", "400"];
    let fast = [&fast[..], &["--lease-ms", "1000", "--lease-renew-ms", "200"]].concat();
    let mut watcher = Watcher::start_to("routes", "s3://edge/p", &dir.join("store"), &proxy.endpoint, &fast);
    survives_until(&mut watcher, "the first publish, after the Scan's throttling", || serving("a.example.com"));

    *state.lock().unwrap() = (Survivable::ElbThrottled, 0);
    let lb = json!({"Domain": {"S": "lb.example.com"}, "Target": {"S": arn}});
    rt.block_on(put_items(&config, "routes", &[lb]));
    survives_until(&mut watcher, "the load balancer's route, after ELB's throttling", || serving("lb.example.com"));

    *state.lock().unwrap() = (Survivable::StreamRefused, 0);
    rt.block_on(put_items(&config, "routes", &[item("c.example.com")]));
    survives_until(&mut watcher, "c, after DescribeStream errors and a store outage at bootstrap", || {
        serving("c.example.com") && serving("lb.example.com") && serving("a.example.com")
    });
    assert_eq!(state.lock().unwrap().0, Survivable::None, "not every fault was met");

    // Each cause was logged and counted; the watcher says it is well again.
    let (_, metrics) = watcher.admin("/metrics");
    let count = |cause: &str| -> u64 {
        let series = format!("edgeroute_watch_restarts_total{{cause=\"{cause}\"}} ");
        let line = metrics.lines().find(|l| l.starts_with(&series));
        line.and_then(|l| l[series.len()..].trim().parse().ok()).unwrap_or_else(|| panic!("no {series}in\n{metrics}"))
    };
    for cause in ["scan", "elb", "stream", "store"] {
        assert!(count(cause) >= 1, "no restart counted for {cause}:\n{metrics}\nlog:\n{}", watcher.log());
    }
    let log = watcher.log();
    for cause in ["cause=\"scan\"", "cause=\"elb\"", "cause=\"stream\"", "cause=\"store\""] {
        assert!(log.contains(cause), "{cause} not logged:\n{log}");
    }
    eventually(&watcher, "/health ok again", || {
        watcher.admin("/health") == (200, "ok: following the table's stream\n".into())
    });
}

/// Each burst is published as one small layer on the base; full tiers of
/// layers are merged, and past the threshold they are compacted into a
/// new base in the background. Through it all the state is, byte for
/// byte, what a full compile of the table makes, case-variant duplicates
/// (both left out) and bad rows included.
#[test]
fn changes_are_layers_merged_in_tiers_and_compacted_to_a_full_compile() {
    let moto = Moto::start();
    let dir = scratch("layers");
    let store = dir.join("store");
    let rt = runtime();
    let initial: Vec<Json> = (0..40).map(|i| item(&format!("env-{i}.example.com"))).collect();
    let config = streamed_routes(&moto, &rt, &initial);
    let watcher = Watcher::start("routes", &store, &moto.endpoint, &["--compact-entries", "30"]);
    let (first, _) = watcher.wait_for(&store, "the initial 40 routes", |p, _| p.routes == Some(40));
    assert!(first.layers.is_empty());

    // One change at a time, each waited for: every one is its own burst.
    let mut bases = std::collections::BTreeSet::new();
    let mut most_layers = 0;
    let mut step = |put: Vec<Json>, delete: Vec<String>, what: &str, ok: &dyn Fn(&Snapshot<Vec<u8>>) -> bool| {
        let before = current(&store).unwrap().0;
        rt.block_on(async {
            put_items(&config, "routes", &put).await;
            let delete: Vec<&str> = delete.iter().map(String::as_str).collect();
            delete_items(&config, "routes", &delete).await;
        });
        let (pointer, _) = watcher.wait_for(&store, what, |p, s| p.id != before.id && ok(s));
        bases.insert(pointer.base.id.clone());
        most_layers = most_layers.max(pointer.layers.len());
        if let Some(top) = pointer.layers.last() {
            // A burst's layer holds its change, not the table.
            assert!(top.size < 64 * 1024, "{pointer:?}");
        }
        pointer
    };
    for i in 0..24 {
        let name = format!("new-{i}.example.com");
        step(vec![item(&name)], vec![], &name, &|s| serves(s, &name));
    }
    // A case variant of a live name: both are left out, and come back one
    // at a time as the other goes.
    let p = step(vec![item("ENV-1.Example.com")], vec![], "env-1 and its variant left out", &|s| {
        !serves(s, "env-1.example.com")
    });
    assert_eq!(p.skipped, 2, "{p:?}");
    let p = step(vec![], vec!["env-1.example.com".into()], "the variant alone", &|s| serves(s, "env-1.example.com"));
    assert_eq!(p.skipped, 0, "{p:?}");
    let bad = json!({"Domain": {"S": "bad.example.com"}, "Target": {"N": "7"}});
    step(vec![bad, item("after-bad.example.com")], vec![], "a bad row beside a good one", &|s| {
        serves(s, "after-bad.example.com")
    });
    for i in 0..12 {
        let name = format!("new-{i}.example.com");
        step(vec![], vec![name.clone()], &format!("{name} deleted"), &|s| !serves(s, &name));
    }
    let log = watcher.log();
    assert!(log.contains(&format!("merged the {} newest layers into one", edgeroute_control::watch::FAN_IN)), "{log}");
    let compacted = |log: &str| log.contains("compacted ") && log.contains(" into base ");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !compacted(&watcher.log()) {
        assert!(Instant::now() < deadline, "never compacted:\n{}", watcher.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(bases.len() >= 2 || current(&store).unwrap().0.base.id != first.base.id, "{bases:?}");
    // Merged in tiers: never more than a tier's worth and one (40 changes, two tiers at most).
    assert!((2..=2 * edgeroute_control::watch::FAN_IN).contains(&most_layers), "{most_layers}");

    // The state now is a full compile of the table, byte for byte.
    let (pointer, snapshot) = current(&store).unwrap();
    assert_eq!(snapshot.as_bytes(), &full_compile(&moto, "routes", &dir.join("full.snap"))[..], "{pointer:?}");
    assert_eq!(pointer.skipped, 1, "{pointer:?}");
    assert_eq!(pointer.routes, Some(u64::from(snapshot.route_count())), "{pointer:?}");
}

/// A proxy in front of moto that counts the Scans it forwards and, while
/// `trim` is raised, answers every GetShardIterator at a sequence number
/// as DynamoDB does for a position the stream has trimmed.
fn scan_counting_proxy(
    moto: &Moto,
) -> (FaultProxy, std::sync::Arc<std::sync::atomic::AtomicU64>, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let (scans, trim) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let (s, t) = (scans.clone(), trim.clone());
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        // A Scan's first page of its first segment: one per Scan of the table.
        let first_page = r.body.get("ExclusiveStartKey").is_none() && r.body["Segment"].as_u64().unwrap_or(0) == 0;
        if r.target.ends_with(".Scan") && first_page {
            s.fetch_add(1, Ordering::SeqCst);
        }
        let at_position = r.body["ShardIteratorType"].as_str() == Some("AFTER_SEQUENCE_NUMBER");
        if t.load(Ordering::SeqCst) && r.target.ends_with(".GetShardIterator") && at_position {
            return Some(Fault::Answer(
                400,
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException","message":"injected: trimmed"}"#
                    .into(),
            ));
        }
        None
    });
    (proxy, scans, trim)
}

/// Compiles table `table` on `moto` in full, as `edgeroute compile` does.
fn full_compile(moto: &Moto, table: &str, out: &Path) -> Vec<u8> {
    let o = Command::new(env!("CARGO_BIN_EXE_edgeroute"))
        .args(["compile", "--from", &format!("dynamodb://{table}"), "--skip-invalid", "--out", out.to_str().unwrap()])
        .envs(aws_env(&moto.endpoint))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

/// A restarted watcher resumes from its checkpoint: no Scan, the state it
/// published kept (the changes made while it was down become a layer on
/// it), and the mirror exactly what it was, case-variant duplicates and
/// bad rows included. After the stream has trimmed past its positions, it
/// Scans instead, and loses nothing.
#[test]
fn a_restart_resumes_from_the_checkpoint_and_scans_only_past_the_stream() {
    use std::sync::atomic::Ordering;
    let moto = Moto::start();
    let dir = scratch("resume");
    let store = dir.join("store");
    let rt = runtime();
    let mut initial: Vec<Json> = (0..30).map(|i| item(&format!("env-{i}.example.com"))).collect();
    initial.push(item("Twin.example.com"));
    initial.push(item("twin.example.com"));
    initial.push(json!({"Domain": {"S": "bad.example.com"}, "Target": {"N": "7"}}));
    let config = streamed_routes(&moto, &rt, &initial);
    let (proxy, scans, trim) = scan_counting_proxy(&moto);
    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &[]);
    let (first, _) = watcher.wait_for(&store, "the initial routes", |p, _| p.routes == Some(30) && p.skipped == 3);
    rt.block_on(put_items(&config, "routes", &[item("one.example.com")]));
    watcher.wait_for(&store, "one", |_, s| serves(s, "one.example.com"));
    drop(watcher);
    assert_eq!(scans.load(Ordering::SeqCst), 1);

    // Changes while it is down, the duplicate resolved among them.
    rt.block_on(async {
        delete_items(&config, "routes", &["env-1.example.com", "Twin.example.com"]).await;
        put_items(&config, "routes", &[item("while-down.example.com")]).await;
    });
    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &[]);
    let (pointer, snapshot) = watcher.wait_for(&store, "the changes made while down", |_, s| {
        serves(s, "while-down.example.com") && !serves(s, "env-1.example.com") && serves(s, "twin.example.com")
    });
    assert_eq!(scans.load(Ordering::SeqCst), 1, "a Scan after all:\n{}", watcher.log());
    assert!(watcher.log().contains("resumed from the checkpoint"), "{}", watcher.log());
    assert_eq!(pointer.base.id, first.base.id, "the state was kept, the changes layered on it: {pointer:?}");
    assert_eq!(pointer.skipped, 1, "{pointer:?}");
    assert_eq!(snapshot.as_bytes(), &full_compile(&moto, "routes", &dir.join("a.snap"))[..]);
    drop(watcher);

    // Trimmed past its positions: a Scan, and nothing lost.
    trim.store(true, Ordering::SeqCst);
    rt.block_on(put_items(&config, "routes", &[item("after-trim.example.com")]));
    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &[]);
    let (_, snapshot) = watcher.wait_for(&store, "after-trim", |_, s| serves(s, "after-trim.example.com"));
    let log = watcher.log();
    assert!(log.contains("cannot resume from the checkpoint") && log.contains("trimmed"), "{log}");
    assert_eq!(scans.load(Ordering::SeqCst), 2, "{log}");
    assert_eq!(snapshot.as_bytes(), &full_compile(&moto, "routes", &dir.join("b.snap"))[..]);
}

/// Changes at a steady rate (each written as soon as the one before is
/// served, as a busy table's are) are merged up every tier, not only the
/// first: the layers stay a few tiers' worth, and no compaction is forced
/// by their count long before their bytes call for one.
#[test]
fn steady_changes_are_merged_up_every_tier() {
    use edgeroute_control::watch::FAN_IN;
    let moto = Moto::start();
    let dir = scratch("steady");
    let store = dir.join("store");
    let rt = runtime();
    let config = streamed_routes(&moto, &rt, &[item("a.example.com")]);
    let watcher = Watcher::start("routes", &store, &moto.endpoint, &[]);
    watcher.wait_for(&store, "a", |_, s| serves(s, "a.example.com"));
    let mut most_layers = 0;
    for i in 0..250 {
        let name = format!("steady-{i}.example.com");
        rt.block_on(put_items(&config, "routes", &[item(&name)]));
        let (pointer, _) = watcher.wait_for(&store, &name, |_, s| serves(s, &name));
        most_layers = most_layers.max(pointer.layers.len());
    }
    // 250 changes: tiers 0, 1 and 2, at most FAN_IN - 1 layers each, and
    // a merge in flight.
    assert!(most_layers <= 2 * (FAN_IN - 1) + 3, "{most_layers} layers at once:\n{}", watcher.log());
    assert!(!watcher.log().contains("compacting "), "{}", watcher.log());
}

/// The store's checkpoint once it contains `what`: it is written after the
/// pointer moves, so a test that stops a watcher right after seeing a state
/// served waits for it first.
fn wait_for_checkpoint(store: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let checkpoint = std::fs::read_to_string(store.join("checkpoint.json")).unwrap_or_default();
        if checkpoint.contains(what) {
            return checkpoint;
        }
        assert!(Instant::now() < deadline, "no checkpoint containing {what}: {checkpoint}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A checkpoint another table's watcher left in the store is not resumed
/// from: the watcher Scans its own table, and the state is that table's.
#[test]
fn a_checkpoint_of_another_table_is_not_resumed_from() {
    let moto = Moto::start();
    let dir = scratch("foreign");
    let store = dir.join("store");
    let rt = runtime();
    let config = streamed_routes(&moto, &rt, &[item("mine.example.com")]);
    rt.block_on(async {
        create_streamed_table(&config, "other").await;
        put_items(&config, "other", &[item("theirs.example.com")]).await;
    });
    let watcher = Watcher::start("other", &store, &moto.endpoint, &[]);
    watcher.wait_for(&store, "the other table", |_, s| serves(s, "theirs.example.com"));
    wait_for_checkpoint(&store, "table/other");
    drop(watcher);

    let watcher = Watcher::start("routes", &store, &moto.endpoint, &["--max-drop", "100"]);
    let (_, snapshot) = watcher
        .wait_for(&store, "this table", |_, s| serves(s, "mine.example.com") && !serves(s, "theirs.example.com"));
    let log = watcher.log();
    assert!(log.contains("cannot resume from the checkpoint: it is of table") && log.contains("table/other"), "{log}");
    assert_eq!(snapshot.as_bytes(), &full_compile(&moto, "routes", &dir.join("full.snap"))[..]);
    // This watcher's checkpoint replaces it.
    wait_for_checkpoint(&store, "table/routes");
}

/// At change rates the watcher keeps the history bounded: it prunes it to
/// the newest `--keep-states` states (and what they name) as it goes, and
/// the state it serves stays whole.
#[test]
fn the_watcher_prunes_its_history_as_it_goes() {
    let moto = Moto::start();
    let dir = scratch("prune");
    let store = dir.join("store");
    let rt = runtime();
    let config = streamed_routes(&moto, &rt, &[item("a.example.com")]);
    // A grace of a second: longer than any publish here takes from storing
    // its objects to naming them (what the grace protects).
    let retention = ["--keep-states", "3", "--keep-grace", "1", "--prune-interval-ms", "100"];
    let (proxy, scans, _) = scan_counting_proxy(&moto);
    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &retention);
    watcher.wait_for(&store, "a", |_, s| serves(s, "a.example.com"));
    for i in 0..10 {
        let name = format!("n{i}.example.com");
        rt.block_on(put_items(&config, "routes", &[item(&name)]));
        watcher.wait_for(&store, &name, |_, s| serves(s, &name));
    }
    let entries = || std::fs::read_dir(store.join("history")).unwrap().count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while entries() > 3 {
        assert!(Instant::now() < deadline, "{} history entries:\n{}", entries(), watcher.log());
        std::thread::sleep(Duration::from_millis(25));
    }
    let (_, snapshot) = current(&store).unwrap();
    assert!((0..10).all(|i| serves(&snapshot, &format!("n{i}.example.com"))));
    let (_, metrics) = watcher.admin("/metrics");
    assert!(!metrics.contains("edgeroute_watch_pruned_entries_total 0\n"), "{metrics}");
    assert!(watcher.log().contains("pruned "), "{}", watcher.log());
    // What the checkpoint names was kept: a restart resumes from it, without a Scan.
    drop(watcher);
    rt.block_on(put_items(&config, "routes", &[item("after.example.com")]));
    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &retention);
    watcher.wait_for(&store, "after", |_, s| serves(s, "after.example.com") && serves(s, "n9.example.com"));
    assert!(watcher.log().contains("resumed from the checkpoint"), "{}", watcher.log());
    assert_eq!(scans.load(std::sync::atomic::Ordering::SeqCst), 1, "{}", watcher.log());
}

/// A watcher that died after moving the pointer and before writing its
/// checkpoint leaves a checkpoint behind the store: the next one resumes
/// from it without a Scan, reads the stream up to now before publishing
/// anything, and never puts an older table back over the newer state.
#[test]
fn a_checkpoint_behind_the_store_never_puts_an_older_table_back() {
    use std::sync::atomic::Ordering;
    let moto = Moto::start();
    let dir = scratch("behind");
    let store = dir.join("store");
    let rt = runtime();
    let config = streamed_routes(&moto, &rt, &[item("a.example.com")]);
    let (proxy, scans, _) = scan_counting_proxy(&moto);
    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &[]);
    rt.block_on(put_items(&config, "routes", &[item("x1.example.com")]));
    watcher.wait_for(&store, "x1", |_, s| serves(s, "x1.example.com"));
    // The checkpoint is written after the pointer moves: it may not exist yet.
    let behind = wait_for_checkpoint(&store, &current(&store).unwrap().0.id).into_bytes();
    rt.block_on(async {
        put_items(&config, "routes", &[item("x2.example.com")]).await;
        delete_items(&config, "routes", &["x1.example.com"]).await;
    });
    let (newer, _) = watcher
        .wait_for(&store, "x2, and x1 deleted", |_, s| serves(s, "x2.example.com") && !serves(s, "x1.example.com"));
    drop(watcher);
    // As if it had died before writing the checkpoint of the newer state.
    std::fs::write(store.join("checkpoint.json"), &behind).unwrap();
    let before = rt.block_on(Store::open(&StoreLocation::Dir(store.clone()), None).unwrap().history()).unwrap().len();

    let watcher = Watcher::start("routes", &store, &proxy.endpoint, &[]);
    rt.block_on(put_items(&config, "routes", &[item("x3.example.com")]));
    watcher.wait_for(&store, "x3", |_, s| serves(s, "x3.example.com"));
    assert_eq!(scans.load(Ordering::SeqCst), 1, "{}", watcher.log());
    assert!(watcher.log().contains("the store holds another state than the checkpoint's"), "{}", watcher.log());
    let opened = Store::open(&StoreLocation::Dir(store.clone()), None).unwrap();
    let history = rt.block_on(opened.history()).unwrap();
    assert_eq!(history[before - 1].id, newer.id);
    for entry in &history[before..] {
        let snapshot = snapshot_of(&opened, entry).unwrap();
        assert!(
            serves(&snapshot, "x2.example.com") && !serves(&snapshot, "x1.example.com"),
            "state {} went back to an older table:\n{}",
            entry.id,
            watcher.log()
        );
    }
}
