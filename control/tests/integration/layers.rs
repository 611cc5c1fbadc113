//! Layers on stores ([5/8]): `edgeroute apply` writes one layer on the
//! current state and reads nothing but the pointer, `compact` merges the
//! layers into the base a full compile writes (rebasing layers applied
//! meanwhile), rollback, history and pins work on states, and a store of
//! the pointer form before layers is migrated, not written over. On a
//! directory and on S3 (moto).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use edgeroute_compiler::Options;
use edgeroute_control::publish::{self, Manual};
use edgeroute_control::state::{self, Applied, Compacted};
use edgeroute_edge::SnapshotId;
use edgeroute_store::{Pointer, Store, StoreLocation};
use edgeroute_tests::compile_text;
use edgeroute_tests_aws::{aws_env, Moto};

fn edgeroute(args: &[&str], env: &[(&str, String)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeroute"));
    cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(o: &Output) -> String {
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-layers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A table of `n` routes, one line each.
fn table(n: usize) -> String {
    (0..n).map(|i| format!("{{\"Domain\":\"env-{i}.example.com\",\"Target\":\"s3://sites/env-{i}\"}}\n")).collect()
}

fn pointer_of(store: &Path) -> Pointer {
    serde_json::from_slice(&std::fs::read(store.join("current.json")).unwrap()).unwrap()
}

/// The answer the store's current state gives, through the edge resolver.
fn answer(rt: &tokio::runtime::Runtime, store: &Store, host: &str) -> String {
    let (pointer, _) = rt.block_on(store.read_pointer()).unwrap().unwrap();
    let state = rt.block_on(state::load(store, &pointer)).unwrap();
    state.base.resolve_layered(state.layers.as_slice(), host.as_bytes(), b"/").json().to_string()
}

/// Every byte under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { bytes_under(&entry.path()) } else { meta.len() };
    }
    total
}

#[test]
fn apply_compact_rollback_history_and_pins_with_layers_in_a_directory() {
    let dir = scratch("cli");
    let store_dir = dir.join("store");
    let to = format!("dir:{}", store_dir.display());
    let rt = runtime();
    // A base of 2,000 routes.
    let base = compile_text(&table(2000), Options::default()).unwrap();
    std::fs::write(dir.join("base.snap"), &base.bytes).unwrap();
    assert_ok(&edgeroute(
        &["publish", "--snapshot", dir.join("base.snap").to_str().unwrap(), "--store", &to],
        &[],
        None,
    ));
    let store = Store::open(&StoreLocation::Dir(store_dir.clone()), None).unwrap();

    // Bad lines: every one reported, nothing written.
    let before = bytes_under(&store_dir);
    let bad = "{\"Domain\":\"a.example.com\",\"Target\":\"s3://sites/a\"}\n{\"Domain\":\"A.example.com\",\"Deleted\":true}\n{\"Domain\":\"b..example.com\",\"Target\":\"s3://sites/b\"}\n";
    let o = edgeroute(&["apply", "--store", &to, "-"], &[], Some(bad));
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    for line in [
        "line 1 (Domain \"a.example.com\"): line 2 gives the same Domain",
        "line 2",
        "line 3: Domain \"b..example.com\"",
        "3 invalid line(s)",
    ] {
        assert!(err.contains(line), "{line:?} missing from:\n{err}");
    }
    assert_eq!(bytes_under(&store_dir), before, "a refused apply wrote something");

    // A dry run says what would change, and writes nothing.
    let change = "{\"Domain\":\"new.example.com\",\"Target\":\"https://origin.example.net\"}\n\
                  {\"Domain\":\"Env-1.Example.com\",\"Target\":\"s3://sites/env-1\"}\n\
                  {\"Domain\":\"env-2.example.com\",\"Target\":\"s3://sites/moved\"}\n\
                  {\"Domain\":\"env-3.example.com\",\"Deleted\":true}\n\
                  {\"Domain\":\"gone.example.com\",\"Deleted\":true}\n";
    std::fs::write(dir.join("change.jsonl"), change).unwrap();
    let out = assert_ok(&edgeroute(
        &["apply", "--store", &to, "--dry-run", dir.join("change.jsonl").to_str().unwrap()],
        &[],
        None,
    ));
    for line in [
        "add (1): new.example.com",
        "replace (1): env-2.example.com",
        "leave as they are (1): env-1.example.com",
        "remove (1): env-3.example.com",
        "delete names it does not hold (1): gone.example.com",
        "nothing written",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    assert_eq!(bytes_under(&store_dir), before);

    // The apply: one layer, the pointer and a history entry; at most 64 KB in all.
    let o = edgeroute(&["apply", "--store", &to, "--json", dir.join("change.jsonl").to_str().unwrap()], &[], None);
    let json: serde_json::Value = serde_json::from_str(&assert_ok(&o)).unwrap();
    let written = bytes_under(&store_dir) - before;
    assert!(written <= 64 * 1024, "an apply of five lines wrote {written} bytes");
    let pointer = pointer_of(&store_dir);
    assert_eq!(json["state"], pointer.id.as_str());
    assert_eq!(json["base"]["id"], base.id.to_string());
    assert_eq!(json["layers"].as_array().unwrap().len(), 1);
    let layer_id = json["layer"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        json["layer"]["size"].as_u64().unwrap(),
        std::fs::metadata(store_dir.join(format!("layers/{layer_id}.layer"))).unwrap().len()
    );
    assert_eq!((json["upserts"].as_u64(), json["deletes"].as_u64()), (Some(3), Some(2)));
    let base_id = SnapshotId::of(&base.bytes);
    assert_eq!(pointer.id, SnapshotId::of_state(&base_id, &[layer_id.parse().unwrap()]).to_string());
    assert!(answer(&rt, &store, "new.example.com").contains("\"kind\":\"balancer\""));
    assert!(answer(&rt, &store, "env-2.example.com").contains("\"key\":\"moved/index.html\""));
    assert_eq!(answer(&rt, &store, "env-3.example.com"), "{\"kind\":\"not_found\"}");
    let first_state = pointer.id.clone();

    // A second apply from standard input goes on top.
    let out = assert_ok(&edgeroute(
        &["apply", "--store", &to, "-"],
        &[],
        Some("{\"Domain\":\"env-3.example.com\",\"Target\":\"s3://sites/back\"}\n"),
    ));
    assert!(out.contains("applied 1 upsert(s) and 0 delete(s)"), "{out}");
    assert!(out.contains("and 2 layer(s)"), "{out}");
    assert!(answer(&rt, &store, "env-3.example.com").contains("\"key\":\"back/index.html\""));

    // History lists states; a rollback by a state's 12-digit prefix pins it.
    let history = assert_ok(&edgeroute(&["history", "--store", &to], &[], None));
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(history.lines().last().unwrap().contains("+ 2 layer(s)  edgeroute apply  [current]"), "{history}");
    let out = assert_ok(&edgeroute(&["rollback", "--store", &to, "--id", &first_state[..12]], &[], None));
    assert!(out.contains(&format!("rolled back {to} to {first_state}")), "{out}");
    assert_eq!(answer(&rt, &store, "env-3.example.com"), "{\"kind\":\"not_found\"}");
    // Pinned: apply and compact hold back, and say so.
    let o = edgeroute(
        &["apply", "--store", &to, "-"],
        &[],
        Some("{\"Domain\":\"x.example.com\",\"Target\":\"s3://sites/x\"}\n"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("is pinned to"), "{}", text(&o.stderr));
    let o = edgeroute(&["compact", "--store", &to], &[], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(pointer_of(&store_dir).id, first_state);
    assert_ok(&edgeroute(&["unpin", "--store", &to], &[], None));
    // Unpinned, apply goes on.
    assert_ok(&edgeroute(
        &["apply", "--store", &to, "-"],
        &[],
        Some("{\"Domain\":\"x.example.com\",\"Target\":\"s3://sites/x\"}\n"),
    ));

    // Compact: the bytes of a full compile of the table the changes leave.
    let out = assert_ok(&edgeroute(&["compact", "--store", &to], &[], None));
    assert!(out.contains("compacted 2 layer(s)"), "{out}");
    let mut expected = table(2000).replace(
        "{\"Domain\":\"env-2.example.com\",\"Target\":\"s3://sites/env-2\"}\n",
        "{\"Domain\":\"env-2.example.com\",\"Target\":\"s3://sites/moved\"}\n",
    );
    expected = expected.replace("{\"Domain\":\"env-3.example.com\",\"Target\":\"s3://sites/env-3\"}\n", "");
    expected.push_str("{\"Domain\":\"new.example.com\",\"Target\":\"https://origin.example.net\"}\n{\"Domain\":\"x.example.com\",\"Target\":\"s3://sites/x\"}\n");
    let full = compile_text(&expected, Options::default()).unwrap();
    let pointer = pointer_of(&store_dir);
    assert_eq!(
        (pointer.id.as_str(), pointer.layers.len(), pointer.routes),
        (full.id.to_string().as_str(), 0, Some(2001))
    );
    assert_eq!(std::fs::read(store_dir.join(format!("snapshots/{}.snap", full.id))).unwrap(), full.bytes);
    let out = assert_ok(&edgeroute(&["compact", "--store", &to], &[], None));
    assert!(out.contains("has no layers to compact"), "{out}");
}

/// A compaction that loses the swap to an apply rebases the apply's layer
/// onto the new base: the change is kept, never dropped.
#[test]
fn a_compaction_that_loses_the_swap_to_an_apply_rebases_the_layer() {
    let dir = scratch("rebase");
    let rt = runtime();
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    let base = compile_text(&table(20_000), Options::default()).unwrap();
    rt.block_on(publish::publish(&store, &base.bytes, "t", 0)).unwrap();
    let apply = |line: &str| {
        let items = edgeroute_compiler::source::parse_json(line.as_bytes()).unwrap();
        let changes = edgeroute_compiler::read_changes(items, Options::default()).unwrap();
        match rt.block_on(state::apply(&store, &changes.changes, "t", 0, &Manual::named("apply"))).unwrap() {
            Applied::Current { pointer, .. } => pointer,
            other => panic!("{other:?}"),
        }
    };
    apply("{\"Domain\":\"one.example.com\",\"Target\":\"s3://sites/one\"}");
    for attempt in 0.. {
        assert!(attempt < 5, "no apply landed while the compaction ran");
        let compaction = std::thread::scope(|s| {
            let compaction = s.spawn(|| rt.block_on(state::compact(&store, "t", &Manual::named("compact"))));
            // Long before the merge of 20,000 routes is done.
            std::thread::sleep(std::time::Duration::from_millis(30));
            apply(&format!("{{\"Domain\":\"late-{attempt}.example.com\",\"Target\":\"s3://sites/late\"}}"));
            compaction.join().unwrap().unwrap()
        });
        let Compacted::Current { pointer, rebased, merged } = compaction else { panic!("{compaction:?}") };
        assert_eq!(merged, 1);
        if rebased == 0 {
            // The apply came after the swap: now there is one layer to merge again.
            continue;
        }
        assert_eq!(pointer.layers.len(), 1, "{pointer:?}");
        let state = rt.block_on(state::load(&store, &pointer)).unwrap();
        for host in ["one.example.com", &format!("late-{attempt}.example.com"), "env-7.example.com"] {
            let answer = state.base.resolve_layered(state.layers.as_slice(), host.as_bytes(), b"/").json().to_string();
            assert!(answer.contains("\"kind\":\"static\""), "{host}: {answer}");
        }
        assert_eq!(state.layers[0].base(), state.base_id);
        break;
    }
}

/// A store whose pointer has the form before layers: new writers refuse
/// it (an old host would serve a base without its layers' tombstones)
/// until `store migrate`, after which old readers refuse the pointer.
#[test]
fn a_store_from_before_layers_is_migrated_not_written_over() {
    let dir = scratch("legacy");
    let store_dir = dir.join("store");
    let to = format!("dir:{}", store_dir.display());
    let base = compile_text(&table(3), Options::default()).unwrap();
    std::fs::create_dir_all(store_dir.join("snapshots")).unwrap();
    std::fs::write(store_dir.join(format!("snapshots/{}.snap", base.id)), &base.bytes).unwrap();
    let v1 = format!(
        "{{\"id\":\"{}\",\"format_version\":2,\"routes\":3,\"size\":{},\"created_at\":\"2026-11-01T00:00:00Z\",\"previous\":null,\"source\":\"t\"}}",
        base.id,
        base.bytes.len()
    );
    std::fs::write(store_dir.join("current.json"), &v1).unwrap();
    // Readers read it.
    let rt = runtime();
    let store = Store::open(&StoreLocation::Dir(store_dir.clone()), None).unwrap();
    assert!(answer(&rt, &store, "env-1.example.com").contains("env-1"));
    // Writers do not write over it.
    let o = edgeroute(
        &["apply", "--store", &to, "-"],
        &[],
        Some("{\"Domain\":\"x.example.com\",\"Target\":\"s3://sites/x\"}\n"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("edgeroute store migrate"), "{}", text(&o.stderr));
    std::fs::write(dir.join("b.snap"), compile_text(&table(4), Options::default()).unwrap().bytes).unwrap();
    let o = edgeroute(&["publish", "--snapshot", dir.join("b.snap").to_str().unwrap(), "--store", &to], &[], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(store_dir.join("current.json")).unwrap(), v1);
    // Migrate: the same state in the new form, which old readers refuse.
    let out = assert_ok(&edgeroute(&["store", "migrate", "--store", &to], &[], None));
    assert!(out.contains("migrated"), "{out}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store_dir.join("current.json")).unwrap()).unwrap();
    assert_eq!(json["pointer_version"], 2);
    assert_eq!(json["state"], base.id.to_string());
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct OldReader {
        id: String,
        format_version: u32,
        routes: u64,
        size: u64,
    }
    assert!(serde_json::from_value::<OldReader>(json).is_err(), "a reader from before layers would accept it");
    assert!(assert_ok(&edgeroute(&["store", "migrate", "--store", &to], &[], None)).contains("migrated already"));
    assert_ok(&edgeroute(
        &["apply", "--store", &to, "-"],
        &[],
        Some("{\"Domain\":\"x.example.com\",\"Target\":\"s3://sites/x\"}\n"),
    ));
    assert!(answer(&rt, &store, "x.example.com").contains("\"bucket\":\"sites\""));
}

#[test]
fn apply_compact_rollback_and_prune_with_layers_in_s3_on_moto() {
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint);
    let rt = runtime();
    let config = rt.block_on(moto.config());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    rt.block_on(s3.create_bucket().bucket("edge-layers").send()).unwrap();
    let dir = scratch("s3");
    let to = "s3://edge-layers/previews";
    let base = compile_text(&table(50), Options::default()).unwrap();
    std::fs::write(dir.join("base.snap"), &base.bytes).unwrap();
    assert_ok(&edgeroute(
        &["publish", "--snapshot", dir.join("base.snap").to_str().unwrap(), "--store", to],
        &env,
        None,
    ));
    let o = edgeroute(
        &["apply", "--store", to, "--json", "-"],
        &env,
        Some("{\"Domain\":\"env-9.example.com\",\"Deleted\":true}\n"),
    );
    let applied: serde_json::Value = serde_json::from_str(&assert_ok(&o)).unwrap();
    let layer = applied["layer"]["id"].as_str().unwrap().to_owned();
    let key = format!("previews/layers/{layer}.layer");
    assert!(rt.block_on(s3.head_object().bucket("edge-layers").key(&key).send()).is_ok());
    let store =
        Store::open(&StoreLocation::S3 { bucket: "edge-layers".into(), prefix: "previews".into() }, Some(&config))
            .unwrap();
    assert_eq!(answer(&rt, &store, "env-9.example.com"), "{\"kind\":\"not_found\"}");
    assert_ok(&edgeroute(
        &["apply", "--store", to, "-"],
        &env,
        Some("{\"Domain\":\"env-9.example.com\",\"Target\":\"s3://sites/again\"}\n"),
    ));
    assert_ok(&edgeroute(&["rollback", "--store", to], &env, None));
    assert_eq!(answer(&rt, &store, "env-9.example.com"), "{\"kind\":\"not_found\"}");
    // Pinned: apply holds back.
    let o = edgeroute(
        &["apply", "--store", to, "-"],
        &env,
        Some("{\"Domain\":\"x.example.com\",\"Target\":\"s3://sites/x\"}\n"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("is pinned to"), "{}", text(&o.stderr));
    let history = assert_ok(&edgeroute(&["history", "--store", to], &env, None));
    assert!(
        history.lines().last().unwrap().contains("+ 1 layer(s)") && history.contains("[current, pinned]"),
        "{history}"
    );
    assert_ok(&edgeroute(&["unpin", "--store", to], &env, None));
    let out = assert_ok(&edgeroute(&["compact", "--store", to, "--json"], &env, None));
    let compacted: serde_json::Value = serde_json::from_str(&out).unwrap();
    let full = compile_text(
        &table(50).replace("{\"Domain\":\"env-9.example.com\",\"Target\":\"s3://sites/env-9\"}\n", ""),
        Options::default(),
    )
    .unwrap();
    assert_eq!(compacted["base"]["id"], full.id.to_string());
    // Prune keeps what the kept states name; the layer of an old state goes.
    let deleted = rt.block_on(publish::prune_with_grace(&store, 1, std::time::Duration::ZERO)).unwrap();
    assert!(deleted.contains(&layer), "{deleted:?}");
    assert!(deleted.contains(&base.id.to_string()), "{deleted:?}");
    assert!(rt.block_on(s3.head_object().bucket("edge-layers").key(&key).send()).is_err());
    assert_eq!(answer(&rt, &store, "env-9.example.com"), "{\"kind\":\"not_found\"}");

    // An ELB ARN Target without Origin is looked up as `compile` looks it up;
    // one that names no load balancer is a bad line, and nothing is applied.
    let (arn, dns) = moto.create_load_balancer("layered");
    let line = format!("{{\"Domain\":\"lb.example.com\",\"Target\":\"{arn}\"}}\n");
    assert_ok(&edgeroute(&["apply", "--store", to, "-"], &env, Some(&line)));
    assert!(
        answer(&rt, &store, "lb.example.com").contains(&format!("\"origin\":\"{dns}\"")),
        "{}",
        answer(&rt, &store, "lb.example.com")
    );
    let missing = arn.replace("layered", "nowhere");
    let o = edgeroute(
        &["apply", "--store", to, "-"],
        &env,
        Some(&format!("{{\"Domain\":\"lb2.example.com\",\"Target\":\"{missing}\"}}\n")),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("does not resolve to a load balancer"), "{}", text(&o.stderr));

    // A store of the pointer form before layers, in S3: refused by writers, migrated by ETag.
    let old = "s3://edge-layers/old";
    let v1 = format!(
        "{{\"id\":\"{}\",\"format_version\":2,\"routes\":50,\"size\":{},\"created_at\":\"t\",\"previous\":null,\"source\":\"t\"}}",
        base.id,
        base.bytes.len()
    );
    let put = |key: String, body: Vec<u8>| {
        rt.block_on(s3.put_object().bucket("edge-layers").key(key).body(body.into()).send()).unwrap();
    };
    put(format!("old/snapshots/{}.snap", base.id), base.bytes.clone());
    put("old/current.json".into(), v1.into_bytes());
    let o = edgeroute(
        &["apply", "--store", old, "-"],
        &env,
        Some("{\"Domain\":\"x.example.com\",\"Target\":\"s3://sites/x\"}\n"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("edgeroute store migrate"), "{}", text(&o.stderr));
    assert!(assert_ok(&edgeroute(&["store", "migrate", "--store", old], &env, None)).contains("migrated"));
    assert_ok(&edgeroute(
        &["apply", "--store", old, "-"],
        &env,
        Some("{\"Domain\":\"x.example.com\",\"Target\":\"s3://sites/x\"}\n"),
    ));
    let old_store =
        Store::open(&StoreLocation::S3 { bucket: "edge-layers".into(), prefix: "old".into() }, Some(&config)).unwrap();
    assert!(answer(&rt, &old_store, "x.example.com").contains("\"key\":\"x/index.html\""));
}

/// Applies one line through the library, as `edgeroute apply` does.
fn apply_line(rt: &tokio::runtime::Runtime, store: &Store, line: &str) -> Pointer {
    let items = edgeroute_compiler::source::parse_json(line.as_bytes()).unwrap();
    let changes = edgeroute_compiler::read_changes(items, Options::default()).unwrap();
    match rt.block_on(state::apply(store, &changes.changes, "t", 0, &Manual::named("apply"))).unwrap() {
        Applied::Current { pointer, .. } => pointer,
        other => panic!("{other:?}"),
    }
}

/// Every file under `dir` with its length and modification time.
fn files_under(dir: &Path, out: &mut std::collections::HashMap<PathBuf, (u64, std::time::SystemTime)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            files_under(&entry.path(), out);
        } else {
            out.insert(entry.path(), (meta.len(), meta.modified().unwrap()));
        }
    }
}

/// The bytes written under `dir` between two listings: every file that is
/// new or was rewritten, whole.
fn written_between(
    before: &std::collections::HashMap<PathBuf, (u64, std::time::SystemTime)>,
    after: &std::collections::HashMap<PathBuf, (u64, std::time::SystemTime)>,
) -> u64 {
    after.iter().filter(|(path, meta)| before.get(*path) != Some(meta)).map(|(_, (len, _))| len).sum()
}

/// The contract's budget: a one-route apply writes at most 64 KB to the
/// store, pointer and history included, even on the 127th layer, where
/// the pointer (which lists every layer) is largest.
#[test]
fn a_one_route_apply_writes_at_most_64_kb_even_on_the_last_layer() {
    let dir = scratch("budget");
    let store_dir = dir.join("store");
    let to = format!("dir:{}", store_dir.display());
    let rt = runtime();
    let store = Store::open(&StoreLocation::Dir(store_dir.clone()), None).unwrap();
    rt.block_on(publish::publish(&store, &compile_text(&table(5000), Options::default()).unwrap().bytes, "t", 0))
        .unwrap();
    for i in 0..edgeroute_edge::format::MAX_LAYERS - 1 {
        apply_line(&rt, &store, &format!("{{\"Domain\":\"n-{i}.example.com\",\"Target\":\"s3://sites/n\"}}"));
    }
    let mut before = std::collections::HashMap::new();
    files_under(&store_dir, &mut before);
    std::thread::sleep(std::time::Duration::from_millis(20)); // a rewrite shows in the modification time
    let line = "{\"Domain\":\"last.example.com\",\"Target\":\"s3://sites/last\"}\n";
    let out = assert_ok(&edgeroute(&["apply", "--store", &to, "-"], &[], Some(line)));
    assert!(out.contains("and 128 layer(s)"), "{out}");
    let mut after = std::collections::HashMap::new();
    files_under(&store_dir, &mut after);
    let written = written_between(&before, &after);
    assert!(written <= 64 * 1024, "the 128th one-route apply wrote {written} bytes");
    // Three files: the layer, the pointer, the history entry (and the lease's two writes).
    let changed: Vec<_> = after.keys().filter(|p| before.get(*p) != after.get(*p)).collect();
    assert!(changed.len() <= 4, "{changed:?}");
    // One more is refused, and asks for a compaction.
    let o = edgeroute(
        &["apply", "--store", &to, "-"],
        &[],
        Some("{\"Domain\":\"x.example.com\",\"Target\":\"s3://sites/x\"}\n"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("edgeroute compact"), "{}", text(&o.stderr));
}

/// The drop guard after applies: replacing names must not make a publish
/// of the same table look like a drop (the state's count is not known
/// after `apply`; the guard compares with the fewest routes it can hold).
#[test]
fn applies_that_replace_names_do_not_trip_the_drop_guard() {
    let dir = scratch("guard");
    let rt = runtime();
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    rt.block_on(publish::publish(&store, &compile_text(&table(100), Options::default()).unwrap().bytes, "t", 0))
        .unwrap();
    // 110 replacements: counted as additions, the state would seem to hold 210 routes.
    for i in 0..110 {
        apply_line(
            &rt,
            &store,
            &format!("{{\"Domain\":\"env-{}.example.com\",\"Target\":\"s3://sites/moved\"}}", i % 100),
        );
    }
    let guard = publish::DropGuard::default();
    let manual = Manual::named("publish");
    let same =
        compile_text(&table(100).replace("s3://sites/env-7\"", "s3://sites/seven\""), Options::default()).unwrap();
    let outcome = rt.block_on(publish::publish_guarded(&store, &same.bytes, "t", 0, guard, &manual)).unwrap();
    assert!(
        matches!(outcome, publish::Published::Current(_)),
        "the same table of 100 routes after 110 replacing applies: {}",
        match &outcome {
            publish::Published::DropRefused { .. } => "refused by the drop guard",
            _ => "not published",
        }
    );
    // A real drop is still refused.
    let fewer = compile_text(&table(40), Options::default()).unwrap();
    let outcome = rt.block_on(publish::publish_guarded(&store, &fewer.bytes, "t", 0, guard, &manual)).unwrap();
    assert!(matches!(outcome, publish::Published::DropRefused { .. }), "{outcome:?}");
}

/// [6/8] History at change rates: `prune_history` keeps the newest states
/// (every one of them still loads) and the current one, deletes older
/// history entries and every object nothing kept names, never anything
/// younger than its grace (a concurrent publisher's object not yet named),
/// and keeps the checkpoint items it is told of. It reads each kept entry
/// once across prunes.
#[test]
fn pruning_keeps_the_newest_states_and_what_they_name_and_nothing_younger_than_its_grace() {
    use edgeroute_store::ObjectKind;
    use std::time::Duration;
    let dir = scratch("prune-history");
    let rt = runtime();
    let store = Store::open(&StoreLocation::Dir(dir.join("store")), None).unwrap();
    rt.block_on(publish::publish(&store, &compile_text(&table(50), Options::default()).unwrap().bytes, "t", 0))
        .unwrap();
    for i in 0..12 {
        apply_line(&rt, &store, &format!("{{\"Domain\":\"new-{i}.example.com\",\"Target\":\"s3://sites/n{i}\"}}"));
    }
    // A compaction: the first base and its layers are named only by old entries now.
    assert!(matches!(
        rt.block_on(state::compact(&store, "t", &Manual::named("compact"))).unwrap(),
        Compacted::Current { .. }
    ));
    for i in 12..15 {
        apply_line(&rt, &store, &format!("{{\"Domain\":\"new-{i}.example.com\",\"Target\":\"s3://sites/n{i}\"}}"));
    }
    // Objects no state names: a concurrent publisher's (fresh), and checkpoint items (one named, one not).
    rt.block_on(store.put_object(ObjectKind::Layer, &"e".repeat(64), b"fresh")).unwrap();
    rt.block_on(store.put_object(ObjectKind::Items, &"a".repeat(64), b"named")).unwrap();
    rt.block_on(store.put_object(ObjectKind::Items, &"b".repeat(64), b"stale")).unwrap();
    let before = rt.block_on(store.history_names()).unwrap();
    assert_eq!(before.len(), 17);

    // With a long grace nothing is old enough: nothing goes.
    let mut known = publish::KnownEntries::new();
    let named = vec!["a".repeat(64)];
    let pruned =
        rt.block_on(publish::prune_history(&store, 4, Duration::from_secs(3600), Some(&named), &mut known)).unwrap();
    assert_eq!(pruned, publish::HistoryPruned::default());
    assert_eq!(known.len(), 17, "every entry is young, so kept and read");

    // With no grace: the newest 4 states stay, whole.
    let pruned = rt.block_on(publish::prune_history(&store, 4, Duration::ZERO, Some(&named), &mut known)).unwrap();
    let after = rt.block_on(store.history_names()).unwrap();
    assert_eq!(after, before[before.len() - 4..]);
    assert_eq!(pruned.entries, 13);
    assert_eq!(known.len(), 4);
    for name in &after {
        let entry = rt.block_on(store.history_entry(name)).unwrap();
        rt.block_on(state::load(&store, &entry)).unwrap_or_else(|e| panic!("kept state {} is broken: {e}", entry.id));
    }
    let (current, _) = rt.block_on(store.read_pointer()).unwrap().unwrap();
    rt.block_on(state::load(&store, &current)).unwrap();
    assert!(answer(&rt, &store, "new-14.example.com").contains("n14"));
    // The first base went (only pruned entries named it), with the fresh
    // layer and the stale items; the named items stayed.
    let ids = |kind| rt.block_on(store.objects(kind)).unwrap().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    let snapshots = ids(ObjectKind::Snapshot);
    assert_eq!(snapshots, std::slice::from_ref(&current.base.id), "{snapshots:?}");
    assert!(!ids(ObjectKind::Layer).contains(&"e".repeat(64)));
    assert_eq!(ids(ObjectKind::Items), ["a".repeat(64)]);
    let kept_layers: std::collections::HashSet<String> = after
        .iter()
        .flat_map(|n| rt.block_on(store.history_entry(n)).unwrap().layers.into_iter().map(|l| l.id))
        .collect();
    assert_eq!(ids(ObjectKind::Layer).into_iter().collect::<std::collections::HashSet<_>>(), kept_layers);
    assert!(pruned.objects >= 12, "{pruned:?}");
    // Without checkpoint ids, items are left alone.
    rt.block_on(store.put_object(ObjectKind::Items, &"c".repeat(64), b"other")).unwrap();
    rt.block_on(publish::prune_history(&store, 4, Duration::ZERO, None, &mut known)).unwrap();
    assert_eq!(ids(ObjectKind::Items).len(), 2);
}
