//! The directory backend (`dir:PATH`): the [`layout`] as files under a root.
//!
//! Every file is written by [`write_file_atomically`], so readers (hosts
//! polling the pointer) never see a partial file, and the pointer's
//! compare-and-swap runs under an exclusive lock on [`layout::LOCK`], so
//! that of two publishers exactly one wins and the other re-reads. The lock
//! is advisory (`flock` on Unix): it orders edgeroute processes, on one
//! machine or on a shared file system that supports such locks.
//!
//! File system calls block, so each operation runs whole on Tokio's
//! blocking thread pool ([`tokio::task::spawn_blocking`]) rather than on a
//! runtime worker, where it would stall every other task on that thread
//! (a host's listeners, for one). The methods must therefore be awaited
//! within a Tokio runtime. An operation that has started runs to the end
//! even if its future is dropped: a compare-and-swap is never left half
//! done, but its outcome is then unknown to the caller.

use std::path::{Path, PathBuf};

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::error::io;
use crate::fs::Staged;
use crate::layout::ObjectKind;
use crate::{layout, write_file_atomically, StoreError, Version};

/// The longest wait for the store's lock. Its holder keeps it for a read
/// and a rename (microseconds); one that holds it this long has stalled
/// (a process stopped, a hung file system), and waiting on would stall this
/// writer too, for as long as that lasts.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Takes the exclusive lock on `lock`, waiting [`LOCK_WAIT`] at most.
fn take_lock(lock: &std::fs::File, path: &Path) -> Result<(), StoreError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: path.to_owned(), waited: LOCK_WAIT })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(path)(e)),
        }
    }
}

/// A directory store, borrowed from [`Store::Dir`](crate::Store::Dir).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirStore<'a> {
    root: &'a Path,
}

impl<'a> DirStore<'a> {
    pub(crate) fn new(root: &'a Path) -> DirStore<'a> {
        DirStore { root }
    }

    /// Creates the store's folders if missing (at open, so it blocks).
    pub(crate) fn create(root: &Path) -> Result<(), StoreError> {
        for folder in [layout::SNAPSHOTS, layout::LAYERS, layout::ITEMS, layout::HISTORY] {
            std::fs::create_dir_all(root.join(folder)).map_err(io(root))?;
        }
        Ok(())
    }

    /// A replaceable document (the pointer, the lease) and its version, or
    /// `None` if there is none yet.
    pub(crate) async fn read_document(self, name: &'static str) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
        self.blocking(move |root| read_document(&root, name)).await
    }

    /// Writes document `name` if it is still at `expected` and returns its
    /// new version; `None`, writing nothing, if it is not.
    pub(crate) async fn replace_document(
        self,
        name: &'static str,
        bytes: Vec<u8>,
        expected: Option<Version>,
    ) -> Result<Option<Version>, StoreError> {
        self.blocking(move |root| {
            let path = root.join(name);
            // Written and fsynced before the lock is taken: the lock is held
            // only to compare and rename, so that a writer that stalls
            // (stopped, or on a slow disk) is unlikely to stall with it.
            let mut staged = Staged::write(&path, |f| f.write_all(&bytes)).map_err(io(&path))?;
            let lock_path = root.join(layout::LOCK);
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io(&lock_path))?;
            take_lock(&lock, &lock_path)?;
            // From here until `lock` drops (closing the file releases the
            // lock), no other writer reads or writes a document.
            let current = read_document(&root, name)?.map(|(_, version)| version);
            if current != expected {
                return Ok(None);
            }
            staged.put_in_place().map_err(io(&path))?;
            drop(lock);
            // Durable before the caller hears of it; another writer that
            // reads the new version meanwhile builds on a rename already made.
            staged.sync_dir().map_err(io(&path))?;
            Ok(Some(Version::of_bytes(&bytes)))
        })
        .await
    }

