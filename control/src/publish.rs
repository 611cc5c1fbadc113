//! Publishing snapshots to a store, rolling back, pinning and pruning
//! (`docs/publishing.md`).
//!
//! A publish stores the snapshot object first and moves the pointer last,
//! with a compare-and-swap: a publisher that loses the race re-reads the
//! pointer and tries again on top of the winner's, so that no update is
//! ever silently dropped. A pinned pointer (after a rollback) is never
//! published over; the publisher says it holds back.
//!
//! Every write of the pointer is made under the store's lease (`lease.rs`)
//! and carries its generation: a pointer of a higher generation is never
//! replaced ([`PublishError::Fenced`]). The `*_fenced` functions write under
//! a lease the caller holds (the watcher); the others take the lease for
//! the one write and give it back ([`Manual`]).

use std::time::Duration;

use edgeroute_edge::{Snapshot, SnapshotId};
use edgeroute_store::{BaseRef, ObjectKind, Pointer, Store, StoreError};

use crate::lease::{HeldLease, LeaseError, LeaseOptions};
use edgeroute_store::LeaseRole;

/// Why a publish, rollback or prune did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not a valid snapshot: {0}")]
    Invalid(edgeroute_edge::SnapshotError),
    #[error("snapshot {id} in the store is damaged: {why}")]
    Damaged { id: String, why: String },
    #[error("layer {id} in the store is damaged: {why}")]
    DamagedLayer { id: String, why: String },
    #[error(
        "the store's pointer has the form from before layers (pointer version 1), which writers of this version \
         leave alone: upgrade every host and Lambda that reads the store first (they read both forms), then run \
         `edgeroute store migrate --store STORE`"
    )]
    Legacy,
    #[error(
        "the state holds {0} layers, the most a state may; `edgeroute compact --store STORE` merges them into a \
         new base (apply never compacts by itself)"
    )]
    TooManyLayers(usize),
    #[error("the store moved to another base (a publish or a rollback) while {0} ran; nothing changed")]
    Rebased(&'static str),
    #[error("the store has no current snapshot yet")]
    Empty,
    #[error("there is no earlier state to roll back to (the history holds nothing before the current snapshot); the pointer stays")]
    NoPrevious,
    #[error("gave up after {0} attempts: other publishers kept moving the pointer")]
    Contention(u32),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(
        "another writer moved the pointer while the rollback looked for its target; nothing changed: run it again"
    )]
    Moved,
    #[error(
        "the pointer was written under a newer lease (generation {current}) than this writer's ({generation}): \
         another writer took the store over"
    )]
    Fenced { generation: u64, current: u64 },
    #[error(
        "{0:?} is not a state id: give at least {MIN_ID_PREFIX} of its hex digits (`edgeroute history` lists them)"
    )]
    NotAnId(String),
    #[error(
        "state {0} is not in the store: no state in its history or stored snapshot has an id that starts with it \
         (`edgeroute history` lists them)"
    )]
    NoSuchSnapshot(String),
    #[error("{prefix} is ambiguous: states {} start with it; give more digits", .candidates.join(", "))]
    AmbiguousId { prefix: String, candidates: Vec<String> },
}

/// The fewest hex digits that name a snapshot by prefix, as git's four.
pub const MIN_ID_PREFIX: usize = 4;

/// The state whose id starts with `prefix` (case-insensitive), as git
/// takes an abbreviated commit: the 12 digits of `x-edgeroute-snapshot` or
/// `history` name it, as long as no other state starts with them. The
/// candidates are the states of the history and the stored snapshots (each
/// a state without layers); the answer is the newest history entry of that
/// state, or the snapshot as a state.
pub async fn find_state(store: &Store, prefix: &str) -> Result<Pointer, PublishError> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.len() < MIN_ID_PREFIX
        || prefix.len() > SnapshotId::HEX_LEN
        || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(PublishError::NotAnId(prefix));
    }
    let history = store.history().await?;
    let mut candidates: Vec<String> = history
        .iter()
        .map(|p| p.id.clone())
        .chain(store.snapshot_ids().await?)
        .filter(|id| id.starts_with(&prefix))
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    let id = match candidates.len() {
        0 => return Err(PublishError::NoSuchSnapshot(prefix)),
        1 => candidates.remove(0),
        _ => return Err(PublishError::AmbiguousId { prefix, candidates }),
    };
    if let Some(entry) = history.into_iter().rev().find(|p| p.id == id) {
        return Ok(entry);
    }
    // A stored snapshot no history entry names (written before histories): read it for its numbers.
    let bytes = store.get_snapshot(&id).await?;
    let snapshot = checked_snapshot(&id, &bytes)?;
    Ok(Pointer::of_base(base_ref(&id, &snapshot)))
}

