//! [`Layer`]: a validated, zero-copy view of a layer file, and the rules
//! that stack layers on a base ([`Layer::check_on`]).
//!
//! A layer holds the routes a change upserted and the keys it deleted
//! (tombstones), in the same index and record layout as a snapshot, plus a
//! lineage section naming the base snapshot it applies to, the layer (or
//! base) it was written on, and its depth in that chain
//! (`docs/snapshot-format.md`, "Layers").

use core::fmt;
use core::ops::Range;

use crate::crc32c::crc32c;
use crate::error::SnapshotError;
use crate::format::*;
use crate::fst::Fst;
use crate::id::SnapshotId;
use crate::table::{domain_to_key, for_each_record, get, record_at, Record, Table};
use crate::wire::u32_le;

/// A layer, validated once and then read in place, like a
/// [`Snapshot`](crate::Snapshot).
#[derive(Clone)]
pub struct Layer<D> {
    data: D,
    table: Table,
    lineage: Lineage,
    /// Where the filter section sits in `data`.
    filter: Range<usize>,
}

/// What a layer's lineage section says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lineage {
    base: SnapshotId,
    parent: SnapshotId,
    depth: u32,
    tombstones: u32,
}

/// Why a layer was refused: its bytes, or its place on a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerError {
    /// The bytes are not a well-formed layer; the inner error says where.
    Format(SnapshotError),
    /// The lineage section is inconsistent: depth 0, a first layer whose
    /// parent is not its base, or more tombstones than entries.
    BadLineage,
    /// The tombstone count of the lineage section differs from the records.
    TombstoneCountMismatch { lineage: u32, records: u32 },
    /// The layer was written on another base snapshot.
    ForeignBase { expected: SnapshotId, found: SnapshotId },
    /// The layer was not written on the state's top: its parent or depth
    /// is not the one that comes next.
    OutOfOrder { expected_parent: SnapshotId, found_parent: SnapshotId, expected_depth: u32, found_depth: u32 },
    /// The state holds [`MAX_LAYERS`] layers already: compact it.
    TooManyLayers,
}

