//! Every byte-reading helper of the crate, in one place (as
//! regex-automata's `util/wire.rs`): little-endian integers of fixed and
//! packed widths, LEB128, and a bounds-checked cursor over a section. Every
//! read is checked; a read that does not fit is `None`, never a panic, and
//! the caller turns it into the error that names the field it was reading
//! (`SnapshotError::BadRoute { offset }`, `FstError::BadNode { addr }`, …).
//! They return `Option` rather than an error so that the resolver's hot
//! path stays as small as a bare slice access.

use crate::format::STRING_INLINE;

/// The little-endian `u16` at `at`.
#[inline]
pub(crate) fn u16_le(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(b.try_into().ok()?))
}

/// The little-endian `u32` at `at`.
#[inline]
pub(crate) fn u32_le(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// A cursor over one section; every read is bounds-checked and a failed
/// read is `None`, never a panic.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'s> {
    pub(crate) data: &'s [u8],
    pub(crate) at: usize,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(data: &'s [u8], at: usize) -> Self {
        Reader { data, at }
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    #[inline]
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'s [u8]> {
        let b = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }

    /// An unsigned LEB128 number of at most 32 bits, shortest encoding.
    #[inline]
    pub(crate) fn leb(&mut self) -> Option<u32> {
        let first = self.u8()?;
        if first < 0x80 {
            return Some(first as u32);
        }
        let mut value = (first & 0x7F) as u32;
        for shift in [7, 14, 21, 28] {
            let b = self.u8()?;
            if shift == 28 && b > 0x0F {
                return None; // more than 32 bits
            }
            value |= ((b & 0x7F) as u32) << shift;
            if b & 0x80 == 0 {
                // A zero last byte means a longer encoding than needed.
                return (b != 0).then_some(value);
            }
        }
        None
    }

    /// A string field: its bytes in place, or a reference to an earlier
    /// field that has them in place (see [`STRING_INLINE`]). UTF-8 is not
    /// checked here.
    #[inline]
    pub(crate) fn string(&mut self) -> Option<&'s [u8]> {
        self.string_field().map(|(bytes, _)| bytes)
    }

    /// [`string`](Self::string), and for a reference, where the field it
    /// refers to ends.
    #[inline]
    pub(crate) fn string_field(&mut self) -> Option<(&'s [u8], Option<usize>)> {
        let tag = self.leb()?;
        if tag & STRING_INLINE != 0 {
            return Some((self.bytes((tag >> 1) as usize)?, None));
        }
        let mut r = Reader::new(self.data, (tag >> 1) as usize);
        let tag = r.leb()?;
        (tag & STRING_INLINE != 0).then_some(())?;
        Some((r.bytes((tag >> 1) as usize)?, Some(r.at)))
    }
}

/// `b` as text, if it is UTF-8.
#[inline]
pub(crate) fn utf8(b: &[u8]) -> Option<&str> {
    core::str::from_utf8(b).ok()
}

/// The little-endian `u64` at `at`.
#[inline]
pub(crate) fn u64_le(data: &[u8], at: usize) -> Option<u64> {
    let b = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// The `n`-byte (0 to 8) little-endian unsigned integer at `at`, as `fst`
/// packs addresses and outputs.
#[inline]
pub(crate) fn uint_le(data: &[u8], at: usize, n: usize) -> Option<u64> {
    if n > 8 {
        return None;
    }
    let b = data.get(at..at.checked_add(n)?)?;
    Some(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
}
