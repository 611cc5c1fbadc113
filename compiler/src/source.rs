//! Routing tables in JSON: one array of items, or JSON Lines. Table
//! exports are read by [`crate::export`]; live tables by the control plane.

use std::io::Read as _;
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
    Ok(parse_json_lines(bytes))
}

/// Where to split `bytes` into ranges of whole lines, one per core (one
/// range below a MiB a core): the ranges' starts, then the end.
pub(crate) fn line_bounds(bytes: &[u8]) -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = cores.min(bytes.len() / (1 << 20)).clamp(1, 16);
    let mut bounds = vec![0];
    for i in 1..n {
        let at = (bytes.len() * i / n).max(*bounds.last().unwrap_or(&0));
        let cut = bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| at + p + 1);
        bounds.push(cut);
    }
    bounds.push(bytes.len());
    bounds
}

/// Parses JSON Lines (lines numbered from 1) on all cores.
fn parse_json_lines(bytes: &[u8]) -> Vec<SourceItem<'_>> {
    // Lines parse independently: one range of lines per core.
    let bounds = line_bounds(bytes);
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
    out
}

/// A JSON Lines file read a chunk of whole lines at a time, so that a
/// table of any size is compiled in bounded memory (see
/// [`crate::Compiler`]). A JSON array cannot be split: [`LineChunks::open`]
/// says when the file is one.
#[derive(Debug)]
pub struct LineChunks<R> {
    reader: R,
    path: String,
    /// Bytes read past the last whole line.
    carry: Vec<u8>,
    /// The number of the next chunk's first line.
    next_line: usize,
    chunk_bytes: usize,
    done: bool,
}

/// One chunk of whole lines and the number of its first line.
#[derive(Debug)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub first_line: usize,
}

impl Chunk {
    /// Its items, located by line in the whole file.
    pub fn items(&self) -> Vec<SourceItem<'_>> {
        let shift = |l: Location| match l {
            Location::Line(n) => Location::Line(n + self.first_line - 1),
            other => other,
        };
        parse_json_lines(&self.bytes)
            .into_iter()
            .map(|(location, item)| (shift(location), item.map_err(|e| ItemError { location: shift(e.location), ..e })))
            .collect()
    }
}

/// What a table file holds, by its first byte.
#[derive(Debug)]
pub enum TableFile<R> {
    /// JSON Lines, to read in chunks.
    Lines(LineChunks<R>),
    /// One JSON array: [`read_file`] and [`parse_json_file`] read it whole.
    Array,
}

impl LineChunks<std::fs::File> {
    /// Opens a table file, in chunks of about `chunk_bytes` when it is JSON
    /// Lines.
    pub fn open(path: &Path, chunk_bytes: usize) -> Result<TableFile<std::fs::File>, SourceError> {
        let file =
            std::fs::File::open(path).map_err(|source| SourceError::Io { path: path.display().to_string(), source })?;
        LineChunks::from_reader(file, path.display().to_string(), chunk_bytes)
    }
}

