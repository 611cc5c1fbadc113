//! Changes to a state, written as a layer, and compaction: a base and its
//! layers merged back into one snapshot (`docs/snapshot-format.md`,
//! "Layers"; `docs/publishing.md`, "apply" and "compact").
//!
//! A change acts on the *normalized* Domain: an upsert replaces whatever
//! the state holds under that name, a delete removes it. So a state
//! resolves exactly as a full compile of the table its changes leave, and
//! [`compact`] writes that compile's very bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use edgeroute_edge::{Layer, Record, Route, Snapshot, SnapshotId};

use crate::compile::{write_packed, CompileError, Compiled, Options};
use crate::entry::{self, normalize_domain, Entry, ItemError, ItemErrorKind, Target};
use crate::item::{Location, Value};
use crate::pack::{PackedRoute, Run};
use crate::source::SourceItem;
use crate::writer::{write_layer_sorted, AsRecord, Lineage, RecordRef, WriteError};

/// One change: a route to upsert, or a Domain (normalized) to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    Upsert(Entry<'a>),
    Delete(Cow<'a, str>),
}

impl Change<'_> {
    /// The normalized Domain it acts on.
    pub fn domain(&self) -> &str {
        match self {
            Change::Upsert(entry) => &entry.domain,
            Change::Delete(domain) => domain,
        }
    }

    /// Its index key (labels reversed).
    pub fn key(&self) -> Vec<u8> {
        key_of(self.domain())
    }
}

impl AsRecord for &Change<'_> {
    fn record(&self) -> RecordRef<'_> {
        match self {
            Change::Upsert(entry) => RecordRef::of(entry),
            Change::Delete(_) => RecordRef::Tombstone,
        }
    }
}

/// An index key from a normalized Domain.
fn key_of(domain: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(domain.len());
    for (i, label) in domain.rsplit('.').enumerate() {
        if i > 0 {
            key.push(b'.');
        }
        key.extend_from_slice(label.as_bytes());
    }
    key
}

/// Valid changes sorted by key, and the lines left out.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    pub changes: Vec<Change<'a>>,
    /// Left out under `skip_invalid`, in source order.
    pub skipped: Vec<ItemError>,
}

impl Changes<'_> {
    pub fn upserts(&self) -> usize {
        self.changes.iter().filter(|c| matches!(c, Change::Upsert(_))).count()
    }

    pub fn deletes(&self) -> usize {
        self.changes.len() - self.upserts()
    }
}

/// Reads changes from items (`edgeroute apply`'s JSON Lines): an item is
/// validated as `compile` validates a table's, and `{"Domain": …,
/// "Deleted": true}` deletes its Domain. Every bad line is reported at
/// once; two lines for one normalized Domain are both errors. Without
/// `skip_invalid`, any error refuses them all.
pub fn read_changes<'a>(items: Vec<SourceItem<'a>>, options: Options) -> Result<Changes<'a>, CompileError> {
    let mut keyed: Vec<(Vec<u8>, Location, Cow<'a, str>, Change<'a>)> = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (location, item) in items {
        let result = item.and_then(|item| {
            let written = match &item.domain {
                Some(Value::Str(d)) => d.clone(),
                _ => Cow::Borrowed(""),
            };
            let change = change(location, &item)?;
            Ok((change, written))
        });
        match result {
            Ok((change, written)) => keyed.push((change.key(), location, written, change)),
            Err(e) => errors.push(e),
        }
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut changes = Vec::with_capacity(keyed.len());
    let mut i = 0;
    while i < keyed.len() {
        let mut j = i + 1;
        while j < keyed.len() && keyed[j].0 == keyed[i].0 {
            j += 1;
        }
        if j - i == 1 {
            changes.push(keyed[i].3.clone());
        } else {
            for k in i..j {
                let other = if k == i { &keyed[i + 1] } else { &keyed[i] };
                errors.push(ItemError {
                    location: keyed[k].1,
                    domain: Some(keyed[k].2.to_string()),
                    kind: ItemErrorKind::Duplicate {
                        domain: keyed[k].3.domain().to_owned(),
                        other: other.1,
                        other_written: other.2.to_string(),
                    },
                });
            }
        }
        i = j;
    }
    errors.sort_by_key(|e| e.location);
    if !errors.is_empty() && !options.skip_invalid {
        return Err(CompileError::Invalid(errors));
    }
    Ok(Changes { changes, skipped: errors })
}

/// One line as a change.
fn change<'a>(location: Location, item: &crate::item::RawItem<'a>) -> Result<Change<'a>, ItemError> {
    let fail = |kind| ItemError {
        location,
        domain: match &item.domain {
            Some(Value::Str(s)) => Some(s.to_string()),
            _ => None,
        },
        kind,
    };
    match &item.deleted {
        None | Some(Value::Bool(false)) => entry::validate(location, item).map(Change::Upsert),
        Some(Value::Bool(true)) => {
            let domain = match &item.domain {
                Some(Value::Str(d)) => d,
                Some(other) => {
                    return Err(fail(ItemErrorKind::WrongType {
                        attribute: "Domain",
                        expected: "string",
                        found: other.type_name(),
                    }))
                }
                None => return Err(fail(ItemErrorKind::Missing("Domain"))),
            };
            if item.target.is_some() || item.origin.is_some() || item.assets.is_some() || item.fallback.is_some() {
                return Err(fail(ItemErrorKind::DeletedWithRoute));
            }
            match normalize_domain(domain) {
                Ok(Cow::Borrowed(_)) => Ok(Change::Delete(domain.clone())),
                Ok(Cow::Owned(d)) => Ok(Change::Delete(Cow::Owned(d))),
                Err(why) => Err(fail(ItemErrorKind::BadDomain { domain: domain.to_string(), why })),
            }
        }
        Some(other) => {
            Err(fail(ItemErrorKind::WrongType { attribute: "Deleted", expected: "boolean", found: other.type_name() }))
        }
    }
}

