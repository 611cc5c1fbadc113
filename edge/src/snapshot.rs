//! [`Snapshot`]: a validated, zero-copy view of a snapshot file.

use core::cmp::Ordering;
use core::fmt;
use core::ops::Range;

use crate::crc32c::crc32c;
use crate::error::SnapshotError;
use crate::format::*;
use crate::fst::Fst;
use crate::table::{domain_to_key, for_each_record, get, record_at, Record, Table};
use crate::wire::{u16_le, u32_le, utf8, Reader};

/// A routing table snapshot, validated once and then read in place.
///
/// `D` is anything that holds the bytes: `&[u8]`, `Vec<u8>`, an mmap.
/// Construction ([`Snapshot::from_bytes`]) checks the checksum and every
/// structure and costs O(size of the file); it never panics, whatever the
/// bytes. After that, resolving allocates nothing and never panics.
#[derive(Clone)]
pub struct Snapshot<D> {
    data: D,
    layout: Table,
}

/// The size of one section, for `inspect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    pub kind: SectionKind,
    pub offset: usize,
    pub len: usize,
}

impl<D: AsRef<[u8]>> Snapshot<D> {
    /// Validates `data` and wraps it.
    ///
    /// Checks, in order: length, magic, endian marker, format version, the
    /// CRC-32C over the whole file, the section table, then the FST (every
    /// key a normalized routing key) together with the route records it
    /// points to, which must lie in key order, end to end, each well formed
    /// with only backward references. Any failure refuses the whole
    /// snapshot.
    pub fn from_bytes(data: D) -> Result<Snapshot<D>, SnapshotError> {
        let layout = Self::check_header(data.as_ref(), true)?;
        let snap = Snapshot { data, layout };
        snap.check_body()?;
        Ok(snap)
    }

    /// Like [`from_bytes`](Self::from_bytes), but trusts the caller to have
    /// verified the trailing CRC-32C already (with a hardware CRC, say).
    /// Every structural check still runs, so the result is just as safe to
    /// use; only corruption that keeps the structure valid goes unnoticed.
    pub fn from_bytes_checksum_verified(data: D) -> Result<Snapshot<D>, SnapshotError> {
        let layout = Self::check_header(data.as_ref(), false)?;
        let snap = Snapshot { data, layout };
        snap.check_body()?;
        Ok(snap)
    }

    /// [`from_bytes_checksum_verified`](Self::from_bytes_checksum_verified)
    /// with the walk split over `threads` threads: the same checks, the same
    /// verdict, in about 1/`threads` of the time on as many free cores (a
    /// host validating a base of millions of routes).
    #[cfg(feature = "std")]
    pub fn from_bytes_checksum_verified_on(data: D, threads: usize) -> Result<Snapshot<D>, SnapshotError> {
        let layout = Self::check_header(data.as_ref(), false)?;
        layout.check_on(data.as_ref(), false, None, threads)?;
        Ok(Snapshot { data, layout })
    }

    /// Wraps bytes that [`from_bytes`](Self::from_bytes) has already accepted
    /// (for example another WebAssembly instance over the same immutable
    /// memory image), checking only the header, the section table and the
    /// FST's own header and footer: O(1), whatever the snapshot's size. No
    /// checksum, no walk, no route record is read.
    ///
    /// This is also the cheap way to read header fields of a snapshot that
    /// was validated elsewhere (by the WebAssembly module, say):
    /// `Snapshot::from_bytes_trusted(bytes)?.route_count()`.
    ///
    /// Reads stay bounds-checked, so bytes that were *not* validated can
    /// give wrong answers but never read out of bounds.
    pub fn from_bytes_trusted(data: D) -> Result<Snapshot<D>, SnapshotError> {
        let layout = Self::check_header(data.as_ref(), false)?;
        Ok(Snapshot { data, layout })
    }

