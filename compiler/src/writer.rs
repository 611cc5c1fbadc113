//! The snapshot writer: routes in, the bytes of `docs/snapshot-format.md` out.
//!
//! The layout puts what one lookup reads next to each other: a route's
//! record holds its strings and its site in place, except those an earlier
//! record already holds, which it refers back to (so a string used by many
//! routes, like `index.html`, is stored once and stays hot in the cache).
//! One pass writes the records; the index, which maps each key to its
//! record's offset, is built on a second thread as the offsets come.
//!
//! Deterministic by construction: routes are ordered by key and written in
//! that order; every back reference names the first occurrence. Nothing
//! else (time, host, hash-map order) reaches the file.

use std::borrow::Cow;
use std::hash::BuildHasher as _;
use std::sync::mpsc;

use edgeroute_edge::format::*;
use edgeroute_edge::{crc32c, filter_insert, filter_len, key_hash, Scheme, SnapshotId};
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::entry::{Entry, Target};

/// Why a table cannot become a snapshot at all.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the snapshot would exceed 4 GiB, which 32-bit offsets cannot address")]
    TooLarge,
    #[error("building the index failed: {0}")]
    Fst(#[from] fst::Error),
}

/// Record offsets are handed to the index builder in batches of this many.
const BATCH: usize = 8192;

/// What one record holds, borrowed from wherever the route is kept (an
/// [`Entry`], or the compiler's packed runs): the writer needs nothing else.
#[derive(Clone, Copy, Debug)]
pub enum RecordRef<'r> {
    Static {
        bucket: &'r str,
        prefix: &'r str,
        site: Option<SiteKey<'r>>,
    },
    Balancer {
        host: &'r str,
        port: u16,
        scheme: Scheme,
    },
    /// In a layer: the deletion of the key.
    Tombstone,
}

/// A static site's (Fallback, Assets), compared by content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SiteKey<'r> {
    pub fallback: Option<&'r str>,
    pub assets: Option<Assets<'r>>,
}

/// A site's Assets (sorted, deduplicated), wherever they are kept; two
/// lists are equal when their strings are, whatever holds them.
#[derive(Clone, Copy, Debug)]
pub struct Assets<'r>(AssetsRepr<'r>);

#[derive(Clone, Copy, Debug)]
enum AssetsRepr<'r> {
    Strings(&'r [Cow<'r, str>]),
    /// `count` strings as [`crate::pack`] writes them.
    Packed {
        count: u32,
        bytes: &'r [u8],
    },
}

impl<'r> Assets<'r> {
    pub fn strings(list: &'r [Cow<'r, str>]) -> Assets<'r> {
        Assets(AssetsRepr::Strings(list))
    }

    /// `count` strings packed by [`crate::pack`] (only it writes them).
    pub(crate) fn packed(count: u32, bytes: &'r [u8]) -> Assets<'r> {
        Assets(AssetsRepr::Packed { count, bytes })
    }

    pub fn len(&self) -> usize {
        match self.0 {
            AssetsRepr::Strings(list) => list.len(),
            AssetsRepr::Packed { count, .. } => count as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &'r str> + 'r {
        let (strings, mut packed) = match self.0 {
            AssetsRepr::Strings(list) => (list, None),
            AssetsRepr::Packed { count, bytes } => (&[][..], Some((count, bytes))),
        };
        strings.iter().map(|s| s.as_ref()).chain(std::iter::from_fn(move || {
            let (count, bytes) = packed.as_mut()?;
            if *count == 0 {
                return None;
            }
            *count -= 1;
            let (s, rest) = crate::pack::read_str(bytes);
            *bytes = rest;
            Some(s)
        }))
    }
}

impl PartialEq for Assets<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Assets<'_> {}

impl std::hash::Hash for Assets<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for s in self.iter() {
            s.hash(state);
        }
    }
}

impl<'r> RecordRef<'r> {
    /// An entry's record.
    pub fn of(entry: &'r Entry<'_>) -> RecordRef<'r> {
        match &entry.target {
            Target::Static { bucket, prefix, assets, fallback } => RecordRef::Static {
                bucket,
                prefix,
                site: (assets.is_some() || fallback.is_some())
                    .then(|| SiteKey { fallback: fallback.as_deref(), assets: assets.as_deref().map(Assets::strings) }),
            },
            Target::Balancer { host, port, scheme } => RecordRef::Balancer { host, port: *port, scheme: *scheme },
        }
    }
}

