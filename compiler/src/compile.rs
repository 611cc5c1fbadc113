//! Compiling a table: validate every item, resolve duplicates, write.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use edgeroute_edge::SnapshotId;

use crate::entry::{self, Entry, ItemError, ItemErrorKind, Target};
use crate::item::{Location, Value};
use crate::source::SourceItem;
use crate::writer::{write_sorted, WriteError};

/// How to compile.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Leave bad items (and both items of a duplicate) out instead of failing.
    pub skip_invalid: bool,
}

/// A compiled snapshot and what went into it.
#[derive(Debug)]
pub struct Compiled {
    pub bytes: Vec<u8>,
    /// The snapshot's id: the SHA-256 of `bytes`.
    pub id: SnapshotId,
    pub stats: Stats,
    /// Items left out under `skip_invalid`, in source order.
    pub skipped: Vec<ItemError>,
}

/// Route counts by kind, as the snapshot will hold them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub routes: usize,
    pub static_sites: usize,
    pub balancers: usize,
    pub wildcards: usize,
}

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{} invalid item(s); nothing written (use --skip-invalid to leave them out)", .0.len())]
    Invalid(Vec<ItemError>),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Progress callbacks, so a CLI can draw a bar; the library draws nothing.
/// Called from worker threads.
pub trait Progress: Sync {
    /// `done` of `total` items have been validated.
    fn validated(&self, _done: usize, _total: usize) {}
    /// Validation is over; the snapshot is being written.
    fn writing(&self) {}
}

impl Progress for () {}

/// A valid item with its index key.
struct Keyed<'a> {
    key: Vec<u8>,
    location: Location,
    entry: Entry<'a>,
    /// The Domain as the table wrote it, for messages about duplicates.
    written: Cow<'a, str>,
}

/// How many threads to validate on.
fn threads(items: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below a few thousand items a thread costs more than it saves.
    cores.min(items / 4096).clamp(1, 16)
}

/// Validates every item and writes the snapshot.
///
/// Every bad item is reported, all in one run. Two items that normalize to
/// the same Domain are both errors (and both left out under `skip_invalid`),
/// so that the result never depends on the order of the input.
pub fn compile(
    items: Vec<SourceItem<'_>>,
    options: Options,
    progress: &dyn Progress,
) -> Result<Compiled, CompileError> {
    let (runs, mut errors) = validate_all(items, progress);
    let unique = unique_keys(&merge_runs(&runs), &mut errors);
    errors.sort_by_key(|e| e.location);
    if !errors.is_empty() && !options.skip_invalid {
        return Err(CompileError::Invalid(errors));
    }

    progress.writing();
    let keys: Vec<&[u8]> = unique.iter().map(|k| k.key.as_slice()).collect();
    let routes: Vec<&Entry<'_>> = unique.iter().map(|k| &k.entry).collect();
    let bytes = write_sorted(&keys, &routes)?;
    Ok(Compiled { id: SnapshotId::of(&bytes), bytes, stats: Stats::of(&routes), skipped: errors })
}

/// Every error [`compile`] would report for `items`, in source order,
/// without writing a snapshot: a caller can show them all before it does
/// anything slow or remote (such as asking AWS for load balancers' names).
/// The items are only borrowed: each is validated where it is.
pub fn check(items: &[SourceItem<'_>]) -> Vec<ItemError> {
    let size = items.len().div_ceil(threads(items.len())).max(1);
    let results: Vec<(Vec<Keyed<'_>>, Vec<ItemError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(size).map(|chunk| s.spawn(move || check_chunk(chunk))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let (runs, errors): (Vec<_>, Vec<Vec<ItemError>>) = results.into_iter().unzip();
    let mut errors: Vec<ItemError> = errors.into_iter().flatten().collect();
    unique_keys(&merge_runs(&runs), &mut errors);
    errors.sort_by_key(|e| e.location);
    errors
}

/// [`validate_chunk`] for borrowed items.
fn check_chunk<'a>(chunk: &[SourceItem<'a>]) -> (Vec<Keyed<'a>>, Vec<ItemError>) {
    let mut keyed = Vec::with_capacity(chunk.len());
    let mut errors = Vec::new();
    for (location, item) in chunk {
        let valid = item.as_ref().map_err(Clone::clone).and_then(|raw| {
            let entry = entry::validate(*location, raw)?;
            let written = match &raw.domain {
                Some(Value::Str(d)) => d.clone(),
                _ => unreachable!("a valid item has a string Domain"),
            };
            Ok((entry, written))
        });
        match valid {
            Ok((entry, written)) => keyed.push(Keyed { key: entry.key(), location: *location, entry, written }),
            Err(e) => errors.push(e),
        }
    }
    keyed.sort_unstable_by(|a, b| a.key.cmp(&b.key).then(a.location.cmp(&b.location)));
    (keyed, errors)
}

