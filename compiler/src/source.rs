//! Routing tables in JSON: one array of items, or JSON Lines. Table
//! exports are read by [`crate::export`]; live tables by the control plane.

use std::path::Path;

use crate::entry::{ItemError, ItemErrorKind};
use crate::item::{Location, RawItem};

/// One item read from a source: where it was, and the item or why it could
/// not be read.
pub type SourceItem<'a> = (Location, Result<RawItem<'a>, ItemError>);

/// Why a whole source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not valid JSON: {source}")]
    Json { path: String, source: serde_json::Error },
}

/// Reads a table file; parse it with [`parse_json_file`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|source| SourceError::Io { path: path.display().to_string(), source })
}

/// [`parse_json`], with the file's name in the error.
pub fn parse_json_file<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<SourceItem<'a>>, SourceError> {
    parse_json(bytes).map_err(|source| SourceError::Json { path: path.display().to_string(), source })
}

/// Parses a table in either JSON form: one array of items, or JSON Lines
/// (one item per line; blank lines are skipped). In JSON Lines a line that
/// is not valid JSON is that item's error and the other lines still count;
/// a broken array fails as a whole.
pub fn parse_json(bytes: &[u8]) -> Result<Vec<SourceItem<'_>>, serde_json::Error> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<RawItem<'_>> = serde_json::from_slice(bytes)?;
        return Ok(items.into_iter().enumerate().map(|(i, item)| (Location::Index(i), Ok(item))).collect());
    }
    // JSON Lines parse independently: split at line boundaries, one chunk per core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = cores.min(bytes.len() / (1 << 20)).clamp(1, 16);
    let mut bounds = vec![0];
    for i in 1..n {
        let at = (bytes.len() * i / n).max(*bounds.last().unwrap_or(&0));
        let cut = bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| at + p + 1);
        bounds.push(cut);
    }
    bounds.push(bytes.len());
    let chunks: Vec<(Vec<SourceItem<'_>>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = bounds.windows(2).map(|w| s.spawn(move || parse_lines(&bytes[w[0]..w[1]]))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.0.len()).sum());
    let mut first_line = 0;
    for (items, lines) in chunks {
        out.extend(items.into_iter().map(|(location, item)| {
            let shift = |l: Location| match l {
                Location::Line(n) => Location::Line(n + first_line),
                other => other,
            };
            (shift(location), item.map_err(|e| ItemError { location: shift(e.location), ..e }))
        }));
        first_line += lines;
    }
    Ok(out)
}

/// Parses JSON Lines, numbering lines from 1; returns the items and how
/// many lines the chunk held.
fn parse_lines(bytes: &[u8]) -> (Vec<SourceItem<'_>>, usize) {
    let mut out = Vec::new();
    let mut lines = 0;
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        lines = n + 1;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let location = Location::Line(n + 1);
        let item = serde_json::from_slice::<RawItem<'_>>(line).map_err(|e| ItemError {
            location,
            domain: None,
            kind: ItemErrorKind::Json(e.to_string()),
        });
        out.push((location, item));
    }
    // `split` yields an empty piece after a final newline: not a line.
    if bytes.ends_with(b"\n") {
        lines -= 1;
    }
    (out, lines)
}
