//! [`SnapshotId`]: a snapshot's name, the SHA-256 of its bytes.

use core::fmt;
use core::str::FromStr;

/// A snapshot's id: the SHA-256 of its bytes, written as 64 lowercase hex
/// digits (`docs/snapshot-format.md`). Snapshots are content-addressed: the
/// same table always compiles to the same bytes, so to the same id, and
/// stores name snapshots by it.
///
/// `SnapshotId::of` hashes bytes; it needs the `hash` feature (which
/// pulls in `sha2`), so that the import-free WebAssembly module, which never
/// hashes, does not carry SHA-256. Without it an id can still be parsed
/// ([`FromStr`], case-insensitive), shown ([`Display`](fmt::Display),
/// lowercase) and compared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId([u8; SnapshotId::LEN]);

/// The first [`SnapshotId::SHORT_HEX_LEN`] hex digits of a [`SnapshotId`],
/// as the `x-edgeroute-snapshot` response header and logs show it. Made by
/// [`SnapshotId::short`]; only a [`Display`](fmt::Display).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortId([u8; SnapshotId::SHORT_HEX_LEN / 2]);

/// Why a string is not a [`SnapshotId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseSnapshotIdError {
    /// Not [`SnapshotId::HEX_LEN`] bytes long.
    Length { len: usize },
    /// The byte at `at` (from 0) is not a hex digit.
    NotHex { at: usize },
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl SnapshotId {
    /// Bytes in an id: a SHA-256 digest.
    pub const LEN: usize = 32;
    /// Hex digits in an id's text.
    pub const HEX_LEN: usize = 2 * Self::LEN;
    /// Hex digits [`short`](Self::short) shows.
    pub const SHORT_HEX_LEN: usize = 12;

    /// The id of the snapshot `bytes`: their SHA-256.
    #[cfg(feature = "hash")]
    pub fn of(bytes: &[u8]) -> SnapshotId {
        use sha2::{Digest, Sha256};
        SnapshotId(Sha256::digest(bytes).into())
    }

    /// The id of a state (`docs/snapshot-format.md`, "States"): the
    /// SHA-256 of its base's id and its layers' ids, in order, as 32 raw
    /// bytes each. A state without layers is its base, and has its id.
    #[cfg(feature = "hash")]
    pub fn of_state(base: &SnapshotId, layers: &[SnapshotId]) -> SnapshotId {
        use sha2::{Digest, Sha256};
        if layers.is_empty() {
            return *base;
        }
        let mut hash = Sha256::new();
        hash.update(base.0);
        for layer in layers {
            hash.update(layer.0);
        }
        SnapshotId(hash.finalize().into())
    }

    /// The id whose SHA-256 digest is `digest` (computed elsewhere, e.g. by
    /// a host with its own SHA-256).
    pub const fn from_digest(digest: [u8; SnapshotId::LEN]) -> SnapshotId {
        SnapshotId(digest)
    }

    /// The SHA-256 digest.
    pub const fn as_bytes(&self) -> &[u8; SnapshotId::LEN] {
        &self.0
    }

    /// The first [`SHORT_HEX_LEN`](Self::SHORT_HEX_LEN) hex digits, for
    /// headers and logs: `format!("{}", id.short())`.
    pub fn short(&self) -> ShortId {
        let mut short = [0; SnapshotId::SHORT_HEX_LEN / 2];
        short.copy_from_slice(&self.0[..SnapshotId::SHORT_HEX_LEN / 2]);
        ShortId(short)
    }

    /// Whether `text` is this id's hex, in either case.
    fn matches(&self, text: &str) -> bool {
        text.parse::<SnapshotId>().is_ok_and(|id| id == *self)
    }
}

/// Writes `bytes` as lowercase hex into `out` (twice as long) and pads it
/// as the formatter asks (width, alignment, precision).
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8], out: &mut [u8]) -> fmt::Result {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[(b >> 4) as usize];
        pair[1] = HEX_DIGITS[(b & 0xF) as usize];
    }
    f.pad(core::str::from_utf8(out).map_err(|_| fmt::Error)?)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for SnapshotId {
    /// 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0, &mut [0; SnapshotId::HEX_LEN])
    }
}

impl fmt::Debug for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SnapshotId({self})")
    }
}

impl fmt::Display for ShortId {
    /// 12 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0, &mut [0; SnapshotId::SHORT_HEX_LEN])
    }
}

impl fmt::Debug for ShortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortId({self})")
    }
}

impl FromStr for SnapshotId {
    type Err = ParseSnapshotIdError;

    /// Parses 64 hex digits, in either case.
    fn from_str(text: &str) -> Result<SnapshotId, ParseSnapshotIdError> {
        let text = text.as_bytes();
        if text.len() != SnapshotId::HEX_LEN {
            return Err(ParseSnapshotIdError::Length { len: text.len() });
        }
        let mut id = [0u8; SnapshotId::LEN];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(ParseSnapshotIdError::NotHex { at: 2 * i })?;
            let lo = hex_value(pair[1]).ok_or(ParseSnapshotIdError::NotHex { at: 2 * i + 1 })?;
            id[i] = hi << 4 | lo;
        }
        Ok(SnapshotId(id))
    }
}

