//! [`Pointer`], the document that says which snapshot is live, and
//! [`Version`], what a compare-and-swap of it compares.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// The pointer document, `current.json` (and each entry of `history/`):
/// which snapshot is live, and what it is.
///
/// Publishers and hosts of different versions read each other's pointers,
/// so fields are only ever added, with `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// The snapshot's id: the lowercase hex SHA-256 of its bytes.
    pub id: String,
    /// The snapshot's format version (`docs/snapshot-format.md`).
    pub format_version: u32,
    /// How many routes the snapshot holds.
    pub routes: u64,
    /// The snapshot's size in bytes.
    pub size: u64,
    /// When this pointer was written (RFC 3339, UTC).
    pub created_at: String,
    /// The id this pointer replaced.
    pub previous: Option<String>,
    /// Where the table came from (`dynamodb://routes`, a file, `rollback`).
    pub source: String,
    /// Items left out of the snapshot as invalid.
    #[serde(default)]
    pub skipped: u64,
    /// Set by `rollback`: publishers hold back until `unpin`.
    #[serde(default)]
    pub pinned: bool,
    /// The generation of the store's lease its writer held: a pointer is
    /// never replaced by one of a lower generation (`docs/publishing.md`).
    /// 0 in pointers written before leases.
    #[serde(default)]
    pub generation: u64,
    /// Written by a command that took the lease over from a running
    /// watcher (`--force`): the watcher keeps it until the table changes.
    #[serde(default)]
    pub forced: bool,
}

impl Pointer {
    /// The document as stored: pretty JSON, for people who look at a store.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a pointer serializes")
    }

    /// Parses a stored document; `what` names it in the error.
    pub(crate) fn from_json(bytes: &[u8], what: &str) -> Result<Pointer, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::BadPointer { what: what.to_owned(), why: e.to_string() })
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
mod tests {
    use super::*;

    #[test]
    fn a_pointer_roundtrips_and_old_documents_still_parse() {
        let pointer = Pointer {
            id: "ab".into(),
            format_version: 2,
            routes: 3,
            size: 399,
            created_at: "2026-11-24T09:55:26Z".into(),
            previous: None,
            source: "t".into(),
            skipped: 1,
            pinned: true,
            generation: 0,
            forced: false,
        };
        assert_eq!(Pointer::from_json(&pointer.to_json(), "x").unwrap(), pointer);
        let old =
            br#"{"id":"ab","format_version":2,"routes":3,"size":399,"created_at":"t","previous":null,"source":"t"}"#;
        let parsed = Pointer::from_json(old, "x").unwrap();
        assert!(!parsed.pinned && parsed.skipped == 0);
        let err = Pointer::from_json(b"{}", "current.json").unwrap_err().to_string();
        assert!(err.starts_with("current.json is not a valid pointer document"), "{err}");
    }

    #[test]
    fn a_directory_version_is_the_sha256_of_the_bytes() {
        assert_eq!(Version::of_bytes(b"").0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
