//! The snapshot writer: routes in, the bytes of `docs/snapshot-format.md` out.
//!
//! Deterministic by construction: routes are ordered by key, ids follow that
//! order, and strings and site records are interned in the order the routes
//! first use them. Nothing else (time, host, hash-map order) reaches the file.

use std::hash::BuildHasher;

use edgeroute_edge::format::*;
use edgeroute_edge::{crc32c, Scheme};
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::route::{Route, Target};

/// Why a table cannot become a snapshot at all.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the snapshot would exceed 4 GiB, which 32-bit offsets cannot address")]
    TooLarge,
    #[error("building the index failed: {0}")]
    Fst(#[from] fst::Error),
}

/// The string pool: LEB128 length + UTF-8 bytes per distinct string.
#[derive(Default)]
struct Strings<'a> {
    pool: Vec<u8>,
    offsets: FxHashMap<&'a str, u32>,
}

impl<'a> Strings<'a> {
    fn intern(&mut self, s: &'a str) -> Result<u32, WriteError> {
        if let Some(&off) = self.offsets.get(s) {
            return Ok(off);
        }
        let off = u32::try_from(self.pool.len()).map_err(|_| WriteError::TooLarge)?;
        let mut len = s.len();
        loop {
            let byte = (len & 0x7F) as u8;
            len >>= 7;
            if len == 0 {
                self.pool.push(byte);
                break;
            }
            self.pool.push(byte | 0x80);
        }
        self.pool.extend_from_slice(s.as_bytes());
        self.offsets.insert(s, off);
        Ok(off)
    }
}

/// Site records, deduplicated by content without allocating a key per site:
/// a record is appended, hashed, and taken back if an equal one exists.
#[derive(Default)]
struct Sites {
    bytes: Vec<u8>,
    by_hash: FxHashMap<u64, u32>,
}

impl Sites {
    fn add(&mut self, fallback: u32, assets: Option<&[u32]>) -> Result<u32, WriteError> {
        let start = self.bytes.len();
        let off = u32::try_from(start).map_err(|_| WriteError::TooLarge)?;
        self.bytes.extend_from_slice(&fallback.to_le_bytes());
        match assets {
            None => self.bytes.extend_from_slice(&NONE.to_le_bytes()),
            Some(list) => {
                let n = u32::try_from(list.len()).map_err(|_| WriteError::TooLarge)?;
                self.bytes.extend_from_slice(&n.to_le_bytes());
                for r in list {
                    self.bytes.extend_from_slice(&r.to_le_bytes());
                }
            }
        }
        let record = &self.bytes[start..];
        let hash = FxBuildHasher.hash_one(record);
        match self.by_hash.get(&hash) {
            Some(&prev) => {
                let p = prev as usize;
                if self.bytes.get(p..p + record.len()) == Some(record) && p + record.len() <= start {
                    self.bytes.truncate(start);
                    return Ok(prev);
                }
                // A 64-bit hash collision: keep both records (still deterministic).
                Ok(off)
            }
            None => {
                self.by_hash.insert(hash, off);
                Ok(off)
            }
        }
    }
}

/// Writes routes already sorted by strictly ascending key (`keys[i]` is
/// `routes[i].key()`), as [`compile`](crate::compile) leaves them; keys out
/// of order or repeated come back as the index builder's error. The index
/// is built on a second thread meanwhile.
pub fn write_sorted(keys: &[&[u8]], routes: &[&Route<'_>]) -> Result<Vec<u8>, WriteError> {
    debug_assert_eq!(keys.len(), routes.len());
    let route_count = u32::try_from(routes.len()).map_err(|_| WriteError::TooLarge)?;
    let (fst_bytes, body) = std::thread::scope(|s| {
        let index = s.spawn(|| -> Result<Vec<u8>, WriteError> {
            let mut b = fst::MapBuilder::memory();
            for (id, key) in keys.iter().enumerate() {
                b.insert(key, id as u64)?;
            }
            Ok(b.into_inner()?)
        });
        let body = write_records(routes);
        let fst_bytes = index.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (fst_bytes, body)
    });
    let (fst_bytes, (records, strings, sites)) = (fst_bytes?, body?);

    let sections: [(SectionKind, &[u8]); 4] = [
        (SectionKind::Fst, &fst_bytes),
        (SectionKind::Routes, &records),
        (SectionKind::Strings, &strings),
        (SectionKind::Sites, &sites),
    ];
    let total = HEADER_LEN + sections.iter().map(|s| s.1.len()).sum::<usize>() + CHECKSUM_LEN;
    u32::try_from(total).map_err(|_| WriteError::TooLarge)?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    for field in [ENDIAN_MARKER, FORMAT_VERSION, route_count, 0, sections.len() as u32] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    let mut offset = HEADER_LEN;
    for (kind, bytes) in &sections {
        for field in [*kind as u32, offset as u32, bytes.len() as u32] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        offset += bytes.len();
    }
    for (_, bytes) in &sections {
        out.extend_from_slice(bytes);
    }
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), total);
    Ok(out)
}

type Body = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The route records, string pool and site records, in route order.
fn write_records<'r>(routes: &[&'r Route<'_>]) -> Result<Body, WriteError> {
    // The maps grow as they go: pre-sizing them measured slower (more
    // memory touched at once while the index is built on the other core).
    let mut strings: Strings<'r> = Strings::default();
    let mut sites = Sites::default();
    let mut records = Vec::with_capacity(routes.len() * ROUTE_LEN);
    let mut refs = Vec::new();
    for route in routes {
        let mut rec = [0u8; ROUTE_LEN];
        match &route.target {
            Target::Static { bucket, prefix, assets, fallback } => {
                rec[0] = ROUTE_STATIC;
                rec[4..8].copy_from_slice(&strings.intern(bucket)?.to_le_bytes());
                rec[8..12].copy_from_slice(&strings.intern(prefix)?.to_le_bytes());
                let site = if assets.is_none() && fallback.is_none() {
                    NONE
                } else {
                    let fallback = match fallback {
                        Some(f) => strings.intern(f)?,
                        None => NONE,
                    };
                    refs.clear();
                    // Assets are sorted by bytes already: that order is what
                    // the resolver's binary search relies on.
                    for a in assets.iter().flatten() {
                        refs.push(strings.intern(a)?);
                    }
                    sites.add(fallback, assets.as_ref().map(|_| refs.as_slice()))?
                };
                rec[12..16].copy_from_slice(&site.to_le_bytes());
            }
            Target::Balancer { host, port, scheme } => {
                rec[0] = ROUTE_BALANCER;
                rec[1] = if *scheme == Scheme::Https { FLAG_HTTPS } else { 0 };
                rec[2..4].copy_from_slice(&port.to_le_bytes());
                rec[4..8].copy_from_slice(&strings.intern(host)?.to_le_bytes());
            }
        }
        records.extend_from_slice(&rec);
    }
    Ok((records, strings.pool, sites.bytes))
}