impl From<[u8; SnapshotId::LEN]> for SnapshotId {
    fn from(digest: [u8; SnapshotId::LEN]) -> SnapshotId {
        SnapshotId(digest)
    }
}

/// Equal when the string is this id's hex, in either case (what
/// [`FromStr`] accepts): `id == "e3b0c442…"`.
impl PartialEq<str> for SnapshotId {
    fn eq(&self, other: &str) -> bool {
        self.matches(other)
    }
}

impl PartialEq<&str> for SnapshotId {
    fn eq(&self, other: &&str) -> bool {
        self.matches(other)
    }
}

impl PartialEq<SnapshotId> for str {
    fn eq(&self, other: &SnapshotId) -> bool {
        other.matches(self)
    }
}

impl PartialEq<SnapshotId> for &str {
    fn eq(&self, other: &SnapshotId) -> bool {
        other.matches(self)
    }
}

#[cfg(feature = "std")]
impl PartialEq<std::string::String> for SnapshotId {
    fn eq(&self, other: &std::string::String) -> bool {
        self.matches(other)
    }
}

#[cfg(feature = "std")]
impl PartialEq<SnapshotId> for std::string::String {
    fn eq(&self, other: &SnapshotId) -> bool {
        other.matches(self)
    }
}

impl fmt::Display for ParseSnapshotIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseSnapshotIdError::Length { len } => write!(
                f,
                "a snapshot id is {} hex digits (the SHA-256 of its bytes), not {len} bytes",
                SnapshotId::HEX_LEN
            ),
            ParseSnapshotIdError::NotHex { at } => {
                write!(f, "a snapshot id is hex digits only; byte {at} is not one")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParseSnapshotIdError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn display_and_from_str_round_trip() {
        let id: SnapshotId = EMPTY.parse().unwrap();
        assert_eq!(id.to_string(), EMPTY);
        assert_eq!(id.as_bytes()[..4], [0xe3, 0xb0, 0xc4, 0x42]);
        assert_eq!(SnapshotId::from_digest(*id.as_bytes()), id);
        let mut all = [0u8; 32];
        for (i, b) in all.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37) ^ 0xA5;
        }
        let id = SnapshotId::from(all);
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert!(text.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(text.parse::<SnapshotId>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<SnapshotId>(), Ok(id), "case-insensitive");
        assert_eq!(format!("{id:?}"), format!("SnapshotId({text})"));
        assert_eq!(format!("{id:>70}").trim_start(), text, "pads like a string");
    }

    #[test]
    fn short_is_the_first_twelve_digits() {
        let id: SnapshotId = EMPTY.parse().unwrap();
        assert_eq!(id.short().to_string(), "e3b0c44298fc");
        assert_eq!(id.short().to_string(), &EMPTY[..SnapshotId::SHORT_HEX_LEN]);
    }

    #[test]
    fn compares_with_strings() {
        let id: SnapshotId = EMPTY.parse().unwrap();
        assert!(id == EMPTY);
        assert!(EMPTY == id);
        assert!(id == *EMPTY);
        assert!(id == EMPTY.to_uppercase().as_str());
        assert!(id != EMPTY[1..]);
        assert!(id != "x");
        #[cfg(feature = "std")]
        {
            let owned: std::string::String = EMPTY.into();
            assert!(id == owned);
            assert!(owned == id);
        }
    }

    #[test]
    fn bad_text_is_refused_with_a_reason() {
        assert_eq!("".parse::<SnapshotId>(), Err(ParseSnapshotIdError::Length { len: 0 }));
        assert_eq!(EMPTY[..63].parse::<SnapshotId>(), Err(ParseSnapshotIdError::Length { len: 63 }));
        let mut bad = EMPTY.to_string();
        bad.replace_range(5..6, "g");
        assert_eq!(bad.parse::<SnapshotId>(), Err(ParseSnapshotIdError::NotHex { at: 5 }));
        let e = ParseSnapshotIdError::Length { len: 12 }.to_string();
        assert!(e.contains("64 hex digits") && e.contains("12"), "{e}");
        assert!(ParseSnapshotIdError::NotHex { at: 5 }.to_string().contains("byte 5"));
        // 64 bytes, but not 64 ASCII hex digits.
        let wide = "é".repeat(32);
        assert_eq!(wide.parse::<SnapshotId>(), Err(ParseSnapshotIdError::NotHex { at: 0 }));
    }

    #[cfg(feature = "hash")]
    #[test]
    fn of_is_the_sha256() {
        assert_eq!(SnapshotId::of(b"").to_string(), EMPTY);
        assert_eq!(
            SnapshotId::of(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
