//! The watcher's checkpoint: what it needs to resume without a Scan, kept
//! in the store beside the states (`docs/publishing.md`, "Resuming").
//!
//! A snapshot alone cannot rebuild the watcher's mirror: the items it
//! leaves out (invalid ones, case-variant duplicates) and the Domains as
//! written are gone from it. So the watcher stores the items themselves,
//! as written (DynamoDB's typed JSON of the attributes edgeroute reads),
//! in content-addressed *items objects* (`items/<id>.jsonl.gz`):
//!
//! - one holds every item of the table at some point (written after a
//!   bootstrap Scan, and again, merged with the changes since, after each
//!   compaction);
//! - each of the others holds the items a burst changed (a removed item as
//!   such), merged in tiers as the layers are, so that there are few.
//!
//! The checkpoint document (`checkpoint.json`) names them, oldest first,
//! with the table and stream they come from, the state they build (the
//! state the watcher had published when it wrote the checkpoint), the
//! tiers of that state's layers, and how far the watcher had read each
//! shard of the stream. It is written after the pointer, by
//! compare-and-swap, under the watcher's lease (its generation).
//!
//! A watcher that starts resumes from it when it is of the same table and
//! stream and younger than the stream's retention; it Scans the table when
//! there is none, it is another table's or stream's, too old, unreadable,
//! or when a shard it names is gone or trimmed past its position.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Read as _, Write as _};
use std::sync::Arc;

use edgeroute_compiler::item::{to_dynamodb_json, DynamoItem, RawItem};
use edgeroute_store::{ObjectKind, Store, Version};
use serde::{Deserialize, Serialize};

use crate::publish::PublishError;

/// An item as written, in DynamoDB's typed JSON; `None`: removed.
pub(super) type Written = Option<Arc<str>>;

/// Items by table key (the Domain as written).
pub(super) type ItemSet = BTreeMap<String, Written>;

/// The checkpoint document's version this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// The version of the items objects' format.
const ITEMS_VERSION: u32 = 1;

/// `checkpoint.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub checkpoint_version: u32,
    /// The table's ARN.
    pub table: String,
    /// The stream's ARN.
    pub stream: String,
    /// The id of the state the items build, as the watcher published it.
    pub state: String,
    /// The tiers of that state's layers, oldest first.
    #[serde(default)]
    pub layer_tiers: Vec<u32>,
    /// When it was written (ms since 1970).
    pub written_at_ms: u64,
    /// When the positions in `shards` were taken (ms since 1970): how old
    /// they are, which a resume checks against the stream's retention.
    pub positions_at_ms: u64,
    /// The generation of the lease it was written under.
    pub generation: u64,
    /// The items object that holds every item at some point.
    pub items: String,
    /// The items objects of the changes since, oldest first.
    pub changes: Vec<ChangesRef>,
    /// The stream's shards as the watcher knew them.
    pub shards: Vec<ShardPosition>,
    /// Shards read to their end whose children no listing had shown.
    #[serde(default)]
    pub childless: Vec<String>,
}

/// One items object of changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesRef {
    pub id: String,
    /// 0: one burst's; `k + 1`: [`FAN_IN`](super::FAN_IN) of tier `k` merged.
    pub tier: u32,
    /// How many items it holds.
    pub items: u64,
}

/// Where the watcher was in one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPosition {
    pub id: String,
    #[serde(default)]
    pub parent: Option<String>,
    /// `reading`, `waiting` (for its parent to end) or `done` (read to its
    /// end, or closed before the watcher came).
    pub state: ShardProgress,
    /// The last record read (and published), when one was.
    #[serde(default)]
    pub after: Option<String>,
    /// Opened at `LATEST` (at a bootstrap) with no record read since: on
    /// resuming it is read from its start, and nothing is published until
    /// it has caught up.
    #[serde(default)]
    pub from_latest: bool,
}

/// A shard's progress, as [`ShardPosition::state`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardProgress {
    Reading,
    Waiting,
    Done,
}

/// Where the watcher had read the stream to: every shard's position, the
/// shards awaiting children, and when they were taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Positions {
    pub shards: Vec<ShardPosition>,
    pub childless: Vec<String>,
    pub at_ms: u64,
}