    fn check_header(bytes: &[u8], verify_checksum: bool) -> Result<Table, SnapshotError> {
        let len = bytes.len();
        if len < HEADER_LEN + CHECKSUM_LEN {
            return Err(SnapshotError::TooShort { len });
        }
        if u32::try_from(len).is_err() {
            return Err(SnapshotError::TooLarge);
        }
        if bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        // `len >= HEADER_LEN`, so every header field reads.
        let field = |at: usize| u32_le(bytes, at).unwrap_or(0);
        if field(ENDIAN_MARKER_OFFSET) != ENDIAN_MARKER {
            return Err(SnapshotError::BadEndianness);
        }
        let version = field(VERSION_OFFSET);
        if version != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found: version });
        }
        if verify_checksum {
            let body = len - CHECKSUM_LEN;
            let stored = u32_le(bytes, body).unwrap_or(0);
            let computed = crc32c(&bytes[..body]);
            if stored != computed {
                return Err(SnapshotError::BadChecksum { stored, computed });
            }
        }
        let route_count = field(ROUTE_COUNT_OFFSET);
        let (flags, section_count) = (field(FLAGS_OFFSET), field(SECTION_COUNT_OFFSET));
        if flags != 0 || section_count as usize != SectionKind::ALL.len() {
            return Err(SnapshotError::BadHeader);
        }
        // The sections must be exactly the known kinds, in order, end to end,
        // from the end of the header to the checksum.
        let mut ranges = [0..0, 0..0];
        let mut expect_offset = HEADER_LEN;
        for (i, kind) in SectionKind::ALL.iter().enumerate() {
            let entry = FIXED_HEADER_LEN + i * SECTION_ENTRY_LEN;
            let (k, off, n) = (
                u32_le(bytes, entry).unwrap_or(0),
                u32_le(bytes, entry + 4).unwrap_or(0) as usize,
                u32_le(bytes, entry + 8).unwrap_or(0) as usize,
            );
            if k != *kind as u32 || off != expect_offset {
                return Err(SnapshotError::BadHeader);
            }
            expect_offset = off.checked_add(n).ok_or(SnapshotError::BadHeader)?;
            ranges[i] = off..expect_offset;
        }
        if expect_offset != len - CHECKSUM_LEN {
            return Err(SnapshotError::BadHeader);
        }
        let [fst, routes] = ranges;
        Table::new(bytes, route_count, fst, routes)
    }

    fn check_body(&self) -> Result<(), SnapshotError> {
        // A snapshot holds routes only: a tombstone is a malformed record.
        self.layout.check(self.data.as_ref(), false, None).map(|_| ())
    }

    pub(crate) fn fst(&self) -> Fst<'_> {
        self.layout.fst(self.data.as_ref())
    }

    /// The route whose record starts at `offset` in the routes section: the
    /// output the index gives for its key.
    #[inline]
    pub fn route_at(&self, offset: u32) -> Option<Route<'_>> {
        match record_at(self.layout.routes(self.data.as_ref()), offset)? {
            Record::Route(route) => Some(route),
            Record::Tombstone => None,
        }
    }

    /// The route of `domain` (normalized, as stored: `*.` in front for a
    /// wildcard), looked up exactly, if the snapshot holds it.
    pub fn route_of(&self, domain: &str) -> Option<Route<'_>> {
        let mut buf = [0u8; crate::MAX_KEY_LEN];
        let key = domain_to_key(domain, &mut buf)?;
        self.route_at(u32::try_from(get(self.fst(), key)?).ok()?)
    }

    /// How many routes (table entries) the snapshot holds: the header's
    /// route count ([`ROUTE_COUNT_OFFSET`]), which construction checked
    /// against the FST's key count. O(1).
    pub fn route_count(&self) -> u32 {
        self.layout.count
    }

    /// The snapshot's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_ref()
    }

    /// The snapshot's format version (always [`FORMAT_VERSION`] once parsed).
    pub fn format_version(&self) -> u32 {
        FORMAT_VERSION
    }

    /// The sections, in file order.
    pub fn sections(&self) -> [SectionInfo; 2] {
        let l = &self.layout;
        let info = |kind, r: &Range<usize>| SectionInfo { kind, offset: r.start, len: r.len() };
        [info(SectionKind::Fst, &l.fst), info(SectionKind::Routes, &l.routes)]
    }

    /// Calls `f(domain, route)` for every entry in key order, where `domain`
    /// is the table's Domain as stored (`api.example.com`, `*.example.com`).
    /// Allocates nothing: domains are rebuilt in a fixed buffer.
    pub fn for_each_route<'s>(&'s self, mut f: impl FnMut(&str, Route<'s>)) {
        for_each_record(self.fst(), self.layout.routes(self.data.as_ref()), |domain, record| {
            if let Record::Route(route) = record {
                f(domain, route);
            }
        });
    }
}

