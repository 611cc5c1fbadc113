//! Layers (`docs/snapshot-format.md`, "Layers"; `docs/resolve.md`,
//! "Layers"): a state of a base and layers resolves exactly as a full
//! compile of the table its changes leave, a compaction writes that
//! compile's bytes, and layers that do not belong are refused.

use edgeroute_compiler::{compact, read_changes, source, write_layer, Change, CompileError, Lineage, Options};
use edgeroute_edge::format::MAX_LAYERS;
use edgeroute_edge::{FilteredLayers, Layer, LayerError, Snapshot, SnapshotError, SnapshotId, StateFilter};
use edgeroute_tests::changes::RandomChanges;
use edgeroute_tests::{compile_text, fix_checksum, Rng};

/// The changes of a JSON Lines text, which must be valid.
fn changes(text: &str) -> Vec<Change<'_>> {
    let items = source::parse_json(text.as_bytes()).unwrap();
    match read_changes(items, Options::default()) {
        Ok(c) => c.changes,
        Err(CompileError::Invalid(errors)) => panic!("invalid changes: {errors:#?}"),
        Err(e) => panic!("{e}"),
    }
}

/// A state being built in a test: a base and its layers, with their ids.
struct State {
    base: Snapshot<Vec<u8>>,
    base_id: SnapshotId,
    layers: Vec<Layer<Vec<u8>>>,
    ids: Vec<SnapshotId>,
    /// A filter over the layers' keys, as the WebAssembly module keeps.
    filter: Box<StateFilter>,
}

impl State {
    fn new(table: &str) -> State {
        let compiled = compile_text(table, Options::default()).unwrap();
        let base = Snapshot::from_bytes(compiled.bytes).unwrap();
        State { base_id: compiled.id, base, layers: vec![], ids: vec![], filter: Box::default() }
    }

    fn lineage(&self) -> Lineage {
        Lineage {
            base: self.base_id,
            parent: *self.ids.last().unwrap_or(&self.base_id),
            depth: self.ids.len() as u32 + 1,
        }
    }

    /// Writes `text`'s changes as the next layer, and stacks it.
    fn apply(&mut self, text: &str) -> Vec<u8> {
        let bytes = write_layer(self.lineage(), &changes(text)).unwrap();
        self.push(bytes.clone()).unwrap();
        bytes
    }

    fn push(&mut self, bytes: Vec<u8>) -> Result<(), LayerError> {
        let id = SnapshotId::of(&bytes);
        let layer = Layer::from_bytes(bytes)?;
        layer.check_on(&self.base_id, self.ids.last().unwrap_or(&self.base_id), self.layers.len())?;
        self.filter.add(&layer);
        self.layers.push(layer);
        self.ids.push(id);
        Ok(())
    }

    /// The answer through the layers, the same with the filter over them all.
    fn resolve(&self, host: &str, path: &str) -> String {
        let answer =
            self.base.resolve_layered(self.layers.as_slice(), host.as_bytes(), path.as_bytes()).json().to_string();
        let filtered = FilteredLayers { layers: self.layers.as_slice(), filter: &self.filter };
        let through_filter = self.base.resolve_layered(&filtered, host.as_bytes(), path.as_bytes());
        assert_eq!(through_filter.json().to_string(), answer, "{host} {path}: the state filter changed the answer");
        answer
    }
}

fn full(snap: &Snapshot<Vec<u8>>, host: &str, path: &str) -> String {
    snap.resolve(host.as_bytes(), path.as_bytes()).json().to_string()
}