/// The pointer's description of a base snapshot.
pub fn base_ref<D: AsRef<[u8]>>(id: &str, snapshot: &Snapshot<D>) -> BaseRef {
    BaseRef {
        id: id.to_owned(),
        format_version: snapshot.format_version(),
        routes: u64::from(snapshot.route_count()),
        size: snapshot.as_bytes().len() as u64,
    }
}

/// A stored snapshot's bytes, checked: they hash to `id` and validate.
pub fn checked_snapshot<'b>(id: &str, bytes: &'b [u8]) -> Result<Snapshot<&'b [u8]>, PublishError> {
    let found = SnapshotId::of(bytes).to_string();
    if found != id {
        return Err(PublishError::Damaged { id: id.to_owned(), why: format!("its bytes hash to {found}") });
    }
    Snapshot::from_bytes(bytes).map_err(|e| PublishError::Damaged { id: id.to_owned(), why: e.to_string() })
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The pointer now names the snapshot.
    Current(Pointer),
    /// The snapshot was already current; nothing changed.
    AlreadyCurrent(Pointer),
    /// The store is pinned (a rollback): the snapshot object is stored, the
    /// pointer left alone.
    HeldBack { pinned: Pointer },
    /// The snapshot would drop more of the current routes than the
    /// [`DropGuard`] allows (or all of them): the object is stored, the
    /// pointer left alone.
    DropRefused { current: Option<Pointer>, routes: u64, guard: DropGuard },
}

/// How many of the current routes a publish may drop: a snapshot with far
/// fewer routes than the live one is more often a mistake (a wrong table,
/// region or filter) than a mass deletion, and would make every host
/// answer 404 while `/health` says ok.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropGuard {
    /// The largest share of the current routes a publish may drop, in
    /// percent; 100 allows anything, an empty snapshot included.
    pub max_drop_percent: u8,
}

impl DropGuard {
    /// No guard: every publish goes through (`--allow-drop`).
    pub const OFF: DropGuard = DropGuard { max_drop_percent: 100 };

    /// Whether a snapshot of `routes` routes may replace one of `current`
    /// (`None`: nothing is published yet). Below the share, or empty, is
    /// refused, unless the guard is off.
    pub fn allows(&self, routes: u64, current: Option<u64>) -> bool {
        let max = u64::from(self.max_drop_percent.min(100));
        if max == 100 {
            return true;
        }
        routes > 0 && current.is_none_or(|current| routes * 100 >= (100 - max) * current)
    }
}

impl Default for DropGuard {
    /// Half of the current routes.
    fn default() -> DropGuard {
        DropGuard { max_drop_percent: 50 }
    }
}

/// How many times a publisher re-reads the pointer after losing the swap.
pub(crate) const MAX_ATTEMPTS: u32 = 64;

/// Now, as a pointer's `created_at` is written (RFC 3339, UTC, milliseconds).
pub fn now_rfc3339() -> String {
    crate::clock::rfc3339_millis(crate::clock::now())
}

/// Moves the pointer with `change(current)` by compare-and-swap, retrying
/// on conflicts; `change` returns `Err` to leave it alone. The new pointer
/// carries `generation`, and a pointer of a higher one is never replaced.
pub(crate) async fn swap<T>(
    store: &Store,
    record: bool,
    generation: u64,
    mut change: impl FnMut(Option<&Pointer>) -> Result<Result<Pointer, T>, PublishError>,
) -> Result<Result<Pointer, T>, PublishError> {
    swap_over(store, record, generation, false, &mut change).await
}

