//! [`Table`]: the index and route records that a snapshot and a layer
//! share (`docs/snapshot-format.md`): an FST section from routing key to
//! record offset, and a routes section of records in key order, end to
//! end. A layer's records may also be tombstones.

use core::ops::Range;

use crate::error::SnapshotError;
use crate::format::*;
use crate::fst::{Cursor, Fst, FstError};
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
        let part = self.check_part(bytes, tombstones, filter, None, None)?;
        Part::join(&[Ok(part)], self.fst(bytes).len(), self.routes(bytes).len())
    }

    /// [`Table::check`] on `threads` threads: the walk split into parts of
    /// about as many record bytes each ([`Fst::cursor_at`]), each checked
    /// as the whole walk checks it, and the parts joined: together they
    /// must give each key once, their records end to end.
    #[cfg(feature = "std")]
    pub(crate) fn check_on(
        &self,
        bytes: &[u8],
        tombstones: bool,
        filter: Option<&[u8]>,
        threads: usize,
    ) -> Result<u32, SnapshotError> {
        use std::vec::Vec;
        let fst = self.fst(bytes);
        let total = self.routes(bytes).len() as u64;
        let threads = threads.max(1);
        let cursors: Vec<_> = (1..threads).map(|k| fst.cursor_at(total * k as u64 / threads as u64)).collect();
        let bounds: Vec<(Option<&Cursor>, Option<&Cursor>)> =
            (0..threads).map(|k| (k.checked_sub(1).map(|i| &cursors[i]), cursors.get(k))).collect();
        let parts: Option<Vec<Result<Part, SnapshotError>>> = std::thread::scope(|s| {
            let handles: Vec<_> = bounds
                .iter()
                .map(|&(from, to)| {
                    std::thread::Builder::new()
                        .spawn_scoped(s, move || self.check_part(bytes, tombstones, filter, from, to))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.ok().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))))
                .collect()
        });
        match parts.map(|parts| Part::join(&parts, fst.len(), total as usize)) {
            Some(Ok(deleted)) => Ok(deleted),
            // Refused: the whole walk again, on this thread, so that the error
            // is the one it gives (a part numbers keys from its own start).
            // The same when a thread could not be started.
            _ => self.check(bytes, tombstones, filter),
        }
    }

    /// Checks the keys and records of the walk from `from` to `to` (see
    /// [`Fst::walk_between`]). The first part's records start at 0; any
    /// other's where its first key's output says, which [`Part::join`]
    /// then holds against where the part before ended.
    fn check_part(
        &self,
        bytes: &[u8],
        tombstones: bool,
        filter: Option<&[u8]>,
        from: Option<&Cursor>,
        to: Option<&Cursor>,
    ) -> Result<Part, SnapshotError> {
        let routes = self.routes(bytes);
        let mut next: Option<usize> = from.is_none().then_some(0);
        let mut first = None;
        let mut index = 0u64;
        let mut deleted = 0u32;
        let keys = self.fst(bytes).walk_between(from, to, |key, out| -> Result<(), SnapshotError> {
            if !valid_key(key) {
                return Err(FstError::BadKey { index }.into());
            }
            let at = match next {
                Some(at) => at,
                None => usize::try_from(out).map_err(|_| FstError::BadOutput { expected: 0, found: out })?,
            };
            if out != at as u64 {
                return Err(FstError::BadOutput { expected: at as u64, found: out }.into());
            }
            first.get_or_insert(at);
            // A layer's filter must hold every key: a key it refused would never be found.
            if filter.is_some_and(|f| !crate::filter::may_contain(f, crate::filter::key_hash(key))) {
                return Err(SnapshotError::FilterMissesKey { index });
            }
            let bad = SnapshotError::BadRoute { offset: at as u32 };
            if tombstones && routes.get(at) == Some(&ROUTE_TOMBSTONE) {
                deleted += 1;
                next = Some(at + 1);
            } else {
                next = Some(check_route(routes, at).ok_or(bad)?);
            }
            index += 1;
            Ok(())
        })?;
        Ok(Part { first, end: next.unwrap_or(0), keys, deleted })
    }
}

/// What one part of a table's walk checked.
#[derive(Clone, Copy, Debug)]
struct Part {
    /// Where its first record starts (none: it gave no key).
    first: Option<usize>,
    /// Where its last record ends.
    end: usize,
    keys: u64,
    deleted: u32,
}

impl Part {
    /// Joins the parts of a walk, in order: each part's records start where
    /// the previous part's ended (the first's at 0), the last ends at the
    /// section's end, and the keys are as many as the index says. Returns
    /// the tombstones.
    fn join(parts: &[Result<Part, SnapshotError>], keys: u64, routes_len: usize) -> Result<u32, SnapshotError> {
        let (mut end, mut found, mut deleted) = (0usize, 0u64, 0u32);
        for part in parts {
            let part = (*part)?;
            if let Some(first) = part.first {
                if first != end {
                    return Err(FstError::BadOutput { expected: end as u64, found: first as u64 }.into());
                }
                end = part.end;
            }
            found += part.keys;
            deleted += part.deleted;
        }
        if found != keys {
            return Err(FstError::KeyCount { footer: keys, found }.into());
        }
        if end != routes_len {
            return Err(SnapshotError::BadRoute { offset: end as u32 });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts join only end to end: a gap or an overlap between two parts'
    /// records, keys more or fewer than the index's, or a last part that
    /// stops short of the section's end are each refused; a part without
    /// keys joins anywhere.
    #[test]
    fn parts_join_only_end_to_end() {
        let part = |first: Option<usize>, end, keys| Ok(Part { first, end, keys, deleted: 1 });
        assert_eq!(Part::join(&[part(Some(0), 10, 2), part(None, 0, 0), part(Some(10), 20, 3)], 5, 20), Ok(3));
        let gap = Part::join(&[part(Some(0), 10, 2), part(Some(12), 20, 3)], 5, 20);
        assert_eq!(gap, Err(FstError::BadOutput { expected: 10, found: 12 }.into()));
        let overlap = Part::join(&[part(Some(0), 10, 2), part(Some(8), 20, 3)], 5, 20);
        assert_eq!(overlap, Err(FstError::BadOutput { expected: 10, found: 8 }.into()));
        let late_start = Part::join(&[part(Some(4), 20, 5)], 5, 20);
        assert_eq!(late_start, Err(FstError::BadOutput { expected: 0, found: 4 }.into()));
        let keys = Part::join(&[part(Some(0), 10, 2), part(Some(10), 20, 3)], 6, 20);
        assert_eq!(keys, Err(FstError::KeyCount { footer: 6, found: 5 }.into()));
        let short = Part::join(&[part(Some(0), 10, 2), part(Some(10), 18, 3)], 5, 20);
        assert_eq!(short, Err(SnapshotError::BadRoute { offset: 18 }));
    }
}
