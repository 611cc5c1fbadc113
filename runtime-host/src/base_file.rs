//! A base snapshot's bytes in a sealed memfd: the one copy of a base the
//! host keeps, which every instance of the edge module maps into its
//! linear memory (copy-on-write) instead of each holding a copy.
//!
//! The file is sealed before anything reads it (`F_SEAL_WRITE`,
//! `F_SEAL_SHRINK`, `F_SEAL_GROW`, then `F_SEAL_SEAL`): no one, this
//! process included, can change its bytes afterwards, so bytes validated
//! once stay validated. A private mapping of an ordinary file could show
//! later writes to the file; a sealed memfd cannot change.

// The crate's one module of system calls: memfd_create, seals, mmap; see
// each SAFETY note.
#![allow(unsafe_code)]

use std::io::Write as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// The WebAssembly page: a base is mapped in whole pages.
pub const WASM_PAGE: usize = 65536;

/// A base's bytes in a sealed memfd, and a read-only mapping of them.
#[derive(Debug)]
pub struct BaseFile {
    fd: OwnedFd,
    /// A read-only shared mapping of the whole file.
    map: *mut libc::c_void,
    /// The snapshot's length.
    len: usize,
    /// The file's length: `len` rounded up to whole WebAssembly pages (the
    /// tail is zeros), so that a mapping of the pages a memory grows by
    /// never reaches past the file's end.
    pages_len: usize,
}

// SAFETY: the mapping is read-only and the file sealed against writes: no
// thread can change the bytes, so sharing the pointer between threads is
// sharing an immutable `&[u8]`.
unsafe impl Send for BaseFile {}
// SAFETY: as for `Send`: nothing behind the pointer is ever mutated.
unsafe impl Sync for BaseFile {}

impl BaseFile {
    /// Copies `bytes` into a new sealed memfd.
    pub fn new(bytes: &[u8]) -> std::io::Result<BaseFile> {
        let pages_len = bytes.len().div_ceil(WASM_PAGE).max(1) * WASM_PAGE;
        // SAFETY: a NUL-terminated name and valid flags; the result is checked.
        let raw =
            unsafe { libc::memfd_create(c"edgeroute-base".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut file = std::fs::File::from(fd);
        file.set_len(pages_len as u64)?;
        file.write_all(bytes)?;
        let fd = OwnedFd::from(file);
        let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: a valid descriptor and seal flags; the result is checked.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a shared read-only mapping of the whole (sealed) file,
        // placed by the kernel; the result is checked.
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), pages_len, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(BaseFile { fd, map, len: bytes.len(), pages_len })
    }

    /// The snapshot's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `map` is a live read-only mapping of `pages_len >= len`
        // bytes that no one can change (the file is sealed), unmapped only
        // when `self` drops.
        unsafe { std::slice::from_raw_parts(self.map.cast::<u8>(), self.len) }
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

impl Drop for BaseFile {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; `bytes()`
        // borrows end with `self`.
        unsafe { libc::munmap(self.map, self.pages_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_file_holds_the_bytes_and_refuses_every_change() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let file = BaseFile::new(&bytes).unwrap();
        assert_eq!(file.bytes(), &bytes[..]);
        assert_eq!(file.pages(), 2);
        // Sealed: neither a write nor a resize nor a writable shared mapping.
        let mut f = std::fs::File::from(file.fd.try_clone().unwrap());
        assert!(f.write_all(b"x").is_err());
        assert!(f.set_len(1).is_err());
        // SAFETY: a request the kernel must refuse; nothing is mapped on success either way (checked).
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
        mapped[0] = 0xff;
        assert_eq!(file.bytes()[0], 0);
        // SAFETY: the test's mapping, no longer borrowed.
        unsafe { libc::munmap(at, len) };
    }
}
