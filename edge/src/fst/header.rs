//! The frame around the nodes: a 16-byte header and a 20-byte footer, as
//! `fst` 0.4 writes them (`Builder::new_type` and `Builder::finish` in
//! `raw/build.rs`) and reads them (`raw::Fst::new` in `raw/mod.rs`).
//!
//! ```text
//! 0          8          16                len-20      len-12      len-4      len
//! | version  | type     | nodes ...       | key count | root addr | checksum |
//! | u64 = 3  | u64 = 0  | root node last  | u64       | u64       | u32      |
//! ```
//!
//! All little-endian. Reading the frame costs O(1) and looks at no node.

use super::error::FstError;
use super::node::EMPTY_ADDRESS;
use crate::wire::u64_le as read_u64_le;

/// `fst`'s format version (`fst::raw::VERSION`), the header's first `u64`.
/// Version 2 added the 256-byte transition index of wide nodes and version 3
/// the trailing checksum; the compiler links `fst` 0.4, which writes 3. This
/// reader knows exactly that one layout and refuses any other version.
pub(crate) const VERSION: u64 = 3;

/// Where the header's version sits: the section's first 8 bytes.
pub(crate) const VERSION_OFFSET: usize = 0;

/// The header's second `u64`, `fst`'s `FstType`: a tag `fst` lets the
/// writer choose (it reserves 0–255 and gives none of them a meaning).
/// `MapBuilder` and `SetBuilder` both write 0, the compiler uses
/// `MapBuilder`, so anything else was not written by the compiler.
pub(crate) const TYPE_MAP: u64 = 0;

/// Where the header's type sits: bytes 8..16.
pub(crate) const TYPE_OFFSET: usize = 8;

/// The header: version and type, two `u64`s. No node lies below it, so an
/// address below it is never a node's (except [`EMPTY_ADDRESS`], which has no
/// bytes at all).
pub(crate) const HEADER_LEN: usize = 16;

/// The trailing checksum, the last 4 bytes: `fst`'s *masked* CRC-32C
/// (`raw/crc32.rs`: the CRC rotated right by 15 plus `0xA282EAD8`) of every
/// byte before it. It is not checked here: the snapshot's own CRC-32C covers
/// the whole section, checksum included.
pub(crate) const CHECKSUM_LEN: usize = 4;

/// The footer after the last node: key count (`u64`), root address
/// (`u64`), checksum ([`CHECKSUM_LEN`]).
pub(crate) const FOOTER_LEN: usize = 8 + 8 + CHECKSUM_LEN;

/// The footer's key count starts this many bytes before the section's end.
pub(crate) const KEY_COUNT_FROM_END: usize = FOOTER_LEN;

/// The footer's root address starts this many bytes before the section's end.
pub(crate) const ROOT_ADDR_FROM_END: usize = 8 + CHECKSUM_LEN;

/// The smallest FST, an empty map: header and footer, no node (the root is
/// the empty final node at [`EMPTY_ADDRESS`]). `fst::raw::Fst::new` refuses
/// anything shorter too.
pub(crate) const MIN_LEN: usize = HEADER_LEN + FOOTER_LEN;

/// From the root address to the section's end. The root node is the last
/// one written and a node's address is its *last* byte, so the footer starts
/// right after it: `root + ROOT_TO_END == len`.
pub(crate) const ROOT_TO_END: usize = 1 + FOOTER_LEN;

/// What the header and footer say, checked against the section's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The root node's address (its last byte), or [`EMPTY_ADDRESS`] for an
    /// empty map.
    pub(crate) root: usize,
    /// The number of keys the footer claims (proved by the walk, later).
    pub(crate) key_count: u64,
}

impl Frame {
    /// Reads and checks the header and footer of the FST `data`: the length,
    /// the version, the type, and a root address consistent with the length.
    pub(crate) fn read(data: &[u8]) -> Result<Frame, FstError> {
        let len = data.len();
        if len < MIN_LEN {
            return Err(FstError::Truncated { len });
        }
        // `len >= MIN_LEN`, so none of these reads can fail.
        let field = |at: usize| read_u64_le(data, at).ok_or(FstError::Truncated { len });
        let version = field(VERSION_OFFSET)?;
        if version != VERSION {
            return Err(FstError::Version { found: version });
        }
        let fst_type = field(TYPE_OFFSET)?;
        if fst_type != TYPE_MAP {
            return Err(FstError::NotAMap { found: fst_type });
        }
        let root_raw = field(len - ROOT_ADDR_FROM_END)?;
        let key_count = field(len - KEY_COUNT_FROM_END)?;
        let bad_root = FstError::BadRoot { root: root_raw, len };
        let root = usize::try_from(root_raw).map_err(|_| bad_root)?;
        let consistent = if root == EMPTY_ADDRESS {
            len == MIN_LEN
        } else {
            root >= HEADER_LEN && root.checked_add(ROOT_TO_END) == Some(len)
        };
        if !consistent {
            return Err(bad_root);
        }
        Ok(Frame { root, key_count })
    }
}
