//! The `edgeroute` command line as a newcomer meets it: one spelling per
//! thing (and the old spellings still working, hidden), `--json` reports,
//! snapshot ids by prefix, every bad item reported before AWS is asked,
//! and errors in one line that say what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgeroute_compiler::Options;
use edgeroute_edge::SnapshotId;
use edgeroute_tests::compile_text;

/// Runs `edgeroute` with no AWS settings at all: no region, no
/// credentials, no config files, no instance metadata.
fn edgeroute(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgeroute"));
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"] {
        command.env_remove(var);
    }
    command
        .env("AWS_CONFIG_FILE", "/nonexistent/edgeroute-test-aws-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/edgeroute-test-aws-credentials")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(args)
        .output()
        .expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), stderr(o));
    stdout(o)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-newcomer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A snapshot of one static site per domain, written to `dir/name.snap`.
fn snapshot_file(dir: &Path, name: &str, domains: &[&str]) -> PathBuf {
    let table: String =
        domains.iter().map(|d| format!("{{\"Domain\":\"{d}\",\"Target\":\"s3://bucket/{name}\"}}\n")).collect();
    let file = dir.join(format!("{name}.snap"));
    std::fs::write(&file, compile_text(&table, Options::default()).unwrap().bytes).unwrap();
    file
}

const ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188";

