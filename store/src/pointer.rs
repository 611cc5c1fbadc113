//! [`Pointer`], the document that says which snapshot is live, and
//! [`Version`], what a compare-and-swap of it compares.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// The pointer document, `current.json` (and each entry of `history/`):
/// which *state* is live, a base snapshot and the layers on it, oldest
/// first (`docs/publishing.md`, "The pointer").
///
/// It is stored in the form of pointer version 2, which readers of the
/// form before layers refuse (it has no top-level `id`): an old host or a
/// deployed Lambda must never serve a base without its layers'
/// tombstones. Pointers of that older form still parse, as states without
/// layers marked [`legacy`](Self::legacy), so that hosts can be upgraded
/// first; writers refuse to replace one until `edgeroute store migrate`.
///
/// Fields are only ever added, with defaults, within one pointer version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer {
    /// The state's id: the SHA-256 of its base's id and its layers' ids;
    /// the base's id when it has no layers.
    pub id: String,
    /// The base snapshot.
    pub base: BaseRef,
    /// The layers on the base, oldest first.
    pub layers: Vec<LayerRef>,
    /// How many routes the state holds, when its writer knew: always for a
    /// state without layers; `edgeroute apply` writes a layer without
    /// reading the base, and so leaves it unknown (`None`), which
    /// [`routes_estimate`](Self::routes_estimate) then approximates.
    pub routes: Option<u64>,
    /// When this pointer was written (RFC 3339, UTC).
    pub created_at: String,
    /// The id of the state this pointer replaced.
    pub previous: Option<String>,
    /// Where the change came from (`dynamodb://routes`, a file, `rollback`).
    pub source: String,
    /// Items left out as invalid.
    pub skipped: u64,
    /// Set by `rollback`: publishers hold back until `unpin`.
    pub pinned: bool,
    /// The generation of the store's lease its writer held: a pointer is
    /// never replaced by one of a lower generation (`docs/publishing.md`).
    /// 0 in pointers written before leases.
    pub generation: u64,
    /// Written by a command that took the lease over from a running
    /// watcher (`--force`): the watcher keeps it until the table changes.
    pub forced: bool,
    /// Read from a pointer of the form before layers (pointer version 1).
    /// Never written: every pointer is written in version 2.
    pub legacy: bool,
}

/// A state's base snapshot, as the pointer names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRef {
    /// The snapshot's id: the lowercase hex SHA-256 of its bytes.
    pub id: String,
    /// Its format version (`docs/snapshot-format.md`).
    pub format_version: u32,
    /// How many routes it holds.
    pub routes: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// One layer of a state, as the pointer names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The layer's id: the lowercase hex SHA-256 of its bytes.
    pub id: String,
    /// Routes it adds or replaces.
    pub upserts: u64,
    /// Keys it deletes (tombstones).
    pub deletes: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// The pointer version this build writes.
pub const POINTER_VERSION: u32 = 2;

/// Version 2 as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    pointer_version: u32,
    state: String,
    base: BaseRef,
    #[serde(default)]
    layers: Vec<LayerRef>,
    routes: Option<u64>,
    created_at: String,
    previous: Option<String>,
    source: String,
    #[serde(default)]
    skipped: u64,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    generation: u64,
    #[serde(default)]
    forced: bool,
}

/// Version 1, the form before layers, as older publishers stored it.
#[derive(Deserialize)]
struct StoredV1 {
    id: String,
    format_version: u32,
    routes: u64,
    size: u64,
    created_at: String,
    previous: Option<String>,
    source: String,
    #[serde(default)]
    skipped: u64,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    generation: u64,
    #[serde(default)]
    forced: bool,
}

