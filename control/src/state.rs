//! States on a store: a base snapshot and the layers on it. Loading one
//! (every object checked), `edgeroute apply` (one layer on the current
//! state), `edgeroute compact` (the layers merged into a new base) and
//! `edgeroute store migrate` (the pointer rewritten in the form with
//! layers) (`docs/publishing.md`, "Layers").
//!
//! `apply` and `compact` are writers like `publish`: they move the pointer
//! by compare-and-swap, under the store's lease, and a pinned store holds
//! them back. `apply` reads nothing but the pointer: its cost does not
//! grow with the table.

use edgeroute_compiler::{compact as merge, write_layer, Change, Lineage};
use edgeroute_edge::format::MAX_LAYERS;
use edgeroute_edge::{Layer, Record, Route, Snapshot, SnapshotId};
use edgeroute_store::{LayerRef, ObjectKind, Pointer, Store};

use crate::publish::{
    backoff, base_ref, checked_snapshot, now_rfc3339, swap_over, with_lease, Fence, Manual, PublishError, MAX_ATTEMPTS,
};

/// A state read from a store, every object checked: the base and the
/// layers hash to the ids the pointer gives, validate, and the layers
/// stack in order on that base.
#[derive(Debug)]
pub struct LoadedState {
    pub pointer: Pointer,
    pub base: Snapshot<Vec<u8>>,
    pub base_id: SnapshotId,
    pub layers: Vec<Layer<Vec<u8>>>,
    pub layer_ids: Vec<SnapshotId>,
}

fn parse_id(id: &str, damaged: impl Fn(String) -> PublishError) -> Result<SnapshotId, PublishError> {
    id.parse::<SnapshotId>().map_err(|_| damaged(format!("{id:?} is not an id")))
}

/// A layer's bytes, checked: they hash to `id` and validate.
pub fn checked_layer(id: &str, bytes: Vec<u8>) -> Result<Layer<Vec<u8>>, PublishError> {
    let found = SnapshotId::of(&bytes).to_string();
    if found != id {
        return Err(PublishError::DamagedLayer { id: id.to_owned(), why: format!("its bytes hash to {found}") });
    }
    Layer::from_bytes(bytes).map_err(|e| PublishError::DamagedLayer { id: id.to_owned(), why: e.to_string() })
}

/// Reads and checks the state `pointer` names.
pub async fn load(store: &Store, pointer: &Pointer) -> Result<LoadedState, PublishError> {
    let damaged_base = |why| PublishError::Damaged { id: pointer.base.id.clone(), why };
    let base_id = parse_id(&pointer.base.id, damaged_base)?;
    let bytes = store.get_snapshot(&pointer.base.id).await?;
    checked_snapshot(&pointer.base.id, &bytes)?;
    let base = Snapshot::from_bytes_trusted(bytes)
        .map_err(|e| PublishError::Damaged { id: pointer.base.id.clone(), why: e.to_string() })?;
    let mut layers = Vec::with_capacity(pointer.layers.len());
    let mut layer_ids = Vec::with_capacity(pointer.layers.len());
    for layer_ref in &pointer.layers {
        let damaged = |why| PublishError::DamagedLayer { id: layer_ref.id.clone(), why };
        let id = parse_id(&layer_ref.id, damaged)?;
        let layer = checked_layer(&layer_ref.id, store.get_object(ObjectKind::Layer, &layer_ref.id).await?)?;
        layer
            .check_on(&base_id, layer_ids.last().unwrap_or(&base_id), layers.len())
            .map_err(|e| PublishError::DamagedLayer { id: layer_ref.id.clone(), why: e.to_string() })?;
        layers.push(layer);
        layer_ids.push(id);
    }
    Ok(LoadedState { pointer: pointer.clone(), base, base_id, layers, layer_ids })
}

impl LoadedState {
    /// The route the state holds under `domain` (normalized), if any: the
    /// newest layer that holds the key decides, else the base.
    pub fn route_of(&self, domain: &str) -> Option<Route<'_>> {
        for layer in self.layers.iter().rev() {
            match layer.record_of(domain) {
                Some(Record::Route(route)) => return Some(route),
                Some(Record::Tombstone) => return None,
                None => {}
            }
        }
        self.base.route_of(domain)
    }
}