pub(crate) fn push_leb(out: &mut Vec<u8>, mut n: u32) {
    loop {
        let byte = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub(crate) fn leb_len(n: u32) -> usize {
    (32 - (n | 1).leading_zeros()).div_ceil(7) as usize
}

/// An offset or length that fits a string field's tag (31 bits).
fn tag_value(n: usize) -> Result<u32, WriteError> {
    u32::try_from(n).ok().filter(|&n| n < 1 << 31).ok_or(WriteError::TooLarge)
}

fn u32_len(n: usize) -> Result<u32, WriteError> {
    u32::try_from(n).map_err(|_| WriteError::TooLarge)
}

/// The routes section as it is written, with where each string and site
/// first appears in it.
///
/// The two tables of first appearances hold offsets only (a string is
/// compared with the bytes written at its offset, a site with the route
/// that first had it), not keys: at 10M routes of mostly distinct strings,
/// a table keyed by the strings themselves took 800 MB where this takes 160.
struct Records<'r, R> {
    routes: &'r [R],
    out: Vec<u8>,
    /// The offset in `out` of each string's first field written in place.
    strings: HashTable<u32>,
    /// Each site's hash, the first route with it, and its site record's
    /// offset (the hash kept: a rehash then reads no route again).
    sites: HashTable<(u64, u32, u32)>,
    /// Scratch space for an Assets list's entries and their offsets, and
    /// the strings (hash, field) that first appear among them.
    entries: Vec<u8>,
    offsets: Vec<u32>,
    first: Vec<(u64, u32)>,
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    FxBuildHasher.hash_one(bytes)
}

/// The bytes of the string field written in place at `field` of `out`.
fn inline_at(out: &[u8], field: u32) -> &[u8] {
    let mut tag = 0u32;
    for (i, &b) in out[field as usize..].iter().enumerate() {
        tag |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            let start = field as usize + i + 1;
            debug_assert_eq!(tag & 1, STRING_INLINE);
            return &out[start..start + (tag >> 1) as usize];
        }
    }
    unreachable!("a field recorded as written is in `out`")
}

