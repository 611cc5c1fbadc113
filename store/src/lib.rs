//! `edgeroute-store` owns snapshot stores: where `edgeroute publish` puts
//! snapshots and the pointer to the current one, and where hosts
//! (`edgeroute-host serve`) find them (`docs/publishing.md`). It links the
//! S3 SDK only, so that hosts can read stores without the DynamoDB SDK.
//!
//! A store holds content-addressed objects `snapshots/<id>.snap` (written
//! once, never overwritten), the pointer `current.json` (a [`Pointer`]),
//! replaced only by a compare-and-swap on its [`Version`], and an
//! append-only `history/` of every pointer it ever had (the names are in
//! one place, the private `layout` module). Since objects never change and
//! the pointer changes only whole, a reader needs no lock: it reads the
//! pointer, then the object it names.
//!
//! Two forms, both a [`Store`], opened from a [`StoreLocation`]:
//!
//! - a directory (`dir:PATH`): the swap is a write, fsync and rename
//!   ([`write_file_atomically`]) under an exclusive lock on `PATH/.lock`;
//!   its file system calls run on Tokio's blocking pool, so the methods
//!   must be awaited within a Tokio runtime;
//! - S3 (`s3://BUCKET/PREFIX`): the swap is a conditional PUT on the
//!   pointer's ETag, `If-None-Match: *` for the first one. Its errors are
//!   described for people by [`describe_sdk_error`].
//!
//! A swap that loses to another writer is not an error: [`Store::replace_pointer`]
//! returns false, and the publisher re-reads the pointer and tries again.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod dir;
mod error;
mod fs;
mod layout;
mod lease;
mod location;
mod pointer;
mod s3;
mod sdk_error;

pub use error::StoreError;
pub use fs::{write_file_atomically, write_file_atomically_with};
pub use layout::{history_entry_time, ObjectKind};
pub use lease::{Lease, LeaseRole};
pub use location::StoreLocation;
pub use pointer::{BaseRef, LayerRef, Pointer, Version, POINTER_VERSION};
pub use s3::s3_client;
pub use sdk_error::{describe_sdk_error, ResponseStatus};

use dir::DirStore;
use s3::S3Store;

/// A store, opened. A clone shares the S3 client (cheap).
#[derive(Clone, Debug)]
pub enum Store {
    /// A directory store's root.
    Dir(PathBuf),
    /// An S3 store: its client, bucket and key prefix (without leading or
    /// trailing slashes; empty for the bucket's root).
    S3 { client: aws_sdk_s3::Client, bucket: String, prefix: String },
}