/// What a set of changes does to a state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Effect {
    /// Upserts of names the state does not hold.
    pub added: Vec<String>,
    /// Upserts of names it holds, with another route.
    pub replaced: Vec<String>,
    /// Upserts that change nothing (the same route).
    pub unchanged: Vec<String>,
    /// Deletes of names it holds.
    pub removed: Vec<String>,
    /// Deletes of names it does not hold.
    pub absent: Vec<String>,
}

/// What `changes` would do to `state` (for `apply --dry-run`).
pub fn effect(state: &LoadedState, changes: &[Change<'_>]) -> Effect {
    let mut effect = Effect::default();
    for change in changes {
        let domain = change.domain().to_owned();
        let now = state.route_of(change.domain());
        match (change, now) {
            (Change::Upsert(_), None) => effect.added.push(domain),
            (Change::Upsert(entry), Some(route)) => {
                if edgeroute_compiler::layer::entry_of(change.domain(), route) == *entry {
                    effect.unchanged.push(domain)
                } else {
                    effect.replaced.push(domain)
                }
            }
            (Change::Delete(_), Some(_)) => effect.removed.push(domain),
            (Change::Delete(_), None) => effect.absent.push(domain),
        }
    }
    effect
}

/// What an `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The pointer names the state with the new layer on top.
    Current { pointer: Pointer, layer: LayerRef, attempts: u32 },
    /// The store is pinned (a rollback): nothing was written.
    HeldBack { pinned: Pointer },
}

/// Writes `changes` (sorted and unique, as `read_changes` leaves them) as
/// one layer on the store's current state, and moves the pointer to the
/// state with it on top, under the lease as `manual` says. Reads only the
/// pointer. A publisher that moved the pointer meanwhile is not lost: the
/// layer is written again on the new top (a new lineage, so new bytes and
/// id) and the swap tried again.
pub async fn apply(
    store: &Store,
    changes: &[Change<'_>],
    source: &str,
    skipped: u64,
    manual: &Manual,
) -> Result<Applied, PublishError> {
    with_lease(store, manual, async |Fence { generation, forced }| {
        for attempt in 0..MAX_ATTEMPTS {
            let (current, version) = store.read_pointer().await?.ok_or(PublishError::Empty)?;
            if current.generation > generation {
                return Err(PublishError::Fenced { generation, current: current.generation });
            }
            if current.legacy {
                return Err(PublishError::Legacy);
            }
            if current.pinned {
                return Ok(Applied::HeldBack { pinned: current });
            }
            if current.layers.len() >= MAX_LAYERS {
                return Err(PublishError::TooManyLayers(current.layers.len()));
            }
            let damaged = |why| PublishError::Damaged { id: current.base.id.clone(), why };
            let base = parse_id(&current.base.id, damaged)?;
            let top = match current.layers.last() {
                Some(l) => parse_id(&l.id, |why| PublishError::DamagedLayer { id: l.id.clone(), why })?,
                None => base,
            };
            let lineage = Lineage { base, parent: top, depth: current.layers.len() as u32 + 1 };
            let bytes = write_layer(lineage, changes)
                .map_err(|e| PublishError::DamagedLayer { id: "(new)".into(), why: e.to_string() })?;
            let id = SnapshotId::of(&bytes);
            let layer = Layer::from_bytes(&bytes[..]).expect("the writer writes valid layers");
            let layer_ref = LayerRef {
                id: id.to_string(),
                upserts: u64::from(layer.upsert_count()),
                deletes: u64::from(layer.tombstone_count()),
                size: bytes.len() as u64,
            };
            // The object first: content-addressed, and no host looks for it before the pointer names it.
            store.put_object(ObjectKind::Layer, &layer_ref.id, &bytes).await?;
            let mut layer_ids: Vec<SnapshotId> = Vec::with_capacity(current.layers.len() + 1);
            for l in &current.layers {
                layer_ids.push(parse_id(&l.id, |why| PublishError::DamagedLayer { id: l.id.clone(), why })?);
            }
            layer_ids.push(id);
            let mut layers = current.layers.clone();
            layers.push(layer_ref.clone());
            let next = Pointer {
                id: SnapshotId::of_state(&base, &layer_ids).to_string(),
                base: current.base.clone(),
                layers,
                routes: None,
                created_at: now_rfc3339(),
                previous: Some(current.id.clone()),
                source: source.to_owned(),
                skipped,
                pinned: false,
                generation,
                forced,
                legacy: false,
            };
            if store.replace_pointer(&next, Some(&version)).await? {
                store.append_history(&next).await?;
                return Ok(Applied::Current { pointer: next, layer: layer_ref, attempts: attempt + 1 });
            }
            backoff(attempt).await;
        }
        Err(PublishError::Contention(MAX_ATTEMPTS))
    })
    .await
}

/// What [`advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advanced {
    /// The pointer names the new state, since `moved_at` (before the
    /// history entry was written).
    Current { pointer: Pointer, moved_at: std::time::Instant },
    /// The store is pinned (a rollback): nothing was written.
    HeldBack { pinned: Pointer },
    /// The pointer names another state than the one the writer built on.
    Moved(Pointer),
}

