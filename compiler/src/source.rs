//! Routing-table sources. Today: a JSON file, as JSON Lines or one array.

use std::path::Path;

use crate::item::{Location, RawItem};
use crate::route::{ItemError, ItemErrorKind};

/// One item read from a source: where it was, and the item or why it could
/// not be read.
pub type SourceItem = (Location, Result<RawItem, ItemError>);

/// Why a whole source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

/// Reads a JSON table file.
pub fn read_json_file(path: &Path) -> Result<Vec<SourceItem>, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_json(&bytes).map_err(|source| SourceError::Json {
        path: path.display().to_string(),
        source,
    })
}

/// Parses a table in either JSON form: one array of items, or JSON Lines
/// (one item per line; blank lines are skipped). In JSON Lines a line that
/// is not valid JSON is that item's error and the other lines still count;
/// a broken array fails as a whole.
pub fn parse_json(bytes: &[u8]) -> Result<Vec<SourceItem>, serde_json::Error> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<RawItem> = serde_json::from_slice(bytes)?;
        return Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (Location::Index(i), Ok(item)))
            .collect());
    }
    let mut out = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let location = Location::Line(n + 1);
        let item = serde_json::from_slice::<RawItem>(line).map_err(|e| ItemError {
            location,
            domain: None,
            kind: ItemErrorKind::Json(e.to_string()),
        });
        out.push((location, item));
    }
    Ok(out)
}
