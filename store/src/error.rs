//! [`StoreError`]: why a store operation failed.

use std::path::PathBuf;

/// Why a store operation failed.
///
/// Each variant's message names the file or object involved, so that it can
/// be shown to a person as it is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A directory store's file could not be read, written, listed or locked.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A directory store's lock was held by another writer for longer than
    /// a writer ever holds it: that writer has stalled. Nothing was written.
    #[error(
        "{path} is locked by another writer for {waited:?} already: an edgeroute process that stalled \
         holding it (stopped, or on a hung file system); nothing was written, try again (the lock is \
         released when that process goes on or exits)"
    )]
    Locked { path: PathBuf, waited: std::time::Duration },
    /// An S3 request failed. `why` is one line for a person (see
    /// [`describe_sdk_error`](crate::describe_sdk_error)). The SDK's error is
    /// not kept as a source: `why` already says what it would, and the texts
    /// of its chain (`dispatch failure`, `io error`) would only add noise to
    /// a reporter that prints sources.
    #[error("S3 {op} s3://{bucket}/{key}: {why}")]
    S3 { op: &'static str, bucket: String, key: String, why: String },
    /// The pointer or a history entry is not the JSON of a
    /// [`Pointer`](crate::Pointer). `what` is its path, URL or name.
    #[error("{what} is not a valid pointer document: {why}")]
    BadPointer { what: String, why: String },
    /// The lease document is not a [`Lease`](crate::Lease).
    #[error("{what} is not a valid lease document: {why} (delete it to let writers take a new lease)")]
    BadLease { what: String, why: String },
    /// The snapshot object with this id is missing (never stored, or pruned).
    #[error("snapshot {id} is not in the store")]
    NoSnapshot { id: String },
    /// The layer object with this id is missing (never stored, or pruned).
    #[error("layer {id} is not in the store")]
    NoLayer { id: String },
    /// The items object of a watcher's checkpoint with this id is missing.
    #[error("checkpoint items {id} are not in the store")]
    NoItems { id: String },
    /// A directory store opened to be read does not exist: never created by
    /// a publish, or a typo. Reading never creates a store.
    #[error("no store at {path}: publish to it first, or check the path")]
    NoStore { path: PathBuf },
}

/// Wraps an I/O error on `path`, for `map_err`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

impl StoreError {
    /// The error for a missing object of `kind`.
    pub(crate) fn missing(kind: crate::ObjectKind, id: String) -> StoreError {
        match kind {
            crate::ObjectKind::Snapshot => StoreError::NoSnapshot { id },
            crate::ObjectKind::Layer => StoreError::NoLayer { id },
            crate::ObjectKind::Items => StoreError::NoItems { id },
        }
    }
}