/// Now, in ms since 1970.
pub(super) fn now_ms() -> u64 {
    crate::clock::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Why a checkpoint cannot be resumed from (the watcher Scans instead).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{what} is not a checkpoint this version reads: {why}")]
    Unreadable { what: String, why: String },
    #[error("items {id} in the store are damaged: {why}")]
    DamagedItems { id: String, why: String },
    #[error(transparent)]
    Store(#[from] edgeroute_store::StoreError),
}

impl Checkpoint {
    /// The document's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a checkpoint serializes")
    }

    /// Reads a document, refusing another version.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<Checkpoint, CheckpointError> {
        let unreadable = |why: String| CheckpointError::Unreadable { what: what.to_owned(), why };
        let version: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| unreadable(e.to_string()))?;
        match version.get("checkpoint_version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(CHECKPOINT_VERSION) => {}
            Some(v) => return Err(unreadable(format!("checkpoint_version {v}, not {CHECKPOINT_VERSION}"))),
            None => return Err(unreadable("it has no checkpoint_version".into())),
        }
        serde_json::from_value(version).map_err(|e| unreadable(e.to_string()))
    }
}

/// Which items an items object holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemsKind {
    /// Every item of the table.
    All,
    /// Items changed (set or removed).
    Changes,
}

/// An items object's first line.
#[derive(Serialize, Deserialize)]
struct ItemsHeader {
    edgeroute_items: u32,
    kind: ItemsKind,
    table: String,
}

/// One item's line.
#[derive(Serialize, Deserialize)]
struct ItemLine<'a> {
    key: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    item: Option<&'a serde_json::value::RawValue>,
}

/// An items object: gzipped JSON Lines, a header and then one line per
/// item, sorted by key (`{"key": Domain, "item": {…}}`, without `item`
/// when the item was removed). Its id is the SHA-256 of these bytes.
pub fn encode_items<'a>(
    kind: ItemsKind,
    table: &str,
    items: impl IntoIterator<Item = (&'a String, &'a Written)>,
) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let header = ItemsHeader { edgeroute_items: ITEMS_VERSION, kind, table: table.to_owned() };
    let mut line = serde_json::to_vec(&header).expect("serializes");
    line.push(b'\n');
    gz.write_all(&line).expect("a Vec takes every write");
    for (key, item) in items {
        line.clear();
        line.extend_from_slice(b"{\"key\":");
        serde_json::to_writer(&mut line, key).expect("serializes");
        if let Some(item) = item {
            line.extend_from_slice(b",\"item\":");
            line.extend_from_slice(item.as_bytes());
        }
        line.extend_from_slice(b"}\n");
        gz.write_all(&line).expect("a Vec takes every write");
    }
    gz.finish().expect("a Vec takes every write")
}

/// Reads an items object back: its kind, its table, its items.
pub fn decode_items(id: &str, bytes: &[u8]) -> Result<(ItemsKind, String, ItemSet), CheckpointError> {
    let damaged = |why: String| CheckpointError::DamagedItems { id: id.to_owned(), why };
    let found = edgeroute_edge::SnapshotId::of(bytes).to_string();
    if found != id {
        return Err(damaged(format!("their bytes hash to {found}")));
    }
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut text).map_err(|e| damaged(format!("not gzip: {e}")))?;
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| damaged("empty".into()))?.map_err(|e| damaged(e.to_string()))?;
    let header: ItemsHeader = serde_json::from_str(&header).map_err(|e| damaged(format!("line 1: {e}")))?;
    if header.edgeroute_items != ITEMS_VERSION {
        return Err(damaged(format!("items format {}, not {ITEMS_VERSION}", header.edgeroute_items)));
    }
    let mut items = ItemSet::new();
    let mut last: Option<String> = None;
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| damaged(e.to_string()))?;
        let parsed: ItemLine<'_> = serde_json::from_str(&line).map_err(|e| damaged(format!("line {}: {e}", n + 2)))?;
        if last.as_deref().is_some_and(|l| l >= parsed.key.as_ref()) {
            return Err(damaged(format!("line {}: keys out of order", n + 2)));
        }
        let item = match parsed.item {
            Some(raw) => {
                // Checked now, so that a resume never meets a bad line later.
                serde_json::from_str::<DynamoItem<'_>>(raw.get())
                    .map_err(|e| damaged(format!("line {}: {e}", n + 2)))?;
                Some(Arc::from(raw.get()))
            }
            None => None,
        };
        last = Some(parsed.key.to_string());
        items.insert(parsed.key.into_owned(), item);
    }
    Ok((header.kind, header.table, items))
}

