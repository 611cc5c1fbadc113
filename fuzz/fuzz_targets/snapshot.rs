//! `Snapshot::from_bytes` on hostile bytes, then every use of whatever it
//! accepts. The checksum rejects nearly all random input before the structure
//! is read, so half of the runs patch the input into a section of the golden
//! demo snapshot and recompute the checksum: those reach the FST, route,
//! string and site checks.
#![no_main]

use edgeroute_edge::{crc32c, Snapshot};
use libfuzzer_sys::fuzz_target;

const DEMO: &[u8] = include_bytes!("../../snapshots/demo.snap");

fn exercise(snap: &Snapshot<&[u8]>) {
    for (host, path) in [
        ("env-123.example.com", "/about"),
        ("env-123.example.com", "/missing"),
        ("env-456.example.com", "/x"),
        ("a.b.pr-42.previews.example.com", "/"),
        ("xn--bcher-kva.example.com", "/%C3%BCber-uns.html"),
        ("docs.example.com", "/a/"),
    ] {
        let r = snap.resolve(host.as_bytes(), path.as_bytes());
        let _ = format!("{}", r.json());
    }
    snap.for_each_route(|_, _| {});
}

fuzz_target!(|data: &[u8]| {
    if let Some((&mode, rest)) = data.split_first() {
        if mode & 1 == 0 {
            if let Ok(snap) = Snapshot::from_bytes(rest) {
                exercise(&snap);
            }
            return;
        }
        // Structural mode: XOR `rest[2..]` into the demo body at an offset
        // chosen by `rest[..2]`, then make the checksum right again.
        let mut bytes = DEMO.to_vec();
        let body = bytes.len() - 4;
        let at = rest.get(..2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize) % body;
        for (i, b) in rest.iter().skip(2).enumerate() {
            if at + i < body {
                bytes[at + i] ^= b;
            }
        }
        let crc = crc32c(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(snap) = Snapshot::from_bytes(bytes.as_slice()) {
            exercise(&snap);
        }
    }
});
