//! [`write_file_atomically`]: how every file of a directory store (and the
//! files other crates keep, such as a host's cached snapshot) is written.

use std::io::Write as _;
use std::path::Path;

use crate::layout::TEMP_SUFFIX;

/// Writes `bytes` to `path` whole or not at all, and durably: a reader sees
/// the old file or the new one, never a part, and after a crash or power
/// loss the file is the old one or the new one, never empty.
///
/// The bytes go to a temporary file beside `path` (so that the rename stays
/// within one file system), which is fsynced (the data reaches the disk
/// before the name does), renamed over `path` (atomic on POSIX), and then
/// the directory is fsynced (the rename itself reaches the disk; until then
/// it may be lost, and with it the file's new contents).
///
/// The temporary file's name is `path`'s file name followed by
/// `.<pid>.<random>.tmp`, unique to this write; it is removed again if any
/// step fails. The function blocks: in async code, call it from
/// `tokio::task::spawn_blocking`.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_file_atomically_with(path, |f| f.write_all(bytes))
}

/// [`write_file_atomically`], the bytes written by `write` into the
/// temporary file (from another file, say, without holding them all).
pub fn write_file_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    Staged::write(path, write)?.commit()
}

/// A file's new contents, written and fsynced beside it under a temporary
/// name, not in place yet: [`commit`](Staged::commit) renames it over the
/// file, and dropping it removes it. The two halves of
/// [`write_file_atomically`], for a writer that must decide in between,
/// under a lock, whether to put it in place (and must not hold the lock
/// through the slow part, the fsync of the data).
#[derive(Debug)]
pub(crate) struct Staged {
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    done: bool,
}

impl Staged {
    /// Writes the new contents of `path` (by `write`) to a temporary file
    /// beside it, and fsyncs it.
    pub(crate) fn write(
        path: &Path,
        write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> std::io::Result<Staged> {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{}.{:x}{TEMP_SUFFIX}", std::process::id(), fastrand::u64(..)));
        let staged = Staged { tmp: parent_dir(path).join(name), path: path.to_owned(), done: false };
        let mut f = std::fs::File::create(&staged.tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        Ok(staged)
    }

    /// Renames the new contents over the file (atomic on POSIX), and fsyncs
    /// the directory, so that the rename itself reaches the disk.
    pub(crate) fn commit(mut self) -> std::io::Result<()> {
        self.put_in_place()?;
        self.sync_dir()
    }

    /// The rename alone; [`sync_dir`](Staged::sync_dir) makes it durable.
    pub(crate) fn put_in_place(&mut self) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, &self.path)?;
        // Nothing to remove once the rename happened.
        self.done = true;
        Ok(())
    }

    /// Fsyncs the directory of the file.
    pub(crate) fn sync_dir(&self) -> std::io::Result<()> {
        std::fs::File::open(parent_dir(&self.path))?.sync_all()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The directory `path` is in: its parent, or `.` for a bare file name
/// (whose parent is the empty path, which cannot be opened to be fsynced).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces_leaving_no_temporary_file() {
        let dir = crate::tests::scratch("atomic");
        let path = dir.join("out.snap");
        write_file_atomically(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_file_atomically(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["out.snap"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = crate::tests::scratch("atomic-fail");
        // The rename fails: `path` is a non-empty directory.
        let path = dir.join("taken");
        std::fs::create_dir_all(path.join("inside")).unwrap();
        assert!(write_file_atomically(&path, b"x").is_err());
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["taken"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bare_file_name_is_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("out.snap")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/out.snap")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("/out.snap")), Path::new("/"));
    }
}
