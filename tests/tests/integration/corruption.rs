//! Truncated, bit-flipped, random and structurally corrupt snapshots are
//! refused without panicking; whatever is accepted resolves without panicking.
//!
//! The checksum rejects nearly every mutant before the structure is read, so
//! the structural tests mutate a section and then recompute the checksum.

use edgeroute_edge::format::{
    ENDIAN_MARKER, ENDIAN_MARKER_OFFSET, FORMAT_VERSION, HEADER_LEN, MAGIC, ROUTE_COUNT_OFFSET, VERSION_OFFSET,
};
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
    // Every offset, not only the ones the index names.
    let routes = &snap.sections()[1];
    for offset in 0..routes.len as u32 {
        let _ = snap.route_at(offset);
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
        if n % 2 == 0 && m.len() >= MAGIC.len() {
            m[..MAGIC.len()].copy_from_slice(&MAGIC); // get past the magic sometimes
        }
        assert!(Snapshot::from_bytes(m.as_slice()).is_err());
    }
}

#[test]
fn wrong_magic_version_and_endianness_are_named() {
    // The header fields where docs/snapshot-format.md puts them.
    assert_eq!((ENDIAN_MARKER_OFFSET, VERSION_OFFSET, ROUTE_COUNT_OFFSET), (8, 12, 16));
    let bytes = demo();
    let mut m = bytes.clone();
    m[0] = b'X';
    assert_eq!(Snapshot::from_bytes(m.as_slice()).unwrap_err(), SnapshotError::BadMagic);
    let mut m = bytes.clone();
    m[ENDIAN_MARKER_OFFSET..ENDIAN_MARKER_OFFSET + 4].copy_from_slice(&ENDIAN_MARKER.to_be_bytes());
    assert_eq!(Snapshot::from_bytes(m.as_slice()).unwrap_err(), SnapshotError::BadEndianness);
    let mut m = bytes.clone();
    // A snapshot from the previous format version, or a future one.
    for found in [FORMAT_VERSION - 1, FORMAT_VERSION + 1] {
        m[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&found.to_le_bytes());
        fix_checksum(&mut m);
        assert_eq!(Snapshot::from_bytes(m.as_slice()).unwrap_err(), SnapshotError::UnsupportedVersion { found });
    }
    let mut m = bytes;
    m[ROUTE_COUNT_OFFSET..ROUTE_COUNT_OFFSET + 4].copy_from_slice(&13u32.to_le_bytes());
    fix_checksum(&mut m);
    assert!(Snapshot::from_bytes(m.as_slice()).is_err());
}

/// Byte ranges of the sections of a valid snapshot.
fn sections(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    Snapshot::from_bytes(bytes).unwrap().sections().iter().map(|s| s.offset..s.offset + s.len).collect()
}

/// A small table with every record shape: an Assets list in place, a site
/// shared by two routes, strings shared with earlier records, a balancer, a
/// site without a site record.
const SHAPES: &str = r#"
{"Domain":"a.example.com","Target":"s3://bucket-one/a","Assets":["index.html","x.js"]}
{"Domain":"b.example.com","Target":"s3://bucket-one/b","Assets":["index.html","y.js"],"Fallback":"index.html"}
{"Domain":"c.example.com","Target":"s3://bucket-one/c","Assets":["index.html","y.js"],"Fallback":"index.html"}
{"Domain":"d.example.com","Target":"https://origin.example.net"}
{"Domain":"e.example.com","Target":"s3://bucket-two"}
"#;

/// The record offsets of a valid snapshot, in key order, read with `fst`.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    use fst::Streamer;
    let map = fst::Map::new(bytes[sections(bytes)[0].clone()].to_vec()).unwrap();
    let mut stream = map.stream();
    let mut out = Vec::new();
    while let Some((_, offset)) = stream.next() {
        out.push(offset as usize);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).expect("needle present")
}

