use super::*;
use std::prelude::rust_2021::*;
use std::{format, vec};

fn build(keys: &[(&[u8], u64)]) -> Vec<u8> {
    let mut keys = keys.to_vec();
    keys.sort();
    let mut b = ::fst::MapBuilder::memory();
    for (k, v) in keys {
        b.insert(k, v).unwrap();
    }
    b.into_inner().unwrap()
}

fn get(f: &Fst<'_>, key: &[u8]) -> Option<u64> {
    let mut node = f.root()?;
    let mut out = 0u64;
    for &b in key {
        let t = f.step(&node, b)?;
        out += t.out;
        node = f.node(t.addr)?;
    }
    node.is_final.then(|| out + node.final_output)
}

#[test]
fn agrees_with_the_fst_crate() {
    // Cover every node kind: common and rare inputs, outputs, wide fan-out
    // (more than 32 transitions, so the 256-byte index is used), a key that
    // is a prefix of another (final nodes with transitions), the empty key.
    let mut owned: Vec<(Vec<u8>, u64)> = Vec::new();
    owned.push((b"".to_vec(), 7));
    for b in 0u8..=255 {
        owned.push((vec![b'x', b], 1000 + b as u64));
    }
    for (i, w) in ["a", "ab", "abc", "b~", "com.example", "com.example.*", "com.example.api"].iter().enumerate() {
        owned.push((w.as_bytes().to_vec(), i as u64 * 13));
    }
    for i in 0..2000u64 {
        owned.push((format!("k{:x}q{}", i * 7919, i % 17).into_bytes(), i * 31 % 997));
    }
    owned.sort();
    owned.dedup_by(|a, b| a.0 == b.0);
    let refs: Vec<(&[u8], u64)> = owned.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
    let bytes = build(&refs);
    let ours = Fst::new(&bytes).unwrap();
    let theirs = ::fst::Map::new(bytes.clone()).unwrap();
    assert_eq!(ours.len(), theirs.len() as u64);
    for (k, v) in &owned {
        assert_eq!(get(&ours, k), Some(*v), "{k:?}");
        assert_eq!(theirs.get(k), Some(*v));
    }
    for miss in [&b"x"[..], b"abcd", b"com", b"com.example.a", b"zzz", b"k"] {
        assert_eq!(get(&ours, miss), theirs.get(miss), "{miss:?}");
    }
    // The enumeration yields exactly the same pairs, in order.
    let mut seen = Vec::new();
    ours.walk::<FstError>(|k, v| {
        seen.push((k.to_vec(), v));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, owned);
}

#[test]
fn validate_passes_keys_and_outputs_in_order() {
    let good = build(&[(b"a", 0), (b"b", 5), (b"c", 9)]);
    let mut seen = std::vec::Vec::new();
    let r: Result<(), FstError> = Fst::new(&good).unwrap().validate(|k, o| {
        seen.push((k.to_vec(), o));
        Ok(())
    });
    assert_eq!(r, Ok(()));
    assert_eq!(seen, [(b"a".to_vec(), 0), (b"b".to_vec(), 5), (b"c".to_vec(), 9)]);
    let refuse_b = |k: &[u8], _| if k == b"b" { Err(FstError::BadKey { index: 1 }) } else { Ok(()) };
    assert_eq!(Fst::new(&good).unwrap().validate(refuse_b), Err(FstError::BadKey { index: 1 }));
    // The footer's key count must match the keys reachable from the root.
    let mut lying = good.clone();
    let at = lying.len() - 20;
    lying[at] = 4;
    assert_eq!(
        Fst::new(&lying).unwrap().validate(|_, _| Ok::<(), FstError>(())),
        Err(FstError::KeyCount { footer: 4, found: 3 })
    );
}

#[test]
fn header_and_footer_are_checked() {
    let good = build(&[(b"a", 0)]);
    assert_eq!(Fst::new(&good[..35]).unwrap_err(), FstError::Truncated { len: 35 });
    let short = &good[..good.len() - 1];
    assert!(matches!(Fst::new(short).unwrap_err(), FstError::BadRoot { len, .. } if len == short.len()));
    let mut v2 = good.clone();
    v2[0] = 2;
    assert_eq!(Fst::new(&v2).unwrap_err(), FstError::Version { found: 2 });
    let mut set_of_type_1 = good.clone();
    set_of_type_1[8] = 1;
    assert_eq!(Fst::new(&set_of_type_1).unwrap_err(), FstError::NotAMap { found: 1 });
    let empty = build(&[]);
    let f = Fst::new(&empty).unwrap();
    assert_eq!(f.len(), 0);
    assert_eq!(f.validate(|_, _| Ok::<(), FstError>(())), Ok(()));
}

#[test]
fn corrupt_nodes_never_panic() {
    let mut keys: Vec<(Vec<u8>, u64)> =
        (0..300u64).map(|i| (format!("com.example.h{i:03}-{}", i % 7).into_bytes(), 0)).collect();
    keys.sort();
    for (i, k) in keys.iter_mut().enumerate() {
        k.1 = i as u64;
    }
    let refs: Vec<(&[u8], u64)> = keys.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
    let bytes = build(&refs);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut m = bytes.clone();
        let at = 16 + (state as usize % (m.len() - 36));
        m[at] ^= 1 << ((state >> 32) % 8);
        if let Ok(f) = Fst::new(&m) {
            let _ = f.validate(|_, _| Ok::<(), FstError>(()));
            for (k, _) in keys.iter().step_by(37) {
                let _ = get(&f, k);
            }
        }
    }
}

