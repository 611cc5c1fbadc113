//! [`FstError`]: why the FST section was refused.

use core::fmt;

use super::header::{FOOTER_LEN, HEADER_LEN, KEY_COUNT_FROM_END, MIN_LEN, ROOT_TO_END, TYPE_MAP, VERSION};
use super::MAX_KEY_LEN;

/// Why the FST section was refused. Addresses and offsets are relative to
/// the start of the FST section; a node's address is its last byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FstError {
    /// The section is shorter than the smallest FST, an empty map's header
    /// and footer (36 bytes).
    Truncated { len: usize },
    /// The header's format version (bytes 0..8) is not `fst`'s version 3.
    Version { found: u64 },
    /// The header's type (bytes 8..16) is not 0, a plain map's.
    NotAMap { found: u64 },
    /// The footer's root address does not point at the last byte before the
    /// footer (or is the empty map's, 0, in a section that is not 36 bytes).
    BadRoot { root: u64, len: usize },
    /// The node at `addr`, or one of its transitions, is malformed: it does
    /// not decode inside the section, points forwards (a cycle), has inputs
    /// out of order or one the lookup path cannot find, or is a dead end.
    BadNode { addr: usize },
    /// The key at position `index` (from 0, in key order) is not a
    /// normalized routing key.
    BadKey { index: u64 },
    /// The footer's key count differs from the number of keys the root leads to.
    KeyCount { footer: u64, found: u64 },
    /// The sum of the outputs along a key overflows 64 bits, at the
    /// transition out of the node at `addr`.
    OutputOverflow { addr: usize },
    /// A key's output is not the offset of its route record: records lie in
    /// key order, end to end, so it must be where the previous one ended.
    BadOutput { expected: u64, found: u64 },
    /// A key is longer than [`MAX_KEY_LEN`], below the node at `addr`.
    KeyTooLong { addr: usize },
}

impl fmt::Display for FstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FstError::Truncated { len } => write!(
                f,
                "FST section is {len} bytes, shorter than the {MIN_LEN} of an empty map \
                 ({HEADER_LEN}-byte header and {FOOTER_LEN}-byte footer)"
            ),
            FstError::Version { found } => {
                write!(f, "FST header says format version {found} (bytes 0..8); only version {VERSION} is read")
            }
            FstError::NotAMap { found } => {
                write!(f, "FST header says type {found} (bytes 8..16); a map has type {TYPE_MAP}")
            }
            FstError::BadRoot { root, len } => write!(
                f,
                "FST footer's root address {root} does not fit the section's {len} bytes: the root node \
                 must end {ROOT_TO_END} bytes before the end (address {}), or be 0 in a {MIN_LEN}-byte empty map",
                len.saturating_sub(ROOT_TO_END)
            ),
            FstError::BadNode { addr } => write!(
                f,
                "FST node at address {addr} is malformed (it or a transition of it does not decode \
                 inside the section, points forwards, is out of order, or is a dead end)"
            ),
            FstError::BadKey { index } => write!(
                f,
                "FST key #{index} (in key order, from 0) is not a routing key \
                 (a normalized hostname with its labels reversed, or one ending in `.*`)"
            ),
            FstError::KeyCount { footer, found } => write!(
                f,
                "FST footer says {footer} keys ({KEY_COUNT_FROM_END} bytes before the end) \
                 but the root leads to {found}"
            ),
            FstError::OutputOverflow { addr } => {
                write!(f, "FST output overflows 64 bits on a transition out of the node at address {addr}")
            }
            FstError::BadOutput { expected, found } => write!(
                f,
                "FST key's output is {found}, but its route record must start at offset {expected} \
                 of the routes section (where the previous record ends)"
            ),
            FstError::KeyTooLong { addr } => {
                write!(f, "FST key is longer than {MAX_KEY_LEN} bytes (below the node at address {addr})")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FstError {}