/// An item as written, for the checkpoint.
pub(super) fn written(item: &RawItem<'_>) -> Arc<str> {
    Arc::from(to_dynamodb_json(item).to_string())
}

/// An item written in the checkpoint, read back.
pub(super) fn read_written(json: &str) -> RawItem<'static> {
    // Checked when its object was read.
    serde_json::from_str::<DynamoItem<'_>>(json).expect("checked when read").0.into_owned()
}

/// Stores an items object; returns its id.
pub(super) async fn put_items(store: &Store, bytes: &[u8]) -> Result<String, PublishError> {
    let id = edgeroute_edge::SnapshotId::of(bytes).to_string();
    store.put_object(ObjectKind::Items, &id, bytes).await?;
    Ok(id)
}

/// Reads an items object.
pub(super) async fn get_items(store: &Store, id: &str) -> Result<(ItemsKind, String, ItemSet), CheckpointError> {
    let bytes = store.get_object(ObjectKind::Items, id).await?;
    decode_items(id, &bytes)
}

/// The checkpoint in the store and its version, if any.
pub(super) async fn read(store: &Store) -> Result<Option<(Checkpoint, Version)>, CheckpointError> {
    let Some((bytes, version)) = store.read_checkpoint().await? else { return Ok(None) };
    Ok(Some((Checkpoint::from_json(&bytes, &store.checkpoint_name())?, version)))
}

/// The checkpoint a watcher keeps up to date while it follows a stream.
pub(super) struct Checkpointing {
    /// The table's and the stream's ARNs.
    pub table: String,
    pub stream: String,
    /// The items object of every item.
    pub items: String,
    /// The items objects of the changes since, oldest first, with their items.
    pub changes: Vec<(ChangesRef, Arc<ItemSet>)>,
    /// The document's version as this watcher last wrote it.
    pub version: Option<Version>,
    /// A roll of the first changes into a new items object of every item.
    pub rolling: Option<Roll>,
    /// A burst's items could not be stored: the items objects no longer
    /// build the state published, so no document is written (a resume
    /// would take a state for one the items build) until a later burst's
    /// items, which hold this one's, are stored.
    pub stale: bool,
}

/// The changes' first `merged` items objects rolled into a new one of
/// every item, on other threads.
pub(super) struct Roll {
    pub merged: Vec<String>,
    pub task: tokio::task::JoinHandle<Result<String, CheckpointError>>,
}

impl Checkpointing {
    /// The document for `state` (with its layers' `tiers`) and `positions`.
    pub fn document(&self, state: &str, tiers: Vec<u32>, generation: u64, positions: Positions) -> Checkpoint {
        let Positions { shards, childless, at_ms } = positions;
        Checkpoint {
            checkpoint_version: CHECKPOINT_VERSION,
            table: self.table.clone(),
            stream: self.stream.clone(),
            state: state.to_owned(),
            layer_tiers: tiers,
            written_at_ms: now_ms(),
            positions_at_ms: at_ms,
            generation,
            items: self.items.clone(),
            changes: self.changes.iter().map(|(r, _)| r.clone()).collect(),
            shards,
            childless,
        }
    }

    /// Where the newest changes objects are due for a merge (as the layers').
    pub fn merge_due(&self) -> Option<usize> {
        let from = self.changes.len().checked_sub(super::FAN_IN)?;
        let frozen = self.rolling.as_ref().map_or(0, |r| r.merged.len());
        let tier = self.changes[from].0.tier;
        (from >= frozen && self.changes[from..].iter().all(|(r, _)| r.tier == tier)).then_some(from)
    }

