//! The watcher's states: the one it published, kept in memory so that the
//! next burst of changes is written as one layer on it, and how its layers
//! stay few and small (`docs/publishing.md`, "watch"):
//!
//! - **Merges in tiers.** A burst's layer is of tier 0; when the newest
//!   [`FAN_IN`] layers are of one tier they are merged into one layer of
//!   the next, as a base-`FAN_IN` counter carries. A change is so rewritten
//!   once per tier (a logarithm of the changes since the base), and a
//!   state holds at most `FAN_IN - 1` layers per tier.
//! - **Compaction in the background.** When the layers pass the
//!   [`CompactionPolicy`]'s threshold, the base and the layers then on it
//!   are merged into a new base on a blocking thread and stored, while
//!   changes go on as layers; the swap then rebases the layers written
//!   meanwhile onto the new base (small: they are a few tiers' worth).
//!
//! Merges and the swap run between bursts (and while one gathers), one pointer write at a time;
//! a compaction's merge runs on another thread. Every state the
//! watcher writes compacts to the bytes a full compile of its mirror makes
//! (tested), so hosts and a later compaction see one table whatever the
//! mix of layers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeroute_compiler::mirror::Mirror;
use edgeroute_compiler::{compact as merge_state, merge_layers, write_layer, Change, Lineage};
use edgeroute_edge::format::MAX_LAYERS;
use edgeroute_edge::{Layer, Snapshot, SnapshotId};
use edgeroute_store::{BaseRef, LayerRef, ObjectKind, Pointer, Store};
use tracing::{info, warn};

use super::{Pending, PublishReport, Publisher, WatchError};
use crate::publish::{self, base_ref, now_rfc3339, PublishError};
use crate::state::{advance, rewrite_layer, Advanced};

/// How many layers of one tier are merged into one of the next.
pub const FAN_IN: usize = 8;

/// A state with this many layers is compacted whatever the policy says,
/// well before [`MAX_LAYERS`] (a long compaction goes on adding layers).
pub const COMPACT_AT_LAYERS: usize = MAX_LAYERS - 32;

/// The pause after a compaction failed (the store down, say) before the next.
const RETRY_COMPACTION: Duration = Duration::from_secs(30);

/// When the watcher compacts its layers into a new base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// When the layers hold this many bytes; `None`: an eighth of the
    /// base, at least [`MIN_AUTO_BYTES`]. A host fetches the new base once
    /// per compaction, so a share of the base bounds what it fetches per
    /// change whatever the table's size.
    pub bytes: Option<u64>,
    /// When the layers hold this many records; `None`: no such limit.
    pub entries: Option<u64>,
}

/// The least of the automatic byte threshold: below it a small table
/// would be compacted every few changes for no gain.
pub const MIN_AUTO_BYTES: u64 = 1 << 20;

impl CompactionPolicy {
    /// The layers' bytes at which a state on a base of `base_size` is compacted.
    pub fn bytes_for(&self, base_size: u64) -> u64 {
        self.bytes.unwrap_or((base_size / 8).max(MIN_AUTO_BYTES))
    }

    /// Whether `state` is due for a compaction.
    pub(super) fn due(&self, state: &Published) -> bool {
        let (bytes, entries) = state.layer_totals();
        state.layers.len() >= COMPACT_AT_LAYERS
            || !state.layers.is_empty()
                && (bytes >= self.bytes_for(state.pointer.base.size) || self.entries.is_some_and(|e| entries >= e))
    }
}

/// A state this watcher published, as the pointer names it, with its
/// objects in memory.
pub(super) struct Published {
    pub pointer: Pointer,
    pub base: Arc<Snapshot<Vec<u8>>>,
    pub base_id: SnapshotId,
    pub layers: Vec<StateLayer>,
}

/// One layer of a [`Published`] state.
#[derive(Clone)]
pub(super) struct StateLayer {
    pub id: SnapshotId,
    pub layer: Arc<Layer<Vec<u8>>>,
    pub reference: LayerRef,
    /// 0: one burst's changes; `k + 1`: [`FAN_IN`] layers of tier `k` merged.
    pub tier: u32,
}

