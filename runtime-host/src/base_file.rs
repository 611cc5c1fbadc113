//! A base snapshot's bytes in a sealed memfd: the one copy of a base the
//! host keeps, which every instance of the edge module maps into its
//! linear memory (copy-on-write) instead of each holding a copy.
//!
//! The bytes are written into the file as they arrive ([`BaseFileBuilder`]:
//! from a store or the cache, never all in a buffer first), then the file
//! is sealed (`F_SEAL_WRITE`, `F_SEAL_SHRINK`, `F_SEAL_GROW`, then
//! `F_SEAL_SEAL`) before anything reads it: no one, this process included,
//! can change its bytes afterwards, so bytes checked once stay checked. A
//! private mapping of an ordinary file could show later writes to the
//! file; a sealed memfd cannot change.
//!
//! The host keeps no mapping of its own: reading the bytes (to hash and
//! validate them) maps them for as long as [`BaseFile::map`]'s guard
//! lives, so that resident memory holds the base once, in the pages the
//! serving instances touch.

// The crate's one module of system calls: memfd_create, seals, mmap; see
// each SAFETY note.
#![allow(unsafe_code)]

use std::io::{Read as _, Seek as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use edgeroute_edge::SnapshotId;
use sha2::{Digest as _, Sha256};

/// The WebAssembly page: a base is mapped in whole pages.
pub const WASM_PAGE: usize = 65536;

/// A memfd being written, not sealed yet, and the SHA-256 of the bytes
/// written so far: a base is hashed as it arrives (over the network or
/// from a disk), not read again afterwards.
#[derive(Debug)]
pub struct BaseFileBuilder {
    file: std::fs::File,
    len: usize,
    hash: Sha256,
}

impl BaseFileBuilder {
    /// A new, empty memfd.
    pub fn new() -> std::io::Result<BaseFileBuilder> {
        // SAFETY: a NUL-terminated name and valid flags; the result is checked.
        let raw =
            unsafe { libc::memfd_create(c"edgeroute-base".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(BaseFileBuilder { file: std::fs::File::from(fd), len: 0, hash: Sha256::new() })
    }

    /// Seals the bytes written, and pads the file with zeros to whole
    /// WebAssembly pages (so that a mapping of those pages never reaches
    /// past its end).
    pub fn finish(self) -> std::io::Result<BaseFile> {
        let BaseFileBuilder { file, len, hash } = self;
        let id = SnapshotId::from(<[u8; SnapshotId::LEN]>::from(hash.finalize()));
        let pages_len = len.div_ceil(WASM_PAGE).max(1) * WASM_PAGE;
        file.set_len(pages_len as u64)?;
        let fd = OwnedFd::from(file);
        let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: a valid descriptor and seal flags; the result is checked.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(BaseFile { fd, len, pages_len, id })
    }
}

impl std::io::Write for BaseFileBuilder {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A base's bytes in a sealed memfd.
#[derive(Debug)]
pub struct BaseFile {
    fd: OwnedFd,
    /// The snapshot's length.
    len: usize,
    /// The file's length: `len` rounded up to whole WebAssembly pages.
    pages_len: usize,
    /// The SHA-256 of the snapshot's bytes, taken as they were written.
    id: SnapshotId,
}

impl BaseFile {
    /// Copies `bytes` into a new sealed memfd.
    pub fn new(bytes: &[u8]) -> std::io::Result<BaseFile> {
        let mut builder = BaseFileBuilder::new()?;
        builder.write_all(bytes)?;
        builder.finish()
    }

    /// Reads `reader` to its end into a new sealed memfd.
    pub fn read_from(reader: &mut impl std::io::Read) -> std::io::Result<BaseFile> {
        let mut builder = BaseFileBuilder::new()?;
        std::io::copy(reader, &mut builder)?;
        builder.finish()
    }

    /// The SHA-256 of the snapshot's bytes (its id if it is a snapshot),
    /// taken as they were written into the file, which its seals keep.
    pub fn id(&self) -> SnapshotId {
        self.id
    }

    /// The snapshot's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the snapshot is empty (never, for a valid one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many WebAssembly pages it covers.
    pub fn pages(&self) -> u64 {
        (self.pages_len / WASM_PAGE) as u64
    }

    /// The snapshot's bytes, mapped read-only while the guard lives.
    pub fn map(&self) -> std::io::Result<Mapped> {
        // SAFETY: a shared read-only mapping of the whole (sealed) file,
        // placed by the kernel; the result is checked.
        let at = unsafe {
            libc::mmap(std::ptr::null_mut(), self.pages_len, libc::PROT_READ, libc::MAP_SHARED, self.fd.as_raw_fd(), 0)
        };
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { at, len: self.len, pages_len: self.pages_len })
    }

    /// Copies the snapshot's bytes to `out` through the file (no mapping).
    pub fn copy_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut file = std::fs::File::from(self.fd.try_clone()?);
        file.rewind()?;
        std::io::copy(&mut (&mut file).take(self.len as u64), out)?;
        Ok(())
    }

    /// Maps the file over `pages()` whole pages at `at`, privately
    /// (copy-on-write: a write there changes the mapper's copy only).
    ///
    /// # Safety
    ///
    /// `at..at + pages() * WASM_PAGE` must be memory the caller owns, is
    /// allowed to replace, and that nothing borrows: its contents become
    /// the file's.
    pub unsafe fn map_over(&self, at: *mut u8) -> std::io::Result<()> {
        // SAFETY: the caller's contract; MAP_FIXED replaces exactly that range.
        let mapped = unsafe {
            libc::mmap(
                at.cast(),
                self.pages_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A read-only mapping of a [`BaseFile`]'s bytes, unmapped on drop.
#[derive(Debug)]
pub struct Mapped {
    at: *mut libc::c_void,
    len: usize,
    pages_len: usize,
}

impl std::ops::Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `at` is a live read-only mapping of `pages_len >= len`
        // bytes of a sealed file (no one can change them), unmapped only
        // when `self` drops, which ends every borrow.
        unsafe { std::slice::from_raw_parts(self.at.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `BaseFile::map`, unmapped once.
        unsafe { libc::munmap(self.at, self.pages_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_file_holds_the_bytes_and_refuses_every_change() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let file = BaseFile::read_from(&mut &bytes[..]).unwrap();
        assert_eq!(&*file.map().unwrap(), &bytes[..]);
        // Hashed as written, in the pieces `copy` writes: the bytes' id.
        assert_eq!(file.id(), SnapshotId::of(&bytes));
        assert_eq!(BaseFile::new(&bytes[..99]).unwrap().id(), SnapshotId::of(&bytes[..99]));
        assert_eq!(file.pages(), 2);
        let mut copied = Vec::new();
        file.copy_to(&mut copied).unwrap();
        assert_eq!(copied, bytes);
        // Sealed: neither a write nor a resize nor a writable shared mapping.
        let mut f = std::fs::File::from(file.fd.try_clone().unwrap());
        assert!(f.write_all(b"x").is_err());
        assert!(f.set_len(1).is_err());
        // SAFETY: a request the kernel must refuse (checked).
        let shared = unsafe {
            libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_WRITE, libc::MAP_SHARED, file.fd.as_raw_fd(), 0)
        };
        assert_eq!(shared, libc::MAP_FAILED);
        // A private mapping over owned memory shows the bytes, and its writes stay private.
        let len = 2 * WASM_PAGE;
        // SAFETY: a fresh anonymous mapping owned by this test; checked.
        let at = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        assert_ne!(at, libc::MAP_FAILED);
        // SAFETY: `at` is that mapping, which nothing borrows.
        unsafe { file.map_over(at.cast()).unwrap() };
        // SAFETY: the mapping made just above, `len` bytes, read and written only here.
        let mapped = unsafe { std::slice::from_raw_parts_mut(at.cast::<u8>(), len) };
        assert_eq!(&mapped[..bytes.len()], &bytes[..]);
        assert!(mapped[bytes.len()..].iter().all(|&b| b == 0));
        mapped[0] = 0xff;
        assert_eq!(file.map().unwrap()[0], 0);
        // SAFETY: the test's mapping, no longer borrowed.
        unsafe { libc::munmap(at, len) };
    }
}