/// Moves the pointer from the state `from` (its id) to `next`, whose
/// objects are stored, under a lease the caller holds (the generation
/// `next` carries): the watcher's writes of its own states, each built on
/// the one before. `record` adds a history entry (a new state); a pointer
/// that only says something new about the same state is written without.
pub async fn advance(store: &Store, from: &str, next: &Pointer, record: bool) -> Result<Advanced, PublishError> {
    for attempt in 0..MAX_ATTEMPTS {
        let (current, version) = store.read_pointer().await?.ok_or(PublishError::Empty)?;
        if current.generation > next.generation {
            return Err(PublishError::Fenced { generation: next.generation, current: current.generation });
        }
        if current.pinned {
            return Ok(Advanced::HeldBack { pinned: current });
        }
        if current.id != from || current.legacy {
            return Ok(Advanced::Moved(current));
        }
        let next = Pointer {
            previous: if record { Some(current.id.clone()) } else { current.previous.clone() },
            ..next.clone()
        };
        if store.replace_pointer(&next, Some(&version)).await? {
            let moved_at = std::time::Instant::now();
            if record {
                store.append_history(&next).await?;
            }
            return Ok(Advanced::Current { pointer: next, moved_at });
        }
        backoff(attempt).await;
    }
    Err(PublishError::Contention(MAX_ATTEMPTS))
}

/// What a `compact` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compacted {
    /// The pointer names the new base, with the layers written on the
    /// state after the compaction started (if any) rebased onto it.
    Current { pointer: Pointer, merged: usize, rebased: usize },
    /// The state has no layers: nothing to do.
    NothingToDo(Pointer),
    /// The store is pinned: nothing was written.
    HeldBack { pinned: Pointer },
}

