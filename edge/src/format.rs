//! The snapshot format's definition: every constant the writer and the
//! reader must agree on. `docs/snapshot-format.md` is the prose version.
//!
//! All integers are little-endian and nothing is aligned: a reader may load
//! a snapshot at any address (a `Vec<u8>`, an mmap, WebAssembly memory).

/// The first eight bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"EDGROUTE";
/// Written as a little-endian `u32` right after the magic. A reader that
/// decodes it as anything else is reading with the wrong byte order.
pub const ENDIAN_MARKER: u32 = 0x0102_0304;
/// The exact format version this crate reads and the compiler writes.
/// Any change to the layout below, however small, bumps it.
pub const FORMAT_VERSION: u32 = 1;

/// Fixed header: magic, endian marker, version, route count, flags, section count.
pub const FIXED_HEADER_LEN: usize = 8 + 4 * 5;
/// One section-table entry: kind, offset, length (three `u32`s).
pub const SECTION_ENTRY_LEN: usize = 12;
/// The trailing CRC-32C over every byte before it.
pub const CHECKSUM_LEN: usize = 4;

/// The sections of format version 1, in the order they appear in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// An `fst` map from routing key to route id.
    Fst = 1,
    /// `route_count` fixed-size route records.
    Routes = 2,
    /// The deduplicated string pool.
    Strings = 3,
    /// Deduplicated (Fallback, Assets) records of static sites.
    Sites = 4,
}

impl SectionKind {
    /// Every section, in file order.
    pub const ALL: [SectionKind; 4] = [SectionKind::Fst, SectionKind::Routes, SectionKind::Strings, SectionKind::Sites];

    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Fst => "fst",
            SectionKind::Routes => "routes",
            SectionKind::Strings => "strings",
            SectionKind::Sites => "sites",
        }
    }
}

/// Total header length: the fixed part and the section table.
pub const HEADER_LEN: usize = FIXED_HEADER_LEN + SECTION_ENTRY_LEN * SectionKind::ALL.len();

/// Size of one route record.
pub const ROUTE_LEN: usize = 16;
/// Route record `kind` byte of a static site.
pub const ROUTE_STATIC: u8 = 1;
/// Route record `kind` byte of a load balancer or direct origin.
pub const ROUTE_BALANCER: u8 = 2;
/// Balancer `flags` bit: connect with TLS.
pub const FLAG_HTTPS: u8 = 1;
/// "No such reference": a static site without a Sites record, a Sites record
/// without Fallback or without an Assets list.
pub const NONE: u32 = u32::MAX;

/// Separator of labels in a routing key (`com.example.api`).
pub const KEY_LABEL_SEPARATOR: u8 = b'.';
/// The last label of a wildcard's key (`com.example.*` for `*.example.com`).
pub const KEY_WILDCARD: u8 = b'*';
