//! Table exports (DynamoDB "Export to S3", DYNAMODB_JSON) read from a
//! folder in AWS's documented layout: what is accepted, and every way a
//! damaged, partial or foreign export is refused.

use std::path::{Path, PathBuf};

use edgeroute_compiler::export::{Export, ExportError};
use edgeroute_compiler::{compile, source, Location, Options};
use edgeroute_tests::export::{plain, write_export};
use serde_json::{json, Value as Json};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-export-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn items(n: usize) -> Vec<Json> {
    (0..n)
        .map(|i| {
            json!({"Domain": {"S": format!("env-{i}.example.com")}, "Target": {"S": format!("s3://sites/env-{i}")},
                   "Assets": {"SS": ["index.html", format!("app.{i}.js")]}, "Version": {"N": i.to_string()}})
        })
        .collect()
}

fn export(name: &str, n: usize) -> PathBuf {
    write_export(&scratch(name), "01764000000000-a1b2c3d4", &items(n), 6)
}

fn open_and_parse(dir: &Path) -> Result<usize, ExportError> {
    let export = Export::open(dir)?;
    Ok(export.items()?.len())
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Json)) {
    let mut v: Json = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// Rewrites line `n` (from 0) of manifest-files.json.
fn edit_manifest_line(dir: &Path, n: usize, edit: impl FnOnce(&mut Json)) {
    let path = dir.join("manifest-files.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut v: Json = serde_json::from_str(&lines[n]).unwrap();
    edit(&mut v);
    lines[n] = v.to_string();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// The data file that manifest line `n` lists.
fn data_file(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(dir.join("manifest-files.json")).unwrap();
    let v: Json = serde_json::from_str(text.lines().nth(n).unwrap()).unwrap();
    dir.join("data").join(v["dataFileS3Key"].as_str().unwrap().rsplit('/').next().unwrap())
}

#[test]
fn an_export_compiles_to_the_bytes_of_the_same_table_as_a_json_file() {
    let items = items(500);
    let dir = write_export(&scratch("same-bytes"), "01764000000000-a1b2c3d4", &items, 9);
    let export = Export::open(&dir).unwrap();
    assert_eq!(export.item_count, 500);
    assert_eq!(export.table_arn.as_deref(), Some("arn:aws:dynamodb:us-east-1:123456789012:table/routes"));
    let from_export = compile(export.items().unwrap(), Options::default(), &()).unwrap();
    let text: String = items.iter().rev().map(|i| plain(i).to_string() + "\n").collect();
    let from_file = compile(source::parse_json(text.as_bytes()).unwrap(), Options::default(), &()).unwrap();
    assert_eq!(from_export.stats.routes, 500);
    assert_eq!(from_export.bytes, from_file.bytes);
}

#[test]
fn typed_values_that_are_not_strings_are_item_errors_that_name_the_domain() {
    let rows = vec![
        json!({"Domain": {"S": "ok.example.com"}, "Target": {"S": "s3://sites/ok"}}),
        json!({"Domain": {"S": "bool.example.com"}, "Target": {"BOOL": true}}),
        json!({"Domain": {"S": "null.example.com"}, "Target": {"S": "s3://sites/x"}, "Fallback": {"NULL": true}}),
        json!({"Domain": {"S": "ns.example.com"}, "Target": {"S": "s3://sites/x"}, "Assets": {"NS": ["1"]}}),
        json!({"Domain": {"N": "7"}, "Target": {"S": "s3://sites/x"}}),
    ];
    let dir = write_export(&scratch("types"), "01764000000000-types", &rows, 3);
    let export = Export::open(&dir).unwrap();
    let err = compile(export.items().unwrap(), Options::default(), &()).unwrap_err().to_string();
    assert!(err.contains("4 invalid item(s)"), "{err}");
    let c = compile(export.items().unwrap(), Options { skip_invalid: true }, &()).unwrap();
    let shown: Vec<String> = c.skipped.iter().map(|e| e.to_string()).collect();
    let find = |needle: &str| shown.iter().find(|s| s.contains(needle)).cloned().unwrap_or_default();
    assert!(find("bool.example.com").contains("Target must be a string, not a boolean (BOOL)"), "{shown:?}");
    assert!(find("null.example.com").contains("Fallback must be a string, not a null (NULL)"), "{shown:?}");
    assert!(find("ns.example.com").contains("Assets must be a list of strings, not a number set (NS)"), "{shown:?}");
    assert!(shown.iter().any(|s| s.contains("Domain must be a string, not a number (N)")), "{shown:?}");
    assert!(shown.iter().all(|s| s.starts_with("data file ")), "{shown:?}");
}

#[test]
fn a_line_that_is_not_an_item_is_that_items_error_and_still_counts() {
    let dir = export("bad-line", 40);
    // Replace file 0's contents with one good item and one broken line; fix its manifest entry.
    let path = data_file(&dir, 0);
    let text = "{\"Item\": {\"Domain\": {\"S\": \"a.example.com\"}, \"Target\": {\"S\": \"s3://sites/a\"}}}\n{\"Item\": {\"Domain\": {\"X\": 1}}}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let old = {
        let mut old = 0;
        edit_manifest_line(&dir, 0, |v| {
            old = v["itemCount"].as_u64().unwrap();
            v["itemCount"] = json!(2);
            v.as_object_mut().unwrap().remove("md5Checksum");
        });
        old
    };
    edit_json(&dir.join("manifest-summary.json"), |v| v["itemCount"] = json!(40 - old + 2));
    let export = Export::open(&dir).unwrap();
    let items = export.items().unwrap();
    assert_eq!(items.len() as u64, 40 - old + 2);
    let bad: Vec<_> = items.iter().filter_map(|(l, i)| i.as_ref().err().map(|e| (*l, e.to_string()))).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].0, Location::Export { file: 1, line: 2 });
    assert!(bad[0].1.contains("unknown DynamoDB type \"X\""), "{}", bad[0].1);
}