#[test]
fn compile_reports_every_bad_item_before_it_asks_aws() {
    let dir = scratch("before-aws");
    let table = dir.join("t.jsonl");
    std::fs::write(
        &table,
        format!(
            "{{\"Domain\":\"ok.dev\",\"Target\":\"s3://bucket\"}}\n\
             {{\"Domain\":\"lb.dev\",\"Target\":\"{ARN}\"}}\n\
             {{\"Domain\":\"bad..dev\",\"Target\":\"s3://bucket\"}}\n\
             {{\"domain\":\"lower.dev\",\"Target\":\"s3://bucket\"}}\n\
             {{\"Domain\":\"lb-bad.dev\",\"Target\":\"{ARN}\",\"Assets\":[\"a.html\"]}}\n"
        ),
    )
    .unwrap();
    let out = dir.join("out.snap");
    let o = edgeroute(&["compile", "--from", path(&table), "--out", path(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for (line, why) in [
        ("line 3", "Domain \"bad..dev\""),
        ("line 4", "attribute Domain is missing; the item has \"domain\", but attribute names are case-sensitive: rename it Domain"),
        ("line 5", "Assets is only allowed on static sites"),
    ] {
        assert!(err.lines().any(|l| l.starts_with(&format!("invalid: {line}")) && l.contains(why)), "{line}: {err}");
    }
    assert!(err.contains("3 invalid item(s); nothing written"), "{err}");
    // AWS was never asked: no word of regions or credentials.
    assert!(!err.contains("region") && !err.contains("ELBv2"), "{err}");
    assert!(!out.exists());

    // Only the ARN is left: the one error names the item that needs AWS and
    // what to do without it, in one line, with no debug dump.
    std::fs::write(
        &table,
        format!(
            "{{\"Domain\":\"ok.dev\",\"Target\":\"s3://bucket\"}}\n{{\"Domain\":\"lb.dev\",\"Target\":\"{ARN}\"}}\n"
        ),
    )
    .unwrap();
    let o = edgeroute(&["compile", "--from", path(&table), "--out", path(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: 1 item(s) have an ELB ARN Target without Origin (line 2 (lb.dev))"), "{err}");
    assert!(err.contains("give each such item an Origin") && err.contains("no AWS region"), "{err}");
    assert!(!err.contains('{'), "{err}");
    assert!(!out.exists());
}

/// An optional attribute in the wrong case is not silently dropped: the
/// item compiles without it, and a warning says so.
#[test]
fn a_miscased_optional_attribute_gets_a_warning() {
    let dir = scratch("miscased");
    let table = dir.join("t.jsonl");
    std::fs::write(
        &table,
        "{\"Domain\":\"shop.dev\",\"Target\":\"s3://bucket/shop\",\"fallback\":\"index.html\",\"ASSETS\":[\"a.html\"]}\n",
    )
    .unwrap();
    let o = edgeroute(&["compile", "--from", path(&table), "--out", path(&dir.join("out.snap"))]);
    ok(&o);
    let err = stderr(&o);
    for (written, meant) in [("fallback", "Fallback"), ("ASSETS", "Assets")] {
        assert!(
            err.lines().any(|l| l.starts_with("warning: line 1 (Domain \"shop.dev\")")
                && l.contains(&format!("attribute {written:?} is ignored"))
                && l.ends_with(&format!("rename it {meant}"))),
            "{written}: {err}"
        );
    }
}

#[test]
fn errors_are_one_line_each_cause_once_and_near_misses_get_hints() {
    let dir = scratch("errors");
    let out = dir.join("out.snap");
    let o = edgeroute(&["compile", "--from", path(&dir.join("missing.jsonl")), "--out", path(&out)]);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // A live table without its two slashes, a bucket URL instead of an export.
    let o = edgeroute(&["compile", "--from", "dynamodb:routes", "--out", path(&out)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("try dynamodb://routes"), "{}", stderr(&o));
    let o = edgeroute(&["compile", "--from", "s3://exports/AWSDynamoDB/01-a", "--out", path(&out)]);
    assert!(stderr(&o).contains("export:s3://exports/AWSDynamoDB/01-a"), "{}", stderr(&o));
    // A URL pasted as HOST, a Unicode name: the answer, and a hint on stderr.
    let snap = snapshot_file(&dir, "books", &["xn--bcher-kva.example.com"]);
    let o = edgeroute(&["resolve", "--snapshot", path(&snap), "https://xn--bcher-kva.example.com/katalog/?a=1"]);
    assert!(ok(&o).starts_with("bad request"), "{}", stdout(&o));
    assert!(stderr(&o).contains("hint: HOST is a Host header's value, not a URL"), "{}", stderr(&o));
    assert!(stderr(&o).contains("\"/katalog/?a=1\""), "{}", stderr(&o));
    let o = edgeroute(&["resolve", "--snapshot", path(&snap), "--json", "bücher.example.com"]);
    assert!(ok(&o).contains("bad_request"));
    assert!(stderr(&o).contains("try xn--bcher-kva.example.com"), "{}", stderr(&o));
    let o = edgeroute(&["resolve", "--snapshot", path(&snap), "xn--bcher-kva.example.com"]);
    assert!(ok(&o).starts_with("static") && o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn one_spelling_per_thing_and_the_old_ones_still_work_hidden() {
    let dir = scratch("spellings");
    let snap = snapshot_file(&dir, "one", &["a.dev"]);
    let store = format!("dir:{}", path(&dir.join("store")));
    let o = edgeroute(&["publish", "--snapshot", path(&snap), "--store", &store]);
    assert!(ok(&o).starts_with("published "), "{}", stdout(&o));
    // The old spellings: a positional snapshot, `--to`.
    let o = edgeroute(&["publish", path(&snap), "--to", &store]);
    assert!(ok(&o).contains("is already current"), "{}", stdout(&o));
    // `history`, `unpin` and `inspect` take their old positionals too, and
    // say the same either way.
    for (new, old) in [
        (vec!["history", "--store", &store], vec!["history", &store]),
        (vec!["unpin", "--store", &store], vec!["unpin", &store]),
        (vec!["inspect", "--snapshot", path(&snap)], vec!["inspect", path(&snap)]),
    ] {
        assert_eq!(ok(&edgeroute(&new)), ok(&edgeroute(&old)), "{new:?}");
    }
    // `rollback --to STORE` is the store, never an id.
    let o = edgeroute(&["rollback", "--to", &store]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no earlier state"), "{}", stderr(&o));
    // `watch --publish-to` parses (it then needs AWS, which is not there).
    let o = edgeroute(&["watch", "--table", "routes", "--publish-to", &store]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // Giving both spellings at once is a usage error.
    let o = edgeroute(&["history", "--store", &store, &store]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // The help shows only the new spellings.
    for command in ["publish", "rollback", "watch", "history", "unpin", "inspect"] {
        let help = ok(&edgeroute(&[command, "--help"]));
        for old in ["--to ", "--publish-to", "--snapshots"] {
            assert!(!help.contains(old), "{command} --help shows {old}: {help}");
        }
        let new = if command == "inspect" { "--snapshot <FILE>" } else { "--store <STORE>" };
        assert!(help.contains(new), "{command} --help lacks {new}: {help}");
    }
    assert!(ok(&edgeroute(&["--help"])).contains("Exit status:"));
}

#[test]
fn compile_publish_rollback_and_unpin_report_json() {
    let dir = scratch("json");
    let table = dir.join("t.jsonl");
    std::fs::write(&table, "{\"Domain\":\"a.dev\",\"Target\":\"s3://bucket/a\"}\n{\"Domain\":\"*.b.dev\",\"Target\":\"https://origin.example.net\"}\n{\"Domain\":\"bad..dev\",\"Target\":\"s3://bucket\"}\n").unwrap();
    let first = dir.join("first.snap");
    let o = edgeroute(&["compile", "--from", path(&table), "--out", path(&first), "--skip-invalid", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let id = SnapshotId::of(&std::fs::read(&first).unwrap()).to_string();
    assert_eq!(v["id"], id.as_str());
    assert_eq!((v["routes"]["total"].as_u64(), v["routes"]["wildcard"].as_u64()), (Some(2), Some(1)));
    assert_eq!(v["skipped"][0]["location"], "line 3");
    assert_eq!(v["size"].as_u64(), Some(std::fs::metadata(&first).unwrap().len()));

    let store = format!("dir:{}", path(&dir.join("store")));
    let o = edgeroute(&["publish", "--snapshot", path(&first), "--store", &store, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!((v["outcome"].as_str(), v["pointer"]["state"].as_str()), (Some("published"), Some(id.as_str())));
    let second = snapshot_file(&dir, "second", &["c.dev"]);
    let o = edgeroute(&["publish", "--snapshot", path(&second), "--store", &store, "--json", "--keep", "5"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(v["pointer"]["previous"], id.as_str());
    assert_eq!(v["pruned"], serde_json::json!([]));

    // Back to the first by the 12 digits `x-edgeroute-snapshot` shows.
    let o = edgeroute(&["rollback", "--store", &store, "--id", &id[..12], "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!((v["state"].as_str(), v["pinned"].as_bool()), (Some(id.as_str()), Some(true)));
    let o = edgeroute(&["unpin", "--store", &store, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!((v["unpinned"].as_bool(), v["pointer"]["pinned"].as_bool()), (Some(true), Some(false)));
    let o = edgeroute(&["unpin", "--store", &store, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!((v["unpinned"].as_bool(), v["pointer"].is_null()), (Some(false), true));
}

#[test]
fn rollback_takes_a_unique_id_prefix_as_git_does() {
    let dir = scratch("prefix");
    // Two snapshots whose ids share their first four digits.
    let mut by_prefix = std::collections::HashMap::new();
    let (a, b) = (0..100_000)
        .find_map(|n| {
            let bytes =
                compile_text(&format!("{{\"Domain\":\"n{n}.dev\",\"Target\":\"s3://bucket\"}}"), Options::default())
                    .unwrap()
                    .bytes;
            let id = SnapshotId::of(&bytes).to_string();
            by_prefix.insert(id[..4].to_owned(), (id.clone(), bytes.clone())).map(|other| (other, (id, bytes)))
        })
        .expect("two ids share a prefix long before 100,000 snapshots");
    let store = format!("dir:{}", path(&dir.join("store")));
    for (name, (_, bytes)) in [("a", &a), ("b", &b)] {
        let file = dir.join(format!("{name}.snap"));
        std::fs::write(&file, bytes).unwrap();
        ok(&edgeroute(&["publish", "--snapshot", path(&file), "--store", &store]));
    }
    let (id_a, id_b) = (&a.0, &b.0);
    let o = edgeroute(&["rollback", "--store", &store, "--id", &id_a[..4]]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("is ambiguous") && err.contains(id_a.as_str()) && err.contains(id_b.as_str()), "{err}");
    // Enough digits to tell them apart, in either case.
    let unique = (5..=64).find(|&n| id_a[..n] != id_b[..n]).unwrap();
    let o = edgeroute(&["rollback", "--store", &store, "--id", &id_a[..unique].to_ascii_uppercase()]);
    assert!(ok(&o).contains(&format!("to {id_a}")), "{}", stdout(&o));
    for (id, why) in [("abc", "give at least 4"), ("zzzz", "is not a state id"), ("0000000", "is not in the store")] {
        let o = edgeroute(&["rollback", "--store", &store, "--id", id]);
        assert!(stderr(&o).contains(why), "{id}: {}", stderr(&o));
    }
}

/// [2/8] 8: a read-only command never creates a store: a typo in the
/// store's path is an error, not a new empty store.
#[test]
fn reading_a_store_that_does_not_exist_creates_nothing() {
    let dir = scratch("typo");
    let typo = dir.join("stroe");
    let o = edgeroute(&["history", "--store", &format!("dir:{}", path(&typo))]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("no store at"), "{}", stderr(&o));
    assert!(!typo.exists(), "history created the store");
}