impl StateLayer {
    /// A layer the watcher just wrote.
    fn of(bytes: Vec<u8>, tier: u32) -> StateLayer {
        let id = SnapshotId::of(&bytes);
        let size = bytes.len() as u64;
        let layer = Layer::from_bytes_trusted(bytes).expect("the writer writes valid layers");
        let reference = LayerRef {
            id: id.to_string(),
            upserts: u64::from(layer.upsert_count()),
            deletes: u64::from(layer.tombstone_count()),
            size,
        };
        StateLayer { id, layer: Arc::new(layer), reference, tier }
    }
}

impl Published {
    /// A state of one base, `bytes`, which `pointer` names.
    pub fn of_base(pointer: Pointer, bytes: Vec<u8>) -> Published {
        let base_id = SnapshotId::of(&bytes);
        let base = Snapshot::from_bytes_trusted(bytes).expect("the compiler writes valid snapshots");
        Published { pointer, base: Arc::new(base), base_id, layers: Vec::new() }
    }

    /// A state read from the store (every object checked), with its
    /// layers' tiers as a checkpoint kept them.
    pub fn adopt(state: crate::state::LoadedState, tiers: &[u32]) -> Published {
        let crate::state::LoadedState { pointer, base, base_id, layers, layer_ids } = state;
        let tiers = if tiers.len() == layers.len() { tiers.to_vec() } else { vec![0; layers.len()] };
        let layers = layers
            .into_iter()
            .zip(layer_ids)
            .zip(pointer.layers.iter().cloned())
            .zip(tiers)
            .map(|(((layer, id), reference), tier)| StateLayer { id, layer: Arc::new(layer), reference, tier })
            .collect();
        Published { pointer, base: Arc::new(base), base_id, layers }
    }

    /// The lineage of a layer written at position `at` (over `layers[..at]`).
    fn lineage_at(&self, at: usize) -> Lineage {
        let parent = at.checked_sub(1).map_or(self.base_id, |i| self.layers[i].id);
        Lineage { base: self.base_id, parent, depth: at as u32 + 1 }
    }

    /// The bytes and the records of its layers.
    pub fn layer_totals(&self) -> (u64, u64) {
        let bytes = self.layers.iter().map(|l| l.reference.size).sum();
        let entries = self.layers.iter().map(|l| u64::from(l.layer.entry_count())).sum();
        (bytes, entries)
    }

    /// The pointer of the state on `base` with `layers`, written by this watcher.
    fn pointer_of(base: &BaseRef, base_id: &SnapshotId, layers: &[StateLayer], about: &Pointer) -> Pointer {
        let ids: Vec<SnapshotId> = layers.iter().map(|l| l.id).collect();
        Pointer {
            id: SnapshotId::of_state(base_id, &ids).to_string(),
            base: base.clone(),
            layers: layers.iter().map(|l| l.reference.clone()).collect(),
            created_at: now_rfc3339(),
            pinned: false,
            forced: false,
            legacy: false,
            ..about.clone()
        }
    }

    /// Where the newest layers are due for a merge: the first of the
    /// [`FAN_IN`] newest, when they are of one tier and none is below
    /// `frozen` (the layers a running compaction merges).
    fn merge_due(&self, frozen: usize) -> Option<usize> {
        let from = self.layers.len().checked_sub(FAN_IN)?;
        let tier = self.layers[from].tier;
        (from >= frozen && self.layers[from..].iter().all(|l| l.tier == tier)).then_some(from)
    }
}

/// A compaction under way: the base and the layers of a state merged into
/// a new base, and stored, on other threads.
pub(super) struct Compaction {
    /// The base it merges onto.
    base_id: SnapshotId,
    /// The layers it merges, oldest first: the state's first ones.
    merged: Vec<SnapshotId>,
    started: Instant,
    task: tokio::task::JoinHandle<Result<(SnapshotId, Vec<u8>), PublishError>>,
}

