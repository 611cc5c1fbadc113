//! Validated routes packed for a compile: each run of routes keeps all of
//! its routes' bytes in one arena, so that a table of millions of routes
//! costs a few bytes over its text per route (no allocation per route, no
//! borrowed source kept alive), and the source's chunks can be dropped as
//! soon as they are validated.
//!
//! A packed route, at its offset in the arena (every `str` a LEB128 length
//! and its UTF-8 bytes):
//!
//! ```text
//! key            LEB128 length, bytes (the index key: labels reversed)
//! flags          u8: PACKED_* below
//! written        str, if PACKED_WRITTEN (the Domain as written, when it is
//!                not the normalized Domain): for messages about duplicates
//! static:        bucket str, prefix str, [fallback str],
//!                [assets: LEB128 count, LEB128 byte length, count strs]
//! balancer:      port u16 LE, host str
//! ```

use edgeroute_edge::Scheme;

use crate::entry::{Entry, Target};
use crate::item::Location;
use crate::writer::{push_leb, AsRecord, Assets, RecordRef, SiteKey};

/// A static site (else a balancer).
const PACKED_STATIC: u8 = 1;
/// A balancer reached over https.
const PACKED_HTTPS: u8 = 1 << 1;
const PACKED_FALLBACK: u8 = 1 << 2;
const PACKED_ASSETS: u8 = 1 << 3;
/// The Domain as written follows the flags (it is not the normalized one).
const PACKED_WRITTEN: u8 = 1 << 4;

/// An arena starts a new run past this size, so that offsets fit a `u32`.
const ARENA_LIMIT: usize = 1 << 31;

/// Routes sorted by (key, location), their bytes in one arena.
#[derive(Debug, Default)]
pub(crate) struct Run {
    arena: Vec<u8>,
    routes: Vec<Packed>,
}

/// Where a packed route is in its run's arena, and where it came from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Packed {
    at: u32,
    pub location: Location,
}

impl Run {
    pub fn is_full(&self) -> bool {
        self.arena.len() >= ARENA_LIMIT
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Packs a valid entry and its key; `written` is the Domain as the
    /// table wrote it.
    pub fn push(&mut self, key: &[u8], entry: &Entry<'_>, written: &str, location: Location) {
        let at = u32::try_from(self.arena.len()).expect("a run's arena stays under ARENA_LIMIT");
        let out = &mut self.arena;
        write_bytes(out, key);
        let written_differs = written != entry.domain;
        let written_flag = if written_differs { PACKED_WRITTEN } else { 0 };
        match &entry.target {
            Target::Static { bucket, prefix, assets, fallback } => {
                let mut flags = PACKED_STATIC | written_flag;
                if fallback.is_some() {
                    flags |= PACKED_FALLBACK;
                }
                if assets.is_some() {
                    flags |= PACKED_ASSETS;
                }
                out.push(flags);
                if written_differs {
                    write_bytes(out, written.as_bytes());
                }
                write_bytes(out, bucket.as_bytes());
                write_bytes(out, prefix.as_bytes());
                if let Some(f) = fallback {
                    write_bytes(out, f.as_bytes());
                }
                if let Some(assets) = assets {
                    write_leb(out, assets.len());
                    write_leb(out, assets.iter().map(|a| leb_len(a.len()) + a.len()).sum());
                    for a in assets {
                        write_bytes(out, a.as_bytes());
                    }
                }
            }
            Target::Balancer { host, port, scheme } => {
                let https = if *scheme == Scheme::Https { PACKED_HTTPS } else { 0 };
                out.push(https | written_flag);
                if written_differs {
                    write_bytes(out, written.as_bytes());
                }
                out.extend_from_slice(&port.to_le_bytes());
                write_bytes(out, host.as_bytes());
            }
        }
        self.routes.push(Packed { at, location });
    }

    /// Sorts the run by (key, location) (ties, duplicates, keep source
    /// order, so messages are stable), once it holds all its routes.
    pub fn sort(&mut self) {
        // A run is complete when it is sorted: what it did not use goes back.
        self.arena.shrink_to_fit();
        self.routes.shrink_to_fit();
        let arena = &self.arena;
        self.routes.sort_unstable_by(|a, b| {
            read_bytes(&arena[a.at as usize..])
                .0
                .cmp(read_bytes(&arena[b.at as usize..]).0)
                .then(a.location.cmp(&b.location))
        });
    }

    /// The arena, and the routes in it in order.
    pub fn into_parts(self) -> (Vec<u8>, Vec<Packed>) {
        (self.arena, self.routes)
    }
}

impl Packed {
    /// The route in `arena` (its run's).
    pub fn route<'r>(&self, arena: &'r [u8]) -> PackedRoute<'r> {
        PackedRoute { arena, at: self.at }
    }
}

/// One packed route, read in place.
#[derive(Clone, Copy)]
pub(crate) struct PackedRoute<'r> {
    arena: &'r [u8],
    at: u32,
}

impl<'r> PackedRoute<'r> {
    pub fn key(&self) -> &'r [u8] {
        read_bytes(&self.arena[self.at as usize..]).0
    }

    /// The flags and what follows them.
    fn fields(&self) -> (u8, &'r [u8]) {
        let rest = read_bytes(&self.arena[self.at as usize..]).1;
        (rest[0], &rest[1..])
    }

    /// The normalized Domain (from the key: labels reversed back).
    pub fn domain(&self) -> String {
        let key = std::str::from_utf8(self.key()).expect("a key is packed from a str");
        key.rsplit('.').collect::<Vec<_>>().join(".")
    }

    /// The Domain as the table wrote it.
    pub fn written(&self) -> String {
        let (flags, rest) = self.fields();
        match flags & PACKED_WRITTEN {
            0 => self.domain(),
            _ => read_str(rest).0.to_owned(),
        }
    }
}

