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
    let dir = parent_dir(path);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.{:x}{TEMP_SUFFIX}", std::process::id(), fastrand::u64(..)));
    let tmp = dir.join(name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Nothing to remove once the rename happened: then only the
        // directory's fsync failed.
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