    /// Stores snapshot `id` unless an object is already there (the same id,
    /// so the same bytes).
    pub(crate) async fn put_object(self, kind: ObjectKind, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // Copied, as the blocking pool needs owned data: a memcpy, small
        // next to the write and its fsyncs.
        let (name, id, bytes) = (layout::object(kind, id), id.to_owned(), bytes.to_vec());
        self.blocking(move |root| {
            let path = root.join(name);
            // Content-addressed: a copy already there must be these very
            // bytes. One that is not (a torn write, a bad disk) is replaced,
            // by bytes that are the id's (never by others).
            match std::fs::read(&path) {
                Ok(stored) if stored == bytes => {
                    // Stored again: written now, as far as a prune's grace
                    // goes (a writer names it next).
                    let file = std::fs::File::options().write(true).open(&path).map_err(io(&path))?;
                    file.set_modified(std::time::SystemTime::now()).map_err(io(&path))?;
                    return Ok(());
                }
                Ok(_) if !layout::is_id_of(&id, &bytes) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
            write_file_atomically(&path, &bytes).map_err(io(&path))
        })
        .await
    }

    /// Snapshot `id`'s bytes, or [`StoreError::NoSnapshot`].
    pub(crate) async fn get_object(self, kind: ObjectKind, id: &str) -> Result<Vec<u8>, StoreError> {
        let (name, id) = (layout::object(kind, id), id.to_owned());
        self.blocking(move |root| {
            let path = root.join(name);
            std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::missing(kind, id),
                _ => io(&path)(e),
            })
        })
        .await
    }

    /// Copies object `id` into `out`.
    pub(crate) async fn get_object_into<W: std::io::Write + Send + 'static>(
        self,
        kind: ObjectKind,
        id: &str,
        mut out: W,
    ) -> Result<W, StoreError> {
        let (name, id) = (layout::object(kind, id), id.to_owned());
        self.blocking(move |root| {
            let path = root.join(name);
            let mut file = std::fs::File::open(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::missing(kind, id),
                _ => io(&path)(e),
            })?;
            std::io::copy(&mut file, &mut out).map_err(io(&path))?;
            Ok(out)
        })
        .await
    }

    /// Deletes snapshot `id`'s object.
    pub(crate) async fn delete_object(self, kind: ObjectKind, id: &str) -> Result<(), StoreError> {
        let name = layout::object(kind, id);
        self.blocking(move |root| {
            let path = root.join(name);
            std::fs::remove_file(&path).map_err(io(&path))
        })
        .await
    }

    /// Writes a history entry (`name` from [`layout::history_entry`]).
    pub(crate) async fn put_history(self, name: String, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.blocking(move |root| {
            let path = root.join(name);
            write_file_atomically(&path, &bytes).map_err(io(&path))
        })
        .await
    }

    /// The names in `folder`, sorted.
    pub(crate) async fn names(self, folder: &'static str) -> Result<Vec<String>, StoreError> {
        self.blocking(move |root| list(&root.join(folder))).await
    }

    /// The bytes of the file `name` (relative to the root).
    pub(crate) async fn read_named(self, name: String) -> Result<Vec<u8>, StoreError> {
        self.blocking(move |root| {
            let path = root.join(name);
            std::fs::read(&path).map_err(io(&path))
        })
        .await
    }

    /// Deletes the file `name` (relative to the root); one already gone is fine.
    pub(crate) async fn delete_named(self, name: String) -> Result<(), StoreError> {
        self.blocking(move |root| {
            let path = root.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
                _ => Ok(()),
            }
        })
        .await
    }

    /// The names of the files in `folder` with when each was last written,
    /// sorted by name.
    pub(crate) async fn list_with_times(
        self,
        folder: &'static str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, StoreError> {
        self.blocking(move |root| {
            let folder = root.join(folder);
            let mut out = Vec::new();
            for name in list(&folder)? {
                let path = folder.join(&name);
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(io(&path))?;
                out.push((name, modified));
            }
            Ok(out)
        })
        .await
    }

    /// Every file in `folder` with its bytes, sorted by name.
    pub(crate) async fn read_folder(self, folder: &'static str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.blocking(move |root| {
            let folder = root.join(folder);
            let mut out = Vec::new();
            for name in list(&folder)? {
                let path = folder.join(&name);
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                out.push((name, bytes));
            }
            Ok(out)
        })
        .await
    }

    /// Runs `op` with the store's root on the blocking thread pool.
    async fn blocking<T: Send + 'static>(
        self,
        op: impl FnOnce(PathBuf) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let root = self.root.to_owned();
        match tokio::task::spawn_blocking(move || op(root)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only when the runtime shuts down before the operation started.
            Err(_) => Err(io(self.root)(std::io::Error::other("cancelled: the runtime is shutting down"))),
        }
    }
}

/// A document's bytes and version (the blocking half of
/// [`DirStore::read_document`], also used under the lock).
fn read_document(root: &Path, name: &str) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
    let path = root.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let version = Version::of_bytes(&bytes);
    Ok(Some((bytes, version)))
}

/// The names in `folder`, sorted, leaving out the temporary files of
/// writes in progress (or of writers that crashed).
fn list(folder: &Path) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(io(folder))? {
        let name = entry.map_err(io(folder))?.file_name().to_string_lossy().into_owned();
        if !name.ends_with(layout::TEMP_SUFFIX) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