/// The names of the layouts of every node reachable from the root.
fn layouts(f: &Fst<'_>) -> std::collections::BTreeSet<(&'static str, bool)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![f.root_addr()];
    let mut done = std::collections::BTreeSet::new();
    while let Some(addr) = todo.pop() {
        if !done.insert(addr) {
            continue;
        }
        let node = f.node(addr).unwrap();
        let wide = node.ntrans > 32;
        seen.insert((node.layout.name(), wide));
        for i in 0..node.ntrans {
            todo.push(f.transition(&node, i).unwrap().addr);
        }
    }
    seen
}

#[test]
fn every_layout_is_covered() {
    // The same key set as `agrees_with_the_fst_crate`, smaller: it must reach
    // every layout, the wide (indexed) `AnyTrans` included.
    let mut owned: Vec<(Vec<u8>, u64)> = vec![(b"".to_vec(), 7)];
    for b in 0u8..=255 {
        owned.push((vec![b'x', b], 1000 + b as u64));
    }
    for (i, w) in ["a", "ab", "abc", "b~", "com.example", "com.example.*", "com.example.api"].iter().enumerate() {
        owned.push((w.as_bytes().to_vec(), i as u64 * 13));
    }
    owned.sort();
    let refs: Vec<(&[u8], u64)> = owned.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
    let bytes = build(&refs);
    let seen = layouts(&Fst::new(&bytes).unwrap());
    for want in [("EF", false), ("OTN", false), ("OT", false), ("AT", false), ("AT", true)] {
        assert!(seen.contains(&want), "{want:?} not in {seen:?}");
    }
}

#[test]
fn errors_say_what_is_wrong() {
    use std::string::ToString;
    let cases = [
        (FstError::Truncated { len: 35 }, "35 bytes"),
        (FstError::Version { found: 2 }, "version 2"),
        (FstError::NotAMap { found: 1 }, "type 1"),
        (FstError::BadRoot { root: 99, len: 80 }, "root address 99"),
        (FstError::BadNode { addr: 1234 }, "address 1234"),
        (FstError::BadKey { index: 5 }, "key #5"),
        (FstError::KeyCount { footer: 4, found: 3 }, "says 4 keys"),
        (FstError::OutputOverflow { addr: 77 }, "address 77"),
        (FstError::BadOutput { expected: 10, found: 12 }, "offset 10"),
        (FstError::KeyTooLong { addr: 42 }, "253 bytes"),
    ];
    for (e, part) in cases {
        let text = e.to_string();
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    // The snapshot error shows it, not its `Debug`.
    let e = crate::SnapshotError::from(FstError::BadNode { addr: 1234 });
    assert!(e.to_string().ends_with(&FstError::BadNode { addr: 1234 }.to_string()), "{e}");
}

/// Cursors at any outputs split the walk into parts that together give
/// every key once, in order: the parts of any number of cursors, at
/// outputs between keys, on keys, before the first and past the last.
#[test]
fn walks_between_cursors_cover_the_walk_once() {
    let mut pairs = vec::Vec::new();
    let mut out = 0u64;
    for i in 0..3000u32 {
        let key = format!("com.example.{}.{}", i % 37, i);
        pairs.push((key.into_bytes(), 0u64));
    }
    pairs.sort();
    for p in &mut pairs {
        p.1 = out;
        out += 7 + (p.0.len() as u64 % 5);
    }
    let refs: Vec<(&[u8], u64)> = pairs.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
    let bytes = build(&refs);
    let f = Fst::new(&bytes).unwrap();
    let mut whole = Vec::new();
    f.walk::<FstError>(|k, v| {
        whole.push((k.to_vec(), v));
        Ok(())
    })
    .unwrap();
    assert_eq!(whole, pairs);
    for parts in [2u64, 3, 5, 16, 5000] {
        let cursors: Vec<Cursor> = (1..parts).map(|k| f.cursor_at(out * k / parts)).collect();
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        for k in 0..parts as usize {
            let (from, to) = (k.checked_sub(1).map(|i| &cursors[i]), cursors.get(k));
            let keys = f
                .walk_between::<FstError>(from, to, |key, v| {
                    seen.push((key.to_vec(), v));
                    Ok(())
                })
                .unwrap();
            sizes.push(keys);
        }
        assert_eq!(seen, whole, "{parts} parts");
        if parts <= 16 {
            // Each part about its share (the cursors follow the outputs).
            let share = pairs.len() as u64 / parts;
            assert!(sizes.iter().all(|&n| n.abs_diff(share) <= share / 10 + 2), "{parts} parts: {sizes:?}");
        }
    }
    // Before the first key and past the last.
    let (start, end) = (f.cursor_at(0), f.cursor_at(u64::MAX));
    let count = |from, to| f.walk_between::<FstError>(from, to, |_, _| Ok(())).unwrap();
    assert_eq!(count(None, Some(&start)), 0);
    assert_eq!(count(Some(&start), None), 3000);
    assert_eq!(count(None, Some(&end)) + count(Some(&end), None), 3000);
}
