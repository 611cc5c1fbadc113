//! Truncated, bit-flipped, random and structurally corrupt snapshots are
//! refused without panicking; whatever is accepted resolves without panicking.
//!
//! The checksum rejects nearly every mutant before the structure is read, so
//! the structural tests mutate a section and then recompute the checksum.

use edgeroute_edge::format::{HEADER_LEN, ROUTE_LEN};
use edgeroute_edge::{Snapshot, SnapshotError};
use edgeroute_tests::{fix_checksum, generate_table, snapshot, workspace_root, Rng};

fn demo() -> Vec<u8> {
    std::fs::read(workspace_root().join("snapshots/demo.snap")).unwrap()
}

const PROBES: &[(&str, &str)] = &[
    ("env-123.example.com", "/"),
    ("env-123.example.com", "/about"),
    ("env-123.example.com", "/missing"),
    ("env-456.example.com", "/x/y"),
    ("env-789.example.com", "/"),
    ("a.b.pr-42.previews.example.com", "/"),
    ("pinned.pr-42.previews.example.com", "/"),
    ("xn--bcher-kva.example.com", "/%C3%BCber-uns.html"),
    ("docs.example.com", "/a/b/"),
    ("marketing.example.com", "/x"),
    ("unknown.dev", "/"),
];

/// Uses an accepted snapshot every way there is; must not panic.
fn exercise(snap: &Snapshot<&[u8]>) {
    for (host, path) in PROBES {
        let r = snap.resolve(host.as_bytes(), path.as_bytes());
        let _ = r.json().to_string();
    }
    snap.for_each_route(|_, _| {});
    for id in 0..snap.route_count() {
        let _ = snap.route(id);
    }
}

#[test]
fn truncated_snapshots_are_refused() {
    let bytes = demo();
    for len in 0..bytes.len() {
        let r = Snapshot::from_bytes(&bytes[..len]);
        assert!(r.is_err(), "accepted a snapshot truncated to {len} bytes");
    }
    assert!(matches!(Snapshot::from_bytes(&bytes[..10]), Err(SnapshotError::TooShort { .. })));
    assert!(matches!(Snapshot::from_bytes(&bytes[..bytes.len() - 1]), Err(SnapshotError::BadChecksum { .. })));
}

#[test]
fn every_single_bit_flip_is_refused() {
    let bytes = demo();
    for i in 0..bytes.len() * 8 {
        let mut m = bytes.clone();
        m[i / 8] ^= 1 << (i % 8);
        assert!(Snapshot::from_bytes(m.as_slice()).is_err(), "accepted a flip of bit {i}");
    }
}

#[test]
fn random_bytes_are_refused() {
    let mut rng = Rng::new(3);
    for n in 0..2_000 {
        let len = rng.below(4096);
        let mut m: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if n % 2 == 0 && m.len() >= 8 {
            m[..8].copy_from_slice(b"EDGROUTE"); // get past the magic sometimes
        }
        assert!(Snapshot::from_bytes(m.as_slice()).is_err());
    }
}