#[test]
fn targeted_structural_corruption_is_refused() {
    let bytes = snapshot(SHAPES).as_bytes().to_vec();
    let [fst, routes]: [std::ops::Range<usize>; 2] = sections(&bytes).try_into().unwrap();
    let rec: Vec<usize> = record_offsets(&bytes).iter().map(|o| routes.start + o).collect();
    assert_eq!(rec.len(), 5);
    let refuse = |what: &str, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut m = bytes.clone();
        edit(&mut m);
        fix_checksum(&mut m);
        let r = Snapshot::from_bytes(m.as_slice());
        assert!(r.is_err(), "{what} was accepted");
        r.unwrap_err()
    };
    let bad_route = |i: usize| SnapshotError::BadRoute { offset: (rec[i] - routes.start) as u32 };
    // `a` has everything in place; `b` refers back to `a`'s strings; `c`
    // refers back to `b`'s site; `d` is a balancer.
    assert_eq!(bytes[rec[0] + 1], 1, "a has its site in place");
    assert_eq!(bytes[rec[2] + 1], 3, "c refers to b's site");
    assert_eq!(bytes[rec[1] + 2] & 1, 0, "b refers to a's bucket");
    assert_eq!(refuse("unknown route kind", &|m| m[rec[0]] = 9), bad_route(0));
    assert_eq!(refuse("unknown static flag", &|m| m[rec[0] + 1] |= 0x80), bad_route(0));
    refuse("in-place string running into the next record", &|m| m[rec[0] + 2] = 0x7F);
    assert_eq!(refuse("bucket referring to an empty string", &|m| m[rec[1] + 2] = 0), bad_route(1));
    assert_eq!(refuse("site reference on a site in place", &|m| m[rec[0] + 1] = 3), bad_route(0));
    assert_eq!(
        refuse("site reference to this very record", &|m| m[rec[3] - 1] = (rec[2] - routes.start) as u8),
        bad_route(2)
    );
    assert_eq!(refuse("balancer with port 0", &|m| m[rec[3] + 2..rec[3] + 4].fill(0)), bad_route(3));
    assert_eq!(refuse("unknown balancer flag", &|m| m[rec[3] + 1] |= 0x02), bad_route(3));
    // Assets: unsorted, an empty name, an offset table that skips a byte.
    let x = find(&bytes, b"x.js");
    assert_eq!(refuse("unsorted assets", &|m| m[x] = b'a'), bad_route(0));
    let y = find(&bytes, b"y.js");
    assert!(y > rec[1] && y < rec[2]);
    assert_eq!(refuse("unsorted assets after a reference", &|m| m[y] = b'a'), bad_route(1));
    assert_eq!(refuse("invalid UTF-8 in an asset", &|m| m[y] = 0xFF), bad_route(1));
    refuse("empty asset name", &|m| m[x - 1] = 1);
    refuse("asset offset table", &|m| {
        // Site flags 2 (Assets), count 2, then the table: the second offset.
        let table = (rec[0]..rec[1]).find(|&i| m[i] == 2 && m[i + 1] == 2).unwrap() + 2;
        m[table + 2] += 1;
    });
    // Bytes after the last record.
    assert_eq!(
        refuse("a stray byte after the records", &|m| {
            m.insert(routes.end, 0);
            let at = 28 + 12 + 8;
            let v = u32::from_le_bytes(m[at..at + 4].try_into().unwrap());
            m[at..at + 4].copy_from_slice(&(v + 1).to_le_bytes());
        }),
        SnapshotError::BadRoute { offset: routes.len() as u32 }
    );
    // The section table.
    refuse("section offset moved", &|m| {
        let at = 28 + 4;
        let v = u32::from_le_bytes(m[at..at + 4].try_into().unwrap());
        m[at..at + 4].copy_from_slice(&(v + 1).to_le_bytes());
    });
    refuse("route count off by one", &|m| {
        let v = u32::from_le_bytes(m[ROUTE_COUNT_OFFSET..ROUTE_COUNT_OFFSET + 4].try_into().unwrap());
        m[ROUTE_COUNT_OFFSET..ROUTE_COUNT_OFFSET + 4].copy_from_slice(&(v - 1).to_le_bytes());
    });
    // The FST: its header, its footer.
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
    assert!(matches!(Snapshot::from_bytes_checksum_verified(m.as_slice()), Err(SnapshotError::BadRoute { offset: 0 })));
}

/// The walk split over threads gives the verdict (and the error) of one walk: a valid
/// snapshot is accepted whatever the number of parts, and of thousands of
/// mutants (the index most of all, where the parts split), each is refused
/// by the split walk exactly when the whole walk refuses it.
#[test]
fn the_walk_split_over_threads_gives_the_verdict_of_one_walk() {
    let base = {
        let table = generate_table(800, 9);
        let demo = std::fs::read_to_string(workspace_root().join("snapshots/demo.jsonl")).unwrap();
        snapshot(&format!("{demo}\n{}", table.jsonl)).as_bytes().to_vec()
    };
    for threads in 1..=9 {
        let snap = Snapshot::from_bytes_checksum_verified_on(base.as_slice(), threads).unwrap();
        assert_eq!(snap.route_count(), Snapshot::from_bytes(base.as_slice()).unwrap().route_count());
    }
    let secs = sections(&base);
    let mut rng = Rng::new(17);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..1_500 {
        let mut m = base.clone();
        // Three rounds in four in the index.
        let sec = &secs[if round % 4 == 3 { 1 } else { 0 }];
        for _ in 0..1 + rng.below(2) {
            let at = sec.start + rng.below(sec.len());
            match rng.below(3) {
                0 => m[at] ^= 1 << rng.below(8),
                1 => m[at] = rng.next_u64() as u8,
                _ => m[at] = m[at].wrapping_add(1),
            }
        }
        let whole = Snapshot::from_bytes_checksum_verified(m.as_slice()).map(|s| s.route_count());
        for threads in [2, 3, 8] {
            // The same verdict, and the same error.
            let split = Snapshot::from_bytes_checksum_verified_on(m.as_slice(), threads).map(|s| s.route_count());
            assert_eq!(split, whole, "round {round}, {threads} threads");
        }
        if whole.is_ok() {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(refused > 500 && accepted > 0, "refused {refused}, accepted {accepted}");
}
