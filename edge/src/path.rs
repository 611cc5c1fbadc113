//! Resolve rule 4, the path half: checking, decoding and splitting a request path.

use core::fmt;

use crate::Reason;

/// Splits a request target into the path and the query (without `?`);
/// a fragment is dropped.
pub fn split_target(target: &[u8]) -> (&[u8], Option<&[u8]>) {
    let end = target.iter().position(|&b| b == b'#').unwrap_or(target.len());
    let target = &target[..end];
    match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    }
}

pub(crate) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks a path (without query and fragment); first failing check wins.
pub fn check(path: &[u8]) -> Result<(), Reason> {
    if path.first() != Some(&b'/') {
        return Err(Reason::PathNotAbsolute);
    }
    // Escapes: well-formed, and never smuggling a separator, a dot or NUL
    // past the segment checks below.
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let decoded = match (path.get(i + 1).and_then(|&b| hex(b)), path.get(i + 2).and_then(|&b| hex(b))) {
                (Some(h), Some(l)) => h << 4 | l,
                _ => return Err(Reason::PathBadEscape),
            };
            if matches!(decoded, b'/' | b'\\' | b'.' | 0) {
                return Err(Reason::PathBadEscape);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    if Decoded::new(path).any(|b| b == b'\\' || b < 0x20 || b == 0x7F) || !decoded_is_utf8(path) {
        return Err(Reason::PathBadChar);
    }
    // No escape decodes to `/` or `.`, so segments can be read off the raw bytes.
    let segments = || path[1..].split(|&b| b == b'/');
    if segments().any(|s| s == b"." || s == b"..") {
        return Err(Reason::PathDotSegment);
    }
    let last = segments().count() - 1;
    if segments().enumerate().any(|(n, s)| s.is_empty() && n != last) {
        return Err(Reason::PathEmptySegment);
    }
    Ok(())
}

/// Validates the decoded bytes as UTF-8 in fixed-size chunks, carrying an
/// incomplete sequence over a chunk boundary, so no buffer is allocated.
fn decoded_is_utf8(path: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    let mut len = 0;
    let mut bytes = Decoded::new(path).peekable();
    loop {
        while len < buf.len() {
            match bytes.next() {
                Some(b) => {
                    buf[len] = b;
                    len += 1;
                }
                None => break,
            }
        }
        let done = bytes.peek().is_none();
        match core::str::from_utf8(&buf[..len]) {
            Ok(_) => len = 0,
            Err(e) if e.error_len().is_some() => return false,
            Err(e) => {
                // An incomplete sequence at the end of the chunk: keep it.
                let valid = e.valid_up_to();
                buf.copy_within(valid..len, 0);
                len -= valid;
            }
        }
        if done {
            return len == 0;
        }
    }
}

/// The bytes of a checked path with each `%XX` escape decoded once.
#[derive(Clone, Debug)]
pub struct Decoded<'r> {
    rest: &'r [u8],
}

impl<'r> Decoded<'r> {
    pub fn new(raw: &'r [u8]) -> Decoded<'r> {
        Decoded { rest: raw }
    }
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        match *self.rest {
            [b'%', h, l, ref rest @ ..] if hex(h).is_some() && hex(l).is_some() => {
                self.rest = rest;
                Some(hex(h).unwrap_or(0) << 4 | hex(l).unwrap_or(0))
            }
            [b, ref rest @ ..] => {
                self.rest = rest;
                Some(b)
            }
            [] => None,
        }
    }
}

