//! The `edgeroute` binary, end to end: outputs, exit codes, and every
//! user-facing failure path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgeroute_edge::format::{CHECKSUM_LEN, FORMAT_VERSION, HEADER_LEN};

fn edgeroute(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeroute")).args(args).output().expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch directory unique to one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles the demo table into `dir/demo.snap`.
fn compile_demo(dir: &Path) -> (Output, PathBuf) {
    let out = dir.join("demo.snap");
    let demo = root().join("snapshots/demo.jsonl");
    (edgeroute(&["compile", "--from", demo.to_str().unwrap(), "--out", out.to_str().unwrap()]), out)
}

fn demo_snap(dir: &Path) -> String {
    let (o, out) = compile_demo(dir);
    assert!(o.status.success(), "{}", stderr(&o));
    out.to_str().unwrap().to_owned()
}

#[test]
fn compile_reports_counts_size_and_id_and_matches_the_golden_file() {
    let dir = scratch("compile");
    let (o, out) = compile_demo(&dir);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("compiled 14 routes (8 static sites, 6 balancers; 3 wildcards)"), "{text}");
    assert!(text.contains("bytes/route"), "{text}");
    let golden = std::fs::read(root().join("snapshots/demo.snap")).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), golden);
    let id = edgeroute_edge::SnapshotId::of(&golden).to_string();
    assert!(text.contains(&id), "{text}");
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn compile_refuses_a_table_with_bad_items_and_writes_nothing() {
    let dir = scratch("invalid");
    let table = dir.join("t.jsonl");
    std::fs::write(
        &table,
        "{\"Domain\":\"ok.dev\",\"Target\":\"s3://bucket\"}\n\
         {\"Domain\":\"bad..dev\",\"Target\":\"s3://bucket\"}\n\
         {\"Domain\":\"shop.dev\",\"Target\":\"s3://bucket\",\"Assets\":[\"a.html\"],\"Fallback\":\"index.html\"}\n\
         {\"Domain\":\"OK.dev\",\"Target\":\"s3://bucket/two\"}\n",
    )
    .unwrap();
    let out = dir.join("out.snap");
    std::fs::write(&out, b"previous snapshot").unwrap();
    let o = edgeroute(&["compile", "--from", table.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("line 2: Domain \"bad..dev\": host_bad_label"), "{err}");
    assert!(err.contains("line 3 (Domain \"shop.dev\"): Fallback \"index.html\" is not one of the Assets"), "{err}");
    assert!(
        err.contains("line 1")
            && err.contains("line 4")
            && err.contains("line 4 (Domain \"OK.dev\"): line 1 gives the same Domain, \"ok.dev\""),
        "{err}"
    );
    assert!(err.contains("4 invalid item(s); nothing written"), "{err}");
    // The previous file is untouched.
    assert_eq!(std::fs::read(&out).unwrap(), b"previous snapshot");

    let o =
        edgeroute(&["compile", "--from", table.to_str().unwrap(), "--out", out.to_str().unwrap(), "--skip-invalid"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("compiled 0 routes") && stdout(&o).contains("skipped 4 invalid items"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("skipped: line 2"));
    edgeroute_edge::Snapshot::from_bytes(std::fs::read(&out).unwrap()).unwrap();
}

#[test]
fn compile_names_unreadable_and_malformed_sources() {
    let dir = scratch("sources");
    let out = dir.join("out.snap");
    let o =
        edgeroute(&["compile", "--from", dir.join("missing.jsonl").to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot read") && stderr(&o).contains("missing.jsonl"), "{}", stderr(&o));
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "[{\"Domain\":\"a.dev\",\"Target\":\"s3://bucket\"},").unwrap();
    let o = edgeroute(&["compile", "--from", broken.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("broken.json is not valid JSON"), "{}", stderr(&o));
    assert!(!out.exists());
    let o = edgeroute(&[
        "compile",
        "--from",
        root().join("snapshots/demo.jsonl").to_str().unwrap(),
        "--out",
        dir.join("no/such/dir/x.snap").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot write"), "{}", stderr(&o));
}

#[test]
fn resolve_json_prints_one_object_and_exits_zero_for_every_answer() {
    let dir = scratch("resolve");
    let snap = demo_snap(&dir);
    let cases = [
        (
            vec!["env-123.example.com", "/about?x=1"],
            r#"{"kind":"redirect","domain":"env-123.example.com","location":"/about/?x=1","status":301}"#,
        ),
        (
            vec!["env-123.example.com"],
            r#"{"kind":"static","domain":"env-123.example.com","bucket":"acme-static-sites","key":"env-123/index.html","status":200,"not_found_page":"env-123/404.html"}"#,
        ),
        (vec!["unknown.example.com", "/"], r#"{"kind":"not_found"}"#),
        (vec!["bad host", "/"], r#"{"kind":"bad_request","reason":"host_bad_char"}"#),
        (vec!["env-123.example.com", "/a/../b"], r#"{"kind":"bad_request","reason":"path_dot_segment"}"#),
        (
            vec!["-x.example.com", "/"],
            r#"{"kind":"balancer","domain":"*.xn--mnchen-3ya.example.com","origin":"muenchen-origin.example.net","port":8443,"scheme":"https"}"#,
        ),
    ];
    for (args, expect) in cases {
        let host = args[0].replace("-x.example.com", "-x.xn--mnchen-3ya.example.com");
        let mut argv = vec!["resolve", "--snapshot", &snap, "--json", "--", host.as_str()];
        argv.extend(args.iter().skip(1));
        let o = edgeroute(&argv);
        assert!(o.status.success(), "{argv:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), format!("{expect}\n"), "{argv:?}");
    }
}

#[test]
fn resolve_readable_and_explain() {
    let dir = scratch("explain");
    let snap = demo_snap(&dir);
    let o = edgeroute(&["resolve", "--snapshot", &snap, "env-456.example.com", "/deep/link"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("static   200  s3://acme-static-sites/env-456/index.html"), "{}", stdout(&o));
    let o = edgeroute(&["resolve", "--snapshot", &snap, "--explain", "Web.PR-42.previews.example.com", "/"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for needle in [
        "normalized to web.pr-42.previews.example.com",
        "key com.example.previews.pr-42.*",
        "*.pr-42.previews.example.com (no exact entry; the wildcard with the longest suffix)",
        "answer    balancer http://127.0.0.1:9042",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let o = edgeroute(&["resolve", "--snapshot", &snap, "--explain", "env-123.example.com", "/missing"]);
    let text = stdout(&o);
    for needle in [
        "asset     missing ",
        "asset     missing/index.html",
        "asset     404.html",
        "answer    static   404  s3://acme-static-sites/env-123/404.html",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn resolve_refuses_unusable_snapshots_with_a_clear_message() {
    let dir = scratch("corrupt");
    let good = std::fs::read(root().join("snapshots/demo.snap")).unwrap();
    let truncated = dir.join("truncated.snap");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let o = edgeroute(&["resolve", "--snapshot", truncated.to_str().unwrap(), "--json", "env-123.example.com"]);
    assert!(!o.status.success());
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("cannot use snapshot") && stderr(&o).contains("checksum mismatch"), "{}", stderr(&o));
    let junk = dir.join("junk.snap");
    std::fs::write(&junk, b"hello, this is not a snapshot at all, but it is long enough to have a header. ........")
        .unwrap();
    let o = edgeroute(&["inspect", "--snapshot", junk.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not an edgeroute snapshot"), "{}", stderr(&o));
    let o = edgeroute(&["resolve", "--snapshot", dir.join("none.snap").to_str().unwrap(), "a.dev"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot read snapshot"), "{}", stderr(&o));
}

#[test]
fn inspect_text_and_json() {
    let dir = scratch("inspect");
    let snap = demo_snap(&dir);
    let o = edgeroute(&["inspect", "--snapshot", &snap]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains(&format!("format    version {FORMAT_VERSION}")), "{text}");
    assert!(text.contains("routes    14: 8 static sites (6 with an Assets list), 6 balancers; 3 wildcards"), "{text}");
    let o = edgeroute(&["inspect", "--json", "--snapshot", &snap]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format_version"], FORMAT_VERSION);
    assert_eq!(v["routes"]["total"], 14);
    assert_eq!(v["routes"]["wildcard"], 3);
    assert_eq!(v["id"], edgeroute_edge::SnapshotId::of(&std::fs::read(&snap).unwrap()).to_string());
    let sections = v["sections"].as_object().unwrap();
    let total: u64 = sections.values().map(|s| s.as_u64().unwrap()).sum();
    assert_eq!(total + (HEADER_LEN + CHECKSUM_LEN) as u64, v["size"].as_u64().unwrap());
}

/// [4/8] 7: `compile --out` writes a snapshot file and nothing else: an
/// existing output that is not a regular file (a device such as
/// `/dev/null`, a FIFO, a directory, a symbolic link, checked without
/// following it) is refused and left as it was; `edgeroute check TABLE`
/// validates without writing anything, with documented exit codes.
#[test]
fn compile_out_refuses_what_is_not_a_regular_file_and_check_writes_nothing() {
    let dir = scratch("special-out");
    let table = dir.join("table.jsonl");
    std::fs::write(&table, "{\"Domain\":\"a.example.com\",\"Target\":\"s3://bucket/a\"}\n").unwrap();
    let table = table.to_str().unwrap();
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let target = dir.join("target.txt");
    std::fs::write(&target, "keep me").unwrap();
    let link = dir.join("link.snap");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let folder = dir.join("folder");
    std::fs::create_dir(&folder).unwrap();
    for out in [&fifo, &link, &folder] {
        let o = edgeroute(&["compile", "--from", table, "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}: {}", out.display(), stderr(&o));
        assert!(stderr(&o).contains("not a regular file") && stderr(&o).contains("edgeroute check"), "{}", stderr(&o));
    }
    use std::os::unix::fs::FileTypeExt as _;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    // A regular file is still replaced, as before.
    let out = dir.join("out.snap");
    std::fs::write(&out, "old").unwrap();
    assert!(edgeroute(&["compile", "--from", table, "--out", out.to_str().unwrap()]).status.success());

    // check: 0 for a valid table, 1 for an invalid one, 2 for wrong usage; it writes nothing.
    let before: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    let o = Command::new(env!("CARGO_BIN_EXE_edgeroute")).args(["check", table]).current_dir(&dir).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("valid") && stdout(&o).contains("1 routes"), "{}", stdout(&o));
    let json = edgeroute(&["check", table, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!((v["valid"].as_bool(), v["routes"]["total"].as_u64()), (Some(true), Some(1)), "{v}");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"Domain\":\"a.example.com\"}\n").unwrap();
    let o = edgeroute(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid: line 1"), "{}", stderr(&o));
    assert_eq!(edgeroute(&["check"]).status.code(), Some(2));
    let mut after: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    after.retain(|name| name != "bad.jsonl");
    assert_eq!(before.len(), after.len(), "check wrote something: {after:?}");
}