impl From<SnapshotError> for LayerError {
    fn from(e: SnapshotError) -> Self {
        LayerError::Format(e)
    }
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerError::Format(e) => e.describe(f, "layer"),
            LayerError::BadLineage => f.write_str("layer lineage section is inconsistent"),
            LayerError::TombstoneCountMismatch { lineage, records } => {
                write!(f, "layer lineage says {lineage} tombstones but its records hold {records}")
            }
            LayerError::ForeignBase { expected, found } => {
                write!(f, "layer was written on base {} but the state's base is {}", found.short(), expected.short())
            }
            LayerError::OutOfOrder { expected_parent, found_parent, expected_depth, found_depth } => write!(
                f,
                "layer is out of order: it was written on {} at depth {found_depth}, \
                 but the state's top is {} at depth {}",
                found_parent.short(),
                expected_parent.short(),
                expected_depth - 1
            ),
            LayerError::TooManyLayers => {
                write!(f, "the state holds {MAX_LAYERS} layers already, the most a state may: compact it")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LayerError {}

impl<D: AsRef<[u8]>> Layer<D> {
    /// Validates `data` as a layer file and wraps it: length, magic, endian
    /// marker, layer format version, the CRC-32C, the section table, the
    /// lineage, then the index and every record as
    /// [`Snapshot::from_bytes`](crate::Snapshot::from_bytes) does, records
    /// that are tombstones included. O(size), never panics.
    pub fn from_bytes(data: D) -> Result<Layer<D>, LayerError> {
        Self::checked(data, true)
    }

    /// [`from_bytes`](Self::from_bytes) for bytes whose CRC-32C the caller
    /// verified already.
    pub fn from_bytes_checksum_verified(data: D) -> Result<Layer<D>, LayerError> {
        Self::checked(data, false)
    }

    /// Wraps bytes that [`from_bytes`](Self::from_bytes) of this same
    /// crate accepted already (the host's native validation, or another
    /// instance of the WebAssembly module): header, section table, lineage
    /// and the FST's header and footer only, O(1). Reads stay
    /// bounds-checked, so other bytes never panic, but they may resolve
    /// wrongly: a filter that misses a key hides that key's route or
    /// tombstone, which only the full validation rules out.
    pub fn from_bytes_trusted(data: D) -> Result<Layer<D>, LayerError> {
        let (table, lineage, filter) = Self::check_header(data.as_ref(), false)?;
        Ok(Layer { data, table, lineage, filter })
    }

    fn checked(data: D, verify_checksum: bool) -> Result<Layer<D>, LayerError> {
        let (table, lineage, filter) = Self::check_header(data.as_ref(), verify_checksum)?;
        let records = table.check(data.as_ref(), true, data.as_ref().get(filter.clone()))?;
        if records != lineage.tombstones {
            return Err(LayerError::TombstoneCountMismatch { lineage: lineage.tombstones, records });
        }
        Ok(Layer { data, table, lineage, filter })
    }

    fn check_header(bytes: &[u8], verify_checksum: bool) -> Result<(Table, Lineage, Range<usize>), LayerError> {
        let len = bytes.len();
        if len < LAYER_HEADER_LEN + CHECKSUM_LEN {
            return Err(SnapshotError::TooShort { len }.into());
        }
        if u32::try_from(len).is_err() {
            return Err(SnapshotError::TooLarge.into());
        }
        if bytes[..LAYER_MAGIC.len()] != LAYER_MAGIC {
            return Err(SnapshotError::BadMagic.into());
        }
        let field = |at: usize| u32_le(bytes, at).unwrap_or(0);
        if field(ENDIAN_MARKER_OFFSET) != ENDIAN_MARKER {
            return Err(SnapshotError::BadEndianness.into());
        }
        let version = field(VERSION_OFFSET);
        if version != LAYER_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found: version }.into());
        }
        if verify_checksum {
            let body = len - CHECKSUM_LEN;
            let stored = u32_le(bytes, body).unwrap_or(0);
            let computed = crc32c(&bytes[..body]);
            if stored != computed {
                return Err(SnapshotError::BadChecksum { stored, computed }.into());
            }
        }
        let count = field(ROUTE_COUNT_OFFSET);
        if field(FLAGS_OFFSET) != 0 || field(SECTION_COUNT_OFFSET) as usize != SectionKind::LAYER.len() {
            return Err(SnapshotError::BadHeader.into());
        }
        let mut ranges: [Range<usize>; 4] = [0..0, 0..0, 0..0, 0..0];
        let mut expect_offset = LAYER_HEADER_LEN;
        for (i, kind) in SectionKind::LAYER.iter().enumerate() {
            let entry = FIXED_HEADER_LEN + i * SECTION_ENTRY_LEN;
            let (k, off, n) = (field(entry), field(entry + 4) as usize, field(entry + 8) as usize);
            if k != *kind as u32 || off != expect_offset {
                return Err(SnapshotError::BadHeader.into());
            }
            expect_offset = off.checked_add(n).ok_or(SnapshotError::BadHeader)?;
            ranges[i] = off..expect_offset;
        }
        if expect_offset != len - CHECKSUM_LEN || ranges[0].len() != LINEAGE_LEN {
            return Err(SnapshotError::BadHeader.into());
        }
        let [lineage, filter, fst, routes] = ranges;
        // A filter's length is a power of two (its probes mask a bit
        // index), at least FILTER_MIN_LEN bytes.
        if filter.len() < FILTER_MIN_LEN || !filter.len().is_power_of_two() {
            return Err(SnapshotError::BadFilterLength { len: filter.len() }.into());
        }
        let lineage = Lineage::read(&bytes[lineage])?;
        if lineage.tombstones > count {
            return Err(LayerError::BadLineage);
        }
        Ok((Table::new(bytes, count, fst, routes)?, lineage, filter))
    }

    /// The id of the base snapshot this layer applies to.
    pub fn base(&self) -> SnapshotId {
        self.lineage.base
    }

    /// The id of the layer it was written on (the base's, for the first).
    pub fn parent(&self) -> SnapshotId {
        self.lineage.parent
    }

    /// Its place on the base: 1 for the first layer, then 2, 3, …
    pub fn depth(&self) -> u32 {
        self.lineage.depth
    }

    /// Entries: upserted routes and tombstones.
    pub fn entry_count(&self) -> u32 {
        self.table.count
    }

    /// Keys this layer deletes.
    pub fn tombstone_count(&self) -> u32 {
        self.lineage.tombstones
    }

    /// Routes this layer adds or replaces.
    pub fn upsert_count(&self) -> u32 {
        self.table.count - self.lineage.tombstones
    }

    /// The layer's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_ref()
    }

    pub(crate) fn fst(&self) -> Fst<'_> {
        self.table.fst(self.data.as_ref())
    }

    /// Whether this layer may hold the key of hash `hash` (a
    /// [`key_hash`](crate::key_hash)): `false` means it does not, so a
    /// lookup need not walk its index.
    #[inline]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        // Bytes that cannot be read (never, after check_header) are no
        // filter, which says "maybe".
        crate::filter::may_contain(self.data.as_ref().get(self.filter.clone()).unwrap_or_default(), hash)
    }

    /// The record at `offset` of the routes section: what the index gives.
    #[inline]
    pub fn record_at(&self, offset: u32) -> Option<Record<'_>> {
        record_at(self.table.routes(self.data.as_ref()), offset)
    }

    /// The record this layer holds for `domain` (normalized, as stored:
    /// `*.` in front for a wildcard), if any.
    pub fn record_of(&self, domain: &str) -> Option<Record<'_>> {
        let mut buf = [0u8; crate::MAX_KEY_LEN];
        let key = domain_to_key(domain, &mut buf)?;
        self.record_at(u32::try_from(get(self.fst(), key)?).ok()?)
    }

    /// Calls `f(domain, record)` for every entry in key order (`domain` as
    /// stored, `*.` in front for a wildcard). Allocates nothing.
    pub fn for_each_record<'s>(&'s self, f: impl FnMut(&str, Record<'s>)) {
        for_each_record(self.fst(), self.table.routes(self.data.as_ref()), f)
    }

    /// Whether this layer goes next on a state whose base is `base`, whose
    /// top (its last layer, or the base) is `top`, and that holds `layers`
    /// layers: same base, written on that top at the next depth, and room
    /// for one more.
    pub fn check_on(&self, base: &SnapshotId, top: &SnapshotId, layers: usize) -> Result<(), LayerError> {
        if self.lineage.base != *base {
            return Err(LayerError::ForeignBase { expected: *base, found: self.lineage.base });
        }
        let expected_depth = u32::try_from(layers).unwrap_or(u32::MAX).saturating_add(1);
        if self.lineage.parent != *top || self.lineage.depth != expected_depth {
            return Err(LayerError::OutOfOrder {
                expected_parent: *top,
                found_parent: self.lineage.parent,
                expected_depth,
                found_depth: self.lineage.depth,
            });
        }
        if layers >= MAX_LAYERS {
            return Err(LayerError::TooManyLayers);
        }
        Ok(())
    }
}

impl Lineage {
    fn read(section: &[u8]) -> Result<Lineage, LayerError> {
        let id = |at: usize| -> Option<SnapshotId> {
            let mut digest = [0u8; SnapshotId::LEN];
            digest.copy_from_slice(section.get(at..at + SnapshotId::LEN)?);
            Some(SnapshotId::from_digest(digest))
        };
        let (Some(base), Some(parent), Some(depth), Some(tombstones)) = (
            id(0),
            id(LINEAGE_PARENT_OFFSET),
            u32_le(section, LINEAGE_DEPTH_OFFSET),
            u32_le(section, LINEAGE_TOMBSTONES_OFFSET),
        ) else {
            return Err(SnapshotError::BadHeader.into());
        };
        // The first layer is written on the base itself; a later one on a
        // layer, which is never the base.
        if depth == 0 || (depth == 1) != (parent == base) {
            return Err(LayerError::BadLineage);
        }
        Ok(Lineage { base, parent, depth, tombstones })
    }
}

impl<D> fmt::Debug for Layer<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer").field("lineage", &self.lineage).field("table", &self.table).finish_non_exhaustive()
    }
}
