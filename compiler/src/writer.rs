//! The snapshot writer: routes in, the bytes of `docs/snapshot-format.md` out.
//!
//! Deterministic by construction: routes are ordered by key, ids follow that
//! order, and strings and site records are interned in the order the routes
//! first use them. Nothing else (time, host, hash-map order) reaches the file.

use std::collections::HashMap;

use edgeroute_edge::format::*;
use edgeroute_edge::{crc32c, Scheme};

use crate::route::{Route, Target};

/// Why a table cannot become a snapshot at all.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("two routes share the key of Domain {0:?}")]
    DuplicateKey(String),
    #[error("the snapshot would exceed 4 GiB, which 32-bit offsets cannot address")]
    TooLarge,
    #[error("building the index failed: {0}")]
    Fst(#[from] fst::Error),
}

#[derive(Default)]
struct Strings {
    pool: Vec<u8>,
    offsets: HashMap<String, u32>,
}

impl Strings {
    fn intern(&mut self, s: &str) -> Result<u32, WriteError> {
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
        self.offsets.insert(s.to_owned(), off);
        Ok(off)
    }
}

#[derive(Default)]
struct Sites {
    bytes: Vec<u8>,
    offsets: HashMap<(u32, Option<Vec<u32>>), u32>,
}

/// Writes a snapshot of `routes` (in any order; keys must be unique).
pub fn write_snapshot(routes: &[Route]) -> Result<Vec<u8>, WriteError> {
    let mut keyed: Vec<(Vec<u8>, &Route)> = routes.iter().map(|r| (r.key(), r)).collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = keyed.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(WriteError::DuplicateKey(w[0].1.domain.clone()));
    }
    let route_count = u32::try_from(keyed.len()).map_err(|_| WriteError::TooLarge)?;

    let mut index = fst::MapBuilder::memory();
    let mut strings = Strings::default();
    let mut sites = Sites::default();
    let mut records = Vec::with_capacity(keyed.len() * ROUTE_LEN);
    for (id, (key, route)) in keyed.iter().enumerate() {
        index.insert(key, id as u64)?;
        let mut rec = [0u8; ROUTE_LEN];
        match &route.target {
            Target::Static {
                bucket,
                prefix,
                assets,
                fallback,
            } => {
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
                    let refs = match assets {
                        // Already sorted by bytes; keep that order for binary search.
                        Some(list) => Some(
                            list.iter()
                                .map(|a| strings.intern(a))
                                .collect::<Result<Vec<_>, _>>()?,
                        ),
                        None => None,
                    };
                    site_offset(&mut sites, fallback, refs)?
                };
                rec[12..16].copy_from_slice(&site.to_le_bytes());
            }
            Target::Balancer { host, port, scheme } => {
                rec[0] = ROUTE_BALANCER;
                rec[1] = if *scheme == Scheme::Https {
                    FLAG_HTTPS
                } else {
                    0
                };
                rec[2..4].copy_from_slice(&port.to_le_bytes());
                rec[4..8].copy_from_slice(&strings.intern(host)?.to_le_bytes());
            }
        }
        records.extend_from_slice(&rec);
    }
    let fst_bytes = index.into_inner()?;

    let sections: [(SectionKind, &[u8]); 4] = [
        (SectionKind::Fst, &fst_bytes),
        (SectionKind::Routes, &records),
        (SectionKind::Strings, &strings.pool),
        (SectionKind::Sites, &sites.bytes),
    ];
    let total = HEADER_LEN + sections.iter().map(|s| s.1.len()).sum::<usize>() + CHECKSUM_LEN;
    u32::try_from(total).map_err(|_| WriteError::TooLarge)?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    for field in [
        ENDIAN_MARKER,
        FORMAT_VERSION,
        route_count,
        0,
        sections.len() as u32,
    ] {
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

fn site_offset(
    sites: &mut Sites,
    fallback: u32,
    refs: Option<Vec<u32>>,
) -> Result<u32, WriteError> {
    let key = (fallback, refs);
    if let Some(&off) = sites.offsets.get(&key) {
        return Ok(off);
    }
    let off = u32::try_from(sites.bytes.len()).map_err(|_| WriteError::TooLarge)?;
    sites.bytes.extend_from_slice(&key.0.to_le_bytes());
    match &key.1 {
        None => sites.bytes.extend_from_slice(&NONE.to_le_bytes()),
        Some(list) => {
            let n = u32::try_from(list.len()).map_err(|_| WriteError::TooLarge)?;
            sites.bytes.extend_from_slice(&n.to_le_bytes());
            for r in list {
                sites.bytes.extend_from_slice(&r.to_le_bytes());
            }
        }
    }
    sites.offsets.insert(key, off);
    Ok(off)
}