/// Reads a site record (its Fallback and Assets) without checking order.
#[inline]
pub(crate) fn read_site<'s>(r: &mut Reader<'s>) -> Option<(Option<&'s str>, Option<Assets<'s>>)> {
    let flags = r.u8()?;
    if flags & !(SITE_FALLBACK | SITE_ASSETS | SITE_WIDE_OFFSETS) != 0 {
        return None;
    }
    let fallback = if flags & SITE_FALLBACK != 0 { Some(utf8(r.string()?)?) } else { None };
    let assets = if flags & SITE_ASSETS != 0 { Some(read_assets(r, flags)?) } else { None };
    Some((fallback, assets))
}

/// Reads an Assets list: LEB128 count, the offset table (2- or 4-byte
/// entries by `flags`), LEB128 length of the entries, the entries.
#[inline]
fn read_assets<'s>(r: &mut Reader<'s>, flags: u8) -> Option<Assets<'s>> {
    let count = r.leb()? as usize;
    let wide = flags & SITE_WIDE_OFFSETS != 0;
    let table = r.bytes(count.checked_mul(if wide { 4 } else { 2 })?)?;
    let len = r.leb()? as usize;
    let entries = r.at;
    r.bytes(len)?;
    Some(Assets { section: r.data, table, entries, wide })
}

impl<D> fmt::Debug for Snapshot<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("layout", &self.layout).finish_non_exhaustive()
    }
}

/// One table entry's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'s> {
    /// A static site in S3.
    Static(StaticSite<'s>),
    /// A load balancer or a direct origin.
    Balancer(Origin<'s>),
}

/// `s3://BUCKET/PREFIX`, with its optional Assets list and Fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticSite<'s> {
    pub bucket: &'s str,
    /// Without leading or trailing slashes; empty for the bucket's root.
    pub prefix: &'s str,
    pub assets: Option<Assets<'s>>,
    pub fallback: Option<&'s str>,
}

/// Where a balancer route sends requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin<'s> {
    pub host: &'s str,
    pub port: u16,
    pub scheme: Scheme,
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A static site's Assets list, sorted by bytes and binary-searched in
/// place: an offset table over string fields laid end to end.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Assets<'s> {
    /// The routes section: entries may refer to earlier strings anywhere in it.
    section: &'s [u8],
    table: &'s [u8],
    /// Where the entries start in `section`.
    pub(crate) entries: usize,
    wide: bool,
}

impl<'s> Assets<'s> {
    pub fn len(&self) -> usize {
        self.table.len() / if self.wide { 4 } else { 2 }
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Where entry `i` starts among the entries.
    #[inline]
    pub(crate) fn offset(&self, i: usize) -> Option<usize> {
        if self.wide {
            u32_le(self.table, i.checked_mul(4)?).map(|o| o as usize)
        } else {
            u16_le(self.table, i.checked_mul(2)?).map(usize::from)
        }
    }

    #[inline]
    fn bytes(&self, i: usize) -> Option<&'s [u8]> {
        Reader::new(self.section, self.entries.checked_add(self.offset(i)?)?).string()
    }

    /// The `i`th key, in ascending byte order.
    pub fn get(&self, i: usize) -> Option<&'s str> {
        utf8(self.bytes(i)?)
    }

    pub fn iter(&self) -> impl Iterator<Item = &'s str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Finds the asset whose bytes equal the `name` sequence.
    pub fn find<I>(&self, name: I) -> Option<&'s str>
    where
        I: Iterator<Item = u8> + Clone,
    {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let asset = self.bytes(mid)?;
            match asset.iter().copied().cmp(name.clone()) {
                Ordering::Equal => return utf8(asset),
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
            }
        }
        None
    }
}

