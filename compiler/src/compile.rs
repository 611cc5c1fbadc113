//! Compiling a table: validate every item, resolve duplicates, write.

use std::sync::atomic::{AtomicUsize, Ordering};

use edgeroute_edge::SnapshotId;

use crate::entry::{self, ItemError, ItemErrorKind};
use crate::item::{Location, Value};
use crate::pack::{Packed, PackedRoute, Run};
use crate::source::SourceItem;
use crate::writer::{write_sections, AsRecord, RecordRef, Sections, WriteError};

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
    let mut compiler = Compiler::new(options);
    compiler.add(&items, progress);
    drop(items);
    compiler.finish(progress)
}

/// Every error [`compile`] would report for `items`, in source order,
/// without writing a snapshot: a caller can show them all before it does
/// anything slow or remote (such as asking AWS for load balancers' names).
pub fn check(items: &[SourceItem<'_>]) -> Vec<ItemError> {
    let mut compiler = Compiler::new(Options::default());
    compiler.add(items, &());
    compiler.check()
}

/// A compile fed in parts: a table too big to hold in memory as items is
/// read a chunk at a time, each chunk validated, packed and dropped before
/// the next (`edgeroute compile` does this with JSON Lines files). The
/// snapshot is the one [`compile`] writes from all the items at once.
#[derive(Debug)]
pub struct Compiler {
    options: Options,
    /// The valid items, packed, in runs sorted by (key, location).
    runs: Vec<Run>,
    /// The bad items found so far (duplicates are found at the end).
    errors: Vec<ItemError>,
    /// How many items were added.
    added: usize,
}

impl Compiler {
    pub fn new(options: Options) -> Compiler {
        Compiler { options, runs: Vec::new(), errors: Vec::new(), added: 0 }
    }

    /// How many items have been added.
    pub fn added(&self) -> usize {
        self.added
    }

    /// Validates `items` on all cores and keeps what the snapshot needs of
    /// the valid ones; the caller can drop them (and their source) after.
    pub fn add(&mut self, items: &[SourceItem<'_>], progress: &dyn Progress) {
        let total = self.added + items.len();
        let done = AtomicUsize::new(self.added);
        let size = items.len().div_ceil(threads(items.len())).max(1);
        let results: Vec<(Vec<Run>, Vec<ItemError>)> = if size >= items.len() {
            // One thread's worth: no thread.
            vec![validate_chunk(items, &done, total, progress)]
        } else {
            std::thread::scope(|s| {
                let done = &done;
                let handles: Vec<_> = items
                    .chunks(size)
                    .map(|chunk| s.spawn(move || validate_chunk(chunk, done, total, progress)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
            })
        };
        progress.validated(total, total);
        for (runs, errors) in results {
            self.runs.extend(runs);
            self.errors.extend(errors);
        }
        self.added = total;
    }

    /// Every error the items added hold, duplicates included, in source
    /// order: what [`Compiler::finish`] would refuse.
    pub fn check(self) -> Vec<ItemError> {
        let mut errors = self.errors;
        let (arenas, indexes): (Vec<_>, Vec<_>) = self.runs.into_iter().map(Run::into_parts).unzip();
        unique_routes(&arenas, indexes, &mut errors);
        errors.sort_by_key(|e| e.location);
        errors
    }

    /// Resolves duplicates and writes the snapshot of every item added.
    pub fn finish(self, progress: &dyn Progress) -> Result<Compiled, CompileError> {
        let mut errors = self.errors;
        let (arenas, indexes): (Vec<_>, Vec<_>) = self.runs.into_iter().map(Run::into_parts).unzip();
        let unique = unique_routes(&arenas, indexes, &mut errors);
        errors.sort_by_key(|e| e.location);
        if !errors.is_empty() && !self.options.skip_invalid {
            return Err(CompileError::Invalid(errors));
        }
        progress.writing();
        let (sections, stats) = write_packed(unique)?;
        // The routes are in the sections now: let go of them before the file is put together.
        drop(arenas);
        let bytes = sections.assemble()?;
        Ok(Compiled { id: SnapshotId::of(&bytes), bytes, stats, skipped: errors })
    }
}

/// Writes packed routes, sorted by strictly ascending key, as a snapshot's
/// sections, and counts them; lets go of the list (not of the arenas it
/// points into, which the caller drops before putting the file together).
pub(crate) fn write_packed(routes: Vec<PackedRoute<'_>>) -> Result<(Sections, Stats), WriteError> {
    let keys: Vec<&[u8]> = routes.iter().map(PackedRoute::key).collect();
    let sections = write_sections(&keys, &routes)?;
    Ok((sections, Stats::of(&keys, &routes)))
}

/// The routes whose key no other route has, in key order, merged from the
/// runs; every route of a key given more than once becomes an error. The
/// runs' indexes are dropped on the way: the writer needs only the arenas.
fn unique_routes<'r>(
    arenas: &'r [Vec<u8>],
    indexes: Vec<Vec<Packed>>,
    errors: &mut Vec<ItemError>,
) -> Vec<PackedRoute<'r>> {
    let mut unique = Vec::with_capacity(indexes.iter().map(Vec::len).sum());
    let mut merged = merge_runs(arenas, &indexes).peekable();
    let mut same: Vec<(PackedRoute<'r>, Location)> = Vec::new();
    while let Some(first) = merged.next() {
        same.clear();
        same.push(first);
        while let Some(next) = merged.next_if(|(r, _)| r.key() == first.0.key()) {
            same.push(next);
        }
        if let [(route, _)] = same[..] {
            unique.push(route);
            continue;
        }
        let domain = first.0.domain();
        for (k, (route, location)) in same.iter().enumerate() {
            let (other, other_location) = if k == 0 { same[1] } else { same[0] };
            errors.push(ItemError {
                location: *location,
                domain: Some(route.written()),
                kind: ItemErrorKind::Duplicate {
                    domain: domain.clone(),
                    other: other_location,
                    other_written: other.written(),
                },
            });
        }
    }
    unique
}

/// The routes of every run in (key, location) order: a k-way merge.
fn merge_runs<'r, 'i>(
    arenas: &'r [Vec<u8>],
    indexes: &'i [Vec<Packed>],
) -> impl Iterator<Item = (PackedRoute<'r>, Location)> + 'i
where
    'r: 'i,
{
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let head = |run: usize, i: usize| {
        indexes[run].get(i).map(|p| {
            let route = p.route(&arenas[run]);
            Reverse((route.key(), p.location, run, i))
        })
    };
    let mut heap: BinaryHeap<_> = (0..indexes.len()).filter_map(|run| head(run, 0)).collect();
    std::iter::from_fn(move || {
        let Reverse((_, location, run, i)) = heap.pop()?;
        if let Some(next) = head(run, i + 1) {
            heap.push(next);
        }
        Some((indexes[run][i].route(&arenas[run]), location))
    })
}

impl Stats {
    /// Counts routes by kind.
    pub fn of<R: AsRecord>(keys: &[&[u8]], routes: &[R]) -> Stats {
        Stats {
            routes: routes.len(),
            static_sites: routes.iter().filter(|r| matches!(r.record(), RecordRef::Static { .. })).count(),
            balancers: routes.iter().filter(|r| matches!(r.record(), RecordRef::Balancer { .. })).count(),
            // A wildcard's key ends in its `*` label.
            wildcards: keys.iter().filter(|k| k.ends_with(b"*")).count(),
        }
    }
}

/// Validates a chunk of items into runs (one, unless its arena would grow
/// past a run's limit), each sorted by (key, location), and the errors.
fn validate_chunk(
    chunk: &[SourceItem<'_>],
    done: &AtomicUsize,
    total: usize,
    progress: &dyn Progress,
) -> (Vec<Run>, Vec<ItemError>) {
    let mut runs = vec![Run::default()];
    let mut errors = Vec::new();
    for (n, (location, item)) in chunk.iter().enumerate() {
        let valid = item.as_ref().map_err(Clone::clone).and_then(|raw| {
            let entry = entry::validate(*location, raw)?;
            let written = match &raw.domain {
                Some(Value::Str(d)) => d,
                _ => unreachable!("a valid item has a string Domain"),
            };
            Ok((entry, written))
        });
        match valid {
            Ok((entry, written)) => {
                let run = runs.last_mut().expect("one run at least");
                run.push(&entry.key(), &entry, written, *location);
                if run.is_full() {
                    runs.push(Run::default());
                }
            }
            Err(e) => errors.push(e),
        }
        if n % 16_384 == 16_383 {
            progress.validated(done.fetch_add(16_384, Ordering::Relaxed) + 16_384, total);
        }
    }
    for run in &mut runs {
        run.sort();
    }
    runs.retain(|r| r.len() > 0);
    (runs, errors)
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

    /// A table fed to a [`Compiler`] in chunks compiles to the bytes, the
    /// stats and the errors of the table compiled at once, whatever the
    /// chunks: duplicates across chunks, bad lines, wildcards, sites
    /// shared by routes of different chunks.
    #[test]
    fn a_table_compiled_in_chunks_is_the_table_compiled_at_once() {
        let mut text = String::new();
        for i in 0..30_000 {
            let line = match i % 997 {
                5 => format!("{{\"Domain\":\"bad..{i}.dev\",\"Target\":\"s3://bucket\"}}"),
                6 => format!("{{\"Domain\":\"D{}.dev\",\"Target\":\"s3://bucket\"}}", (i * 7) % 30_000),
                7 => format!("{{\"Domain\":\"*.w{i}.dev\",\"Target\":\"https://lb-{}.example.net:8443\"}}", i % 3),
                _ => format!(
                    "{{\"Domain\":\"d{i}.dev\",\"Target\":\"s3://bucket/{}\",\"Assets\":[\"index.html\",\"a{}.js\"],\"Fallback\":\"index.html\"}}",
                    i % 50,
                    i % 11
                ),
            };
            text.push_str(&line);
            text.push('\n');
        }
        let items = crate::source::parse_json(text.as_bytes()).unwrap();
        let options = Options { skip_invalid: true };
        let whole = compile(items.clone(), options, &()).unwrap();
        assert!(whole.skipped.iter().any(|e| matches!(e.kind, ItemErrorKind::Duplicate { .. })));
        assert!(whole.stats.wildcards > 0 && whole.stats.balancers > 0 && whole.stats.static_sites > 0);
        for size in [1, 999, 7_000, 29_999] {
            let mut compiler = Compiler::new(options);
            for chunk in items.chunks(size) {
                compiler.add(chunk, &());
            }
            assert_eq!(compiler.added(), items.len());
            let chunked = compiler.finish(&()).unwrap();
            assert_eq!(
                (chunked.id, chunked.stats, &chunked.skipped),
                (whole.id, whole.stats, &whole.skipped),
                "{size}"
            );
        }
        let Err(CompileError::Invalid(refused)) = compile(items.clone(), Options::default(), &()) else {
            panic!("the table has bad items");
        };
        assert_eq!(refused, whole.skipped);
    }

    /// A table whose routes share sites, strings and hosts compiles to the
    /// very bytes the writer before the streamed compile wrote (each site
    /// and string once, the rest referring back to it): its id, taken from
    /// that writer, pins the layout's sharing, which the generated tables
    /// of the benchmarks (a site each) do not exercise.
    #[test]
    fn routes_sharing_sites_compile_to_the_bytes_of_the_writer_before() {
        let mut text = String::new();
        for i in 0..3000 {
            if i % 5 == 4 {
                text.push_str(&format!(
                    "{{\"Domain\":\"lb{i}.dev\",\"Target\":\"https://lb-{}.example.net\"}}\n",
                    i % 4
                ));
            } else {
                text.push_str(&format!(
                    "{{\"Domain\":\"d{i}.dev\",\"Target\":\"s3://bucket-{}/p{}\",\"Assets\":[\"index.html\",\"a{}.js\"],\"Fallback\":\"index.html\"}}\n",
                    i % 7,
                    i % 13,
                    i % 10
                ));
            }
        }
        let compiled = compile(crate::source::parse_json(text.as_bytes()).unwrap(), Options::default(), &()).unwrap();
        assert_eq!(compiled.bytes.len(), 26_978);
        assert_eq!(compiled.id, "cf3655611686a9cc82cef7b8a03dfa05d2e92569d1a6bef30ccbbe11d1b3bd2f");
    }

    #[test]
    fn a_compiled_snapshot_is_named_by_the_lowercase_hex_sha256_of_its_bytes() {
        let compiled = compile(Vec::new(), Options::default(), &()).unwrap();
        assert_eq!(compiled.id, SnapshotId::of(&compiled.bytes));
        assert_eq!(SnapshotId::of(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
