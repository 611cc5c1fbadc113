//! The golden snapshot of the demo table.
//!
//! When the format version changes (and only then), regenerate it with
//! `UPDATE_GOLDEN=1 cargo test -p edgeroute-tests golden` and commit the new
//! `snapshots/demo.snap` together with the format change.

use edgeroute_compiler::Options;
use edgeroute_edge::Snapshot;
use edgeroute_tests::{compile_text, resolve_json, workspace_root};

fn demo_table() -> String {
    std::fs::read_to_string(workspace_root().join("snapshots/demo.jsonl")).unwrap()
}

#[test]
fn golden_demo_snapshot_is_reproduced_byte_for_byte() {
    let compiled = compile_text(&demo_table(), Options::default()).unwrap();
    let path = workspace_root().join("snapshots/demo.snap");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &compiled.bytes).unwrap();
    }
    let golden = std::fs::read(&path).expect("snapshots/demo.snap exists");
    assert!(
        golden == compiled.bytes,
        "the compiler no longer reproduces snapshots/demo.snap (golden id {}, now {}); if the format \
         version changed on purpose, regenerate it (see this file's header)",
        edgeroute_edge::SnapshotId::of(&golden),
        compiled.id
    );
}

#[test]
fn golden_demo_snapshot_from_the_array_form() {
    let lines: Vec<String> = demo_table().lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    let array = format!("[{}]", lines.join(","));
    let compiled = compile_text(&array, Options::default()).unwrap();
    let golden = std::fs::read(workspace_root().join("snapshots/demo.snap")).unwrap();
    assert_eq!(compiled.bytes, golden);
}

#[test]
fn golden_demo_snapshot_reads_and_answers() {
    let golden = std::fs::read(workspace_root().join("snapshots/demo.snap")).unwrap();
    let snap = Snapshot::from_bytes(golden.as_slice()).unwrap();
    assert_eq!(snap.format_version(), 2);
    assert_eq!(
        resolve_json(&snap, "env-123.example.com", "/about"),
        r#"{"kind":"redirect","domain":"env-123.example.com","location":"/about/","status":301}"#
    );
    assert_eq!(
        resolve_json(&snap, "web.pr-42.previews.example.com", "/"),
        r#"{"kind":"balancer","domain":"*.pr-42.previews.example.com","origin":"127.0.0.1","port":9042,"scheme":"http"}"#
    );
}

/// The golden layer: `snapshots/demo-change.jsonl` applied to the golden
/// snapshot (the fuzz target `layer` starts from it). Regenerated with the
/// snapshot, and only when the layer format version changes.
#[test]
fn golden_demo_layer_is_reproduced_byte_for_byte() {
    use edgeroute_compiler::{read_changes, source, write_layer, Lineage};
    use edgeroute_edge::{Layer, SnapshotId};
    let base = std::fs::read(workspace_root().join("snapshots/demo.snap")).unwrap();
    let text = std::fs::read(workspace_root().join("snapshots/demo-change.jsonl")).unwrap();
    let changes = read_changes(source::parse_json(&text).unwrap(), Options::default()).unwrap().changes;
    let id = SnapshotId::of(&base);
    let bytes = write_layer(Lineage { base: id, parent: id, depth: 1 }, &changes).unwrap();
    let path = workspace_root().join("snapshots/demo-change.layer");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let golden = std::fs::read(&path).expect("snapshots/demo-change.layer exists");
    assert!(golden == bytes, "the compiler no longer reproduces snapshots/demo-change.layer");
    let layer = Layer::from_bytes(golden.as_slice()).unwrap();
    let snap = Snapshot::from_bytes(base.as_slice()).unwrap();
    let layers = [layer];
    let answer = |host: &str| snap.resolve_layered(&layers[..], host.as_bytes(), b"/").json().to_string();
    assert!(answer("env-900.example.com").contains(r#""key":"env-900/index.html""#));
    assert!(answer("env-789.example.com").contains(r#""domain":"*.example.com""#));
    assert!(answer("env-123.example.com").contains(r#""key":"env-123/index.html""#));
}