impl AsRecord for PackedRoute<'_> {
    fn record(&self) -> RecordRef<'_> {
        self.target()
    }
}

impl<'r> PackedRoute<'r> {
    /// Where the route sends requests: its record, read in place.
    pub fn target(self) -> RecordRef<'r> {
        let (flags, mut rest) = self.fields();
        if flags & PACKED_WRITTEN != 0 {
            take_str(&mut rest);
        }
        if flags & PACKED_STATIC == 0 {
            let port = u16::from_le_bytes([rest[0], rest[1]]);
            rest = &rest[2..];
            let scheme = if flags & PACKED_HTTPS != 0 { Scheme::Https } else { Scheme::Http };
            return RecordRef::Balancer { host: take_str(&mut rest), port, scheme };
        }
        let bucket = take_str(&mut rest);
        let prefix = take_str(&mut rest);
        let fallback = (flags & PACKED_FALLBACK != 0).then(|| take_str(&mut rest));
        let assets = (flags & PACKED_ASSETS != 0).then(|| {
            let (count, tail) = read_leb(rest);
            let (len, tail) = read_leb(tail);
            Assets::packed(count as u32, &tail[..len])
        });
        let site = (fallback.is_some() || assets.is_some()).then_some(SiteKey { fallback, assets });
        RecordRef::Static { bucket, prefix, site }
    }
}

/// The packed string at the front of `rest`, which moves past it.
fn take_str<'r>(rest: &mut &'r [u8]) -> &'r str {
    let (s, tail) = read_str(rest);
    *rest = tail;
    s
}

/// A length as the snapshot writer writes one (LEB128). Lengths in an
/// arena stay under [`ARENA_LIMIT`], far below `u32::MAX`.
fn write_leb(out: &mut Vec<u8>, n: usize) {
    push_leb(out, u32::try_from(n).expect("a length in an arena fits 32 bits"));
}

fn leb_len(n: usize) -> usize {
    crate::writer::leb_len(u32::try_from(n).expect("a length in an arena fits 32 bits"))
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_leb(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A LEB128 number and the bytes after it. Arenas are written by this
/// module only, so a malformed one is a bug: it panics.
fn read_leb(bytes: &[u8]) -> (usize, &[u8]) {
    let mut n = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        n |= ((b & 0x7F) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return (n, &bytes[i + 1..]);
        }
    }
    panic!("a packed number runs past its arena")
}

fn read_bytes(bytes: &[u8]) -> (&[u8], &[u8]) {
    let (len, rest) = read_leb(bytes);
    rest.split_at(len)
}

/// A packed string and the bytes after it.
pub(crate) fn read_str(bytes: &[u8]) -> (&str, &[u8]) {
    let (s, rest) = read_bytes(bytes);
    (std::str::from_utf8(s).expect("a packed string is written from a str"), rest)
}

/// An entry read back from a packed route (for tests).
#[cfg(test)]
fn entry_of<'r>(route: &PackedRoute<'r>) -> Entry<'r> {
    let target = match route.target() {
        RecordRef::Static { bucket, prefix, site } => Target::Static {
            bucket: std::borrow::Cow::Borrowed(bucket),
            prefix: std::borrow::Cow::Borrowed(prefix),
            assets: site.and_then(|s| s.assets).map(|a| a.iter().map(std::borrow::Cow::Borrowed).collect()),
            fallback: site.and_then(|s| s.fallback).map(std::borrow::Cow::Borrowed),
        },
        RecordRef::Balancer { host, port, scheme } => {
            Target::Balancer { host: std::borrow::Cow::Borrowed(host), port, scheme }
        }
        RecordRef::Tombstone => unreachable!("a compile packs routes only"),
    };
    Entry { domain: std::borrow::Cow::Owned(route.domain()), target }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// Every kind of route reads back as it was packed, the written Domain
    /// kept only where it differs.
    #[test]
    fn a_packed_route_reads_back_as_it_was() {
        let long = "x".repeat(300);
        let entries = [
            Entry {
                domain: Cow::Borrowed("*.a.example.com"),
                target: Target::Static {
                    bucket: Cow::Borrowed("bucket"),
                    prefix: Cow::Borrowed(""),
                    assets: Some(vec![Cow::Borrowed("index.html"), Cow::Borrowed(&long)]),
                    fallback: Some(Cow::Borrowed("index.html")),
                },
            },
            Entry {
                domain: Cow::Borrowed("b.example.com"),
                target: Target::Static {
                    bucket: Cow::Borrowed("b"),
                    prefix: Cow::Borrowed("p/q"),
                    assets: None,
                    fallback: None,
                },
            },
            Entry {
                domain: Cow::Borrowed("c.example.com"),
                target: Target::Balancer { host: Cow::Borrowed("lb.example.net"), port: 8443, scheme: Scheme::Https },
            },
        ];
        let written = ["*.A.example.com", "b.example.com", "C.EXAMPLE.COM."];
        let mut run = Run::default();
        for (i, (entry, written)) in entries.iter().zip(written).enumerate().rev() {
            run.push(&entry.key(), entry, written, Location::Line(i + 1));
        }
        run.sort();
        let (arena, routes) = run.into_parts();
        assert_eq!(routes.len(), 3);
        for (i, packed) in routes.iter().enumerate() {
            let route = packed.route(&arena);
            assert_eq!(route.key(), entries[i].key().as_slice());
            assert_eq!(entry_of(&route), entries[i]);
            assert_eq!(route.written(), written[i]);
            assert_eq!(packed.location, Location::Line(i + 1));
        }
        assert_eq!(leb_len(127), 1);
        assert_eq!(leb_len(128), 2);
    }
}