#[test]
fn counts_that_do_not_add_up_are_refused() {
    let dir = export("file-count", 60);
    edit_manifest_line(&dir, 1, |v| v["itemCount"] = json!(v["itemCount"].as_u64().unwrap() + 1));
    let err = open_and_parse(&dir).unwrap_err();
    assert!(matches!(err, ExportError::FileCount { .. }), "{err}");
    assert!(err.to_string().contains("manifest-files.json says"), "{err}");

    let dir = export("total-count", 60);
    edit_json(&dir.join("manifest-summary.json"), |v| v["itemCount"] = json!(61));
    let err = open_and_parse(&dir).unwrap_err();
    assert!(matches!(err, ExportError::TotalCount { expected: 61, found: 60 }), "{err}");
}

#[test]
fn damaged_missing_and_unlisted_data_files_are_refused() {
    // A changed file: its MD5 no longer matches.
    let dir = export("md5", 60);
    let path = data_file(&dir, 0);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = open_and_parse(&dir).unwrap_err();
    assert!(matches!(err, ExportError::Checksum { .. }), "{err}");

    // A truncated file without a checksum in its entry: not valid gzip.
    let dir = export("truncated", 60);
    let path = data_file(&dir, 0);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    edit_manifest_line(&dir, 0, |v| {
        v.as_object_mut().unwrap().remove("md5Checksum");
    });
    let err = open_and_parse(&dir).unwrap_err();
    assert!(matches!(err, ExportError::Gzip { .. }), "{err}");

    let dir = export("missing", 60);
    std::fs::remove_file(data_file(&dir, 2)).unwrap();
    let err = open_and_parse(&dir).unwrap_err();
    assert!(matches!(err, ExportError::MissingFile { .. }), "{err}");

    let dir = export("unlisted", 60);
    std::fs::write(dir.join("data/stray.json.gz"), b"").unwrap();
    let err = open_and_parse(&dir).unwrap_err();
    assert!(matches!(err, ExportError::UnlistedFile { .. }), "{err}");
}

#[test]
fn foreign_formats_and_hostile_manifests_are_refused() {
    let dir = export("ion", 10);
    edit_json(&dir.join("manifest-summary.json"), |v| v["outputFormat"] = json!("ION"));
    assert!(matches!(open_and_parse(&dir).unwrap_err(), ExportError::Format { .. }));

    let dir = export("incremental", 10);
    edit_json(&dir.join("manifest-summary.json"), |v| v["exportType"] = json!("INCREMENTAL_EXPORT"));
    assert!(matches!(open_and_parse(&dir).unwrap_err(), ExportError::IncrementalExport { .. }));

    let dir = export("no-summary", 10);
    std::fs::remove_file(dir.join("manifest-summary.json")).unwrap();
    assert!(matches!(open_and_parse(&dir).unwrap_err(), ExportError::Io { .. }));

    let dir = export("not-json", 10);
    std::fs::write(dir.join("manifest-summary.json"), b"<xml/>").unwrap();
    assert!(matches!(open_and_parse(&dir).unwrap_err(), ExportError::Manifest { .. }));

    // Data file keys must stay inside this export's data/ folder.
    for key in [
        "previews/AWSDynamoDB/01764000000000-a1b2c3d4/data/../../../../etc/passwd",
        "previews/AWSDynamoDB/01764000000000-a1b2c3d4/data/sub/x.json.gz",
        "previews/AWSDynamoDB/01764000000000-a1b2c3d4/data/",
        "previews/AWSDynamoDB/another-export/data/x.json.gz",
        "x.json.gz",
    ] {
        let dir = export("hostile", 10);
        edit_manifest_line(&dir, 0, |v| v["dataFileS3Key"] = json!(key));
        let err = open_and_parse(&dir).unwrap_err();
        assert!(matches!(err, ExportError::Manifest { .. }), "{key}: {err}");
        assert!(err.to_string().contains("is not a data file of this export"), "{err}");
    }

    let dir = export("listed-twice", 10);
    let text = std::fs::read_to_string(dir.join("manifest-files.json")).unwrap();
    let first = text.lines().next().unwrap().to_owned();
    std::fs::write(dir.join("manifest-files.json"), format!("{text}{first}\n")).unwrap();
    let err = open_and_parse(&dir).unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
}