impl fmt::Debug for Assets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fst::FstError;
    use crate::table::check_string;
    use std::vec::Vec;

    /// A snapshot of `keys` (routing keys, ascending), each routed to the
    /// static site `s3://b`, written by hand as `docs/snapshot-format.md` says.
    fn snapshot(keys: &[&str]) -> Vec<u8> {
        let record = [ROUTE_STATIC, 0, 3, b'b', 1];
        let mut fst = ::fst::MapBuilder::memory();
        for (i, k) in keys.iter().enumerate() {
            fst.insert(k, (i * record.len()) as u64).unwrap();
        }
        let fst = fst.into_inner().unwrap();
        let routes: Vec<u8> = keys.iter().flat_map(|_| record).collect();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        for v in [ENDIAN_MARKER, FORMAT_VERSION, keys.len() as u32, 0, 2] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut at = HEADER_LEN;
        for (kind, len) in [(SectionKind::Fst, fst.len()), (SectionKind::Routes, routes.len())] {
            for v in [kind as u32, at as u32, len as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            at += len;
        }
        out.extend_from_slice(&fst);
        out.extend_from_slice(&routes);
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn trusted_route_count_reads_only_the_header() {
        let good = snapshot(&["com.example", "com.example.api", "org.example.*"]);
        assert_eq!(Snapshot::from_bytes(&good[..]).unwrap().route_count(), 3);
        assert_eq!(u32_le(&good, ROUTE_COUNT_OFFSET), Some(3));
        // A broken route record (and a checksum fixed up to match) is
        // refused by validation, but the trusted view never reads it.
        let mut bad = good.clone();
        let routes_at = Snapshot::from_bytes(&good[..]).unwrap().sections()[1].offset;
        bad[routes_at] = 9;
        let body = bad.len() - CHECKSUM_LEN;
        let crc = crc32c(&bad[..body]);
        bad[body..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Snapshot::from_bytes(&bad[..]).unwrap_err(), SnapshotError::BadRoute { offset: 0 });
        assert_eq!(Snapshot::from_bytes_trusted(&bad[..]).unwrap().route_count(), 3);
        // A bad key is named by its position.
        let odd = snapshot(&["com.example", "com.example..x"]);
        assert_eq!(Snapshot::from_bytes(&odd[..]).unwrap_err(), SnapshotError::BadFst(FstError::BadKey { index: 1 }));
    }

    #[test]
    fn leb128_is_shortest_and_32_bit() {
        let read = |b: &[u8]| Reader::new(b, 0).leb();
        assert_eq!(read(&[0x00]), Some(0));
        assert_eq!(read(&[0x7F]), Some(127));
        assert_eq!(read(&[0x80, 0x01]), Some(128));
        assert_eq!(read(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]), Some(u32::MAX));
        assert_eq!(read(&[0x85, 0x00]), None, "longer than needed");
        assert_eq!(read(&[0xFF, 0xFF, 0xFF, 0xFF, 0x1F]), None, "more than 32 bits");
        assert_eq!(read(&[0x80]), None, "truncated");
    }

    #[test]
    fn string_references_must_point_back_at_bytes_in_place() {
        // 0: "ab" in place (tag 2<<1|1 = 5); 3: a reference to field 0 (tag 0).
        let data = [5, b'a', b'b', 0];
        let mut r = Reader::new(&data, 3);
        assert_eq!(check_string(&mut r), Some(&b"ab"[..]));
        assert_eq!(r.at, 4);
        // A reference to a reference is refused.
        let data = [5, b'a', b'b', 0, 6];
        assert_eq!(check_string(&mut Reader::new(&data, 4)), None);
        // A reference forwards, and one to a field that overlaps it.
        let data = [2, 5, b'a', b'b'];
        assert_eq!(check_string(&mut Reader::new(&data, 0)), None);
        let data = [5, 0, b'b'];
        assert_eq!(check_string(&mut Reader::new(&data, 1)), None);
        // Past the end, and not UTF-8.
        assert_eq!(check_string(&mut Reader::new(&[9, b'a'], 0)), None);
        assert_eq!(check_string(&mut Reader::new(&[3, 0xFF], 0)), None);
    }
}
