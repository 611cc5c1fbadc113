//! [`Table`]: the index and route records that a snapshot and a layer
//! share (`docs/snapshot-format.md`): an FST section from routing key to
//! record offset, and a routes section of records in key order, end to
//! end. A layer's records may also be tombstones.

use core::ops::Range;

use crate::error::SnapshotError;
use crate::format::*;
use crate::fst::{Fst, FstError};
use crate::host::{is_host_byte, MAX_LABEL_LEN};
use crate::snapshot::{read_site, Assets, Origin, Route, Scheme, StaticSite};
use crate::wire::{u16_le, utf8, Reader};

/// Where a table's two sections lie in its file; both ranges were checked
/// against the file, and the FST's header and footer against the entry
/// count.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub(crate) count: u32,
    pub(crate) fst: Range<usize>,
    pub(crate) routes: Range<usize>,
    pub(crate) fst_root: usize,
}

/// One record of a table: a route, or (in a layer) the deletion of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'s> {
    Route(Route<'s>),
    Tombstone,
}

impl Table {
    /// Checks the FST section's own header and footer: O(1).
    pub(crate) fn new(
        bytes: &[u8],
        count: u32,
        fst: Range<usize>,
        routes: Range<usize>,
    ) -> Result<Table, SnapshotError> {
        let parsed = Fst::new(bytes.get(fst.clone()).unwrap_or_default())?;
        if parsed.len() != count as u64 {
            return Err(SnapshotError::RouteCountMismatch { header: count, fst: parsed.len() });
        }
        Ok(Table { count, fst_root: parsed.root_addr(), fst, routes })
    }

    #[inline]
    pub(crate) fn fst<'a>(&self, bytes: &'a [u8]) -> Fst<'a> {
        Fst::from_parts(bytes.get(self.fst.clone()).unwrap_or_default(), self.fst_root, self.count as u64)
    }

    #[inline]
    pub(crate) fn routes<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        bytes.get(self.routes.clone()).unwrap_or_default()
    }

    /// Walks the whole index and every record (see `docs/snapshot-format.md`,
    /// "Validation"): each key a routing key (and in `filter`, a layer's),
    /// each output exactly where the previous record ended, each record well
    /// formed, nothing after the last. Tombstones are allowed only if
    /// `tombstones`; returns how many there are.
    pub(crate) fn check(&self, bytes: &[u8], tombstones: bool, filter: Option<&[u8]>) -> Result<u32, SnapshotError> {
        let routes = self.routes(bytes);
        let mut next = 0usize;
        let mut index = 0u64;
        let mut deleted = 0u32;
        self.fst(bytes).validate(|key, out| -> Result<(), SnapshotError> {
            if !valid_key(key) {
                return Err(FstError::BadKey { index }.into());
            }
            if out != next as u64 {
                return Err(FstError::BadOutput { expected: next as u64, found: out }.into());
            }
            // A layer's filter must hold every key: a key it refused would never be found.
            if filter.is_some_and(|f| !crate::filter::may_contain(f, crate::filter::key_hash(key))) {
                return Err(SnapshotError::FilterMissesKey { index });
            }
            let bad = SnapshotError::BadRoute { offset: next as u32 };
            if tombstones && routes.get(next) == Some(&ROUTE_TOMBSTONE) {
                deleted += 1;
                next += 1;
            } else {
                next = check_route(routes, next).ok_or(bad)?;
            }
            index += 1;
            Ok(())
        })?;
        if next != routes.len() {
            return Err(SnapshotError::BadRoute { offset: next as u32 });
        }
        Ok(deleted)
    }
}

/// The record that starts at `offset` of a routes section.
#[inline]
pub(crate) fn record_at(routes: &[u8], offset: u32) -> Option<Record<'_>> {
    let mut r = Reader::new(routes, offset as usize);
    match r.u8()? {
        ROUTE_STATIC => {
            let flags = r.u8()?;
            let bucket = utf8(r.string()?)?;
            let prefix = utf8(r.string()?)?;
            let (fallback, assets) = if flags & STATIC_HAS_SITE == 0 {
                (None, None)
            } else if flags & STATIC_SITE_REF == 0 {
                read_site(&mut r)?
            } else {
                let at = r.leb()? as usize;
                read_site(&mut Reader::new(r.data, at))?
            };
            Some(Record::Route(Route::Static(StaticSite { bucket, prefix, assets, fallback })))
        }
        ROUTE_BALANCER => {
            let flags = r.u8()?;
            let port = r.bytes(2)?;
            Some(Record::Route(Route::Balancer(Origin {
                host: utf8(r.string()?)?,
                port: u16_le(port, 0)?,
                scheme: if flags & FLAG_HTTPS != 0 { Scheme::Https } else { Scheme::Http },
            })))
        }
        ROUTE_TOMBSTONE => Some(Record::Tombstone),
        _ => None,
    }
}

