//! Which shards of a DynamoDB Stream the watcher reads, and when.
//!
//! The records of one key are ordered only along a shard's lineage: a
//! shard's records come before its children's (a shard splits into
//! children when it closes). So the watcher follows the lineage, not the
//! list of shards:
//!
//! - at bootstrap every listed shard is *known*. A closed one is history
//!   the Scan already holds and is never read; an open one is read from
//!   `LATEST` (the position taken before the Scan), unless its parent is
//!   open too (a split the listing caught halfway), then it waits as a
//!   child does;
//! - afterwards a new shard is read only if it is the child of a known
//!   shard, from `TRIM_HORIZON`, and only once its parent has been read to
//!   its end. Records of a child read again after the Scan are harmless:
//!   they are replayed in order with everything after them on that lineage;
//! - a new shard whose parent is unknown has a history the watcher cannot
//!   order: [`Lineage::discover`] reports it, and the watcher bootstraps
//!   again rather than guess.
//!
//! This module only decides; the watcher (`watch.rs`) makes the calls.

use std::collections::HashMap;

/// A shard as DescribeStream lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedShard {
    pub id: String,
    pub parent: Option<String>,
    /// It has an ending sequence number: no new records will come.
    pub closed: bool,
}

/// Where a known shard is in its life, as the watcher reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ShardState {
    /// Being read.
    Reading,
    /// Waiting for its parent to be read to its end.
    Waiting { parent: String },
    /// Read to its end, or closed before the watcher started.
    Done,
}

/// What the watcher should start reading after a listing or a shard's end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Shards to read now, from `TRIM_HORIZON`.
    pub start: Vec<String>,
    /// New shards whose parent the watcher does not know: `(shard, parent)`.
    pub unknown: Vec<(String, Option<String>)>,
}

/// The shards the watcher knows, and the state of each.
#[derive(Clone, Debug, Default)]
pub struct Lineage {
    shards: HashMap<String, ShardState>,
    /// Shards read to their end whose children no listing has shown yet.
    childless: Vec<String>,
}

impl Lineage {
    /// The lineage at bootstrap, and the shards to read from `LATEST` now.
    pub fn bootstrap(listed: &[ListedShard]) -> (Lineage, Vec<String>) {
        let open: HashMap<&str, bool> = listed.iter().map(|s| (s.id.as_str(), !s.closed)).collect();
        let mut lineage = Lineage::default();
        let mut latest = Vec::new();
        for shard in listed {
            let state = match &shard.parent {
                _ if shard.closed => ShardState::Done,
                Some(parent) if open.get(parent.as_str()) == Some(&true) => {
                    ShardState::Waiting { parent: parent.clone() }
                }
                _ => {
                    latest.push(shard.id.clone());
                    ShardState::Reading
                }
            };
            lineage.shards.insert(shard.id.clone(), state);
        }
        (lineage, latest)
    }

    /// Takes in a new listing: every shard not known before is either a
    /// child of a known shard (read now if its parent is done, else later)
    /// or of unknown lineage.
    pub fn discover(&mut self, listed: &[ListedShard]) -> Discovery {
        let mut discovery = Discovery::default();
        // Parents first: a listing may hold a child and its grandchild, both new.
        let mut new: Vec<&ListedShard> = listed.iter().filter(|s| !self.shards.contains_key(&s.id)).collect();
        while !new.is_empty() {
            let before = new.len();
            new.retain(|shard| {
                let Some(parent) = shard.parent.as_ref().filter(|p| self.shards.contains_key(*p)) else {
                    return true;
                };
                self.childless.retain(|id| id != parent);
                let state = match self.shards[parent] {
                    ShardState::Done => {
                        discovery.start.push(shard.id.clone());
                        ShardState::Reading
                    }
                    _ => ShardState::Waiting { parent: parent.clone() },
                };
                self.shards.insert(shard.id.clone(), state);
                false
            });
            if new.len() == before {
                break;
            }
        }
        discovery.unknown = new.into_iter().map(|s| (s.id.clone(), s.parent.clone())).collect();
        discovery
    }