#[test]
fn wrong_magic_version_and_endianness_are_named() {
    let bytes = demo();
    let mut m = bytes.clone();
    m[0] = b'X';
    assert_eq!(Snapshot::from_bytes(m.as_slice()).unwrap_err(), SnapshotError::BadMagic);
    let mut m = bytes.clone();
    m[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    assert_eq!(Snapshot::from_bytes(m.as_slice()).unwrap_err(), SnapshotError::BadEndianness);
    let mut m = bytes.clone();
    m[12..16].copy_from_slice(&2u32.to_le_bytes());
    fix_checksum(&mut m);
    assert_eq!(Snapshot::from_bytes(m.as_slice()).unwrap_err(), SnapshotError::UnsupportedVersion { found: 2 });
    let mut m = bytes;
    m[16..20].copy_from_slice(&13u32.to_le_bytes());
    fix_checksum(&mut m);
    assert!(Snapshot::from_bytes(m.as_slice()).is_err());
}

/// Byte ranges of the sections of a valid snapshot.
fn sections(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    Snapshot::from_bytes(bytes).unwrap().sections().iter().map(|s| s.offset..s.offset + s.len).collect()
}

#[test]
fn targeted_structural_corruption_is_refused() {
    let bytes = demo();
    let [fst, routes, strings, sites]: [std::ops::Range<usize>; 4] = sections(&bytes).try_into().unwrap();
    let refuse = |what: &str, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut m = bytes.clone();
        edit(&mut m);
        fix_checksum(&mut m);
        let r = Snapshot::from_bytes(m.as_slice());
        assert!(r.is_err(), "{what} was accepted");
        r.unwrap_err()
    };
    // Route records.
    let rec = |id: usize| routes.start + id * ROUTE_LEN;
    assert!(matches!(refuse("bad route kind", &|m| m[rec(0)] = 9), SnapshotError::BadRoute { id: 0 }));
    let e = refuse("string ref out of bounds", &|m| m[rec(1) + 4..rec(1) + 8].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert!(matches!(e, SnapshotError::BadString { .. } | SnapshotError::BadRoute { .. }), "{e:?}");
    refuse("balancer with port 0", &|m| {
        let id = (0..14).find(|&i| m[rec(i)] == 2).unwrap();
        m[rec(id) + 2..rec(id) + 4].copy_from_slice(&0u16.to_le_bytes());
    });
    refuse("site ref out of bounds", &|m| {
        let id = (0..14).find(|&i| m[rec(i)] == 1 && m[rec(i) + 12..rec(i) + 16] != [0xFF; 4]).unwrap();
        m[rec(id) + 12..rec(id) + 16].copy_from_slice(&(sites.len() as u32).to_le_bytes());
    });
    // Sites: an asset count far past the section.
    refuse("huge asset count", &|m| m[sites.start + 4..sites.start + 8].copy_from_slice(&0x0FFF_FFFFu32.to_le_bytes()));
    // Strings: a length prefix past the end, invalid UTF-8.
    // A two-byte length of 16383 from a one-byte one: past the end of the pool.
    refuse("string length past the end", &|m| {
        m[strings.start] = 0xFF;
        m[strings.start + 1] = 0x7F;
    });
    refuse("non-canonical string length", &|m| {
        let len = m[strings.start];
        m[strings.start] = len | 0x80;
        m[strings.start + 1] = 0;
    });
    refuse("invalid UTF-8 in a string", &|m| {
        let s = strings.start + 1;
        m[s] = 0xFF;
    });
    // The section table.
    refuse("section offset moved", &|m| {
        let at = 28 + 4;
        let v = u32::from_le_bytes(m[at..at + 4].try_into().unwrap());
        m[at..at + 4].copy_from_slice(&(v + 1).to_le_bytes());
    });
    refuse("route count off by one", &|m| {
        let v = u32::from_le_bytes(m[16..20].try_into().unwrap());
        m[16..20].copy_from_slice(&(v - 1).to_le_bytes());
    });
    // The FST: its header, its footer, and a node in the middle.
    refuse("fst version", &|m| m[fst.start] = 2);
    refuse("fst root address", &|m| m[fst.end - 12] ^= 0x01);
    refuse("fst key count", &|m| m[fst.end - 20] ^= 0x01);
    assert_eq!(HEADER_LEN, fst.start);
}

/// Mutates bytes inside each section, recomputes the checksum, and demands
/// that `from_bytes` never panics and that anything it accepts can be used
/// without panicking.
#[test]
fn section_mutations_with_recomputed_checksum_never_panic() {
    let base = {
        let table = generate_table(300, 5);
        let demo = std::fs::read_to_string(workspace_root().join("snapshots/demo.jsonl")).unwrap();
        snapshot(&format!("{demo}\n{}", table.jsonl)).as_bytes().to_vec()
    };
    let secs = sections(&base);
    let mut rng = Rng::new(11);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..6_000 {
        let mut m = base.clone();
        let sec = &secs[round % secs.len()];
        if sec.is_empty() {
            continue;
        }
        for _ in 0..1 + rng.below(3) {
            let at = sec.start + rng.below(sec.len());
            match rng.below(3) {
                0 => m[at] ^= 1 << rng.below(8),
                1 => m[at] = rng.next_u64() as u8,
                _ => m[at] = m[at].wrapping_add(1),
            }
        }
        fix_checksum(&mut m);
        match Snapshot::from_bytes(m.as_slice()) {
            Ok(snap) => {
                accepted += 1;
                exercise(&snap);
            }
            Err(_) => refused += 1,
        }
    }
    // Most structural damage must be caught by the structure checks.
    assert!(refused > accepted, "refused {refused}, accepted {accepted}");
}

#[test]
fn snapshot_from_bytes_checksum_verified_still_checks_structure() {
    let mut m = demo();
    let routes = sections(&m)[1].clone();
    m[routes.start] = 77;
    // The checksum is now wrong, but the caller says it checked: structure still refuses.
    assert!(matches!(Snapshot::from_bytes_checksum_verified(m.as_slice()), Err(SnapshotError::BadRoute { id: 0 })));
}
