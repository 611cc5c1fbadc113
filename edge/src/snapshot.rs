//! [`Snapshot`]: a validated, zero-copy view of a snapshot file.

use core::cmp::Ordering;
use core::fmt;
use core::ops::Range;

use crate::crc32c::crc32c;
use crate::error::SnapshotError;
use crate::format::*;
use crate::fst::{Fst, FstError, MAX_KEY_LEN};
use crate::host::{is_host_byte, MAX_LABEL_LEN};

/// A routing table snapshot, validated once and then read in place.
///
/// `D` is anything that holds the bytes: `&[u8]`, `Vec<u8>`, an mmap.
/// Construction ([`Snapshot::from_bytes`]) checks the checksum and every
/// structure and costs O(size of the file); it never panics, whatever the
/// bytes. After that, resolving allocates nothing and never panics.
#[derive(Clone)]
pub struct Snapshot<D> {
    data: D,
    layout: Layout,
}

/// Where each section lives; all ranges were checked against the file.
#[derive(Clone, Debug)]
struct Layout {
    route_count: u32,
    fst: Range<usize>,
    routes: Range<usize>,
    strings: Range<usize>,
    sites: Range<usize>,
    fst_root: usize,
}

/// The size of one section, for `inspect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    pub kind: SectionKind,
    pub offset: usize,
    pub len: usize,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(b.try_into().ok()?))
}