/// The backend a [`Store`] dispatches to, borrowed from it.
#[derive(Clone, Copy, Debug)]
enum Backend<'a> {
    Dir(DirStore<'a>),
    S3(S3Store<'a>),
}

impl Store {
    /// Opens a store; a directory is created if missing. S3 uses path-style
    /// addressing when an endpoint URL is configured (local servers).
    ///
    /// # Panics
    ///
    /// If `location` is in S3 and `config` is `None`.
    pub fn open(location: &StoreLocation, config: Option<&aws_config::SdkConfig>) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Dir(dir) => {
                DirStore::create(dir)?;
                Ok(Store::Dir(dir.clone()))
            }
            StoreLocation::S3 { bucket, prefix } => {
                let config = config.expect("an S3 store needs an AWS configuration");
                Ok(Store::S3 { client: s3_client(config), bucket: bucket.clone(), prefix: prefix.clone() })
            }
        }
    }

    /// Opens a store that must exist already, to read it (`history`, a
    /// host following it): a directory that is not there is
    /// [`StoreError::NoStore`], and nothing is created. An S3 store is
    /// opened as [`open`](Self::open) does; reads never create anything there.
    pub fn open_existing(
        location: &StoreLocation,
        config: Option<&aws_config::SdkConfig>,
    ) -> Result<Store, StoreError> {
        if let StoreLocation::Dir(dir) = location {
            if !dir.is_dir() {
                return Err(StoreError::NoStore { path: dir.clone() });
            }
        }
        Store::open(location, config)
    }

    fn backend(&self) -> Backend<'_> {
        match self {
            Store::Dir(root) => Backend::Dir(DirStore::new(root)),
            Store::S3 { client, bucket, prefix } => Backend::S3(S3Store { client, bucket, prefix }),
        }
    }

    /// The pointer's file in a directory store: what a follower watches
    /// for changes (and nothing else in the folder).
    pub fn pointer_file(&self) -> Option<PathBuf> {
        self.dir().map(|dir| dir.join(layout::POINTER))
    }

    /// The folder of a directory store.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Store::Dir(dir) => Some(dir),
            Store::S3 { .. } => None,
        }
    }

    /// The current pointer and its version, or `None` before the first publish.
    pub async fn read_pointer(&self) -> Result<Option<(Pointer, Version)>, StoreError> {
        self.read_pointer_unless(None).await
    }

    /// The pointer, or `None` if there is none or (in S3, by a conditional
    /// GET) its version is still `known`.
    async fn read_pointer_unless(&self, known: Option<&Version>) -> Result<Option<(Pointer, Version)>, StoreError> {
        let Some((bytes, version, what)) = self.read_document(layout::POINTER, known).await? else { return Ok(None) };
        Ok(Some((Pointer::from_json(&bytes, &what)?, version)))
    }

    /// A replaceable document's bytes, version and name for errors.
    async fn read_document(
        &self,
        name: &'static str,
        known: Option<&Version>,
    ) -> Result<Option<(Vec<u8>, Version, String)>, StoreError> {
        match self.backend() {
            Backend::Dir(dir) => {
                Ok(dir.read_document(name).await?.map(|(bytes, version)| (bytes, version, self.root_path(name))))
            }
            Backend::S3(s3) => s3.read_document(name, known).await,
        }
    }

    /// Replaces a document if it is still at `expected`.
    async fn replace_document(
        &self,
        name: &'static str,
        bytes: Vec<u8>,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StoreError> {
        match self.backend() {
            Backend::Dir(dir) => dir.replace_document(name, bytes, expected.cloned()).await,
            Backend::S3(s3) => s3.replace_document(name, bytes, expected).await,
        }
    }

    /// How a directory store's file is named in errors.
    fn root_path(&self, name: &str) -> String {
        self.dir().map_or_else(|| name.to_owned(), |dir| dir.join(name).display().to_string())
    }

    /// The store's lease and its version, or `None` if no writer ever took one.
    pub async fn read_lease(&self) -> Result<Option<(Lease, Version)>, StoreError> {
        let Some((bytes, version, what)) = self.read_document(layout::LEASE, None).await? else { return Ok(None) };
        Ok(Some((Lease::from_json(&bytes, &what)?, version)))
    }

    /// Replaces the lease if it is still at `expected` (`None`: there is
    /// none yet), and returns its new version; `None`, writing nothing,
    /// when another writer got there first.
    pub async fn replace_lease(&self, new: &Lease, expected: Option<&Version>) -> Result<Option<Version>, StoreError> {
        self.replace_document(layout::LEASE, new.to_json(), expected).await
    }

    /// The watcher's checkpoint document and its version, or `None` if no
    /// watcher wrote one (its JSON is the watcher's business).
    pub async fn read_checkpoint(&self) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
        Ok(self.read_document(layout::CHECKPOINT, None).await?.map(|(bytes, version, _)| (bytes, version)))
    }

    /// Replaces the checkpoint if it is still at `expected` (`None`: there
    /// is none yet), and returns its new version; `None`, writing nothing,
    /// when another writer got there first.
    pub async fn replace_checkpoint(
        &self,
        bytes: Vec<u8>,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StoreError> {
        self.replace_document(layout::CHECKPOINT, bytes, expected).await
    }

    /// Where the checkpoint is, for messages.
    pub fn checkpoint_name(&self) -> String {
        self.root_path(layout::CHECKPOINT)
    }

    /// The pointer if it differs from the version `known` (in S3 a
    /// conditional GET with `If-None-Match`, so an unchanged pointer costs
    /// a 304 and no body); `Ok(None)` if it is unchanged or absent.
    pub async fn read_pointer_if_changed(
        &self,
        known: Option<&Version>,
    ) -> Result<Option<(Pointer, Version)>, StoreError> {
        // A directory's pointer is small and local: read it, and compare.
        Ok(self.read_pointer_unless(known).await?.filter(|(_, v)| Some(v) != known))
    }

    /// Replaces the pointer if it is still at `expected` (`None`: there is
    /// none yet). Returns false, writing nothing, when another writer got
    /// there first.
    pub async fn replace_pointer(&self, new: &Pointer, expected: Option<&Version>) -> Result<bool, StoreError> {
        Ok(self.replace_document(layout::POINTER, new.to_json(), expected).await?.is_some())
    }

    /// Stores a snapshot under its id. A copy already stored under `id` is
    /// kept if it is these bytes, and replaced if it is not (damaged): the
    /// store never keeps an object that is not its id.
    pub async fn put_snapshot(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_object(ObjectKind::Snapshot, id, bytes).await
    }

    /// A snapshot's bytes, as stored (the caller checks them), or
    /// [`StoreError::NoSnapshot`].
    pub async fn get_snapshot(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        self.get_object(ObjectKind::Snapshot, id).await
    }

    /// Stores an object of `kind` under its id, as
    /// [`put_snapshot`](Self::put_snapshot) does a snapshot.
    pub async fn put_object(&self, kind: ObjectKind, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self.backend() {
            Backend::Dir(dir) => dir.put_object(kind, id, bytes).await,
            Backend::S3(s3) => s3.put_object(kind, id, bytes).await,
        }
    }

    /// An object's bytes, as stored (the caller checks them), or
    /// [`StoreError::NoSnapshot`] / [`StoreError::NoLayer`].
    pub async fn get_object(&self, kind: ObjectKind, id: &str) -> Result<Vec<u8>, StoreError> {
        match self.backend() {
            Backend::Dir(dir) => dir.get_object(kind, id).await,
            Backend::S3(s3) => s3.get_object(kind, id).await,
        }
    }

    /// Writes an object's bytes into `out` as they arrive (never all of them
    /// in memory at once), or [`StoreError::NoSnapshot`] /
    /// [`StoreError::NoLayer`]; returns `out`. The caller checks them.
    pub async fn get_object_into<W: std::io::Write + Send + 'static>(
        &self,
        kind: ObjectKind,
        id: &str,
        out: W,
    ) -> Result<W, StoreError> {
        match self.backend() {
            Backend::Dir(dir) => dir.get_object_into(kind, id, out).await,
            Backend::S3(s3) => s3.get_object_into(kind, id, out).await,
        }
    }

    /// Records a pointer that was made current in `history/`, under a name
    /// that sorts by time.
    pub async fn append_history(&self, pointer: &Pointer) -> Result<(), StoreError> {
        let name = layout::history_entry(SystemTime::now(), &pointer.id);
        let bytes = pointer.to_json();
        match self.backend() {
            Backend::Dir(dir) => dir.put_history(name, bytes).await,
            Backend::S3(s3) => s3.put_history(name, bytes).await,
        }
    }

    /// Every pointer the store has had, oldest first.
    pub async fn history(&self) -> Result<Vec<Pointer>, StoreError> {
        let entries = match self.backend() {
            Backend::Dir(dir) => dir.read_folder(layout::HISTORY).await?,
            Backend::S3(s3) => s3.read_folder(layout::HISTORY).await?,
        };
        entries.iter().map(|(name, bytes)| Pointer::from_json(bytes, name)).collect()
    }

    /// The names of the history entries (within `history/`), oldest first:
    /// a listing, no entry read.
    pub async fn history_names(&self) -> Result<Vec<String>, StoreError> {
        match self.backend() {
            Backend::Dir(dir) => dir.names(layout::HISTORY).await,
            Backend::S3(s3) => s3.list(layout::HISTORY).await,
        }
    }

    /// The history entry named `name` (from [`history_names`](Self::history_names)).
    pub async fn history_entry(&self, name: &str) -> Result<Pointer, StoreError> {
        let path = format!("{}/{name}", layout::HISTORY);
        let bytes = match self.backend() {
            Backend::Dir(dir) => dir.read_named(path.clone()).await?,
            Backend::S3(s3) => s3.read_named(path.clone()).await?,
        };
        Pointer::from_json(&bytes, &path)
    }

    /// Deletes the history entry named `name`.
    pub async fn delete_history_entry(&self, name: &str) -> Result<(), StoreError> {
        let path = format!("{}/{name}", layout::HISTORY);
        match self.backend() {
            Backend::Dir(dir) => dir.delete_named(path).await,
            Backend::S3(s3) => s3.delete_named(path).await,
        }
    }

    /// The ids of the snapshots stored, sorted.
    pub async fn snapshot_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.objects(ObjectKind::Snapshot).await?.into_iter().map(|(id, _)| id).collect())
    }

    /// The ids of the snapshot objects in the store with when each object
    /// was written, by id.
    pub async fn snapshot_objects(&self) -> Result<Vec<(String, std::time::SystemTime)>, StoreError> {
        self.objects(ObjectKind::Snapshot).await
    }

    /// The ids of the objects of `kind` in the store with when each was
    /// written, by id.
    pub async fn objects(&self, kind: ObjectKind) -> Result<Vec<(String, std::time::SystemTime)>, StoreError> {
        let names = match self.backend() {
            Backend::Dir(dir) => dir.list_with_times(kind.folder()).await?,
            Backend::S3(s3) => s3.list_with_times(kind.folder()).await?,
        };
        Ok(names.into_iter().filter_map(|(name, at)| Some((layout::object_id(kind, &name)?.to_owned(), at))).collect())
    }

    /// Deletes a snapshot object.
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.delete_object(ObjectKind::Snapshot, id).await
    }

    /// Deletes an object.
    pub async fn delete_object(&self, kind: ObjectKind, id: &str) -> Result<(), StoreError> {
        match self.backend() {
            Backend::Dir(dir) => dir.delete_object(kind, id).await,
            Backend::S3(s3) => s3.delete_object(kind, id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty directory for one test.
    pub(crate) fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgeroute-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn pointer(id: &str, previous: Option<&str>) -> Pointer {
        crate::pointer::tests::pointer(id, previous)
    }

    fn open(dir: &Path) -> Store {
        Store::open(&StoreLocation::Dir(dir.to_owned()), None).unwrap()
    }

    #[tokio::test]
    async fn the_pointer_is_replaced_only_from_the_version_read() {
        let dir = scratch("pointer");
        let store = open(&dir);
        assert_eq!(store.read_pointer().await.unwrap(), None);

        let first = pointer("aa", None);
        assert!(store.replace_pointer(&first, None).await.unwrap());
        // The first pointer is there now: "none yet" is stale.
        assert!(!store.replace_pointer(&pointer("xx", None), None).await.unwrap());
        let (read, v1) = store.read_pointer().await.unwrap().unwrap();
        assert_eq!(read, first);

        let second = pointer("bb", Some("aa"));
        assert!(store.replace_pointer(&second, Some(&v1)).await.unwrap());
        // v1 is stale now: refused, and nothing written.
        assert!(!store.replace_pointer(&pointer("yy", Some("aa")), Some(&v1)).await.unwrap());
        let (read, v2) = store.read_pointer().await.unwrap().unwrap();
        assert_eq!(read, second);
        assert_ne!(v1, v2);

        assert_eq!(store.read_pointer_if_changed(Some(&v2)).await.unwrap(), None);
        assert_eq!(store.read_pointer_if_changed(Some(&v1)).await.unwrap(), Some((second, v2)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_damaged_pointer_is_an_error_not_an_absence() {
        let dir = scratch("bad-pointer");
        let store = open(&dir);
        std::fs::write(dir.join("current.json"), b"{").unwrap();
        let err = store.read_pointer().await.unwrap_err();
        assert!(matches!(err, StoreError::BadPointer { .. }), "{err}");
        // "None yet" is not what is there: nothing is written over it.
        assert!(!store.replace_pointer(&pointer("aa", None), None).await.unwrap());
        assert_eq!(std::fs::read(dir.join("current.json")).unwrap(), b"{");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn snapshots_roundtrip_and_are_written_once() {
        let dir = scratch("snapshots");
        let store = open(&dir);
        store.put_snapshot("bb", b"bytes of bb").await.unwrap();
        store.put_snapshot("aa", b"bytes of aa").await.unwrap();
        // Same id, other bytes that are not that id's: the stored copy stays.
        store.put_snapshot("aa", b"other bytes").await.unwrap();
        assert_eq!(store.get_snapshot("aa").await.unwrap(), b"bytes of aa");
        // A damaged copy of a real snapshot is replaced by its true bytes.
        let id = "87640f1c1c2712393306405784102439b8286fe5057a4d3582dc5321482d43b9"; // SHA-256 of "true bytes"
        store.put_snapshot(id, b"damaged").await.unwrap();
        store.put_snapshot(id, b"true bytes").await.unwrap();
        assert_eq!(store.get_snapshot(id).await.unwrap(), b"true bytes");
        store.delete_snapshot(id).await.unwrap();
        assert_eq!(store.get_snapshot("bb").await.unwrap(), b"bytes of bb");
        assert!(dir.join("snapshots/aa.snap").is_file());

        // A crashed writer's temporary file is not a snapshot.
        std::fs::write(dir.join("snapshots/cc.snap.1.2.tmp"), b"partial").unwrap();
        assert_eq!(store.snapshot_ids().await.unwrap(), ["aa", "bb"]);

        store.delete_snapshot("aa").await.unwrap();
        assert!(matches!(store.get_snapshot("aa").await, Err(StoreError::NoSnapshot { id }) if id == "aa"));
        assert_eq!(store.snapshot_ids().await.unwrap(), ["bb"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn history_lists_pointers_in_the_order_appended() {
        let dir = scratch("history");
        let store = open(&dir);
        assert_eq!(store.history().await.unwrap(), []);
        // Ids in reverse alphabetical order: the time, not the id, orders.
        let pointers = [pointer("cc", None), pointer("bb", Some("cc")), pointer("aa", Some("bb"))];
        for p in &pointers {
            store.append_history(p).await.unwrap();
            // Entries are named by the clock's nanoseconds; a coarse clock
            // could give two appends in a row the same time.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(store.history().await.unwrap(), pointers);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_concurrent_swaps_from_one_version_exactly_one_wins() {
        let dir = scratch("race");
        let store = std::sync::Arc::new(open(&dir));
        assert!(store.replace_pointer(&pointer("base", None), None).await.unwrap());
        let (_, base) = store.read_pointer().await.unwrap().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (store, base) = (store.clone(), base.clone());
            tasks.spawn(async move { store.replace_pointer(&pointer(&format!("p{i}"), None), Some(&base)).await });
        }
        let wins = tasks.join_all().await.into_iter().filter(|won| *won.as_ref().unwrap()).count();
        assert_eq!(wins, 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A writer stalled while it holds the store's lock (a process stopped
    /// by SIGSTOP, or stuck on a hung file system) delays another writer,
    /// who then fails saying why, writing nothing: it never waits forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_lock_holder_never_blocks_another_writer_for_good() {
        let dir = scratch("stalled-lock");
        let store = open(&dir);
        // The stalled writer: another open file description holding the lock.
        let stalled = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(layout::LOCK));
        let stalled = stalled.unwrap();
        stalled.lock().unwrap();
        let attempt =
            tokio::time::timeout(std::time::Duration::from_secs(30), store.replace_pointer(&pointer("aa", None), None))
                .await;
        // Let go first: a writer still blocked on the lock would hold up the runtime's end.
        drop(stalled);
        let err = attempt.expect("still waiting for the lock after 30 s").unwrap_err();
        assert!(err.to_string().contains("locked by another writer"), "{err}");
        assert_eq!(store.read_pointer().await.unwrap(), None, "nothing was written");
        // Once the lock is free, writing works again.
        assert!(store.replace_pointer(&pointer("aa", None), None).await.unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
