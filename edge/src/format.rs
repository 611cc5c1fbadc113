//! The snapshot format's definition: every constant the writer and the
//! reader must agree on. `docs/snapshot-format.md` is the prose version.
//!
//! All integers are little-endian and nothing is aligned: a reader may load
//! a snapshot at any address (a `Vec<u8>`, an mmap, WebAssembly memory).
//!
//! The FST section's inner layout is the `fst` crate's, not ours: its
//! constants (header, footer, node layouts) are named and explained in the
//! reader, `src/fst/`.

/// The first eight bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"EDGROUTE";
/// Written as a little-endian `u32` right after the magic. A reader that
/// decodes it as anything else is reading with the wrong byte order.
pub const ENDIAN_MARKER: u32 = 0x0102_0304;
/// The exact format version this crate reads and the compiler writes.
/// Any change to the layout below, however small, bumps it.
pub const FORMAT_VERSION: u32 = 2;

/// Where the endian marker sits: right after the magic.
pub const ENDIAN_MARKER_OFFSET: usize = 8;
/// Where the format version sits (a `u32`).
pub const VERSION_OFFSET: usize = 12;
/// Where the route count sits: the number of table entries, a `u32`. Equal
/// to the FST's key count in every snapshot [`Snapshot::from_bytes`]
/// accepts; [`Snapshot::route_count`] reads it.
///
/// [`Snapshot::from_bytes`]: crate::Snapshot::from_bytes
/// [`Snapshot::route_count`]: crate::Snapshot::route_count
pub const ROUTE_COUNT_OFFSET: usize = 16;
/// Where the flags sit (a `u32`, reserved: always 0).
pub const FLAGS_OFFSET: usize = 20;
/// Where the section count sits (a `u32`, the length of the section table).
pub const SECTION_COUNT_OFFSET: usize = 24;

/// Fixed header: magic, endian marker, version, route count, flags, section count.
/// The section table starts right after it.
pub const FIXED_HEADER_LEN: usize = SECTION_COUNT_OFFSET + 4;
/// One section-table entry: kind, offset, length (three `u32`s).
pub const SECTION_ENTRY_LEN: usize = 12;
/// The trailing CRC-32C over every byte before it.
pub const CHECKSUM_LEN: usize = 4;

/// The sections of a snapshot (format version 2) and of a layer (layer
/// format version 1). A snapshot holds [`SectionKind::ALL`], a layer
/// [`SectionKind::LAYER`], each in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// An `fst` map from routing key to the offset of its route record.
    Fst = 1,
    /// The route records, in key order, end to end. A layer's may hold
    /// tombstones ([`ROUTE_TOMBSTONE`]).
    Routes = 2,
    /// A layer's lineage: the ids of its base and its parent and its depth
    /// ([`LINEAGE_LEN`] bytes).
    Lineage = 3,
    /// A layer's filter: a Bloom filter of its keys, so that a lookup skips
    /// a layer that holds none of the host's candidates without walking its
    /// index (`crate::filter`).
    Filter = 4,
}

impl SectionKind {
    /// A snapshot's sections, in file order.
    pub const ALL: [SectionKind; 2] = [SectionKind::Fst, SectionKind::Routes];
    /// A layer's sections, in file order.
    pub const LAYER: [SectionKind; 4] =
        [SectionKind::Lineage, SectionKind::Filter, SectionKind::Fst, SectionKind::Routes];

    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Fst => "fst",
            SectionKind::Routes => "routes",
            SectionKind::Lineage => "lineage",
            SectionKind::Filter => "filter",
        }
    }
}

/// Total header length: the fixed part and the section table.
pub const HEADER_LEN: usize = FIXED_HEADER_LEN + SECTION_ENTRY_LEN * SectionKind::ALL.len();

/// The first eight bytes of every layer (`docs/snapshot-format.md`,
/// "Layers"): not a snapshot's, so that neither is ever read as the other.
/// The rest of the fixed header is a snapshot's (endian marker, version,
/// entry count, flags, section count).
pub const LAYER_MAGIC: [u8; 8] = *b"EDGLAYER";
/// The exact layer format version this crate reads and the compiler writes.
pub const LAYER_FORMAT_VERSION: u32 = 1;
/// A layer's header: the fixed part and a section table of four.
pub const LAYER_HEADER_LEN: usize = FIXED_HEADER_LEN + SECTION_ENTRY_LEN * SectionKind::LAYER.len();
/// The lineage section: base id (32 bytes), parent id (32 bytes), depth
/// (`u32`: 1 for a layer written on the base itself, its parent's depth + 1
/// otherwise), tombstone count (`u32`).
pub const LINEAGE_LEN: usize = 32 + 32 + 4 + 4;
/// Where the parent id sits in the lineage section (the base id is at 0).
pub const LINEAGE_PARENT_OFFSET: usize = 32;
/// Where the depth sits in the lineage section.
pub const LINEAGE_DEPTH_OFFSET: usize = 64;
/// Where the tombstone count sits in the lineage section.
pub const LINEAGE_TOMBSTONES_OFFSET: usize = 68;
/// Bits of a layer's filter per entry (at least: the length is rounded up
/// to a power of two): with [`FILTER_PROBES`] probes, at most about 0.5 %
/// of the lookups of a key the layer does not hold walk its index.
pub const FILTER_BITS_PER_ENTRY: usize = 16;
/// The fewest bytes a filter has (and its length is a power of two).
pub const FILTER_MIN_LEN: usize = 8;
/// Bits each key sets in a filter (double hashing of its key hash).
pub const FILTER_PROBES: u32 = 3;

/// The most layers a state may hold on its base. A lookup tests every
/// layer's filter (and walks the index of each that may hold a candidate),
/// so a longer stack is compacted instead
/// (`edgeroute compact`); the WebAssembly module keeps this many in a
/// fixed table.
pub const MAX_LAYERS: usize = 128;

/// Route record `kind` byte of a static site.
pub const ROUTE_STATIC: u8 = 1;
/// Route record `kind` byte of a load balancer or direct origin.
pub const ROUTE_BALANCER: u8 = 2;
/// Route record `kind` byte of a tombstone, in layers only: the key was
/// deleted; nothing follows the kind byte.
pub const ROUTE_TOMBSTONE: u8 = 3;
/// Balancer `flags` bit: connect with TLS.
pub const FLAG_HTTPS: u8 = 1;
/// Static `flags` bit: the route has a site record (Assets or Fallback).
pub const STATIC_HAS_SITE: u8 = 1;
/// Static `flags` bit: the site record is an earlier route's; a LEB128
/// offset (in the routes section) of that site record follows instead.
pub const STATIC_SITE_REF: u8 = 2;
/// Site `flags` bit: a Fallback string follows.
pub const SITE_FALLBACK: u8 = 1;
/// Site `flags` bit: an Assets list follows.
pub const SITE_ASSETS: u8 = 2;
/// Site `flags` bit: the Assets offset table has 4-byte entries, not 2-byte.
pub const SITE_WIDE_OFFSETS: u8 = 4;
/// Low bit of a string field's LEB128 tag: 1 = the string's bytes follow
/// in place (tag >> 1 is the length); 0 = tag >> 1 is the offset, in the
/// routes section, of an earlier in-place field with the same string.
pub const STRING_INLINE: u32 = 1;

/// Separator of labels in a routing key (`com.example.api`).
pub const KEY_LABEL_SEPARATOR: u8 = b'.';
/// The last label of a wildcard's key (`com.example.*` for `*.example.com`).
pub const KEY_WILDCARD: u8 = b'*';