/// Writes `bytes` to `f`, percent-encoding everything but printable ASCII
/// that URLs allow raw. Keeps `Location` headers ASCII and free of CR/LF.
pub(crate) fn write_url_bytes(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        if b > 0x20 && b < 0x7F && !matches!(b, b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'#') {
            fmt::Write::write_char(f, b as char)?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// Writes decoded path bytes. They are UTF-8 once [`check`] passed; should
/// they not be, invalid sequences become U+FFFD instead of an error, so a
/// `Display` built on this never fails (`to_string` would panic).
pub(crate) fn write_decoded(f: &mut fmt::Formatter<'_>, raw: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 64];
    let mut len = 0;
    let mut bytes = Decoded::new(raw).peekable();
    loop {
        while len < buf.len() {
            match bytes.next() {
                Some(b) => {
                    buf[len] = b;
                    len += 1;
                }
                None => break,
            }
        }
        let done = bytes.peek().is_none();
        // Write what is valid; replace what is invalid; stop before an
        // incomplete sequence at the end, which the next chunk completes.
        let mut start = 0;
        while start < len {
            match core::str::from_utf8(&buf[start..len]) {
                Ok(s) => {
                    f.write_str(s)?;
                    start = len;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    f.write_str(core::str::from_utf8(&buf[start..valid]).unwrap_or_default())?;
                    start = valid;
                    match e.error_len() {
                        Some(bad) => {
                            f.write_str("\u{FFFD}")?;
                            start += bad;
                        }
                        None => break,
                    }
                }
            }
        }
        if done {
            return if start < len { f.write_str("\u{FFFD}") } else { Ok(()) };
        }
        buf.copy_within(start..len, 0);
        len -= start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2021::*;

    #[test]
    fn split_drops_fragment_and_keeps_query() {
        assert_eq!(split_target(b"/a?x=1#f"), (&b"/a"[..], Some(&b"x=1"[..])));
        assert_eq!(split_target(b"/a#f?x"), (&b"/a"[..], None));
        assert_eq!(split_target(b"/a?"), (&b"/a"[..], Some(&b""[..])));
    }

    #[test]
    fn check_order_and_cases() {
        assert_eq!(check(b""), Err(Reason::PathNotAbsolute));
        assert_eq!(check(b"a/b"), Err(Reason::PathNotAbsolute));
        assert_eq!(check(b"/"), Ok(()));
        assert_eq!(check(b"/a/b/"), Ok(()));
        for bad in [&b"/%"[..], b"/%4", b"/%zz", b"/a%2f", b"/%2F", b"/%5c", b"/%2e", b"/%00"] {
            assert_eq!(check(bad), Err(Reason::PathBadEscape), "{bad:?}");
        }
        for bad in [&b"/a\\b"[..], b"/%0a", b"/%7F", b"/\x01", b"/%ff", b"/%C3", b"/%C3%28", b"/\xC3"] {
            assert_eq!(check(bad), Err(Reason::PathBadChar), "{bad:?}");
        }
        assert_eq!(check("/caf%C3%A9/é".as_bytes()), Ok(()));
        assert_eq!(check(b"/\xC3%A9"), Ok(()));
        for bad in [&b"/."[..], b"/..", b"/a/../b", b"/a/./", b"/a/.."] {
            assert_eq!(check(bad), Err(Reason::PathDotSegment), "{bad:?}");
        }
        assert_eq!(check(b"/a/.b/..c"), Ok(()));
        for bad in [&b"//"[..], b"/a//b", b"//a"] {
            assert_eq!(check(bad), Err(Reason::PathEmptySegment), "{bad:?}");
        }
        // First failing check wins.
        assert_eq!(check(b"/a//b/%zz"), Err(Reason::PathBadEscape));
        assert_eq!(check(b"/a//../\\"), Err(Reason::PathBadChar));
        assert_eq!(check(b"/a//.."), Err(Reason::PathDotSegment));
    }

    #[test]
    fn utf8_across_chunk_boundaries() {
        for pad in 60..70 {
            let mut p = b"/".to_vec();
            p.extend(core::iter::repeat_n(b'a', pad));
            p.extend("€".as_bytes());
            assert_eq!(check(&p), Ok(()), "pad {pad}");
            p.pop();
            assert_eq!(check(&p), Err(Reason::PathBadChar), "pad {pad}");
        }
    }

    #[test]
    fn decoded_display_is_lossy_never_an_error() {
        struct D<'a>(&'a [u8]);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_decoded(f, self.0)
            }
        }
        assert_eq!(D(b"caf%C3%A9").to_string(), "café");
        assert_eq!(D(b"a%FFb").to_string(), "a\u{FFFD}b");
        assert_eq!(D(b"a%C3").to_string(), "a\u{FFFD}");
        // A sequence split across the 64-byte chunk boundary survives.
        let mut long = "x".repeat(63);
        long.push('€');
        assert_eq!(D(long.as_bytes()).to_string(), long);
        let long: String = "€".repeat(100);
        assert_eq!(D(long.as_bytes()).to_string(), long);
    }

    #[test]
    fn decoding_is_once() {
        let d: Vec<u8> = Decoded::new(b"/a%2520b%41").collect();
        assert_eq!(d, b"/a%20bA");
    }
}
