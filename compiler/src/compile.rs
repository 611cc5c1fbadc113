//! Compiling a table: validate every item, resolve duplicates, write.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::route::{self, ItemError, ItemErrorKind, Route, Target};
use crate::source::SourceItem;
use crate::writer::{write_snapshot, WriteError};

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
    /// Lowercase hex SHA-256 of `bytes`: the snapshot's id.
    pub id: String,
    pub stats: Stats,
    /// Items left out under `skip_invalid`, in source order.
    pub skipped: Vec<ItemError>,
}

/// Route counts by kind.
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
pub trait Progress {
    /// `done` of `total` items have been validated.
    fn validated(&self, _done: usize, _total: usize) {}
    /// Validation is over; the snapshot is being written.
    fn writing(&self) {}
}

impl Progress for () {}

/// Validates every item and writes the snapshot.
///
/// Every bad item is reported, all in one run. Two items that normalize to
/// the same Domain are both errors (and both left out under `skip_invalid`),
/// so that the result never depends on the order of the input.
pub fn compile(
    items: Vec<SourceItem>,
    options: Options,
    progress: &dyn Progress,
) -> Result<Compiled, CompileError> {
    let total = items.len();
    let mut errors = Vec::new();
    let mut routes: Vec<(crate::item::Location, Route)> = Vec::with_capacity(total);
    for (n, (location, item)) in items.into_iter().enumerate() {
        match item.and_then(|item| route::validate(location, &item)) {
            Ok(r) => routes.push((location, r)),
            Err(e) => errors.push(e),
        }
        if n % 65_536 == 0 {
            progress.validated(n, total);
        }
    }
    progress.validated(total, total);

    // Duplicates: every item of a Domain given more than once is an error.
    let mut first_seen: HashMap<&str, (crate::item::Location, usize)> =
        HashMap::with_capacity(routes.len());
    let mut dup = vec![false; routes.len()];
    for (i, (loc, r)) in routes.iter().enumerate() {
        if let Some(&(other_loc, other)) = first_seen.get(r.domain.as_str()) {
            if !dup[other] {
                dup[other] = true;
                errors.push(ItemError {
                    location: other_loc,
                    domain: Some(r.domain.clone()),
                    kind: ItemErrorKind::Duplicate {
                        domain: r.domain.clone(),
                        other: *loc,
                    },
                });
            }
            dup[i] = true;
            errors.push(ItemError {
                location: *loc,
                domain: Some(r.domain.clone()),
                kind: ItemErrorKind::Duplicate {
                    domain: r.domain.clone(),
                    other: other_loc,
                },
            });
        } else {
            first_seen.insert(&r.domain, (*loc, i));
        }
    }
    drop(first_seen);
    errors.sort_by_key(|e| e.location);
    if !errors.is_empty() && !options.skip_invalid {
        return Err(CompileError::Invalid(errors));
    }
    let routes: Vec<Route> = routes
        .into_iter()
        .zip(dup)
        .filter(|(_, d)| !d)
        .map(|((_, r), _)| r)
        .collect();

    progress.writing();
    let bytes = write_snapshot(&routes)?;
    let stats = Stats {
        routes: routes.len(),
        static_sites: routes
            .iter()
            .filter(|r| matches!(r.target, Target::Static { .. }))
            .count(),
        balancers: routes
            .iter()
            .filter(|r| matches!(r.target, Target::Balancer { .. }))
            .count(),
        wildcards: routes.iter().filter(|r| r.is_wildcard()).count(),
    };
    Ok(Compiled {
        id: snapshot_id(&bytes),
        bytes,
        stats,
        skipped: errors,
    })
}

/// A snapshot's id: the lowercase hex SHA-256 of its bytes.
pub fn snapshot_id(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