/// [`swap`]; `over_legacy` lets it replace a pointer of the form before
/// layers, which only `store migrate` does.
pub(crate) async fn swap_over<T>(
    store: &Store,
    record: bool,
    generation: u64,
    over_legacy: bool,
    change: &mut impl FnMut(Option<&Pointer>) -> Result<Result<Pointer, T>, PublishError>,
) -> Result<Result<Pointer, T>, PublishError> {
    for attempt in 0..MAX_ATTEMPTS {
        let current = store.read_pointer().await?;
        if let Some((pointer, _)) = current.as_ref().filter(|(p, _)| p.generation > generation) {
            return Err(PublishError::Fenced { generation, current: pointer.generation });
        }
        if current.as_ref().is_some_and(|(p, _)| p.legacy) && !over_legacy {
            return Err(PublishError::Legacy);
        }
        let next = match change(current.as_ref().map(|(p, _)| p))? {
            Ok(next) => Pointer { generation, ..next },
            Err(stop) => return Ok(Err(stop)),
        };
        if store.replace_pointer(&next, current.as_ref().map(|(_, v)| v)).await? {
            if record {
                store.append_history(&next).await?;
            }
            return Ok(Ok(next));
        }
        backoff(attempt).await;
    }
    Err(PublishError::Contention(MAX_ATTEMPTS))
}

/// After losing the swap: back off a little (jittered) before building on
/// the winner's pointer.
pub(crate) async fn backoff(attempt: u32) {
    let ceiling = Duration::from_millis(5 << attempt.min(6));
    tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
}

/// How a one-shot command writes the pointer: it takes the store's lease
/// for the write and gives it back. A lease held by a watcher refuses the
/// write unless `force` (the command then takes the lease over).
#[derive(Clone, Debug)]
pub struct Manual {
    pub force: bool,
    pub lease: LeaseOptions,
}

impl Manual {
    /// A command named `what` that does not force.
    pub fn named(what: &str) -> Manual {
        Manual { force: false, lease: LeaseOptions::named(what) }
    }
}

/// What a write of the pointer carries from the lease it was made under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The lease's generation: a pointer of a higher one is never replaced.
    pub generation: u64,
    /// The lease was taken over from a running watcher (`--force`).
    pub forced: bool,
}

/// Runs `write` with the store's lease held for it, then gives the lease
/// back, whatever `write` returned. A lease that cannot be given back
/// (the store gone meanwhile) expires on its own: the write stands, and
/// the failure is only logged, so that nobody runs a rollback twice.
pub async fn with_lease<T>(
    store: &Store,
    manual: &Manual,
    write: impl AsyncFnOnce(Fence) -> Result<T, PublishError>,
) -> Result<T, PublishError> {
    let lease = HeldLease::take_for_command(store, &manual.lease, manual.force).await?;
    let forced = lease.forced_over.as_ref().is_some_and(|l| l.role == LeaseRole::Watcher);
    if let Some(over) = &lease.forced_over {
        tracing::warn!("took the store's lease over from {} (generation {}): --force", over.holder, over.generation);
    }
    let result = write(Fence { generation: lease.generation(), forced }).await;
    if let Err(e) = lease.release(store).await {
        tracing::warn!("cannot give the store's lease back ({e}); it expires on its own");
    }
    result
}

/// Makes the pointer carry `generation` (the lease just taken), changing
/// nothing else, so that a writer of an older lease is fenced off at once,
/// even before this one publishes anything. Not a new state: no history
/// entry. Nothing to do without a pointer, or with one as new.
pub async fn claim(store: &Store, generation: u64) -> Result<(), PublishError> {
    swap(store, false, generation, |current| {
        Ok(match current {
            Some(p) if p.generation < generation => Ok(p.clone()),
            _ => Err(()),
        })
    })
    .await
    .map(drop)
}

/// Publishes a snapshot: checks it, stores the object, moves the pointer,
/// under the lease. No [`DropGuard`]: see [`publish_guarded`].
pub async fn publish(store: &Store, bytes: &[u8], source: &str, skipped: u64) -> Result<Published, PublishError> {
    publish_guarded(store, bytes, source, skipped, DropGuard::OFF, &Manual::named("publish")).await
}