/// Bytes of the LEB128 encoding of `n`.
fn leb128_len(n: usize) -> usize {
    let bits = usize::BITS - (n | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Reads the string at `offset` in the pool: a LEB128 length, then UTF-8.
pub(crate) fn string_at(pool: &[u8], offset: u32) -> Option<&str> {
    core::str::from_utf8(bytes_at(pool, offset)?).ok()
}

/// The bytes of the string at `offset`, without the UTF-8 check.
#[inline]
fn bytes_at(pool: &[u8], offset: u32) -> Option<&[u8]> {
    let mut at = offset as usize;
    let mut len: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *pool.get(at)?;
        at += 1;
        len |= ((b & 0x7F) as u64) << shift;
        if b & 0x80 == 0 {
            if b == 0 && shift > 0 {
                return None; // not the shortest encoding: never written
            }
            let len = usize::try_from(len).ok()?;
            return pool.get(at..at.checked_add(len)?);
        }
    }
    None
}

impl<D: AsRef<[u8]>> Snapshot<D> {
    /// Validates `data` and wraps it.
    ///
    /// Checks, in order: length, magic, endian marker, format version, the
    /// CRC-32C over the whole file, the section table, the FST (every key a
    /// normalized routing key, route ids dense and in key order), every route
    /// record, every string it references, every site record and its sorted
    /// Assets. Any failure refuses the whole snapshot.
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

    /// Wraps bytes that [`from_bytes`](Self::from_bytes) has already accepted
    /// (for example another WebAssembly instance over the same immutable
    /// memory image), checking only the header and section table, O(1).
    ///
    /// Reads stay bounds-checked, so bytes that were *not* validated can
    /// give wrong answers but never read out of bounds.
    pub fn from_bytes_trusted(data: D) -> Result<Snapshot<D>, SnapshotError> {
        let layout = Self::check_header(data.as_ref(), false)?;
        Ok(Snapshot { data, layout })
    }

    fn check_header(bytes: &[u8], verify_checksum: bool) -> Result<Layout, SnapshotError> {
        let len = bytes.len();
        if len < HEADER_LEN + CHECKSUM_LEN {
            return Err(SnapshotError::TooShort { len });
        }
        if u32::try_from(len).is_err() {
            return Err(SnapshotError::TooLarge);
        }
        if bytes[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let field = |i: usize| u32_at(bytes, 8 + 4 * i).unwrap_or(0);
        if field(0) != ENDIAN_MARKER {
            return Err(SnapshotError::BadEndianness);
        }
        if field(1) != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found: field(1) });
        }
        if verify_checksum {
            let body = len - CHECKSUM_LEN;
            let stored = u32_at(bytes, body).unwrap_or(0);
            let computed = crc32c(&bytes[..body]);
            if stored != computed {
                return Err(SnapshotError::BadChecksum { stored, computed });
            }
        }
        let route_count = field(2);
        let (flags, section_count) = (field(3), field(4));
        if flags != 0 || section_count as usize != SectionKind::ALL.len() {
            return Err(SnapshotError::BadHeader);
        }
        // The sections must be exactly the known kinds, in order, end to end,
        // from the end of the header to the checksum.
        let mut ranges = [0..0, 0..0, 0..0, 0..0];
        let mut expect_offset = HEADER_LEN;
        for (i, kind) in SectionKind::ALL.iter().enumerate() {
            let entry = FIXED_HEADER_LEN + i * SECTION_ENTRY_LEN;
            let (k, off, n) = (
                u32_at(bytes, entry).unwrap_or(0),
                u32_at(bytes, entry + 4).unwrap_or(0) as usize,
                u32_at(bytes, entry + 8).unwrap_or(0) as usize,
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
        let [fst, routes, strings, sites] = ranges;
        if routes.len() != route_count as usize * ROUTE_LEN {
            return Err(SnapshotError::BadHeader);
        }
        let fst_bytes = &bytes[fst.clone()];
        let parsed = Fst::new(fst_bytes)?;
        if parsed.len() != route_count as u64 {
            return Err(SnapshotError::RouteCountMismatch { header: route_count, fst: parsed.len() });
        }
        let fst_root = parsed.root_addr();
        Ok(Layout { route_count, fst, routes, strings, sites, fst_root })
    }

    fn check_body(&self) -> Result<(), SnapshotError> {
        self.fst().validate(valid_key)?;
        self.check_pools()?;
        for id in 0..self.layout.route_count {
            self.check_route(id)?;
        }
        Ok(())
    }

    /// The string pool and the sites section must each be an exact sequence
    /// of well-formed entries, end to end: a corrupted length that still
    /// points inside the section shows up as a misaligned tail.
    fn check_pools(&self) -> Result<(), SnapshotError> {
        let strings = self.section(&self.layout.strings);
        let mut at = 0usize;
        while at < strings.len() {
            let offset = at as u32;
            let s = string_at(strings, offset).ok_or(SnapshotError::BadString { offset })?;
            at += leb128_len(s.len()) + s.len();
        }
        let sites = self.section(&self.layout.sites);
        let mut at = 0usize;
        while at < sites.len() {
            let offset = at as u32;
            let site = self.site(offset).ok_or(SnapshotError::BadSite { offset })?;
            self.check_site(offset)?;
            at += 8 + site.assets.map_or(0, |a| a.len() * 4);
        }
        Ok(())
    }

    fn check_route(&self, id: u32) -> Result<(), SnapshotError> {
        let bad = SnapshotError::BadRoute { id };
        let rec = self.record(id).ok_or(bad)?;
        let strings = self.section(&self.layout.strings);
        let string = |off: u32| string_at(strings, off).ok_or(SnapshotError::BadString { offset: off });
        let (kind, flags, port) = (rec[0], rec[1], u16_at(rec, 2).unwrap_or(0));
        let [a, b, c] = [4, 8, 12].map(|i| u32_at(rec, i).unwrap_or(0));
        match kind {
            ROUTE_STATIC => {
                if flags != 0 || port != 0 {
                    return Err(bad);
                }
                if string(a)?.is_empty() {
                    return Err(bad);
                }
                string(b)?;
                if c != NONE {
                    self.check_site(c)?;
                }
            }
            ROUTE_BALANCER => {
                if flags & !FLAG_HTTPS != 0 || port == 0 || b != 0 || c != 0 {
                    return Err(bad);
                }
                if string(a)?.is_empty() {
                    return Err(bad);
                }
            }
            _ => return Err(bad),
        }
        Ok(())
    }

    fn check_site(&self, offset: u32) -> Result<(), SnapshotError> {
        let bad = SnapshotError::BadSite { offset };
        let site = self.site(offset).ok_or(bad)?;
        let strings = self.section(&self.layout.strings);
        if let Some(f) = site.fallback_ref {
            string_at(strings, f).ok_or(SnapshotError::BadString { offset: f })?;
        }
        if let Some(assets) = site.assets {
            let mut prev: Option<&str> = None;
            for i in 0..assets.len() {
                let r = assets.ref_at(i).ok_or(bad)?;
                let s = string_at(strings, r).ok_or(SnapshotError::BadString { offset: r })?;
                if s.is_empty() || prev.is_some_and(|p| p.as_bytes() >= s.as_bytes()) {
                    return Err(bad);
                }
                prev = Some(s);
            }
        }
        Ok(())
    }

    fn section(&self, r: &Range<usize>) -> &[u8] {
        self.data.as_ref().get(r.clone()).unwrap_or_default()
    }

    pub(crate) fn fst(&self) -> Fst<'_> {
        Fst::from_parts(self.section(&self.layout.fst), self.layout.fst_root, self.layout.route_count as u64)
    }

    fn record(&self, id: u32) -> Option<&[u8]> {
        let at = id as usize * ROUTE_LEN;
        self.section(&self.layout.routes).get(at..at + ROUTE_LEN)
    }

    fn site(&self, offset: u32) -> Option<Site<'_>> {
        let sites = self.section(&self.layout.sites);
        let at = offset as usize;
        let fallback = u32_at(sites, at)?;
        let count = u32_at(sites, at + 4)?;
        let assets = if count == NONE {
            None
        } else {
            let start = at + 8;
            let refs = sites.get(start..start.checked_add((count as usize).checked_mul(4)?)?)?;
            Some(Assets { strings: self.section(&self.layout.strings), refs })
        };
        Some(Site { fallback_ref: (fallback != NONE).then_some(fallback), assets })
    }

    /// The route with id `id` (ids are `0..route_count`, in key order).
    pub fn route(&self, id: u32) -> Option<Route<'_>> {
        let rec = self.record(id)?;
        let strings = self.section(&self.layout.strings);
        let [a, b, c] = [4, 8, 12].map(|i| u32_at(rec, i).unwrap_or(0));
        match rec[0] {
            ROUTE_STATIC => {
                let site = if c == NONE { None } else { self.site(c) };
                let (fallback, assets) = match site {
                    Some(s) => (s.fallback_ref.and_then(|f| string_at(strings, f)), s.assets),
                    None => (None, None),
                };
                Some(Route::Static(StaticSite {
                    bucket: string_at(strings, a)?,
                    prefix: string_at(strings, b)?,
                    assets,
                    fallback,
                }))
            }
            ROUTE_BALANCER => Some(Route::Balancer(Origin {
                host: string_at(strings, a)?,
                port: u16_at(rec, 2)?,
                scheme: if rec[1] & FLAG_HTTPS != 0 { Scheme::Https } else { Scheme::Http },
            })),
            _ => None,
        }
    }

    /// How many routes (table entries) the snapshot holds.
    pub fn route_count(&self) -> u32 {
        self.layout.route_count
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
    pub fn sections(&self) -> [SectionInfo; 4] {
        let l = &self.layout;
        let info = |kind, r: &Range<usize>| SectionInfo { kind, offset: r.start, len: r.len() };
        [
            info(SectionKind::Fst, &l.fst),
            info(SectionKind::Routes, &l.routes),
            info(SectionKind::Strings, &l.strings),
            info(SectionKind::Sites, &l.sites),
        ]
    }

    /// Calls `f(domain, route)` for every entry in key order, where `domain`
    /// is the table's Domain as stored (`api.example.com`, `*.example.com`).
    /// Allocates nothing: domains are rebuilt in a fixed buffer.
    pub fn for_each_route(&self, mut f: impl FnMut(&str, Route<'_>)) {
        let _ = self.fst().walk::<FstError>(|key, id| {
            let mut buf = [0u8; MAX_KEY_LEN];
            let domain = key_to_domain(key, &mut buf);
            if let (Some(domain), Some(route)) = (domain, u32::try_from(id).ok().and_then(|id| self.route(id))) {
                f(domain, route);
            }
            Ok(())
        });
    }
}

impl<D> fmt::Debug for Snapshot<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot").field("layout", &self.layout).finish_non_exhaustive()
    }
}