    /// Starts rolling every changes object into a new items object of every item.
    pub fn start_roll(&mut self, store: &Store) {
        if self.rolling.is_some() || self.changes.is_empty() {
            return;
        }
        let store = store.clone();
        let (items, table) = (self.items.clone(), self.table.clone());
        let changes: Vec<Arc<ItemSet>> = self.changes.iter().map(|(_, set)| set.clone()).collect();
        let merged = self.changes.iter().map(|(r, _)| r.id.clone()).collect();
        let task = tokio::spawn(async move {
            let bytes = store.get_object(ObjectKind::Items, &items).await?;
            let bytes = tokio::task::spawn_blocking(move || {
                let (_, _, mut all) = decode_items(&items, &bytes)?;
                for set in changes {
                    for (key, item) in set.iter() {
                        match item {
                            Some(item) => all.insert(key.clone(), Some(item.clone())),
                            None => all.remove(key),
                        };
                    }
                }
                Ok::<_, CheckpointError>(encode_items(ItemsKind::All, &table, &all))
            })
            .await
            .map_err(|e| CheckpointError::Unreadable { what: "the roll".into(), why: e.to_string() })??;
            let id = edgeroute_edge::SnapshotId::of(&bytes).to_string();
            store.put_object(ObjectKind::Items, &id, &bytes).await?;
            Ok(id)
        });
        self.rolling = Some(Roll { merged, task });
    }
}