impl Compaction {
    /// Starts compacting `state` into a new base stored in `store`.
    fn start(store: &Store, state: &Published) -> Compaction {
        let base = state.base.clone();
        let layers: Vec<Arc<Layer<Vec<u8>>>> = state.layers.iter().map(|l| l.layer.clone()).collect();
        let store = store.clone();
        let base_id = state.base_id;
        let task = tokio::spawn(async move {
            let merged = tokio::task::spawn_blocking(move || merge_state(&base, layers.iter().map(|l| &**l)))
                .await
                .map_err(|e| PublishError::Damaged {
                    id: base_id.to_string(),
                    why: format!("the compaction failed: {e}"),
                })?
                .map_err(|e| PublishError::Damaged { id: base_id.to_string(), why: e.to_string() })?;
            store.put_snapshot(&merged.id.to_string(), &merged.bytes).await?;
            Ok((merged.id, merged.bytes))
        });
        Compaction { base_id, merged: state.layers.iter().map(|l| l.id).collect(), started: Instant::now(), task }
    }

    /// How many of the state's first layers it merges.
    pub fn frozen(&self) -> usize {
        self.merged.len()
    }
}

/// What a layer publish left to do.
pub(super) enum LayerOutcome {
    /// Written, held back or refused: the burst is dealt with.
    Done,
    /// The store holds another state than this watcher's (or one that can
    /// take no more layers): publish the whole mirror as a base instead.
    NeedsBase,
}