    /// Records that `id` was read to its end; returns its children that
    /// may be read now, from `TRIM_HORIZON`.
    pub fn finished(&mut self, id: &str) -> Vec<String> {
        self.shards.insert(id.to_owned(), ShardState::Done);
        let mut ready: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, state)| matches!(state, ShardState::Waiting { parent } if parent == id))
            .map(|(child, _)| child.clone())
            .collect();
        ready.sort_unstable();
        if ready.is_empty() {
            self.childless.push(id.to_owned());
        }
        for child in &ready {
            self.shards.insert(child.clone(), ShardState::Reading);
        }
        ready
    }

    /// Every known shard: its id, whether it is being read (`Some(None)`),
    /// waits for its parent (`Some(Some(parent))`) or is done (`None`), by
    /// id; and the shards done whose children no listing has shown. What a
    /// checkpoint keeps to [`restore`](Self::restore) it.
    #[allow(clippy::type_complexity)]
    pub fn export(&self) -> (Vec<(String, Option<Option<String>>)>, Vec<String>) {
        let mut shards: Vec<(String, Option<Option<String>>)> = self
            .shards
            .iter()
            .map(|(id, state)| {
                let state = match state {
                    ShardState::Reading => Some(None),
                    ShardState::Waiting { parent } => Some(Some(parent.clone())),
                    ShardState::Done => None,
                };
                (id.clone(), state)
            })
            .collect();
        shards.sort_unstable();
        (shards, self.childless.clone())
    }

    /// The lineage [`export`](Self::export) gave, and the shards to read now.
    pub fn restore(shards: &[(String, Option<Option<String>>)], childless: &[String]) -> (Lineage, Vec<String>) {
        let mut lineage = Lineage { shards: HashMap::new(), childless: childless.to_vec() };
        let mut reading = Vec::new();
        for (id, state) in shards {
            let state = match state {
                Some(None) => {
                    reading.push(id.clone());
                    ShardState::Reading
                }
                Some(Some(parent)) => ShardState::Waiting { parent: parent.clone() },
                None => ShardState::Done,
            };
            lineage.shards.insert(id.clone(), state);
        }
        (lineage, reading)
    }

    /// Whether a shard this watcher read to its end has no known child
    /// yet (the listing has not shown them): the watcher lists sooner.
    pub fn awaits_children(&self) -> bool {
        !self.childless.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>, closed: bool) -> ListedShard {
        ListedShard { id: id.into(), parent: parent.map(Into::into), closed }
    }

    #[test]
    fn at_bootstrap_closed_shards_are_history_and_open_ones_are_read_from_latest() {
        let listed = [shard("old", None, true), shard("live", Some("old"), false), shard("other", None, false)];
        let (mut lineage, latest) = Lineage::bootstrap(&listed);
        assert_eq!(latest, ["live", "other"]);
        // Listing the same shards again starts nothing.
        assert_eq!(lineage.discover(&listed), Discovery::default());
    }

    #[test]
    fn a_child_is_read_only_after_its_parent_ends() {
        let (mut lineage, _) = Lineage::bootstrap(&[shard("p", None, false)]);
        let listed = [shard("p", None, true), shard("a", Some("p"), false), shard("b", Some("p"), false)];
        assert_eq!(lineage.discover(&listed), Discovery::default(), "the parent is still being read");
        assert_eq!(lineage.finished("p"), ["a", "b"]);
        assert!(!lineage.awaits_children());
        // A child listed after its parent ended starts at once; a grandchild waits for it.
        let listed = [shard("a", Some("p"), true), shard("c", Some("a"), false), shard("d", Some("c"), false)];
        assert_eq!(lineage.discover(&listed), Discovery::default());
        assert_eq!(lineage.finished("a"), ["c"]);
        assert_eq!(lineage.finished("c"), ["d"]);
        let (mut lineage, _) = Lineage::bootstrap(&[shard("p", None, false)]);
        assert!(lineage.finished("p").is_empty());
        assert!(lineage.awaits_children(), "p ended and no listing has shown its children");
        let listed = [shard("c", Some("p"), false), shard("g", Some("c"), false)];
        assert_eq!(lineage.discover(&listed), Discovery { start: vec!["c".into()], unknown: vec![] });
        assert!(!lineage.awaits_children());
    }

    #[test]
    fn an_exported_lineage_restores_to_the_same_decisions() {
        let (mut lineage, _) = Lineage::bootstrap(&[shard("p", None, false), shard("q", None, true)]);
        let listed = [shard("p", None, true), shard("a", Some("p"), false), shard("b", Some("p"), false)];
        lineage.discover(&listed);
        let (shards, childless) = lineage.export();
        let (mut restored, reading) = Lineage::restore(&shards, &childless);
        assert_eq!(reading, ["p"]);
        assert_eq!(restored.export(), lineage.export());
        assert_eq!(restored.finished("p"), ["a", "b"]);
        assert_eq!(restored.discover(&listed), Discovery::default());
    }

    #[test]
    fn a_split_caught_halfway_at_bootstrap_waits_for_the_parent() {
        let (mut lineage, latest) = Lineage::bootstrap(&[shard("p", None, false), shard("c", Some("p"), false)]);
        assert_eq!(latest, ["p"]);
        assert_eq!(lineage.finished("p"), ["c"]);
    }

    #[test]
    fn a_shard_of_unknown_lineage_is_reported() {
        let (mut lineage, _) = Lineage::bootstrap(&[shard("p", None, false)]);
        let found = lineage.discover(&[shard("stranger", Some("gone"), false), shard("root", None, false)]);
        assert_eq!(found.start, Vec::<String>::new());
        assert_eq!(found.unknown, [("stranger".into(), Some("gone".into())), ("root".into(), None)]);
    }
}