/// Merges the current state's layers into a new base (the bytes a full
/// compile of the same table writes) and moves the pointer to it, under
/// the lease as `manual` says. Layers applied while it ran are rebased onto
/// the new base, never dropped; a publish or rollback meanwhile (another
/// base) leaves the pointer alone ([`PublishError::Rebased`]).
pub async fn compact(store: &Store, source: &str, manual: &Manual) -> Result<Compacted, PublishError> {
    let (start, _) = store.read_pointer().await?.ok_or(PublishError::Empty)?;
    if start.legacy {
        return Err(PublishError::Legacy);
    }
    if start.pinned {
        return Ok(Compacted::HeldBack { pinned: start });
    }
    if start.layers.is_empty() {
        return Ok(Compacted::NothingToDo(start));
    }
    // The slow part, outside the lease: read, merge, store the new base.
    let state = load(store, &start).await?;
    let merged = merge(&state.base, &state.layers)
        .map_err(|e| PublishError::Damaged { id: start.base.id.clone(), why: e.to_string() })?;
    let new_base_id = merged.id;
    store.put_snapshot(&new_base_id.to_string(), &merged.bytes).await?;
    let snapshot = Snapshot::from_bytes_trusted(&merged.bytes[..]).expect("the compiler writes valid snapshots");
    let new_base = base_ref(&new_base_id.to_string(), &snapshot);
    drop(state);
    with_lease(store, manual, async |Fence { generation, forced }| {
        // Layers already rebased, by the id they had on the old base.
        let mut rebased: Vec<(String, LayerRef, SnapshotId)> = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            let (current, version) = store.read_pointer().await?.ok_or(PublishError::Empty)?;
            if current.generation > generation {
                return Err(PublishError::Fenced { generation, current: current.generation });
            }
            if current.pinned {
                return Ok(Compacted::HeldBack { pinned: current });
            }
            let extends = current.base.id == start.base.id
                && current.layers.len() >= start.layers.len()
                && current.layers[..start.layers.len()] == start.layers[..];
            if !extends {
                return Err(PublishError::Rebased("the compaction"));
            }
            // Layers written on the state since: the same changes, written
            // again on the new base.
            let newer = &current.layers[start.layers.len()..];
            let mut layers: Vec<LayerRef> = Vec::with_capacity(newer.len());
            let mut ids: Vec<SnapshotId> = Vec::with_capacity(newer.len());
            for (i, old) in newer.iter().enumerate() {
                if let Some((_, r, id)) = rebased.get(i).filter(|(was, ..)| *was == old.id) {
                    layers.push(r.clone());
                    ids.push(*id);
                    continue;
                }
                rebased.truncate(i);
                let bytes = store.get_object(ObjectKind::Layer, &old.id).await?;
                let layer = checked_layer(&old.id, bytes)?;
                let lineage =
                    Lineage { base: new_base_id, parent: *ids.last().unwrap_or(&new_base_id), depth: i as u32 + 1 };
                let bytes = rewrite_layer(&layer, lineage)
                    .map_err(|e| PublishError::DamagedLayer { id: old.id.clone(), why: e.to_string() })?;
                let id = SnapshotId::of(&bytes);
                let r = LayerRef { id: id.to_string(), size: bytes.len() as u64, ..old.clone() };
                store.put_object(ObjectKind::Layer, &r.id, &bytes).await?;
                rebased.push((old.id.clone(), r.clone(), id));
                layers.push(r);
                ids.push(id);
            }
            let next = Pointer {
                id: SnapshotId::of_state(&new_base_id, &ids).to_string(),
                base: new_base.clone(),
                routes: if layers.is_empty() { Some(new_base.routes) } else { None },
                layers,
                created_at: now_rfc3339(),
                previous: Some(current.id.clone()),
                source: source.to_owned(),
                skipped: current.skipped,
                pinned: false,
                generation,
                forced,
                legacy: false,
            };
            if store.replace_pointer(&next, Some(&version)).await? {
                store.append_history(&next).await?;
                return Ok(Compacted::Current { pointer: next, merged: start.layers.len(), rebased: newer.len() });
            }
            backoff(attempt).await;
        }
        Err(PublishError::Contention(MAX_ATTEMPTS))
    })
    .await
}

/// The same changes as `layer`, written on `lineage`.
pub fn rewrite_layer<D: AsRef<[u8]>>(
    layer: &Layer<D>,
    lineage: Lineage,
) -> Result<Vec<u8>, edgeroute_compiler::WriteError> {
    let mut changes: Vec<Change<'_>> = Vec::with_capacity(layer.entry_count() as usize);
    layer.for_each_record(|domain, record| {
        changes.push(match record {
            Record::Route(route) => Change::Upsert(edgeroute_compiler::layer::entry_of(domain, route)),
            Record::Tombstone => Change::Delete(domain.to_owned().into()),
        })
    });
    write_layer(lineage, &changes)
}

/// What `store migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    /// The pointer is in the form with layers now.
    Migrated(Pointer),
    /// It was already.
    Already(Pointer),
    /// The store has no pointer yet: the first publish writes the new form.
    Empty,
}

/// Rewrites a pointer of the form before layers in the form with them
/// (the same state, so no history entry), under the lease as `manual`
/// says. After it, hosts of versions before layers refuse the pointer and
/// keep what they serve: upgrade them first.
pub async fn migrate(store: &Store, manual: &Manual) -> Result<Migrated, PublishError> {
    match store.read_pointer().await? {
        None => return Ok(Migrated::Empty),
        Some((p, _)) if !p.legacy => return Ok(Migrated::Already(p)),
        Some(_) => {}
    }
    with_lease(store, manual, async |Fence { generation, forced: _ }| {
        let mut change = |current: Option<&Pointer>| -> Result<Result<Pointer, ()>, PublishError> {
            Ok(match current {
                Some(p) if p.legacy => Ok(Pointer { legacy: false, ..p.clone() }),
                _ => Err(()),
            })
        };
        match swap_over(store, false, generation, true, &mut change).await? {
            Ok(p) => Ok(Migrated::Migrated(p)),
            Err(()) => Ok(store.read_pointer().await?.map_or(Migrated::Empty, |(p, _)| Migrated::Already(p))),
        }
    })
    .await
}