/// Checks the route record at `offset` and returns where it ends.
fn check_route(routes: &[u8], offset: usize) -> Option<usize> {
    let mut r = Reader::new(routes, offset);
    match r.u8()? {
        ROUTE_STATIC => {
            let flags = r.u8()?;
            check_string(&mut r).filter(|b| !b.is_empty())?;
            check_string(&mut r)?;
            match flags {
                0 => {}
                STATIC_HAS_SITE => check_site(&mut r)?,
                f if f == STATIC_HAS_SITE | STATIC_SITE_REF => {
                    // An earlier record's site, which was checked with it;
                    // here only that it reads as a site.
                    let at = r.leb()? as usize;
                    (at < offset).then_some(())?;
                    let mut site = Reader::new(r.data, at);
                    read_site(&mut site)?;
                }
                _ => return None,
            }
        }
        ROUTE_BALANCER => {
            let flags = r.u8()?;
            let port = r.bytes(2)?;
            if flags & !FLAG_HTTPS != 0 || port == [0, 0] {
                return None;
            }
            check_string(&mut r).filter(|b| !b.is_empty())?;
        }
        _ => return None,
    }
    Some(r.at)
}

/// Checks a string field: UTF-8, and a reference must point backwards
/// (to a field before this one) at a field that has the bytes in place.
pub(crate) fn check_string<'s>(r: &mut Reader<'s>) -> Option<&'s [u8]> {
    let here = r.at;
    let (bytes, referred_end) = r.string_field()?;
    if referred_end.is_some_and(|end| end > here) {
        return None; // not an earlier field
    }
    utf8(bytes).map(|_| bytes)
}

/// Reads one site record in place, checking everything: known flags,
/// UTF-8 strings, non-empty Assets in strictly ascending byte order, an
/// offset table that lays the entries end to end.
fn check_site(r: &mut Reader<'_>) -> Option<()> {
    let flags = *r.data.get(r.at)?;
    if flags & SITE_FALLBACK != 0 {
        let mut f = Reader::new(r.data, r.at + 1);
        check_string(&mut f).filter(|b| !b.is_empty())?;
    }
    let (_, assets) = read_site(r)?;
    match assets {
        None => (flags & SITE_WIDE_OFFSETS == 0).then_some(()),
        Some(assets) => check_assets(r, assets),
    }
}

fn check_assets(r: &Reader<'_>, assets: Assets<'_>) -> Option<()> {
    let mut prev: Option<&[u8]> = None;
    let mut expect = assets.entries;
    for i in 0..assets.len() {
        (assets.entries.checked_add(assets.offset(i)?)? == expect).then_some(())?;
        let mut e = Reader::new(r.data, expect);
        let name = check_string(&mut e).filter(|n| !n.is_empty())?;
        if prev.is_some_and(|p| p >= name) {
            return None;
        }
        prev = Some(name);
        expect = e.at;
    }
    (expect == r.at).then_some(())
}

/// Is `key` a routing key: a normalized hostname with its labels reversed,
/// or a wildcard `REVERSED.*` whose suffix has at least two labels?
pub(crate) fn valid_key(key: &[u8]) -> bool {
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
pub(crate) fn key_to_domain<'b>(key: &[u8], buf: &'b mut [u8; crate::MAX_KEY_LEN]) -> Option<&'b str> {
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

/// Calls `f(domain, record)` for every entry of a table in key order.
pub(crate) fn for_each_record<'s>(fst: Fst<'_>, routes: &'s [u8], mut f: impl FnMut(&str, Record<'s>)) {
    let _ = fst.walk::<FstError>(|key, offset| {
        let mut buf = [0u8; crate::MAX_KEY_LEN];
        let domain = key_to_domain(key, &mut buf);
        let record = u32::try_from(offset).ok().and_then(|o| record_at(routes, o));
        if let (Some(domain), Some(record)) = (domain, record) {
            f(domain, record);
        }
        Ok(())
    });
}

/// The output of `key` in `fst`, looked up exactly.
#[inline]
pub(crate) fn get(fst: Fst<'_>, key: &[u8]) -> Option<u64> {
    let mut node = fst.root_addr();
    let mut out = 0u64;
    for &b in key {
        let (o, next) = fst.step_addr(node, b)?;
        out = out.wrapping_add(o);
        node = next;
    }
    fst.accept(node).map(|f| out.wrapping_add(f))
}

/// A stored Domain's routing key (`*.example.com` → `com.example.*`),
/// built in `buf`; `None` if it is longer than a key may be.
pub(crate) fn domain_to_key<'b>(domain: &str, buf: &'b mut [u8; crate::MAX_KEY_LEN]) -> Option<&'b [u8]> {
    let mut at = 0;
    for (i, label) in domain.as_bytes().rsplit(|&b| b == b'.').enumerate() {
        if i > 0 {
            *buf.get_mut(at)? = KEY_LABEL_SEPARATOR;
            at += 1;
        }
        buf.get_mut(at..at + label.len())?.copy_from_slice(label);
        at += label.len();
    }
    Some(&buf[..at])
}