#[test]
fn each_candidate_is_decided_by_the_newest_layer_that_holds_it() {
    let mut state = State::new(concat!(
        r#"{"Domain":"a.example.com","Target":"s3://base/a"}"#,
        "\n",
        r#"{"Domain":"*.pr-1.example.com","Target":"s3://base/pr-1"}"#,
        "\n",
    ));
    // An added wildcard does not hide the base's exact entry.
    state.apply(r#"{"Domain":"*.example.com","Target":"s3://layer1/star"}"#);
    assert!(state.resolve("a.example.com", "/").contains(r#""bucket":"base""#));
    assert!(state.resolve("b.example.com", "/").contains(r#""bucket":"layer1","key":"star/index.html""#));
    // …and a longer wildcard of the base still beats it.
    assert!(state.resolve("x.pr-1.example.com", "/").contains(r#""bucket":"base","key":"pr-1/index.html""#));
    // A tombstone moves on to the next candidate: the exact entry deleted,
    // the wildcard (from a layer) answers.
    state.apply(r#"{"Domain":"A.Example.COM","Deleted":true}"#);
    assert!(state.resolve("a.example.com", "/").contains(r#""domain":"*.example.com""#));
    // A newer layer's route for a candidate a layer deleted comes back.
    state.apply(r#"{"Domain":"a.example.com","Target":"https://origin.example.net"}"#);
    assert!(state.resolve("a.example.com", "/").contains(r#""kind":"balancer""#));
    // Deleting the longer wildcard falls to the shorter one.
    state.apply(r#"{"Domain":"*.pr-1.example.com","Deleted":true}"#);
    assert!(state.resolve("x.pr-1.example.com", "/").contains(r#""domain":"*.example.com""#));
    state.apply(r#"{"Domain":"*.example.com","Deleted":true}"#);
    assert_eq!(state.resolve("x.pr-1.example.com", "/"), r#"{"kind":"not_found"}"#);
    assert_eq!(state.resolve("a..example.com", "/"), r#"{"kind":"bad_request","reason":"host_bad_label"}"#);
}

/// The differential test of the contract: thousands of random upserts and
/// deletes (wildcards, case variants, IDN), each written as a layer; after
/// every step the state resolves every probe as a fresh full compile of
/// the table those operations leave (keyed by normalized Domain), and
/// every so often a compaction writes that compile's exact bytes. (The
/// same changes go through the WebAssembly module every 100th step in
/// `runtime-host`'s tests.)
#[test]
fn a_layered_state_resolves_as_a_full_compile_of_the_table_its_changes_leave() {
    let mut random = RandomChanges::new(0x1a7e_45ed);
    let probes = random.probes();
    let mut state = State::new(&random.table());
    let mut compactions = 0;
    for step in 1..=2000 {
        state.apply(&random.step());
        let compiled = compile_text(&random.table(), Options::default()).unwrap();
        let full_snap = Snapshot::from_bytes(compiled.bytes.clone()).unwrap();
        for (host, path) in &probes {
            assert_eq!(state.resolve(host, path), full(&full_snap, host, path), "step {step}: {host} {path}");
        }
        if step % 50 == 0 || state.layers.len() == MAX_LAYERS {
            let compacted = compact(&state.base, &state.layers).unwrap();
            assert_eq!(compacted.id, compiled.id, "step {step}: the compaction is not the full compile");
            assert_eq!(compacted.bytes, compiled.bytes);
            state =
                State { base_id: compacted.id, base: full_snap, layers: vec![], ids: vec![], filter: Box::default() };
            compactions += 1;
        }
    }
    let (upserts, deletes) = (random.upserts, random.deletes);
    assert!(upserts > 2000 && deletes > 1000 && compactions == 40, "{upserts} {deletes} {compactions}");
}

#[test]
fn the_same_changes_in_any_order_write_the_same_layer() {
    let lines = [
        r#"{"Domain":"b.example.com","Target":"s3://xbucket/b"}"#,
        r#"{"Domain":"*.example.com","Deleted":true}"#,
        r#"{"Domain":"Bücher.example","Target":"https://o.example.net"}"#,
        r#"{"Domain":"a.example.com","Target":"s3://xbucket/a","Assets":["index.html"]}"#,
    ];
    let lineage = Lineage { base: SnapshotId::of(b"base"), parent: SnapshotId::of(b"base"), depth: 1 };
    let first = write_layer(lineage, &changes(&lines.join("\n"))).unwrap();
    let mut reversed = lines;
    reversed.reverse();
    assert_eq!(write_layer(lineage, &changes(&reversed.join("\n"))).unwrap(), first);
    let layer = Layer::from_bytes(&first[..]).unwrap();
    assert_eq!((layer.entry_count(), layer.upsert_count(), layer.tombstone_count(), layer.depth()), (4, 3, 1, 1));
}

#[test]
fn apply_lines_are_checked_as_a_table_and_one_domain_twice_is_an_error() {
    let text = [
        r#"{"Domain":"a.example.com","Target":"s3://xbucket/a"}"#,
        r#"{"Domain":"A.EXAMPLE.COM.","Deleted":true}"#,
        r#"{"Domain":"b.example.com","Deleted":true,"Target":"s3://xbucket/b"}"#,
        r#"{"Domain":"c.example.com","Deleted":"yes"}"#,
        r#"{"Domain":"bad..example.com","Deleted":true}"#,
        r#"{"Deleted":true}"#,
        r#"{"Domain":"d.example.com","Target":"ftp://nowhere"}"#,
        r#"{"Domain":"e.example.com","Deleted":false,"Target":"s3://xbucket/e"}"#,
    ]
    .join("\n");
    let Err(CompileError::Invalid(errors)) =
        read_changes(source::parse_json(text.as_bytes()).unwrap(), Options::default())
    else {
        panic!("the lines are bad");
    };
    let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let expect = [
        "line 1 (Domain \"a.example.com\"): line 2 gives the same Domain",
        "line 2 (Domain \"A.EXAMPLE.COM.\"): line 1 gives the same Domain",
        "line 3 (Domain \"b.example.com\"): a line with \"Deleted\": true carries only its Domain",
        "line 4 (Domain \"c.example.com\"): attribute Deleted must be a boolean, not a string",
        "line 5: Domain \"bad..example.com\"",
        "line 6: attribute Domain is missing",
        "line 7 (Domain \"d.example.com\"): Target",
    ];
    assert_eq!(messages.len(), expect.len(), "{messages:#?}");
    for (m, e) in messages.iter().zip(expect) {
        assert!(m.starts_with(e), "{m:?} does not start with {e:?}");
    }
    // Under skip_invalid the good line stays, alone.
    let kept = read_changes(source::parse_json(text.as_bytes()).unwrap(), Options { skip_invalid: true }).unwrap();
    assert_eq!(kept.changes.len(), 1);
    assert_eq!(kept.changes[0].domain(), "e.example.com");
    assert_eq!(kept.skipped.len(), 7);
}

#[test]
fn layers_out_of_order_foreign_or_corrupt_are_refused() {
    let mut state = State::new(r#"{"Domain":"a.example.com","Target":"s3://base/a"}"#);
    let first = state.apply(r#"{"Domain":"b.example.com","Target":"s3://layer/b"}"#);
    let second =
        write_layer(state.lineage(), &changes(r#"{"Domain":"c.example.com","Target":"s3://layer/c"}"#)).unwrap();
    let third_lineage = Lineage { base: state.base_id, parent: SnapshotId::of(&second), depth: 3 };
    let third = write_layer(third_lineage, &changes(r#"{"Domain":"d.example.com","Target":"s3://layer/d"}"#)).unwrap();
    // The third before the second: out of order.
    assert!(matches!(state.push(third.clone()), Err(LayerError::OutOfOrder { expected_depth: 2, found_depth: 3, .. })));
    // The first again: out of order too (its parent is the base).
    assert!(matches!(state.push(first), Err(LayerError::OutOfOrder { .. })));
    // Written on another base.
    let other_base = SnapshotId::of(b"another base");
    let foreign = write_layer(
        Lineage { base: other_base, parent: SnapshotId::of(&first_bytes_of(&state)), depth: 2 },
        &changes(r#"{"Domain":"e.example.com","Target":"s3://layer/e"}"#),
    )
    .unwrap();
    assert!(matches!(state.push(foreign), Err(LayerError::ForeignBase { found, .. }) if found == other_base));
    // Corrupt: every truncation, and a flipped byte in each section.
    for len in 0..second.len() {
        assert!(Layer::from_bytes(&second[..len]).is_err(), "a layer cut to {len} bytes was accepted");
    }
    for at in 0..second.len() {
        let mut bad = second.clone();
        bad[at] ^= 0x40;
        assert!(Layer::from_bytes(&bad[..]).is_err(), "a flipped byte at {at} was accepted");
    }
    // A snapshot is not a layer, nor a layer a snapshot.
    assert_eq!(Layer::from_bytes(state.base.as_bytes()).unwrap_err(), LayerError::Format(SnapshotError::BadMagic));
    assert_eq!(Snapshot::from_bytes(&second[..]).unwrap_err(), SnapshotError::BadMagic);
    // A tombstone in a snapshot is a malformed record.
    let mut tomb = state.base.as_bytes().to_vec();
    let routes = state.base.sections()[1].offset;
    tomb[routes] = edgeroute_edge::format::ROUTE_TOMBSTONE;
    fix_checksum(&mut tomb);
    assert!(matches!(Snapshot::from_bytes(&tomb[..]), Err(SnapshotError::BadRoute { offset: 0 })));
    // None of it changed the state: the good second layer still goes on.
    state.push(second).unwrap();
    assert!(state.resolve("c.example.com", "/").contains(r#""bucket":"layer""#));
    assert!(state.resolve("b.example.com", "/").contains(r#""bucket":"layer""#));
    state.push(third).unwrap();
    assert_eq!(state.layers.len(), 3);
}

fn first_bytes_of(state: &State) -> Vec<u8> {
    state.layers[0].as_bytes().to_vec()
}

#[test]
fn a_state_holds_at_most_max_layers() {
    let mut state = State::new(r#"{"Domain":"a.example.com","Target":"s3://base/a"}"#);
    for i in 0..MAX_LAYERS {
        state.apply(&format!(r#"{{"Domain":"n{i}.example.com","Target":"s3://layer/{i}"}}"#));
    }
    let next = write_layer(state.lineage(), &changes(r#"{"Domain":"z.example.com","Target":"s3://layer/z"}"#)).unwrap();
    assert_eq!(state.push(next), Err(LayerError::TooManyLayers));
    let id = SnapshotId::of_state(&state.base_id, &state.ids);
    assert_ne!(id, state.base_id);
    assert_eq!(SnapshotId::of_state(&state.base_id, &[]), state.base_id);
}

/// What the `layer` fuzz target does, a few thousand times: the golden
/// layer with bytes XORed in and its checksum made right again is refused
/// or, if accepted, resolves over the golden snapshot without panicking.
#[test]
fn structurally_corrupt_layers_are_refused_or_resolve_without_panicking() {
    let root = edgeroute_tests::workspace_root();
    let base = std::fs::read(root.join("snapshots/demo.snap")).unwrap();
    let base = Snapshot::from_bytes(base.as_slice()).unwrap();
    let golden = std::fs::read(root.join("snapshots/demo-change.layer")).unwrap();
    let mut rng = Rng::new(7);
    let (mut refused, mut accepted) = (0, 0);
    for _ in 0..5000 {
        let mut bytes = golden.clone();
        let body = bytes.len() - 4;
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(body);
            bytes[at] ^= 1 + rng.below(255) as u8;
        }
        fix_checksum(&mut bytes);
        match Layer::from_bytes(bytes.as_slice()) {
            Err(_) => refused += 1,
            Ok(layer) => {
                accepted += 1;
                let layers = [layer];
                for host in ["env-900.example.com", "env-789.example.com", "docs.example.com", "x.example.com"] {
                    let _ = base.resolve_layered(&layers[..], host.as_bytes(), b"/a/").json().to_string();
                }
                layers[0].for_each_record(|_, _| {});
            }
        }
    }
    // Most mutants are refused; the strings' bytes can change and stay valid.
    assert!(refused > 3000, "{refused} refused, {accepted} accepted");
}

/// The filter section (`docs/snapshot-format.md`, "Layers"): the lookup
/// consults it and skips a layer it rules out (so a filter that forgot a
/// key would hide it, which validation refuses), it hashes a request's
/// host in any case, and a filter of the wrong length is refused.
#[test]
fn the_layer_filter_is_consulted_in_any_case_and_checked_key_by_key() {
    let mut state = State::new(r#"{"Domain":"a.example.com","Target":"s3://base/a"}"#);
    let bytes = state.apply(
        r#"{"Domain":"b.example.com","Target":"s3://layer/b"}
{"Domain":"*.pr-7.example.com","Target":"s3://layer/pr7"}
{"Domain":"a.example.com","Deleted":true}"#,
    );
    // The last: a wildcard candidate of rank 18, past the ranks the lookup hashes (walked always).
    for host in [
        "b.example.com",
        "B.Example.COM",
        "x.pr-7.example.com",
        "X.PR-7.EXAMPLE.COM.",
        "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.x.pr-7.example.com",
    ] {
        assert!(state.resolve(host, "/").contains(r#""bucket":"layer""#), "{host}: {}", state.resolve(host, "/"));
    }
    assert_eq!(state.resolve("A.EXAMPLE.COM", "/"), r#"{"kind":"not_found"}"#);
    // A holder's filter over all layers is consulted first: one that was
    // never given the layer's keys makes the lookup skip every layer.
    let empty = StateFilter::new();
    let skipping = FilteredLayers { layers: state.layers.as_slice(), filter: &empty };
    let through = |host: &str| state.base.resolve_layered(&skipping, host.as_bytes(), b"/").json().to_string();
    assert_eq!(through("b.example.com"), r#"{"kind":"not_found"}"#);
    assert!(through("a.example.com").contains(r#""bucket":"base""#));
    // Where the filter sits: the second entry of the section table.
    let field = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let entry = edgeroute_edge::format::FIXED_HEADER_LEN + edgeroute_edge::format::SECTION_ENTRY_LEN;
    assert_eq!(field(&bytes, entry), edgeroute_edge::format::SectionKind::Filter as usize);
    let (at, len) = (field(&bytes, entry + 4), field(&bytes, entry + 8));
    assert!(len >= 8 && len.is_power_of_two(), "filter of {len} bytes");
    // A filter emptied: validation names the first key it misses…
    let mut empty = bytes.clone();
    empty[at..at + len].fill(0);
    fix_checksum(&mut empty);
    assert_eq!(
        Layer::from_bytes(&empty[..]).unwrap_err(),
        LayerError::Format(SnapshotError::FilterMissesKey { index: 0 })
    );
    // …and a lookup trusting it skips the layer: its routes and its
    // tombstone go unseen, which shows the filter decides what is walked.
    let trusted = Layer::from_bytes_trusted(&empty[..]).unwrap();
    let skipped =
        |host: &str| state.base.resolve_layered(&[trusted.clone()][..], host.as_bytes(), b"/").json().to_string();
    assert_eq!(skipped("b.example.com"), r#"{"kind":"not_found"}"#);
    assert!(skipped("a.example.com").contains(r#""bucket":"base""#));
    // Filters of lengths that are not a power of two of at least 8, the
    // sections still end to end and the checksum right.
    let resized = |new_len: usize| {
        let mut out = bytes[..at].to_vec();
        out.resize(at + new_len, 0xFF);
        out.extend_from_slice(&bytes[at + len..]);
        let shift = new_len as isize - len as isize;
        for i in 1..4 {
            let e = edgeroute_edge::format::FIXED_HEADER_LEN + i * edgeroute_edge::format::SECTION_ENTRY_LEN;
            let (at, n) =
                if i == 1 { (e + 8, new_len) } else { (e + 4, (field(&out, e + 4) as isize + shift) as usize) };
            out[at..at + 4].copy_from_slice(&(n as u32).to_le_bytes());
        }
        fix_checksum(&mut out);
        out
    };
    for new_len in [len - 1, 12, 4, 0] {
        assert_eq!(
            Layer::from_bytes(&resized(new_len)[..]).unwrap_err(),
            LayerError::Format(SnapshotError::BadFilterLength { len: new_len }),
            "a filter of {new_len} bytes"
        );
    }
    // The same surgery at a good length (all bits set) is accepted.
    assert!(Layer::from_bytes(&resized(16)[..]).is_ok());
}