/// A record's site, if it has one.
fn site_of(record: RecordRef<'_>) -> Option<SiteKey<'_>> {
    match record {
        RecordRef::Static { site, .. } => site,
        _ => None,
    }
}

impl<'r, R: AsRecord> Records<'r, R> {
    fn new(routes: &'r [R]) -> Self {
        Records {
            routes,
            out: Vec::with_capacity(routes.len() * 56),
            strings: HashTable::new(),
            sites: HashTable::new(),
            entries: Vec::new(),
            offsets: Vec::new(),
            first: Vec::new(),
        }
    }

    /// Writes a string field to `out` (the routes section, or the entries
    /// scratch, whose offset in the section will be `base`): a reference to
    /// the string's first field when there is one and it is shorter, else
    /// the bytes in place.
    fn string(&mut self, to_scratch: bool, s: &str) -> Result<(), WriteError> {
        let inline_tag = (tag_value(s.len())? << 1) | STRING_INLINE;
        let hash = hash_bytes(s.as_bytes());
        let written = &self.out;
        let known = self.strings.find(hash, |&f| inline_at(written, f) == s.as_bytes()).map(|&field| field << 1);
        let out = if to_scratch { &mut self.entries } else { &mut self.out };
        match known {
            Some(tag) if leb_len(tag) < leb_len(inline_tag) + s.len() => push_leb(out, tag),
            _ => {
                let field = tag_value(out.len())?;
                push_leb(out, inline_tag);
                out.extend_from_slice(s.as_bytes());
                if known.is_none() {
                    if to_scratch {
                        self.first.push((hash, field));
                    } else {
                        let written = &self.out;
                        self.strings.insert_unique(hash, field, |&f| hash_bytes(inline_at(written, f)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes a site record in place: flags, Fallback, then the Assets
    /// offset table and entries. Assets are sorted by bytes already: that
    /// order is what the resolver's binary search relies on.
    fn site(&mut self, site: SiteKey<'_>) -> Result<(), WriteError> {
        let flags_at = self.out.len();
        self.out.push(0);
        let mut flags = 0;
        if let Some(f) = site.fallback {
            flags |= SITE_FALLBACK;
            self.string(false, f)?;
        }
        if let Some(assets) = site.assets {
            flags |= SITE_ASSETS;
            self.entries.clear();
            self.offsets.clear();
            self.first.clear();
            for a in assets.iter() {
                self.offsets.push(u32_len(self.entries.len())?);
                self.string(true, a)?;
            }
            let wide = self.offsets.last().is_some_and(|&o| o > u16::MAX as u32);
            if wide {
                flags |= SITE_WIDE_OFFSETS;
            }
            push_leb(&mut self.out, u32_len(self.offsets.len())?);
            for &o in &self.offsets {
                if wide {
                    self.out.extend_from_slice(&o.to_le_bytes());
                } else {
                    self.out.extend_from_slice(&(o as u16).to_le_bytes());
                }
            }
            push_leb(&mut self.out, u32_len(self.entries.len())?);
            let base = tag_value(self.out.len())?;
            self.out.extend_from_slice(&self.entries);
            for &(hash, field) in &self.first {
                let field = tag_value(base as usize + field as usize)?;
                let written = &self.out;
                self.strings.insert_unique(hash, field, |&f| hash_bytes(inline_at(written, f)));
            }
        }
        self.out[flags_at] = flags;
        Ok(())
    }

    /// Writes the record of `self.routes[i]`.
    fn record(&mut self, i: usize) -> Result<(), WriteError> {
        let routes = self.routes;
        match routes[i].record() {
            RecordRef::Static { bucket, prefix, site } => {
                let hash = site.map(|key| FxBuildHasher.hash_one(key));
                let earlier = site.zip(hash).and_then(|(key, hash)| {
                    self.sites
                        .find(hash, |&(h, j, _)| h == hash && site_of(routes[j as usize].record()) == Some(key))
                        .map(|&(_, _, at)| at)
                });
                self.out.push(ROUTE_STATIC);
                self.out.push(match (site, earlier) {
                    (None, _) => 0,
                    (Some(_), None) => STATIC_HAS_SITE,
                    (Some(_), Some(_)) => STATIC_HAS_SITE | STATIC_SITE_REF,
                });
                self.string(false, bucket)?;
                self.string(false, prefix)?;
                match (site, earlier) {
                    (None, _) => {}
                    (Some(key), None) => {
                        let hash = hash.unwrap_or_default();
                        let first = (hash, u32_len(i)?, u32_len(self.out.len())?);
                        self.sites.insert_unique(hash, first, |&(h, _, _)| h);
                        self.site(key)?;
                    }
                    (Some(_), Some(at)) => push_leb(&mut self.out, at),
                }
            }
            RecordRef::Balancer { host, port, scheme } => {
                self.out.push(ROUTE_BALANCER);
                self.out.push(if scheme == Scheme::Https { FLAG_HTTPS } else { 0 });
                self.out.extend_from_slice(&port.to_le_bytes());
                self.string(false, host)?;
            }
            RecordRef::Tombstone => self.out.push(ROUTE_TOMBSTONE),
        }
        Ok(())
    }
}

/// What the writer writes under one key: a route, or (in a layer) a
/// tombstone, the deletion of the key.
pub trait AsRecord: Sync {
    fn record(&self) -> RecordRef<'_>;
}

impl AsRecord for &Entry<'_> {
    fn record(&self) -> RecordRef<'_> {
        RecordRef::of(self)
    }
}

/// Writes routes already sorted by strictly ascending key (`keys[i]` is
/// `routes[i].key()`), as [`compile`](crate::compile) leaves them; keys out
/// of order or repeated come back as the index builder's error. The index
/// is built on a second thread meanwhile.
pub fn write_sorted<R: AsRecord>(keys: &[&[u8]], routes: &[R]) -> Result<Vec<u8>, WriteError> {
    write_sections(keys, routes)?.assemble()
}

/// A snapshot's sections, written and not yet put in one file: a caller
/// holding the routes in memory can let go of them first (the file is
/// about as big as the sections).
#[derive(Debug)]
pub struct Sections {
    count: u32,
    fst: Vec<u8>,
    routes: Vec<u8>,
}

/// [`write_sorted`]'s first half: the sections.
pub fn write_sections<R: AsRecord>(keys: &[&[u8]], routes: &[R]) -> Result<Sections, WriteError> {
    let count = u32::try_from(routes.len()).map_err(|_| WriteError::TooLarge)?;
    let (fst, routes) = write_table(keys, routes)?;
    Ok(Sections { count, fst, routes })
}

impl Sections {
    /// The snapshot file.
    pub fn assemble(self) -> Result<Vec<u8>, WriteError> {
        let sections: [(SectionKind, &[u8]); 2] = [(SectionKind::Fst, &self.fst), (SectionKind::Routes, &self.routes)];
        assemble(MAGIC, FORMAT_VERSION, self.count, &sections)
    }
}

/// The base a layer applies to, the layer (or base) it is written on, and
/// its depth there: its lineage section (`docs/snapshot-format.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lineage {
    pub base: SnapshotId,
    /// The base's id for the first layer, else the previous layer's.
    pub parent: SnapshotId,
    /// 1 for the first layer on the base.
    pub depth: u32,
}

/// Writes a layer of `records` (routes and tombstones) sorted by strictly
/// ascending key, as [`write_sorted`] writes a snapshot's.
pub fn write_layer_sorted<R: AsRecord>(lineage: Lineage, keys: &[&[u8]], records: &[R]) -> Result<Vec<u8>, WriteError> {
    let count = u32::try_from(records.len()).map_err(|_| WriteError::TooLarge)?;
    let tombstones = records.iter().filter(|r| matches!(r.record(), RecordRef::Tombstone)).count() as u32;
    let (fst_bytes, routes) = write_table(keys, records)?;
    let mut section = Vec::with_capacity(LINEAGE_LEN);
    section.extend_from_slice(lineage.base.as_bytes());
    section.extend_from_slice(lineage.parent.as_bytes());
    section.extend_from_slice(&lineage.depth.to_le_bytes());
    section.extend_from_slice(&tombstones.to_le_bytes());
    debug_assert_eq!(section.len(), LINEAGE_LEN);
    // The filter holds every key, tombstones included: a lookup that skips
    // a layer must skip only layers that cannot decide any candidate.
    let mut filter = vec![0u8; filter_len(keys.len())];
    for key in keys {
        filter_insert(&mut filter, key_hash(key));
    }
    let sections: [(SectionKind, &[u8]); 4] = [
        (SectionKind::Lineage, &section),
        (SectionKind::Filter, &filter),
        (SectionKind::Fst, &fst_bytes),
        (SectionKind::Routes, &routes),
    ];
    assemble(LAYER_MAGIC, LAYER_FORMAT_VERSION, count, &sections)
}

/// The file around the sections: magic, endian marker, version, entry
/// count, flags (0), the section table, the sections, the CRC-32C.
fn assemble(
    magic: [u8; 8],
    version: u32,
    count: u32,
    sections: &[(SectionKind, &[u8])],
) -> Result<Vec<u8>, WriteError> {
    let header = FIXED_HEADER_LEN + SECTION_ENTRY_LEN * sections.len();
    let total = header + sections.iter().map(|s| s.1.len()).sum::<usize>() + CHECKSUM_LEN;
    u32::try_from(total).map_err(|_| WriteError::TooLarge)?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&magic);
    for field in [ENDIAN_MARKER, version, count, 0, sections.len() as u32] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    let mut offset = header;
    for (kind, bytes) in sections {
        for field in [*kind as u32, offset as u32, bytes.len() as u32] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        offset += bytes.len();
    }
    for (_, bytes) in sections {
        out.extend_from_slice(bytes);
    }
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

/// The index and the routes section of `records` sorted by key.
fn write_table<R: AsRecord>(keys: &[&[u8]], records: &[R]) -> Result<(Vec<u8>, Vec<u8>), WriteError> {
    debug_assert_eq!(keys.len(), records.len());
    // The index maps each key to its record's offset, so it is built as the
    // records are written, on a second thread, fed offsets in batches.
    let (fst_bytes, body) = std::thread::scope(|s| {
        let (offsets, batches) = mpsc::sync_channel::<Vec<u32>>(16);
        let index = s.spawn(move || -> Result<Vec<u8>, WriteError> {
            let mut b = fst::MapBuilder::memory();
            let mut keys = keys.iter();
            for batch in batches {
                for offset in batch {
                    let key = keys.next().expect("one record offset per key");
                    b.insert(key, offset as u64)?;
                }
            }
            Ok(b.into_inner()?)
        });
        let body = write_records(records, |batch| {
            // A closed channel means the index failed; its error is reported below.
            let _ = offsets.send(batch);
        });
        drop(offsets);
        let fst_bytes = index.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (fst_bytes, body)
    });
    Ok((fst_bytes?, body?))
}

/// The routes section, in route order; `emit` receives the records'
/// offsets in batches, in order.
fn write_records<R: AsRecord>(routes: &[R], mut emit: impl FnMut(Vec<u32>)) -> Result<Vec<u8>, WriteError> {
    let mut records = Records::new(routes);
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..routes.len() {
        batch.push(u32_len(records.out.len())?);
        if batch.len() == BATCH {
            emit(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
        }
        records.record(i)?;
    }
    emit(batch);
    Ok(records.out)
}
