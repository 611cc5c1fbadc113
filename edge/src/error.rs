use core::fmt;

use crate::format::SectionKind;
use crate::fst::FstError;

/// Why a snapshot was refused by [`Snapshot::from_bytes`](crate::Snapshot::from_bytes).
///
/// A refused snapshot is never partly used: the caller keeps whatever it
/// served before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Fewer bytes than a header and a checksum.
    TooShort { len: usize },
    /// Not a snapshot: the magic bytes are wrong.
    BadMagic,
    /// The endian marker does not read as little-endian `0x01020304`.
    BadEndianness,
    /// Written for another format version.
    UnsupportedVersion { found: u32 },
    /// The trailing CRC-32C does not match: truncated or corrupted in transit.
    BadChecksum { stored: u32, computed: u32 },
    /// Larger than 4 GiB, which 32-bit offsets cannot address.
    TooLarge,
    /// Reserved header fields are not zero, or the section table is not the
    /// expected sections laid end to end.
    BadHeader,
    /// The FST section is malformed.
    BadFst(FstError),
    /// The FST's key count differs from the header's route count.
    RouteCountMismatch { header: u32, fst: u64 },
    /// The route record at this offset of the routes section is malformed
    /// (its strings, its site, its Assets order), refers to something that
    /// is not an earlier string or site, or bytes follow the last record.
    BadRoute { offset: u32 },
    /// A layer's filter section is not a power of two of at least 8 bytes.
    BadFilterLength { len: usize },
    /// A layer's filter does not hold key `index` (from 0, in key order): a
    /// lookup would never find that key.
    FilterMissesKey { index: u64 },
}

impl SnapshotError {
    /// Writes the message, calling the file `noun` ("snapshot", "layer":
    /// the two formats share their structure, so their errors too).
    pub(crate) fn describe(&self, f: &mut fmt::Formatter<'_>, noun: &str) -> fmt::Result {
        match *self {
            SnapshotError::TooShort { len } => {
                write!(f, "{noun} is truncated: {len} bytes is shorter than any {noun}")
            }
            SnapshotError::BadMagic => write!(f, "not an edgeroute {noun} (bad magic bytes)"),
            SnapshotError::BadEndianness => write!(f, "{noun} endian marker is wrong"),
            SnapshotError::UnsupportedVersion { found } => write!(
                f,
                "{noun} format version {found} is not supported (this build reads version {})",
                if noun == "layer" { crate::format::LAYER_FORMAT_VERSION } else { crate::format::FORMAT_VERSION }
            ),
            SnapshotError::BadChecksum { stored, computed } => write!(
                f,
                "{noun} checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): \
                 the file is truncated or corrupt"
            ),
            SnapshotError::TooLarge => write!(f, "{noun} is larger than 4 GiB"),
            SnapshotError::BadHeader => write!(f, "{noun} header or section table is malformed"),
            SnapshotError::BadFst(e) => write!(f, "{noun} {} section is malformed: {e}", SectionKind::Fst.name()),
            SnapshotError::RouteCountMismatch { header, fst } => {
                write!(f, "{noun} header says {header} entries but its index holds {fst}")
            }
            SnapshotError::BadFilterLength { len } => {
                write!(f, "{noun} filter section is {len} bytes, not a power of two of at least 8")
            }
            SnapshotError::FilterMissesKey { index } => {
                write!(f, "{noun} filter section does not hold key {index} of its index")
            }
            SnapshotError::BadRoute { offset } => {
                write!(f, "{noun} record at offset {offset} of the routes section is malformed")
            }
        }
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f, "snapshot")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SnapshotError {}

impl From<FstError> for SnapshotError {
    fn from(e: FstError) -> Self {
        SnapshotError::BadFst(e)
    }
}