impl Publisher<'_> {
    /// Publishes the burst of changes as one layer on the state this
    /// watcher published last.
    pub(super) async fn publish_layer(
        &mut self,
        mirror: &mut Mirror,
        pending: Pending,
    ) -> Result<LayerOutcome, WatchError> {
        let Some(state) = self.state.as_ref() else { return Ok(LayerOutcome::NeedsBase) };
        for domain in mirror.changed_items() {
            if let Some(e) = mirror.why_left_out(domain) {
                super::warn_left_out(&e);
            }
        }
        let write_start = Instant::now();
        let changes: Vec<Change<'static>> = mirror.changes();
        let routes = mirror.routes() as u64;
        let skipped = mirror.left_out() as u64;
        if changes.is_empty() {
            // Nothing a host resolves differently; the count of rows left
            // out may still have moved (a bad row written or mended).
            if skipped != state.pointer.skipped {
                // This watcher's pointer: its generation fences off an older writer.
                let next = Pointer {
                    skipped,
                    created_at: now_rfc3339(),
                    source: self.source(),
                    generation: self.generation,
                    ..state.pointer.clone()
                };
                match self.advance(&next, false).await? {
                    Some(pointer) => self.state.as_mut().expect("set").pointer = pointer,
                    None => return Ok(LayerOutcome::NeedsBase),
                }
            }
            mirror.settle();
            return Ok(LayerOutcome::Done);
        }
        if state.layers.len() >= MAX_LAYERS {
            return Ok(LayerOutcome::NeedsBase);
        }
        if !self.drop_guard.allows(routes, Some(state.pointer.routes_lower_bound())) {
            // The changes stay in the mirror: the next burst is weighed with them.
            self.status.refused("drop_guard");
            warn!(
                "holding back {} changes that leave {routes} routes: they drop more than {} % of the {} live \
                 routes; the last good state stays (`--max-drop 100` lets mass deletions through)",
                changes.len(),
                self.drop_guard.max_drop_percent,
                state.pointer.routes_lower_bound()
            );
            return Ok(LayerOutcome::Done);
        }
        let at = state.layers.len();
        let bytes = write_layer(state.lineage_at(at), &changes)
            .map_err(|e| PublishError::DamagedLayer { id: "(new)".into(), why: e.to_string() })?;
        let layer = StateLayer::of(bytes, 0);
        let write_time = write_start.elapsed();
        let upload_start = Instant::now();
        self.store
            .put_object(ObjectKind::Layer, &layer.reference.id, layer.layer.as_bytes())
            .await
            .map_err(PublishError::from)?;
        let mut layers = state.layers.clone();
        layers.push(layer);
        let about = Pointer {
            routes: Some(routes),
            skipped,
            source: self.source(),
            generation: self.generation,
            ..state.pointer.clone()
        };
        let next = Published::pointer_of(&state.pointer.base, &state.base_id, &layers, &about);
        let Some(pointer) = self.advance(&next, true).await? else { return Ok(LayerOutcome::NeedsBase) };
        let upload = upload_start.elapsed();
        mirror.settle();
        let state = self.state.as_mut().expect("set");
        state.layers = layers;
        state.pointer = pointer.clone();
        self.status.layers(state.layers.len(), state.layer_totals().0);
        self.last_published = Some(pointer.id.clone());
        self.status.published(routes);
        let shape = format!("a layer of {} changes, {} layers on its base", changes.len(), pointer.layers.len());
        self.report(&pointer, Some(pending), write_start, write_time, upload, &shape);
        Ok(LayerOutcome::Done)
    }

    /// Moves the pointer from this watcher's state to `next`. `None` when
    /// the store holds another state (this watcher's state is forgotten: the
    /// next change publishes a base) or is pinned (the same, said).
    async fn advance(&mut self, next: &Pointer, record: bool) -> Result<Option<Pointer>, WatchError> {
        let from = self.state.as_ref().map(|s| s.pointer.id.clone()).unwrap_or_default();
        match advance(self.store, &from, next, record).await {
            Ok(Advanced::Current { pointer, moved_at }) => {
                self.moved_at = Some(moved_at);
                Ok(Some(pointer))
            }
            Ok(Advanced::HeldBack { pinned }) => {
                self.status.refused("pinned");
                warn!(
                    "holding back {}: the store is pinned to {} (rolled back; `edgeroute unpin` to go on)",
                    next.id, pinned.id
                );
                self.forget_state();
                Ok(None)
            }
            Ok(Advanced::Moved(current)) => {
                info!(
                    "the store holds {} now, not this watcher's {from}: publishing the table as a new base",
                    current.id
                );
                self.forget_state();
                Ok(None)
            }
            Err(PublishError::Fenced { current, .. }) => {
                self.lease_lost.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(WatchError::LeaseLost(format!(
                    "the pointer carries generation {current}, above this watcher's {}",
                    self.generation
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Forgets the state this watcher published (the store holds another):
    /// a compaction of it under way is dropped with it.
    pub(super) fn forget_state(&mut self) {
        self.state = None;
        if let Some(c) = self.compaction.take() {
            c.task.abort();
        }
    }

    /// Between bursts (or while one gathers): swaps in a finished compaction, merges the newest
    /// layers when a tier is full, and starts a compaction when one is due.
    /// One pointer write at most, so that a burst waiting meanwhile waits
    /// for one write at most.
    pub(super) async fn tidy(&mut self) -> Result<(), WatchError> {
        self.finish_roll().await;
        if self.compaction.as_ref().is_some_and(|c| c.task.is_finished()) {
            let compaction = self.compaction.take().expect("checked");
            return self.finish_compaction(compaction).await;
        }
        let Some(state) = self.state.as_ref() else { return Ok(()) };
        let frozen = self.compaction.as_ref().map_or(0, Compaction::frozen);
        if let Some(from) = state.merge_due(frozen) {
            return self.merge(from).await;
        }
        let may_compact = self.compaction_retry_at.is_none_or(|at| Instant::now() >= at);
        if self.compaction.is_none() && may_compact && self.compaction_policy.due(state) {
            let (bytes, entries) = state.layer_totals();
            info!(
                "compacting {} layers ({bytes} bytes, {entries} records) into a new base in the background",
                state.layers.len()
            );
            self.compaction = Some(Compaction::start(self.store, state));
            return Ok(());
        }
        // Pruning runs here, between this watcher's own writes (an object
        // it stores is named before a prune can look at it), and not while
        // a compaction's new base waits to be named.
        if self.compaction.is_none() {
            self.prune_if_due().await;
        }
        Ok(())
    }

    /// Prunes the store's history when its interval has passed, so that
    /// it stays bounded at any change rate ([`publish::prune_history`]).
    async fn prune_if_due(&mut self) {
        let Some(retention) = self.retention else { return };
        if self.last_prune.elapsed() < retention.every {
            return;
        }
        self.last_prune = Instant::now();
        // The checkpoint's items objects are kept (an unreadable checkpoint: all of them).
        let items: Option<Vec<String>> = match super::checkpoint::read(self.store).await {
            Ok(Some((c, _))) => Some(std::iter::once(c.items).chain(c.changes.into_iter().map(|r| r.id)).collect()),
            Ok(None) => Some(Vec::new()),
            Err(_) => None,
        };
        let pruned = publish::prune_history(
            self.store,
            retention.keep,
            retention.grace,
            items.as_deref(),
            &mut self.known_entries,
        )
        .await;
        match pruned {
            Ok(pruned) => {
                self.status.pruned(pruned.entries, pruned.objects);
                if pruned.entries + pruned.objects > 0 {
                    info!(
                        "pruned {} history entries and {} objects (kept the newest {} states and everything younger \
                         than {} s)",
                        pruned.entries,
                        pruned.objects,
                        retention.keep,
                        retention.grace.as_secs()
                    );
                }
            }
            Err(e) => warn!("cannot prune the store's history ({e}); trying again in {} s", retention.every.as_secs()),
        }
    }

    /// Merges the layers from `from` on into one of the next tier.
    async fn merge(&mut self, from: usize) -> Result<(), WatchError> {
        let state = self.state.as_ref().expect("checked");
        let start = Instant::now();
        let parts: Vec<&Layer<Vec<u8>>> = state.layers[from..].iter().map(|l| &*l.layer).collect();
        let bytes = merge_layers(state.lineage_at(from), &parts)
            .map_err(|e| PublishError::DamagedLayer { id: "(merged)".into(), why: e.to_string() })?;
        let layer = StateLayer::of(bytes, state.layers[from].tier + 1);
        self.store
            .put_object(ObjectKind::Layer, &layer.reference.id, layer.layer.as_bytes())
            .await
            .map_err(PublishError::from)?;
        let mut layers = state.layers[..from].to_vec();
        layers.push(layer);
        // The same routes: the pointer's count stays.
        let about = Pointer { source: self.source(), generation: self.generation, ..state.pointer.clone() };
        let next = Published::pointer_of(&state.pointer.base, &state.base_id, &layers, &about);
        let merged = state.layers.len() - from;
        let Some(pointer) = self.advance(&next, true).await? else { return Ok(()) };
        let state = self.state.as_mut().expect("set");
        state.layers = layers;
        state.pointer = pointer;
        self.status.merged();
        self.status.layers(state.layers.len(), state.layer_totals().0);
        let (merged_records, merged_size) = (state.layers[from].layer.entry_count(), state.layers[from].reference.size);
        let layers_now = state.layers.len();
        // The checkpoint names the state by id: the merged one now.
        self.write_checkpoint().await;
        info!(
            "merged the {merged} newest layers into one ({merged_records} records, {merged_size} bytes) in {:.0} ms; \
             the state has {layers_now} layers",
            start.elapsed().as_secs_f64() * 1000.0,
        );
        Ok(())
    }

    /// Swaps in a finished compaction's base: the layers written since it
    /// started are rebased onto it.
    async fn finish_compaction(&mut self, compaction: Compaction) -> Result<(), WatchError> {
        let Compaction { base_id, merged, started, task } = compaction;
        let (new_base_id, bytes) = match task.await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                warn!(
                    "the compaction failed ({e}); the layers stay, and it is tried again in {} s",
                    RETRY_COMPACTION.as_secs()
                );
                self.compaction_retry_at = Some(Instant::now() + RETRY_COMPACTION);
                return Ok(());
            }
            Err(e) => {
                warn!(
                    "the compaction stopped ({e}); the layers stay, and it is tried again in {} s",
                    RETRY_COMPACTION.as_secs()
                );
                self.compaction_retry_at = Some(Instant::now() + RETRY_COMPACTION);
                return Ok(());
            }
        };
        let Some(state) = self.state.as_ref() else { return Ok(()) };
        let still = state.base_id == base_id
            && state.layers.len() >= merged.len()
            && state.layers.iter().zip(&merged).all(|(l, id)| l.id == *id);
        if !still {
            // Only a base published meanwhile changes a state's first layers.
            return Ok(());
        }
        let swap_start = Instant::now();
        let base = Snapshot::from_bytes_trusted(bytes).expect("the compiler writes valid snapshots");
        let base_ref = base_ref(&new_base_id.to_string(), &base);
        let mut rebased: Vec<StateLayer> = Vec::with_capacity(state.layers.len() - merged.len());
        for old in &state.layers[merged.len()..] {
            let parent = rebased.last().map_or(new_base_id, |l| l.id);
            let lineage = Lineage { base: new_base_id, parent, depth: rebased.len() as u32 + 1 };
            let bytes = rewrite_layer(&old.layer, lineage)
                .map_err(|e| PublishError::DamagedLayer { id: old.reference.id.clone(), why: e.to_string() })?;
            let layer = StateLayer::of(bytes, old.tier);
            self.store
                .put_object(ObjectKind::Layer, &layer.reference.id, layer.layer.as_bytes())
                .await
                .map_err(PublishError::from)?;
            rebased.push(layer);
        }
        let about = Pointer { source: self.source(), generation: self.generation, ..state.pointer.clone() };
        let mut next = Published::pointer_of(&base_ref, &new_base_id, &rebased, &about);
        if rebased.is_empty() {
            next.routes = Some(base_ref.routes);
        }
        let Some(pointer) = self.advance(&next, true).await? else { return Ok(()) };
        info!(
            "compacted {} layers into base {new_base_id} ({} routes, {} bytes) in {:.1} s; {} layers written meanwhile \
             rebased onto it in {:.0} ms",
            merged.len(),
            base_ref.routes,
            base_ref.size,
            started.elapsed().as_secs_f64(),
            rebased.len(),
            swap_start.elapsed().as_secs_f64() * 1000.0
        );
        self.status.compacted();
        if let Some(checkpoint) = self.checkpoint.as_mut() {
            // The checkpoint's changes roll into a new object of every item as well.
            checkpoint.start_roll(self.store);
        }
        let state = Published { pointer, base: Arc::new(base), base_id: new_base_id, layers: rebased };
        self.status.layers(state.layers.len(), state.layer_totals().0);
        self.state = Some(state);
        self.write_checkpoint().await;
        Ok(())
    }

    /// Reports a publish (a log line with its stages, and to `reports`):
    /// `shape` says what was written, from `started`, writing it took
    /// `write` and storing it and moving the pointer `upload`.
    pub(super) fn report(
        &self,
        pointer: &Pointer,
        pending: Option<Pending>,
        started: Instant,
        write: Duration,
        upload: Duration,
        shape: &str,
    ) {
        let debounce = pending.map_or(Duration::ZERO, |p| started.saturating_duration_since(p.first_seen));
        if let Some(reports) = &self.reports {
            let _ = reports.send(PublishReport {
                id: pointer.id.clone(),
                routes: pointer.routes_estimate(),
                skipped: pointer.skipped,
                layers: pointer.layers.len(),
                stream_delay: pending.map_or(Duration::ZERO, |p| p.stream_delay),
                debounce,
                compile: write,
                upload,
                published_at: self.moved_at.unwrap_or_else(Instant::now),
            });
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let stages = match pending {
            Some(p) => format!("stream {:.0} ms, debounce {:.0} ms, ", ms(p.stream_delay), ms(debounce)),
            None => String::new(),
        };
        let total = pending.map_or(write + upload, |p| p.stream_delay + p.first_seen.elapsed());
        info!(
            "published {} ({shape}; {} routes, {} left out) in {:.0} ms: {stages}compile {:.0} ms, upload {:.0} ms",
            pointer.id,
            pointer.routes_estimate(),
            pointer.skipped,
            ms(total),
            ms(write),
            ms(upload)
        );
    }
}