impl super::Publisher<'_> {
    /// After a bootstrap's publish: the items it read become the items
    /// object of every item, and the checkpoint starts from it.
    pub(super) async fn begin_checkpoint(&mut self, table: &str, stream: &str) {
        let all = std::mem::take(&mut self.burst_items);
        let owned_table = table.to_owned();
        let encoded = tokio::task::spawn_blocking(move || encode_items(ItemsKind::All, &owned_table, &all)).await;
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(e) => return tracing::warn!("cannot write the checkpoint ({e}); a restart will scan the table"),
        };
        match put_items(self.store, &bytes).await {
            Ok(items) => {
                let version = self.checkpoint.take().and_then(|c| c.version);
                self.checkpoint = Some(Checkpointing {
                    table: table.to_owned(),
                    stream: stream.to_owned(),
                    items,
                    changes: Vec::new(),
                    version,
                    rolling: None,
                    stale: false,
                });
                self.write_checkpoint().await;
            }
            Err(e) => tracing::warn!("cannot store the checkpoint's items ({e}); a restart will scan the table"),
        }
    }

    /// After a publish that left the store holding the mirror's state: the
    /// burst's items become a changes object, full tiers of them are
    /// merged, and the document names them and `positions`, where each
    /// shard was read to. The positions are taken in only once the items
    /// read up to them are stored.
    pub(super) async fn checkpoint_burst(&mut self, positions: Positions) {
        if self.checkpoint.is_none() || self.state.is_none() {
            return;
        }
        if !self.burst_items.is_empty() {
            let table = self.checkpoint.as_ref().map(|c| c.table.clone()).unwrap_or_default();
            let bytes = encode_items(ItemsKind::Changes, &table, &self.burst_items);
            match put_items(self.store, &bytes).await {
                Ok(id) => {
                    let set = Arc::new(std::mem::take(&mut self.burst_items));
                    let reference = ChangesRef { id, tier: 0, items: set.len() as u64 };
                    let checkpoint = self.checkpoint.as_mut().expect("checked");
                    checkpoint.changes.push((reference, set));
                    checkpoint.stale = false;
                }
                Err(e) => {
                    // The burst stays, for the next checkpoint; until then
                    // no document names a state these items do not build.
                    self.checkpoint.as_mut().expect("checked").stale = true;
                    return tracing::warn!(
                        "cannot store the checkpoint's changes ({e}); trying again after the next change"
                    );
                }
            }
        }
        self.positions = positions;
        while let Some(from) = self.checkpoint.as_ref().and_then(Checkpointing::merge_due) {
            let checkpoint = self.checkpoint.as_mut().expect("checked");
            let mut set = ItemSet::new();
            for (_, part) in &checkpoint.changes[from..] {
                set.extend(part.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let bytes = encode_items(ItemsKind::Changes, &checkpoint.table, &set);
            let tier = checkpoint.changes[from].0.tier + 1;
            match put_items(self.store, &bytes).await {
                Ok(id) => {
                    let checkpoint = self.checkpoint.as_mut().expect("checked");
                    checkpoint.changes.truncate(from);
                    checkpoint.changes.push((ChangesRef { id, tier, items: set.len() as u64 }, Arc::new(set)));
                }
                Err(e) => {
                    tracing::warn!("cannot store merged checkpoint changes ({e})");
                    break;
                }
            }
        }
        self.write_checkpoint().await;
    }

    /// Takes in a finished roll of the changes into a new items object of
    /// every item, and writes the document that names it.
    pub(super) async fn finish_roll(&mut self) {
        let Some(checkpoint) = self.checkpoint.as_mut() else { return };
        if !checkpoint.rolling.as_ref().is_some_and(|r| r.task.is_finished()) {
            return;
        }
        let Roll { merged, task } = checkpoint.rolling.take().expect("checked");
        let id = match task.await {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => return tracing::warn!("cannot roll the checkpoint's changes up ({e}); they stay"),
            Err(e) => return tracing::warn!("cannot roll the checkpoint's changes up ({e}); they stay"),
        };
        let prefix = checkpoint.changes.len() >= merged.len()
            && checkpoint.changes.iter().zip(&merged).all(|((r, _), id)| r.id == *id);
        if !prefix {
            return;
        }
        checkpoint.items = id;
        checkpoint.changes.drain(..merged.len());
        self.write_checkpoint().await;
    }

    /// Writes the document, by compare-and-swap on the version this
    /// watcher wrote last (a document of a newer lease is left alone).
    pub(super) async fn write_checkpoint(&mut self) {
        let (Some(checkpoint), Some(state)) = (self.checkpoint.as_ref(), self.state.as_ref()) else { return };
        if checkpoint.stale {
            return;
        }
        let tiers = state.layers.iter().map(|l| l.tier).collect();
        let bytes = checkpoint.document(&state.pointer.id, tiers, self.generation, self.positions.clone()).to_json();
        let mut expected = checkpoint.version.clone();
        for _ in 0..2 {
            match self.store.replace_checkpoint(bytes.clone(), expected.as_ref()).await {
                Ok(Some(version)) => {
                    self.checkpoint.as_mut().expect("checked").version = Some(version);
                    return;
                }
                Ok(None) => match read(self.store).await {
                    Ok(Some((other, _))) if other.generation > self.generation => {
                        return tracing::warn!(
                            "the checkpoint was written under a newer lease (generation {}); leaving it",
                            other.generation
                        )
                    }
                    Ok(Some((_, version))) => expected = Some(version),
                    Ok(None) => expected = None,
                    // Unreadable: replaced by this watcher's.
                    Err(_) => expected = self.store.read_checkpoint().await.ok().flatten().map(|(_, v)| v),
                },
                Err(e) => {
                    return tracing::warn!("cannot write the checkpoint ({e}); a restart resumes from an older one")
                }
            }
        }
    }
}

/// How long a DynamoDB stream keeps its records, less a margin: a
/// checkpoint older than this may name positions the stream has trimmed
/// without saying so (a shard read from its start).
pub const RESUMABLE_FOR: std::time::Duration = std::time::Duration::from_secs(23 * 3600);

/// Resumes from the store's checkpoint: the mirror rebuilt from its items,
/// the state it names adopted (or, if the store holds another, the mirror
/// published as a base), and the stream followed from its positions.
/// `None` when the table must be scanned instead (said in the log).
pub(super) async fn resume(
    streams: &aws_sdk_dynamodbstreams::Client,
    table: &str,
    stream: &str,
    options: &super::WatchOptions,
    publisher: &mut super::Publisher<'_>,
) -> Result<Option<(edgeroute_compiler::mirror::Mirror, super::Following)>, super::WatchError> {
    use super::{iterator_for, list_shards, Shard};
    use aws_sdk_dynamodbstreams::types::ShardIteratorType;
    use tracing::{info, warn};

    let scan = |why: String| {
        warn!("cannot resume from the checkpoint: {why}; scanning the table");
        Ok(None)
    };
    let (checkpoint, version) = match read(publisher.store).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            info!("no checkpoint in the store yet: scanning the table");
            return Ok(None);
        }
        Err(e) => return scan(e.to_string()),
    };
    if checkpoint.table != table {
        return scan(format!("it is of table {}, not {table}", checkpoint.table));
    }
    if checkpoint.stream != stream {
        return scan(format!("it follows stream {}, and the table's stream is now {stream}", checkpoint.stream));
    }
    let age = std::time::Duration::from_millis(now_ms().saturating_sub(checkpoint.positions_at_ms));
    if age > RESUMABLE_FOR {
        return scan(format!("its positions are {:.1} h old, and the stream keeps 24 h", age.as_secs_f64() / 3600.0));
    }
    let start = std::time::Instant::now();
    // The items: every item at some point, then the changes since.
    let (kind, of, mut all) = match get_items(publisher.store, &checkpoint.items).await {
        Ok(read) => read,
        Err(e) => return scan(e.to_string()),
    };
    if kind != ItemsKind::All || of != table {
        return scan(format!("items {} are not every item of {table}", checkpoint.items));
    }
    let mut changes = Vec::with_capacity(checkpoint.changes.len());
    for reference in &checkpoint.changes {
        let (kind, of, set) = match get_items(publisher.store, &reference.id).await {
            Ok(read) => read,
            Err(e) => return scan(e.to_string()),
        };
        if kind != ItemsKind::Changes || of != table {
            return scan(format!("items {} are not changes of {table}", reference.id));
        }
        for (key, item) in &set {
            match item {
                Some(item) => all.insert(key.clone(), Some(item.clone())),
                None => all.remove(key),
            };
        }
        changes.push((reference.clone(), Arc::new(set)));
    }
    // The stream's positions, before anything is published: a shard gone
    // or trimmed past its position means changes lost to the checkpoint.
    let positions: Vec<(String, Option<Option<String>>)> = checkpoint
        .shards
        .iter()
        .map(|p| {
            let state = match p.state {
                ShardProgress::Reading => Some(None),
                ShardProgress::Waiting => Some(Some(p.parent.clone().unwrap_or_default())),
                ShardProgress::Done => None,
            };
            (p.id.clone(), state)
        })
        .collect();
    let (mut lineage, reading) = crate::lineage::Lineage::restore(&positions, &checkpoint.childless);
    let listed = list_shards(streams, stream, &options.retry).await?;
    for p in checkpoint.shards.iter().filter(|p| p.state != ShardProgress::Done) {
        if !listed.iter().any(|l| l.id == p.id) {
            return scan(format!("shard {} is no longer in the stream (trimmed)", p.id));
        }
    }
    let mut shards = Vec::with_capacity(reading.len());
    let mut replaying = std::collections::HashMap::new();
    for id in reading {
        let position = checkpoint.shards.iter().find(|p| p.id == id).expect("restored from them");
        let (kind, after) = match &position.after {
            Some(seq) => (ShardIteratorType::AfterSequenceNumber, Some(seq.as_str())),
            None => (ShardIteratorType::TrimHorizon, None),
        };
        let iterator = match iterator_for(streams, stream, &id, kind, after, &options.retry).await {
            Ok(iterator) => iterator,
            Err(why) => return scan(format!("shard {id}: {why}")),
        };
        if position.after.is_none() && position.from_latest {
            replaying.insert(id.clone(), 0);
        }
        shards.push(Shard {
            id,
            iterator: Some(iterator),
            last_sequence: position.after.clone(),
            from_latest: position.from_latest,
        });
    }
    let found = lineage.discover(&listed);
    if let Some((shard, parent)) = found.unknown.first() {
        return scan(format!(
            "shard {shard} appeared whose parent ({}) the checkpoint does not know",
            parent.as_deref().unwrap_or("none")
        ));
    }
    // The mirror, and the state the store holds.
    let mut mirror = edgeroute_compiler::mirror::Mirror::new();
    let items: Vec<RawItem<'static>> = all.values().flatten().map(|json| read_written(json)).collect();
    let count = items.len();
    publisher.admit(&mut mirror, items, false).await?;
    mirror.settle();
    publisher.burst_items.clear();
    publisher.checkpoint = Some(Checkpointing {
        table: table.to_owned(),
        stream: stream.to_owned(),
        items: checkpoint.items.clone(),
        changes,
        version: Some(version),
        rolling: None,
        stale: false,
    });
    let store_state = publisher.store.read_pointer().await.map_err(PublishError::from)?.map(|(p, _)| p);
    let forced = store_state.as_ref().filter(|p| p.forced).map(|p| p.id.clone());
    let adopted = match store_state {
        Some(pointer) if pointer.id == checkpoint.state && !pointer.pinned && !pointer.legacy => {
            match crate::state::load(publisher.store, &pointer).await {
                Ok(state) => Some(super::layers::Published::adopt(state, &checkpoint.layer_tiers)),
                Err(e) => {
                    warn!("cannot read the state the checkpoint names ({e}); publishing the table as a new base");
                    None
                }
            }
        }
        _ => None,
    };
    let mut following = super::Following { stream: stream.to_owned(), shards, lineage, replaying };
    following.start(streams, found.start, &options.retry).await?;
    if adopted.is_none() {
        // The store holds another state: this watcher may have died after
        // moving the pointer and before writing the checkpoint, so the
        // store can be ahead of the items. Nothing is published until the
        // stream has been read up to now; then the mirror (the items and
        // every record since) is published as a base.
        for shard in &following.shards {
            following.replaying.entry(shard.id.clone()).or_insert(0);
        }
    }
    // The checkpoint's positions, as old as they were then.
    publisher.positions = Positions { at_ms: checkpoint.positions_at_ms, ..following.positions() };
    match adopted {
        Some(state) => {
            let replayed = match following.replaying.len() {
                0 => String::new(),
                n => format!(", {n} read again from their start"),
            };
            info!(
                "resumed from the checkpoint: {count} items in {:.2} s, state {} ({} layers), {} shard(s) from their \
                 positions{replayed}",
                start.elapsed().as_secs_f64(),
                state.pointer.id,
                state.layers.len(),
                following.shards.len(),
            );
            publisher.last_published = Some(state.pointer.id.clone());
            publisher.status.layers(state.layers.len(), state.layer_totals().0);
            publisher.state = Some(state);
        }
        None if forced.is_some() => {
            info!(
                "resumed the mirror from the checkpoint ({count} items in {:.2} s); the store keeps {}, written with \
                 --force, until the table's next change",
                start.elapsed().as_secs_f64(),
                forced.unwrap_or_default()
            );
        }
        None => {
            info!(
                "resumed the mirror from the checkpoint ({count} items in {:.2} s); the store holds another state than \
                 the checkpoint's {}: the stream is read up to now, and the next change publishes the table as a new \
                 base",
                start.elapsed().as_secs_f64(),
                checkpoint.state
            );
        }
    }
    Ok(Some((mirror, following)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_objects_read_back_and_refuse_damage() {
        let mut items = ItemSet::new();
        items.insert("a.example.com".into(), Some(Arc::from(r#"{"Domain":{"S":"a.example.com"}}"#)));
        items.insert("B.example.com".into(), None);
        items.insert("c\"q.example.com".into(), Some(Arc::from(r#"{"Target":{"N":null}}"#)));
        let bytes = encode_items(ItemsKind::Changes, "arn:t", &items);
        let id = edgeroute_edge::SnapshotId::of(&bytes).to_string();
        let (kind, table, back) = decode_items(&id, &bytes).unwrap();
        assert_eq!((kind, table.as_str(), &back), (ItemsKind::Changes, "arn:t", &items));
        // Another id, a flipped byte, bytes that are no gzip: refused, saying why.
        assert!(decode_items(&"0".repeat(64), &bytes).unwrap_err().to_string().contains("hash to"));
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x20;
        let flipped_id = edgeroute_edge::SnapshotId::of(&flipped).to_string();
        assert!(decode_items(&flipped_id, &flipped).is_err());
        let plain = b"{}\n".to_vec();
        let plain_id = edgeroute_edge::SnapshotId::of(&plain).to_string();
        assert!(decode_items(&plain_id, &plain).unwrap_err().to_string().contains("not gzip"));
    }

    #[test]
    fn a_checkpoint_of_another_version_is_refused() {
        let c = Checkpoint {
            checkpoint_version: CHECKPOINT_VERSION,
            table: "arn:t".into(),
            stream: "arn:s".into(),
            state: "ab".into(),
            layer_tiers: vec![1, 0],
            written_at_ms: 5,
            positions_at_ms: 4,
            generation: 3,
            items: "cd".into(),
            changes: vec![ChangesRef { id: "ef".into(), tier: 0, items: 2 }],
            shards: vec![ShardPosition {
                id: "s1".into(),
                parent: None,
                state: ShardProgress::Reading,
                after: Some("100".into()),
                from_latest: false,
            }],
            childless: vec![],
        };
        assert_eq!(Checkpoint::from_json(&c.to_json(), "x").unwrap(), c);
        let newer =
            String::from_utf8(c.to_json()).unwrap().replace("\"checkpoint_version\": 1", "\"checkpoint_version\": 2");
        assert!(Checkpoint::from_json(newer.as_bytes(), "x").unwrap_err().to_string().contains("checkpoint_version 2"));
        assert!(Checkpoint::from_json(b"{", "x").is_err());
    }
}