/// [`publish`], refusing a snapshot that drops more of the current routes
/// than `guard` allows, with the lease taken as `manual` says.
pub async fn publish_guarded(
    store: &Store,
    bytes: &[u8],
    source: &str,
    skipped: u64,
    guard: DropGuard,
    manual: &Manual,
) -> Result<Published, PublishError> {
    let snapshot = Snapshot::from_bytes(bytes).map_err(PublishError::Invalid)?;
    let id = SnapshotId::of(bytes).to_string();
    // The object first, outside the lease: it is content-addressed, and can be slow to upload.
    store.put_snapshot(&id, bytes).await?;
    with_lease(store, manual, async |fence| point_to(store, &snapshot, &id, source, skipped, guard, fence).await).await
}

/// Publishes under a lease the caller holds, of `generation`. The drop
/// check is made on the pointer the swap replaces, so a concurrent publish
/// cannot slip a drop past it.
pub async fn publish_fenced(
    store: &Store,
    bytes: &[u8],
    source: &str,
    skipped: u64,
    guard: DropGuard,
    generation: u64,
) -> Result<Published, PublishError> {
    let snapshot = Snapshot::from_bytes(bytes).map_err(PublishError::Invalid)?;
    let id = SnapshotId::of(bytes).to_string();
    store.put_snapshot(&id, bytes).await?;
    point_to(store, &snapshot, &id, source, skipped, guard, Fence { generation, forced: false }).await
}

/// Moves the pointer to a stored snapshot, under a lease.
async fn point_to(
    store: &Store,
    snapshot: &Snapshot<&[u8]>,
    id: &str,
    source: &str,
    skipped: u64,
    guard: DropGuard,
    Fence { generation, forced }: Fence,
) -> Result<Published, PublishError> {
    let routes = u64::from(snapshot.route_count());
    let outcome = swap(store, true, generation, |current| {
        Ok(match current {
            Some(p) if p.pinned => Err(Published::HeldBack { pinned: p.clone() }),
            Some(p) if p.id == id => Err(Published::AlreadyCurrent(p.clone())),
            _ if !guard.allows(routes, current.map(Pointer::routes_lower_bound)) => {
                Err(Published::DropRefused { current: current.cloned(), routes, guard })
            }
            _ => Ok(Pointer {
                created_at: now_rfc3339(),
                previous: current.map(|p| p.id.clone()),
                source: source.to_owned(),
                skipped,
                generation,
                forced,
                ..Pointer::of_base(base_ref(id, snapshot))
            }),
        })
    })
    .await?;
    Ok(match outcome {
        Ok(pointer) => Published::Current(pointer),
        Err(other) => other,
    })
}

/// Points the store back at state `id` (a unique prefix of its id will
/// do; default: the state before the current one, see [`state_before`]),
/// after checking its base and every layer, and pins it; under the lease.
pub async fn rollback(store: &Store, id: Option<&str>) -> Result<Pointer, PublishError> {
    rollback_manual(store, id, &Manual::named("rollback")).await
}

/// [`rollback`], with the lease taken as `manual` says.
pub async fn rollback_manual(store: &Store, id: Option<&str>, manual: &Manual) -> Result<Pointer, PublishError> {
    // The target is found, read and checked before the lease is taken (the
    // history can be long): the lease is held for the swap alone.
    let current = store.read_pointer().await?.ok_or(PublishError::Empty)?.0;
    let target = match id {
        Some(prefix) => find_state(store, prefix).await?,
        None => {
            let history = store.history().await?;
            let id = match history.is_empty() {
                // A store from before the history: the pointer's own link.
                true => current.previous.clone(),
                false => state_before(&history),
            }
            .ok_or(PublishError::NoPrevious)?;
            find_state(store, &id).await?
        }
    };
    // Everything the hosts will fetch must be there and sound.
    crate::state::load(store, &target).await?;
    // Without --id the target was found from this pointer: another
    // writer's since then would be rolled over unseen.
    let looked_at = id.is_none().then_some(current.id);
    with_lease(store, manual, async |Fence { generation, forced }| {
        let outcome = swap::<()>(store, true, generation, |current| {
            if looked_at.as_ref().is_some_and(|id| current.map(|p| &p.id) != Some(id)) {
                return Err(PublishError::Moved);
            }
            Ok(Ok(Pointer {
                created_at: now_rfc3339(),
                previous: current.map(|p| p.id.clone()),
                source: format!("rollback from {}", current.map_or("nothing", |p| p.id.as_str())),
                skipped: 0,
                pinned: true,
                generation,
                forced,
                legacy: false,
                ..target.clone()
            }))
        })
        .await?;
        Ok(outcome.unwrap_or_else(|()| unreachable!("a rollback always moves the pointer")))
    })
    .await
}