/// Validates every item on all cores: the valid ones in runs sorted by
/// key, and the errors.
fn validate_all<'a>(items: Vec<SourceItem<'a>>, progress: &dyn Progress) -> (Vec<Vec<Keyed<'a>>>, Vec<ItemError>) {
    let total = items.len();
    let done = AtomicUsize::new(0);
    // Validate in chunks on all cores; each chunk comes back sorted by key.
    let mut chunks = Vec::new();
    let mut items = items;
    let n = threads(total);
    for i in (1..n).rev() {
        chunks.push(items.split_off(total * i / n));
    }
    chunks.push(items);
    let results: Vec<(Vec<Keyed<'_>>, Vec<ItemError>)> = std::thread::scope(|s| {
        let handles: Vec<_> =
            chunks.into_iter().map(|chunk| s.spawn(|| validate_chunk(chunk, &done, total, progress))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    progress.validated(total, total);
    let mut errors = Vec::new();
    let mut runs = Vec::with_capacity(results.len());
    for (run, errs) in results {
        runs.push(run);
        errors.extend(errs);
    }
    (runs, errors)
}

/// The items whose key no other item has; every member of a run of equal
/// keys (adjacent in `keyed`) becomes an error.
fn unique_keys<'k, 'a>(keyed: &[&'k Keyed<'a>], errors: &mut Vec<ItemError>) -> Vec<&'k Keyed<'a>> {
    let mut unique: Vec<&Keyed<'_>> = Vec::with_capacity(keyed.len());
    let mut i = 0;
    while i < keyed.len() {
        let mut j = i + 1;
        while j < keyed.len() && keyed[j].key == keyed[i].key {
            j += 1;
        }
        if j - i == 1 {
            unique.push(keyed[i]);
        } else {
            for k in i..j {
                let other = if k == i { keyed[i + 1] } else { keyed[i] };
                errors.push(ItemError {
                    location: keyed[k].location,
                    domain: Some(keyed[k].written.to_string()),
                    kind: ItemErrorKind::Duplicate {
                        domain: keyed[k].entry.domain.to_string(),
                        other: other.location,
                        other_written: other.written.to_string(),
                    },
                });
            }
        }
        i = j;
    }
    unique
}

impl Stats {
    /// Counts routes by kind.
    pub fn of(routes: &[&Entry<'_>]) -> Stats {
        Stats {
            routes: routes.len(),
            static_sites: routes.iter().filter(|r| matches!(r.target, Target::Static { .. })).count(),
            balancers: routes.iter().filter(|r| matches!(r.target, Target::Balancer { .. })).count(),
            wildcards: routes.iter().filter(|r| r.is_wildcard()).count(),
        }
    }
}

fn validate_chunk<'a>(
    chunk: Vec<SourceItem<'a>>,
    done: &AtomicUsize,
    total: usize,
    progress: &dyn Progress,
) -> (Vec<Keyed<'a>>, Vec<ItemError>) {
    let mut routes = Vec::with_capacity(chunk.len());
    let mut errors = Vec::new();
    for (n, (location, item)) in chunk.into_iter().enumerate() {
        match item.and_then(|mut item| {
            let entry = entry::validate(location, &item)?;
            let written = match item.domain.take() {
                Some(Value::Str(d)) => d,
                _ => unreachable!("a valid item has a string Domain"),
            };
            Ok((entry, written))
        }) {
            Ok((entry, written)) => routes.push(Keyed { key: entry.key(), location, entry, written }),
            Err(e) => errors.push(e),
        }
        if n % 16_384 == 16_383 {
            progress.validated(done.fetch_add(16_384, Ordering::Relaxed) + 16_384, total);
        }
    }
    // Ties (duplicates) keep source order, so messages are stable.
    routes.sort_unstable_by(|a, b| a.key.cmp(&b.key).then(a.location.cmp(&b.location)));
    (routes, errors)
}

/// Merges runs sorted by (key, location) into one sorted list of
/// references (moving the routes themselves would cost more than the merge).
fn merge_runs<'k, 'a>(runs: &'k [Vec<Keyed<'a>>]) -> Vec<&'k Keyed<'a>> {
    let mut merged: Vec<&Keyed<'a>> = Vec::new();
    for run in runs {
        let mut out = Vec::with_capacity(merged.len() + run.len());
        let (mut a, mut b) = (merged.into_iter().peekable(), run.iter().peekable());
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => (&x.key, x.location) <= (&y.key, y.location),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            out.extend(if take_a { a.next() } else { b.next() });
        }
        merged = out;
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check` (borrowed items, its own chunks) and `compile` report the
    /// same errors for the same table: bad items, and duplicates whose two
    /// halves fall in different chunks of several threads.
    #[test]
    fn check_reports_exactly_what_compile_refuses() {
        let mut text = String::new();
        for i in 0..20_000 {
            let line = match i % 1000 {
                7 => format!("{{\"Domain\":\"bad..{i}.dev\",\"Target\":\"s3://bucket\"}}"),
                8 => format!("{{\"Domain\":\"d{}.dev\",\"Target\":\"s3://bucket\"}}", (i + 10_003) % 20_000),
                9 => "{\"Domain\":\"x.dev\"}".to_owned(),
                _ => format!("{{\"Domain\":\"D{i}.dev\",\"Target\":\"s3://bucket/{i}\"}}"),
            };
            text.push_str(&line);
            text.push('\n');
        }
        let items = crate::source::parse_json(text.as_bytes()).unwrap();
        let checked = check(&items);
        let Err(CompileError::Invalid(refused)) = compile(items, Options::default(), &()) else {
            panic!("the table has bad items");
        };
        assert!(checked.len() > 60, "{}", checked.len());
        assert!(checked.iter().any(|e| matches!(e.kind, ItemErrorKind::Duplicate { .. })));
        assert_eq!(checked, refused);
    }

    #[test]
    fn a_compiled_snapshot_is_named_by_the_lowercase_hex_sha256_of_its_bytes() {
        let compiled = compile(Vec::new(), Options::default(), &()).unwrap();
        assert_eq!(compiled.id, SnapshotId::of(&compiled.bytes));
        assert_eq!(SnapshotId::of(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
