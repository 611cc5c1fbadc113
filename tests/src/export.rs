//! Table exports written in the layout AWS documents, and items in both
//! of DynamoDB's JSON forms, for the export tests.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::Value as Json;

/// The same item as a plain JSON table file writes it: `S` as a string,
/// `L` and `SS` as arrays, other types as the JSON type that keeps them
/// wrong in the same way.
pub fn plain(item: &Json) -> Json {
    fn convert(v: &Json) -> Json {
        let (tag, value) = v.as_object().and_then(|o| o.iter().next()).expect("a typed value");
        match tag.as_str() {
            "S" | "SS" | "BOOL" => value.clone(),
            "N" => serde_json::json!(0),
            "NULL" => Json::Null,
            "L" => Json::Array(value.as_array().expect("L").iter().map(convert).collect()),
            "M" => serde_json::json!({}),
            "NS" => serde_json::json!([0]),
            other => panic!("test items do not use type {other}"),
        }
    }
    Json::Object(item.as_object().expect("object").iter().map(|(k, v)| (k.clone(), convert(v))).collect())
}

/// A plain JSON item (strings and lists of strings, as generated tables
/// hold) in DynamoDB's typed JSON: strings as `S`, lists as `L` of `S`.
pub fn typed(item: &Json) -> Json {
    let typed_value = |v: &Json| match v {
        Json::String(s) => serde_json::json!({ "S": s }),
        Json::Array(list) => {
            serde_json::json!({ "L": list.iter().map(|s| serde_json::json!({ "S": s })).collect::<Vec<_>>() })
        }
        other => panic!("generated tables hold strings and lists, not {other}"),
    };
    Json::Object(item.as_object().expect("object").iter().map(|(k, v)| (k.clone(), typed_value(v))).collect())
}

/// Writes a full table export of `items` (DynamoDB typed JSON) in AWS's
/// documented layout under `root`: `AWSDynamoDB/<id>/manifest-summary.json`,
/// `manifest-files.json` (JSON Lines: itemCount, md5Checksum, etag,
/// dataFileS3Key), `_started`, and `data/<name>.json.gz` files, one per
/// "partition", the items spread over `files` of them by a hash of the key;
/// the last two partitions are always empty (one as an empty object, one as
/// an empty gzip stream), as AWS writes files for empty partitions. Returns
/// the export's folder.
pub fn write_export(root: &Path, export_id: &str, items: &[Json], files: usize) -> PathBuf {
    assert!(files >= 3);
    let dir = root.join("AWSDynamoDB").join(export_id);
    std::fs::create_dir_all(dir.join("data")).expect("mkdir");
    let mut parts: Vec<String> = vec![String::new(); files];
    for item in items {
        let key = item.get("Domain").map(|d| d.to_string()).unwrap_or_default();
        let h = key.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
        let part = (h % (files as u64 - 2)) as usize;
        parts[part].push_str(&serde_json::json!({ "Item": item }).to_string());
        parts[part].push('\n');
    }
    let mut manifest = String::new();
    for (i, text) in parts.iter().enumerate() {
        let name = format!("{:026x}-{i:04}.json.gz", (i as u128 + 1) * 0x9e3779b97f4a7c15);
        let bytes = if i == files - 1 {
            Vec::new()
        } else {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(text.as_bytes()).expect("gzip");
            gz.finish().expect("gzip")
        };
        std::fs::write(dir.join("data").join(&name), &bytes).expect("write data file");
        let md5 = Md5::digest(&bytes);
        let line = serde_json::json!({
            "itemCount": text.lines().count(),
            "md5Checksum": base64::engine::general_purpose::STANDARD.encode(md5),
            "etag": md5.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "dataFileS3Key": format!("previews/AWSDynamoDB/{export_id}/data/{name}"),
        });
        manifest.push_str(&line.to_string());
        manifest.push('\n');
    }
    std::fs::write(dir.join("manifest-files.json"), manifest).expect("write manifest");
    let summary = serde_json::json!({
        "version": "2020-06-30",
        "exportArn": format!("arn:aws:dynamodb:us-east-1:123456789012:table/routes/export/{export_id}"),
        "startTime": "2026-11-24T07:28:34.028Z",
        "endTime": "2026-11-24T07:33:43.897Z",
        "tableArn": "arn:aws:dynamodb:us-east-1:123456789012:table/routes",
        "tableId": "12345a12-abcd-123a-ab12-1234abc12345",
        "exportTime": "2026-11-24T07:28:34.028Z",
        "s3Bucket": "routes-exports",
        "s3Prefix": "previews",
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": null,
        "manifestFilesS3Key": format!("previews/AWSDynamoDB/{export_id}/manifest-files.json"),
        "billedSizeBytes": 0,
        "itemCount": items.len(),
        "outputFormat": "DYNAMODB_JSON",
        "exportType": "FULL_EXPORT",
    });
    std::fs::write(dir.join("manifest-summary.json"), summary.to_string()).expect("write summary");
    std::fs::write(dir.join("_started"), b"").expect("write _started");
    dir
}