/// The state a rollback goes back to: the one that was current before the
/// current one, going back through the history and never forward. The
/// history is replayed as a stack of states: a publish puts its snapshot on
/// top, a rollback to X takes states off until X is on top (and is X alone
/// when X was not among them). So a second rollback goes further back, never
/// to the snapshot the first one rolled away from, and a publish after a
/// rollback rolls back to the rollback's state.
pub fn state_before(history: &[Pointer]) -> Option<String> {
    let mut states: Vec<&str> = Vec::new();
    for entry in history {
        // Rollbacks are the entries that pin the store; a publish never does.
        if entry.pinned {
            match states.iter().rposition(|s| *s == entry.id) {
                Some(at) => states.truncate(at + 1),
                None => {
                    states.clear();
                    states.push(&entry.id);
                }
            }
        } else if states.last() != Some(&entry.id.as_str()) {
            states.push(&entry.id);
        }
    }
    states.len().checked_sub(2).map(|at| states[at].to_owned())
}

/// Lifts a pin; the snapshot stays current until the next publish.
pub async fn unpin(store: &Store) -> Result<Option<Pointer>, PublishError> {
    unpin_manual(store, &Manual::named("unpin")).await
}

/// [`unpin`], with the lease taken as `manual` says.
pub async fn unpin_manual(store: &Store, manual: &Manual) -> Result<Option<Pointer>, PublishError> {
    with_lease(store, manual, async |fence| unpin_fenced(store, fence).await).await
}

async fn unpin_fenced(store: &Store, Fence { generation, forced }: Fence) -> Result<Option<Pointer>, PublishError> {
    // Not a new snapshot: the history keeps the rollback's entry.
    let outcome = swap(store, false, generation, |current| match current {
        None => Err(PublishError::Empty),
        Some(p) if !p.pinned => Ok(Err(())),
        Some(p) => Ok(Ok(Pointer { pinned: false, created_at: now_rfc3339(), forced, ..p.clone() })),
    })
    .await?;
    Ok(outcome.ok())
}

/// How long an object that no pointer names yet is safe from [`prune`]: a
/// publisher stores its object before it moves the pointer to it.
pub const PRUNE_GRACE: Duration = Duration::from_secs(600);

/// Deletes the objects (snapshots and layers) of states beyond the `keep`
/// most recently published ones; the current state's (and so a pinned
/// one's) are always kept, and so is every object written in the last
/// [`PRUNE_GRACE`]. Returns the ids deleted.
pub async fn prune(store: &Store, keep: usize) -> Result<Vec<String>, PublishError> {
    prune_with_grace(store, keep, PRUNE_GRACE).await
}

/// [`prune`] with another grace period. An object younger than `grace` is
/// kept whatever the history says (a concurrent publisher may be about to
/// point to it), and the pointer is read again right before deleting.
pub async fn prune_with_grace(store: &Store, keep: usize, grace: Duration) -> Result<Vec<String>, PublishError> {
    let mut kept_states: Vec<String> = Vec::new();
    let mut kept: std::collections::HashSet<String> = std::collections::HashSet::new();
    for pointer in store.history().await?.into_iter().rev() {
        if kept_states.len() == keep {
            break;
        }
        if !kept_states.contains(&pointer.id) {
            kept_states.push(pointer.id.clone());
            kept.insert(pointer.base.id.clone());
            kept.extend(pointer.layers.into_iter().map(|l| l.id));
        }
    }
    let now = crate::clock::now();
    let old_enough = |written: std::time::SystemTime| now.duration_since(written).is_ok_and(|age| age >= grace);
    let mut doomed: Vec<(ObjectKind, String)> = Vec::new();
    for kind in [ObjectKind::Snapshot, ObjectKind::Layer] {
        for (id, written) in store.objects(kind).await? {
            if !kept.contains(&id) && old_enough(written) {
                doomed.push((kind, id));
            }
        }
    }
    // Read last: the objects of a pointer moved since the history was read are kept.
    if let Some((current, _)) = store.read_pointer().await? {
        kept.insert(current.base.id.clone());
        kept.extend(current.layers.into_iter().map(|l| l.id));
    }
    let mut deleted = Vec::new();
    for (kind, id) in doomed {
        if !kept.contains(&id) {
            store.delete_object(kind, &id).await?;
            deleted.push(id);
        }
    }
    Ok(deleted)
}