impl Pointer {
    /// The layers' ids, oldest first.
    pub fn layer_ids(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|l| l.id.as_str())
    }

    /// The state's routes if known, else the base's plus the layers'
    /// upserts minus their deletes (exact when every upsert adds a name and
    /// every delete removes one).
    pub fn routes_estimate(&self) -> u64 {
        self.routes.unwrap_or_else(|| {
            let up: u64 = self.layers.iter().map(|l| l.upserts).sum();
            let down: u64 = self.layers.iter().map(|l| l.deletes).sum();
            (self.base.routes + up).saturating_sub(down)
        })
    }

    /// The fewest routes the state can hold: its count if known, else the
    /// base's minus every delete of its layers (each may have removed a
    /// route; an upsert may only have replaced one). What the drop guard
    /// compares with, so that replacing names never makes a later publish
    /// of the same table look like a drop.
    pub fn routes_lower_bound(&self) -> u64 {
        self.routes.unwrap_or_else(|| self.base.routes.saturating_sub(self.layers.iter().map(|l| l.deletes).sum()))
    }

    /// A state without layers: its base, named by the base's id.
    pub fn of_base(base: BaseRef) -> Pointer {
        Pointer {
            id: base.id.clone(),
            routes: Some(base.routes),
            base,
            layers: Vec::new(),
            created_at: String::new(),
            previous: None,
            source: String::new(),
            skipped: 0,
            pinned: false,
            generation: 0,
            forced: false,
            legacy: false,
        }
    }

    /// The bytes a host fetches for this state from nothing: the base's
    /// and every layer's.
    pub fn total_size(&self) -> u64 {
        self.base.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// The document as stored: pretty JSON, for people who look at a store.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.stored()).expect("a pointer serializes")
    }

    fn stored(&self) -> Stored {
        Stored {
            pointer_version: POINTER_VERSION,
            state: self.id.clone(),
            base: self.base.clone(),
            layers: self.layers.clone(),
            routes: self.routes,
            created_at: self.created_at.clone(),
            previous: self.previous.clone(),
            source: self.source.clone(),
            skipped: self.skipped,
            pinned: self.pinned,
            generation: self.generation,
            forced: self.forced,
        }
    }

    /// Parses a stored document of either version; `what` names it in the error.
    pub(crate) fn from_json(bytes: &[u8], what: &str) -> Result<Pointer, StoreError> {
        let bad = |why: String| StoreError::BadPointer { what: what.to_owned(), why };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        Pointer::from_value(value).map_err(bad)
    }

    fn from_value(value: serde_json::Value) -> Result<Pointer, String> {
        match value.get("pointer_version").map(|v| v.as_u64()) {
            None => {
                let v1: StoredV1 = serde_json::from_value(value).map_err(|e| e.to_string())?;
                Ok(Pointer {
                    base: BaseRef {
                        id: v1.id.clone(),
                        format_version: v1.format_version,
                        routes: v1.routes,
                        size: v1.size,
                    },
                    id: v1.id,
                    layers: Vec::new(),
                    routes: Some(v1.routes),
                    created_at: v1.created_at,
                    previous: v1.previous,
                    source: v1.source,
                    skipped: v1.skipped,
                    pinned: v1.pinned,
                    generation: v1.generation,
                    forced: v1.forced,
                    legacy: true,
                })
            }
            Some(Some(2)) => {
                let v2: Stored = serde_json::from_value(value).map_err(|e| e.to_string())?;
                Ok(Pointer {
                    id: v2.state,
                    base: v2.base,
                    layers: v2.layers,
                    routes: v2.routes,
                    created_at: v2.created_at,
                    previous: v2.previous,
                    source: v2.source,
                    skipped: v2.skipped,
                    pinned: v2.pinned,
                    generation: v2.generation,
                    forced: v2.forced,
                    legacy: false,
                })
            }
            Some(other) => Err(format!(
                "pointer version {} is not one this build reads (1 and {POINTER_VERSION}): \
                 a newer edgeroute wrote it; upgrade this one",
                other.map_or_else(|| "(not a number)".to_owned(), |v| v.to_string())
            )),
        }
    }
}

impl Serialize for Pointer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.stored().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Pointer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pointer, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Pointer::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// The version of a pointer, for the compare-and-swap: its ETag in S3, the
/// SHA-256 of its bytes in a directory.
///
/// Opaque: versions are only compared, and only with versions read from
/// the same store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(String);

impl Version {
    /// The version of a directory store's pointer: the lowercase hex SHA-256
    /// of its bytes (a directory has no ETag, and an mtime may not change
    /// when two writes land within its resolution).
    pub(crate) fn of_bytes(bytes: &[u8]) -> Version {
        Version(Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The version of an S3 store's pointer: its ETag, as S3 sent it
    /// (quotes included), to be sent back in `If-Match`/`If-None-Match`.
    pub(crate) fn from_etag(etag: String) -> Version {
        Version(etag)
    }

    /// The ETag of an S3 store's pointer.
    pub(crate) fn as_etag(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn pointer(id: &str, previous: Option<&str>) -> Pointer {
        Pointer {
            id: id.into(),
            base: BaseRef { id: id.into(), format_version: 2, routes: 3, size: 399 },
            layers: vec![],
            routes: Some(3),
            created_at: "2026-11-24T09:55:26Z".into(),
            previous: previous.map(str::to_owned),
            source: "t".into(),
            skipped: 1,
            pinned: true,
            generation: 0,
            forced: false,
            legacy: false,
        }
    }

    #[test]
    fn a_pointer_roundtrips_and_old_documents_still_parse() {
        let mut pointer = pointer("ab", None);
        pointer.layers.push(LayerRef { id: "cd".into(), upserts: 1, deletes: 2, size: 120 });
        pointer.id = "ef".into();
        assert_eq!(Pointer::from_json(&pointer.to_json(), "x").unwrap(), pointer);
        let json: serde_json::Value = serde_json::from_slice(&pointer.to_json()).unwrap();
        assert_eq!(json["pointer_version"], 2);
        assert!(json.get("id").is_none(), "readers before layers must refuse it");
        let old =
            br#"{"id":"ab","format_version":2,"routes":3,"size":399,"created_at":"t","previous":null,"source":"t"}"#;
        let parsed = Pointer::from_json(old, "x").unwrap();
        assert!(!parsed.pinned && parsed.skipped == 0 && parsed.legacy);
        assert_eq!((parsed.id.as_str(), parsed.base.id.as_str(), parsed.base.size), ("ab", "ab", 399));
        let err = Pointer::from_json(b"{}", "current.json").unwrap_err().to_string();
        assert!(err.starts_with("current.json is not a valid pointer document"), "{err}");
        let future = br#"{"pointer_version":3,"state":"ab"}"#;
        let err = Pointer::from_json(future, "current.json").unwrap_err().to_string();
        assert!(err.contains("pointer version 3 is not one this build reads"), "{err}");
    }

    #[test]
    fn a_directory_version_is_the_sha256_of_the_bytes() {
        assert_eq!(Version::of_bytes(b"").0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