/// Is `key` a routing key: a normalized hostname with its labels reversed,
/// or a wildcard `REVERSED.*` whose suffix has at least two labels?
fn valid_key(key: &[u8]) -> bool {
    let host = match key {
        [rest @ .., b'.', b'*'] => {
            if rest.iter().filter(|&&b| b == b'.').count() < 1 {
                return false; // `*.com`
            }
            rest
        }
        _ => key,
    };
    !host.is_empty()
        && host.iter().all(|&b| is_host_byte(b))
        && host.split(|&b| b == b'.').all(|l| !l.is_empty() && l.len() <= MAX_LABEL_LEN)
}

/// Turns a routing key (`com.example.*`) back into a Domain (`*.example.com`).
fn key_to_domain<'b>(key: &[u8], buf: &'b mut [u8; MAX_KEY_LEN]) -> Option<&'b str> {
    let mut at = 0;
    for (i, label) in key.rsplit(|&b| b == KEY_LABEL_SEPARATOR).enumerate() {
        if i > 0 {
            *buf.get_mut(at)? = b'.';
            at += 1;
        }
        buf.get_mut(at..at + label.len())?.copy_from_slice(label);
        at += label.len();
    }
    core::str::from_utf8(&buf[..at]).ok()
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

#[derive(Clone, Copy, Debug)]
struct Site<'s> {
    fallback_ref: Option<u32>,
    assets: Option<Assets<'s>>,
}

/// A static site's Assets list, sorted by bytes; binary-searched in place.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Assets<'s> {
    strings: &'s [u8],
    refs: &'s [u8],
}

impl<'s> Assets<'s> {
    pub fn len(&self) -> usize {
        self.refs.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    fn ref_at(&self, i: usize) -> Option<u32> {
        u32_at(self.refs, i * 4)
    }

    /// The `i`th key, in ascending byte order.
    pub fn get(&self, i: usize) -> Option<&'s str> {
        string_at(self.strings, self.ref_at(i)?)
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
            let asset = bytes_at(self.strings, self.ref_at(mid)?)?;
            match asset.iter().copied().cmp(name.clone()) {
                Ordering::Equal => return self.get(mid),
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