impl<R: std::io::Read> LineChunks<R> {
    pub fn from_reader(mut reader: R, path: String, chunk_bytes: usize) -> Result<TableFile<R>, SourceError> {
        let io = |source| SourceError::Io { path: path.clone(), source };
        // Enough of the start to see the first byte that is not whitespace.
        let mut carry = Vec::new();
        loop {
            let start = carry.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&carry);
            if let Some(first) = start.iter().find(|b| !b.is_ascii_whitespace()) {
                if *first == b'[' {
                    return Ok(TableFile::Array);
                }
                break;
            }
            let read = (&mut reader).take(64 * 1024).read_to_end(&mut carry).map_err(io)?;
            if read == 0 {
                break;
            }
        }
        if let Some(rest) = carry.strip_prefix(b"\xEF\xBB\xBF") {
            carry = rest.to_vec();
        }
        Ok(TableFile::Lines(LineChunks { reader, path, carry, next_line: 1, chunk_bytes, done: false }))
    }

    /// The next chunk of whole lines (the last may lack its newline), or
    /// `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, SourceError> {
        while !self.done && self.carry.len() < self.chunk_bytes {
            let want = (self.chunk_bytes - self.carry.len()) as u64;
            let read = (&mut self.reader)
                .take(want)
                .read_to_end(&mut self.carry)
                .map_err(|source| SourceError::Io { path: self.path.clone(), source })?;
            self.done = read == 0;
        }
        if self.carry.is_empty() {
            return Ok(None);
        }
        // Whole lines only; a line longer than a chunk makes the chunk longer.
        let mut searched = 0;
        let cut = match self.done {
            true => self.carry.len(),
            false => loop {
                match self.carry[searched..].iter().rposition(|&b| b == b'\n') {
                    Some(p) => break searched + p + 1,
                    None => {
                        searched = self.carry.len();
                        let read = (&mut self.reader)
                            .take(self.chunk_bytes as u64)
                            .read_to_end(&mut self.carry)
                            .map_err(|source| SourceError::Io { path: self.path.clone(), source })?;
                        if read == 0 {
                            self.done = true;
                            break self.carry.len();
                        }
                    }
                }
            },
        };
        let rest = self.carry.split_off(cut);
        let bytes = std::mem::replace(&mut self.carry, rest);
        let first_line = self.next_line;
        self.next_line += bytes.iter().filter(|&&b| b == b'\n').count();
        Ok(Some(Chunk { bytes, first_line }))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(text: &[u8], chunk_bytes: usize) -> Vec<(Location, Result<RawItem<'static>, ItemError>)> {
        let TableFile::Lines(mut chunks) = LineChunks::from_reader(text, "t".into(), chunk_bytes).unwrap() else {
            panic!("JSON Lines read as an array");
        };
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next_chunk().unwrap() {
            out.extend(chunk.items().into_iter().map(|(l, i)| (l, i.map(RawItem::into_owned))));
        }
        out
    }

    /// Read in chunks of any size, a file gives the items (and the line
    /// numbers, and the errors) it gives read whole: a byte-order mark,
    /// blank lines, a bad line, a line longer than a chunk, no final newline.
    #[test]
    fn a_file_read_in_chunks_gives_the_items_it_gives_whole() {
        let mut text = b"\xEF\xBB\xBF\n".to_vec();
        for i in 0..50 {
            let line = match i {
                7 => "not json".to_owned(),
                9 => String::new(),
                20 => format!("{{\"Domain\":\"long{}.dev\",\"Target\":\"s3://b\"}}", "x".repeat(200)),
                _ => format!("{{\"Domain\":\"d{i}.dev\",\"Target\":\"s3://b/{i}\"}}"),
            };
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        text.extend_from_slice(b"{\"Domain\":\"last.dev\",\"Target\":\"s3://b\"}");
        let whole: Vec<_> =
            parse_json(&text).unwrap().into_iter().map(|(l, i)| (l, i.map(RawItem::into_owned))).collect();
        assert_eq!(whole.len(), 50);
        assert_eq!(whole.last().unwrap().0, Location::Line(52));
        for chunk_bytes in [1, 7, 64, 100, 1 << 20] {
            assert_eq!(chunked(&text, chunk_bytes), whole, "chunks of {chunk_bytes} bytes");
        }
        assert!(chunked(b"", 10).is_empty());
        assert!(chunked(b"\n\n  \n", 10).is_empty());
    }

    #[test]
    fn an_array_is_said_to_be_one() {
        for text in [&b"[]"[..], b"  \n [{\"Domain\":\"a.dev\"}]", b"\xEF\xBB\xBF["] {
            assert!(matches!(LineChunks::from_reader(text, "t".into(), 4).unwrap(), TableFile::Array));
        }
    }
}