/// Writes `changes` (sorted by key, one per key, as [`read_changes`]
/// leaves them) as a layer on `lineage`.
pub fn write_layer(lineage: Lineage, changes: &[Change<'_>]) -> Result<Vec<u8>, WriteError> {
    let keys: Vec<Vec<u8>> = changes.iter().map(Change::key).collect();
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let records: Vec<&Change<'_>> = changes.iter().collect();
    write_layer_sorted(lineage, &keys, &records)
}

/// Merges consecutive layers of one state (oldest first) into one layer on
/// `lineage` that decides every key as they did together: the newest
/// record of each key, tombstones included (the base may hold the name).
/// So the state with the merged layer in their place resolves as before,
/// and compacts to the same bytes.
pub fn merge_layers<L: AsRef<[u8]>>(lineage: Lineage, layers: &[&Layer<L>]) -> Result<Vec<u8>, WriteError> {
    let mut newest: BTreeMap<Vec<u8>, Change<'_>> = BTreeMap::new();
    for layer in layers {
        layer.for_each_record(|domain, record| {
            let change = match record {
                Record::Route(route) => Change::Upsert(entry_of(domain, route)),
                Record::Tombstone => Change::Delete(Cow::Owned(domain.to_owned())),
            };
            newest.insert(key_of(domain), change);
        });
    }
    let changes: Vec<Change<'_>> = newest.into_values().collect();
    write_layer(lineage, &changes)
}

/// A table entry read back from a snapshot or a layer.
pub fn entry_of<'s>(domain: &str, route: Route<'s>) -> Entry<'s> {
    let target = match route {
        Route::Static(site) => Target::Static {
            bucket: Cow::Borrowed(site.bucket),
            prefix: Cow::Borrowed(site.prefix),
            assets: site.assets.map(|a| a.iter().map(Cow::Borrowed).collect()),
            fallback: site.fallback.map(Cow::Borrowed),
        },
        Route::Balancer(origin) => {
            Target::Balancer { host: Cow::Borrowed(origin.host), port: origin.port, scheme: origin.scheme }
        }
    };
    Entry { domain: Cow::Owned(domain.to_owned()), target }
}

/// Merges a base and its layers (oldest first, each checked on the one
/// before by the caller) into one snapshot: the bytes a full compile of
/// the table they leave would write.
pub fn compact<'l, B: AsRef<[u8]>, L: AsRef<[u8]> + 'l>(
    base: &Snapshot<B>,
    layers: impl IntoIterator<Item = &'l Layer<L>>,
) -> Result<Compiled, WriteError> {
    // The newest change of each key, in key order.
    let mut changed: BTreeMap<Vec<u8>, Option<Entry<'_>>> = BTreeMap::new();
    for layer in layers {
        layer.for_each_record(|domain, record| {
            let entry = match record {
                Record::Route(route) => Some(entry_of(domain, route)),
                Record::Tombstone => None,
            };
            changed.insert(key_of(domain), entry);
        });
    }
    // The routes, in key order, packed as a compile packs them: a table of
    // millions costs its packed size, not an entry (and allocations) each.
    let mut runs = vec![Run::default()];
    let mut push = |key: &[u8], entry: &Entry<'_>| {
        let run = runs.last_mut().expect("one run at least");
        run.push(key, entry, &entry.domain, Location::Index(0));
        if run.is_full() {
            runs.push(Run::default());
        }
    };
    let mut pending = changed.into_iter().peekable();
    base.for_each_route(|domain, route| {
        let key = key_of(domain);
        // Changes to keys before this one are new routes (or deletions of
        // keys the base does not hold).
        while let Some((k, _)) = pending.peek() {
            if *k >= key {
                break;
            }
            if let Some((k, Some(entry))) = pending.next() {
                push(&k, &entry);
            }
        }
        match pending.peek() {
            Some((k, _)) if *k == key => {
                if let Some((k, Some(entry))) = pending.next() {
                    push(&k, &entry);
                }
            }
            _ => push(&key, &entry_of(domain, route)),
        }
    });
    for (k, entry) in pending {
        if let Some(entry) = entry {
            push(&k, &entry);
        }
    }
    // Each run follows the one before in key order: no merge.
    let (arenas, indexes): (Vec<_>, Vec<_>) = runs.into_iter().map(Run::into_parts).unzip();
    let routes: Vec<PackedRoute<'_>> =
        arenas.iter().zip(&indexes).flat_map(|(arena, index)| index.iter().map(move |p| p.route(arena))).collect();
    drop(indexes);
    let (sections, stats) = write_packed(routes)?;
    drop(arenas);
    let bytes = sections.assemble()?;
    Ok(Compiled { id: SnapshotId::of(&bytes), bytes, stats, skipped: Vec::new() })
}
