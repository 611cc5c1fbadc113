//! Resolve rule 1: turning a `Host` header value into a hostname.

use core::fmt;

use crate::Reason;

/// Longest hostname, in bytes (DNS: 255 octets on the wire, 253 as text).
pub const MAX_HOST_LEN: usize = 253;
/// Longest DNS label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// A hostname that passed rule 1, borrowed from the request.
///
/// It is the request's bytes without port and trailing dot; they may still
/// hold uppercase letters, which every accessor lowercases on the fly, so a
/// lookup never copies the host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HostName<'r> {
    raw: &'r [u8],
}

impl<'r> HostName<'r> {
    /// Applies rule 1 to a `Host` header value.
    ///
    /// If the value holds a `:`, what follows the last one must be a port of
    /// 1–5 digits and is dropped. One trailing dot is stripped. Then, first
    /// failing check wins: empty, longer than 253 bytes, a byte outside
    /// `A-Z a-z 0-9 - . _`, an empty label or one longer than 63 bytes.
    pub fn parse(value: &'r [u8]) -> Result<HostName<'r>, Reason> {
        let mut host = value;
        if let Some(colon) = host.iter().rposition(|&b| b == b':') {
            let port = &host[colon + 1..];
            if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
                return Err(Reason::HostBadPort);
            }
            host = &host[..colon];
        }
        if let [rest @ .., b'.'] = host {
            host = rest;
        }
        if host.is_empty() {
            return Err(Reason::HostEmpty);
        }
        if host.len() > MAX_HOST_LEN {
            return Err(Reason::HostTooLong);
        }
        // One pass for both remaining checks; a bad byte outranks a bad label.
        let (mut bad_label, mut label) = (false, 0usize);
        for &b in host {
            match HOST_BYTES[b as usize] {
                BYTE_LABEL => label += 1,
                BYTE_DOT => {
                    bad_label |= label == 0 || label > MAX_LABEL_LEN;
                    label = 0;
                }
                _ => return Err(Reason::HostBadChar),
            }
        }
        if bad_label || label == 0 || label > MAX_LABEL_LEN {
            return Err(Reason::HostBadLabel);
        }
        Ok(HostName { raw: host })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Never true: rule 1 refuses empty hosts.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The host's bytes, lowercased.
    pub fn bytes(&self) -> impl DoubleEndedIterator<Item = u8> + ExactSizeIterator + 'r {
        self.raw.iter().map(u8::to_ascii_lowercase)
    }

    /// The part of the host from byte `start` on (a suffix after a label boundary).
    pub(crate) fn suffix(&self, start: usize) -> HostName<'r> {
        HostName { raw: self.raw.get(start..).unwrap_or_default() }
    }

    pub(crate) fn raw(&self) -> &'r [u8] {
        self.raw
    }
}

const BYTE_BAD: u8 = 0;
const BYTE_LABEL: u8 = 1;
const BYTE_DOT: u8 = 2;

/// Classes of the bytes of a `Host` value (before lowercasing).
static HOST_BYTES: [u8; 256] = {
    let mut t = [BYTE_BAD; 256];
    let mut b = 0;
    while b < 256 {
        let lower = (b as u8).to_ascii_lowercase();
        if is_host_byte(lower) {
            t[b] = if lower == b'.' { BYTE_DOT } else { BYTE_LABEL };
        }
        b += 1;
    }
    t
};

/// Bytes a normalized hostname may hold.
pub const fn is_host_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_')
}

impl fmt::Display for HostName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Valid hosts are ASCII, so each byte is one char.
        self.bytes().try_for_each(|b| fmt::Write::write_char(f, b as char))
    }
}

impl fmt::Debug for HostName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName({self})")
    }
}

impl PartialEq<str> for HostName<'_> {
    fn eq(&self, other: &str) -> bool {
        self.bytes().eq(other.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::prelude::rust_2021::*;

    fn parse(s: &str) -> Result<String, Reason> {
        HostName::parse(s.as_bytes()).map(|h| std::string::ToString::to_string(&h))
    }

    #[test]
    fn ports_trailing_dot_and_case() {
        assert_eq!(parse("Example.COM"), Ok("example.com".into()));
        assert_eq!(parse("example.com."), Ok("example.com".into()));
        assert_eq!(parse("example.com.:8080"), Ok("example.com".into()));
        assert_eq!(parse("example.com:1"), Ok("example.com".into()));
        assert_eq!(parse("example.com:99999"), Ok("example.com".into()));
        assert_eq!(parse("example.com:"), Err(Reason::HostBadPort));
        assert_eq!(parse("example.com:123456"), Err(Reason::HostBadPort));
        assert_eq!(parse("example.com:8o"), Err(Reason::HostBadPort));
        assert_eq!(parse("[::1]:80"), Err(Reason::HostBadChar));
        assert_eq!(parse("[::1]"), Err(Reason::HostBadPort));
    }

    #[test]
    fn first_failing_check_wins() {
        assert_eq!(parse(""), Err(Reason::HostEmpty));
        assert_eq!(parse("."), Err(Reason::HostEmpty));
        assert_eq!(parse(":80"), Err(Reason::HostEmpty));
        let long = "a.".repeat(127); // 254 bytes, trailing dot stripped: 253
        assert!(parse(&long).is_ok());
        assert_eq!(parse(&format!("b{long}")), Err(Reason::HostTooLong));
        // Too long beats a bad char; a bad char beats a bad label.
        assert_eq!(parse(&format!("{}é", "a".repeat(260))), Err(Reason::HostTooLong));
        assert_eq!(parse("a..b c"), Err(Reason::HostBadChar));
        assert_eq!(parse("a..b"), Err(Reason::HostBadLabel));
        assert_eq!(parse(".a"), Err(Reason::HostBadLabel));
        assert_eq!(parse(&"x".repeat(64)), Err(Reason::HostBadLabel));
        assert!(parse(&"x".repeat(63)).is_ok());
        for bad in ["a b", "a\r\nb", "a\0", "a/b", "u@h", "bücher.de", "a*b", "a%2eb"] {
            assert_eq!(parse(bad), Err(Reason::HostBadChar), "{bad:?}");
        }
        assert_eq!(parse("under_score.x"), Ok("under_score.x".into()));
    }
}