/// What [`prune_history`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPruned {
    /// History entries deleted.
    pub entries: usize,
    /// Objects deleted (snapshots, layers, checkpoint items).
    pub objects: usize,
}

/// The objects a history entry names, by its name: read once, kept across
/// prunes (entries never change), so that a prune reads only new entries.
pub type KnownEntries = std::collections::HashMap<String, Vec<String>>;

/// Keeps a store's history bounded at change rates: the newest `keep`
/// history entries stay, with every entry younger than `grace`; older
/// entries are deleted, and so is every snapshot, layer and (when
/// `items` is given: the ids the watcher's checkpoint names) checkpoint
/// items object that no kept entry, the pointer or the checkpoint names
/// and that is older than `grace` (a concurrent publisher stores its
/// object before it moves the pointer to it). The pointer is read last,
/// right before deleting. `known` carries the entries already read.
pub async fn prune_history(
    store: &Store,
    keep: usize,
    grace: Duration,
    items: Option<&[String]>,
    known: &mut KnownEntries,
) -> Result<HistoryPruned, PublishError> {
    let now = crate::clock::now();
    let young =
        |at: Option<std::time::SystemTime>| at.is_none_or(|at| now.duration_since(at).map_or(true, |age| age < grace));
    // Names sort by time: the entries to delete are a prefix, up to the
    // newest `keep` and to the first one younger than the grace.
    let names = store.history_names().await?;
    let beyond_keep = names.len().saturating_sub(keep);
    let doomed_len = names[..beyond_keep].partition_point(|name| !young(edgeroute_store::history_entry_time(name)));
    let (doomed, kept) = names.split_at(doomed_len);
    known.retain(|name, _| kept.binary_search(name).is_ok());
    for name in kept {
        if !known.contains_key(name) {
            let pointer = store.history_entry(name).await?;
            let ids = std::iter::once(pointer.base.id).chain(pointer.layers.into_iter().map(|l| l.id)).collect();
            known.insert(name.clone(), ids);
        }
    }
    let mut referenced: std::collections::HashSet<&str> = known.values().flatten().map(String::as_str).collect();
    referenced.extend(items.unwrap_or_default().iter().map(String::as_str));
    let mut candidates: Vec<(ObjectKind, String)> = Vec::new();
    let kinds: &[ObjectKind] = match items {
        Some(_) => &[ObjectKind::Snapshot, ObjectKind::Layer, ObjectKind::Items],
        None => &[ObjectKind::Snapshot, ObjectKind::Layer],
    };
    for &kind in kinds {
        for (id, written) in store.objects(kind).await? {
            if !referenced.contains(id.as_str()) && !young(Some(written)) {
                candidates.push((kind, id));
            }
        }
    }
    // Read last: the objects of a pointer moved meanwhile are kept.
    let current = store.read_pointer().await?.map(|(p, _)| p);
    let mut pruned = HistoryPruned::default();
    for (kind, id) in candidates {
        let live = current.as_ref().is_some_and(|p| p.base.id == id || p.layer_ids().any(|l| l == id));
        if !live {
            store.delete_object(kind, &id).await?;
            pruned.objects += 1;
        }
    }
    for name in doomed {
        store.delete_history_entry(name).await?;
        pruned.entries += 1;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_guard_refuses_big_drops_and_empty_tables() {
        let half = DropGuard::default();
        assert!(half.allows(5, Some(10)) && half.allows(11, Some(10)) && half.allows(1, None));
        assert!(!half.allows(4, Some(10)) && !half.allows(0, Some(10)) && !half.allows(0, None));
        assert!(DropGuard::OFF.allows(0, Some(10)));
        assert!(DropGuard { max_drop_percent: 0 }.allows(10, Some(10)));
        assert!(!DropGuard { max_drop_percent: 0 }.allows(9, Some(10)));
    }
}
