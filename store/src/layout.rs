//! The names of the objects in a store, relative to its root (a directory)
//! or its prefix (S3), spelled here once.
//!
//! ```text
//! snapshots/<id>.snap        a snapshot; <id> is the lowercase hex SHA-256 of its bytes
//! layers/<id>.layer          a layer (a change written on a base); <id> likewise
//! current.json               the pointer: which state (base and layers) is live
//! history/<ns>-<id>.json     every pointer that was ever made current
//! lease.json                 who may write the pointer now, and its generation
//! checkpoint.json            where `edgeroute watch` resumes: its items and stream positions
//! items/<id>.jsonl.gz        a checkpoint's items (all of a table's, or changes); <id> likewise
//! .lock                      (directories only) held while the pointer is swapped
//! ```
//!
//! This is the on-disk and in-bucket format that publishers and hosts of
//! different versions share (`docs/publishing.md`): changing a name here
//! makes existing stores unreadable.

use std::time::SystemTime;

/// The pointer document (a [`Pointer`](crate::Pointer) as JSON). The only
/// object ever replaced, and only by a compare-and-swap on its version.
pub(crate) const POINTER: &str = "current.json";

/// The lease document (a [`Lease`](crate::Lease) as JSON): which writer
/// may move the pointer, until when, and with which generation. Replaced
/// only by a compare-and-swap, as the pointer is.
pub(crate) const LEASE: &str = "lease.json";

/// The watcher's checkpoint document (its JSON is the control plane's):
/// which table and stream it follows, the items objects that rebuild its
/// mirror, and how far it has read each shard. Replaced only by a
/// compare-and-swap, as the pointer is.
pub(crate) const CHECKPOINT: &str = "checkpoint.json";

/// The folder of snapshot objects. Content-addressed: an object is written
/// once under its id and never overwritten, so it can be cached forever.
pub(crate) const SNAPSHOTS: &str = "snapshots";

/// What follows a snapshot's id in its name.
const SNAPSHOT_SUFFIX: &str = ".snap";

/// The folder of layer objects, content-addressed like snapshots.
pub(crate) const LAYERS: &str = "layers";

/// What follows a layer's id in its name.
const LAYER_SUFFIX: &str = ".layer";

/// The folder of a checkpoint's items objects, content-addressed like snapshots.
pub(crate) const ITEMS: &str = "items";

/// What follows an items object's id in its name (gzipped JSON Lines).
const ITEMS_SUFFIX: &str = ".jsonl.gz";

/// The kinds of content-addressed objects a store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A base snapshot, `snapshots/<id>.snap`.
    Snapshot,
    /// A layer, `layers/<id>.layer`.
    Layer,
    /// Items of a watcher's checkpoint, `items/<id>.jsonl.gz`.
    Items,
}

impl ObjectKind {
    /// The folder of this kind's objects.
    pub(crate) fn folder(self) -> &'static str {
        match self {
            ObjectKind::Snapshot => SNAPSHOTS,
            ObjectKind::Layer => LAYERS,
            ObjectKind::Items => ITEMS,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            ObjectKind::Snapshot => SNAPSHOT_SUFFIX,
            ObjectKind::Layer => LAYER_SUFFIX,
            ObjectKind::Items => ITEMS_SUFFIX,
        }
    }

    /// "snapshot", "layer" or "items", for messages.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Layer => "layer",
            ObjectKind::Items => "items",
        }
    }
}

/// The folder of history entries: a copy of every pointer made current,
/// appended after the swap and never changed.
pub(crate) const HISTORY: &str = "history";

/// What follows the pointer's id in a history entry's name.
const HISTORY_SUFFIX: &str = ".json";

/// The width a history entry's timestamp (nanoseconds since 1970) is
/// zero-padded to, so that names sort by time as plain strings (listings
/// are sorted by name, in S3 as in a directory). Nanoseconds since 1970
/// have 19 digits until 2286; 20 is as many as a `u64` has.
const HISTORY_TIME_DIGITS: usize = 20;

/// The lock file of a directory store, locked exclusively around the
/// compare-and-swap of the pointer. Never written to: it exists only to be
/// locked, and is left in place (removing it would race with a locker).
pub(crate) const LOCK: &str = ".lock";

/// What the names of [`write_file_atomically`](crate::write_file_atomically)'s
/// temporary files end with. One left behind by a crash is not an object:
/// listings of a directory store skip such names.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// Whether `bytes` are the snapshot whose id is `id` (the lowercase hex
/// SHA-256 of its bytes): only such bytes may replace a stored copy.
pub(crate) fn is_id_of(id: &str, bytes: &[u8]) -> bool {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(bytes);
    id.len() == 2 * digest.len()
        && digest.iter().zip(id.as_bytes().chunks(2)).all(|(b, hex)| format!("{b:02x}").as_bytes() == hex)
}

/// The name of object `id` of `kind`.
pub(crate) fn object(kind: ObjectKind, id: &str) -> String {
    format!("{}/{id}{}", kind.folder(), kind.suffix())
}

/// The id of the object named `name` in `kind`'s folder, or `None` if
/// `name` is not such an object's.
pub(crate) fn object_id(kind: ObjectKind, name: &str) -> Option<&str> {
    name.strip_suffix(kind.suffix())
}

/// The name of the history entry for a pointer to `id` made current at `at`.
pub(crate) fn history_entry(at: SystemTime, id: &str) -> String {
    // A clock before 1970 is taken as 1970 rather than failing the publish:
    // the entry then merely sorts first.
    let nanos = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{HISTORY}/{nanos:0width$}-{id}{HISTORY_SUFFIX}", width = HISTORY_TIME_DIGITS)
}

/// When the history entry named `name` (within `history/`) was made
/// current, as its name says.
pub fn history_entry_time(name: &str) -> Option<SystemTime> {
    let nanos: u64 = name.get(..HISTORY_TIME_DIGITS)?.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names() {
        assert_eq!(object(ObjectKind::Snapshot, "ab12"), "snapshots/ab12.snap");
        assert_eq!(object(ObjectKind::Layer, "ab12"), "layers/ab12.layer");
        assert_eq!(object_id(ObjectKind::Snapshot, "ab12.snap"), Some("ab12"));
        assert_eq!(object_id(ObjectKind::Layer, "ab12.layer"), Some("ab12"));
        assert_eq!(object_id(ObjectKind::Snapshot, "ab12.snap.123.9f.tmp"), None);
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        assert_eq!(history_entry(at, "ab12"), "history/01764000000123456789-ab12.json");
        assert_eq!(history_entry_time("01764000000123456789-ab12.json"), Some(at));
        assert_eq!(history_entry_time("x.json"), None);
    }

    #[test]
    fn history_entries_sort_by_time() {
        let early = SystemTime::UNIX_EPOCH + Duration::from_nanos(999_999_999);
        let late = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        // "ff" > "00" would win if the times were not padded to one width.
        assert!(history_entry(early, "ff") < history_entry(late, "00"));
    }
}
