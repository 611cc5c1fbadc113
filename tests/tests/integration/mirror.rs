//! The watcher's incremental table compiles to exactly what a full
//! compile of the same items makes, through any sequence of sets and
//! deletes: duplicates (case variants), bad items, wildcards, assets.

use std::borrow::Cow;
use std::collections::BTreeMap;

use edgeroute_compiler::mirror::Mirror;
use edgeroute_compiler::{compile, ItemErrorKind, Location, Options, RawItem, Value};
use edgeroute_tests::Rng;

fn s(text: String) -> Option<Value<'static>> {
    Some(Value::Str(Cow::Owned(text)))
}

fn random_item(rng: &mut Rng, domain: &str) -> RawItem<'static> {
    let n = rng.below(5);
    let (target, assets, fallback) = match rng.below(6) {
        0 => (format!("https://h{n}.example"), None, None),
        1 => ("ftp://not-a-target".to_owned(), None, None),
        2 => (
            format!("s3://sites/p{n}"),
            Some(Value::List(vec![Value::Str("index.html".into()), Value::Str(format!("a{n}.js").into())])),
            s("index.html".into()),
        ),
        3 => (format!("s3://sites/p{n}"), None, s("missing.html".into())),
        _ => (format!("s3://sites/q{n}"), None, None),
    };
    RawItem { domain: s(domain.to_owned()), target: s(target), assets, fallback, ..RawItem::default() }
}

#[test]
fn mirror_builds_equal_full_compiles() {
    let mut domains = Vec::new();
    for i in 0..40 {
        domains.push(format!("d{i}.example.com"));
        if i % 5 == 0 {
            domains.push(format!("D{i}.Example.COM."));
        }
        if i % 7 == 0 {
            domains.push(format!("*.w{i}.example.com"));
        }
        if i % 11 == 0 {
            domains.push(format!("bad..{i}.example.com"));
        }
    }
    let mut rng = Rng::new(20261124);
    let mut table = Mirror::new();
    let mut mirror: BTreeMap<String, RawItem<'static>> = BTreeMap::new();
    let (mut duplicates, mut invalid, mut routes) = (0, 0, 0);
    for step in 0..600 {
        let domain = rng.pick(&domains).clone();
        if rng.below(4) == 0 {
            table.set(&domain, None);
            mirror.remove(&domain);
        } else {
            let item = random_item(&mut rng, &domain);
            table.set(&domain, Some(Ok(item.clone())));
            mirror.insert(domain, item);
        }
        if step % 20 == 19 {
            let built = table.build().unwrap();
            let items = mirror.values().enumerate().map(|(i, item)| (Location::Index(i), Ok(item.clone()))).collect();
            let full = compile(items, Options { skip_invalid: true }, &()).unwrap();
            assert_eq!(built.bytes, full.bytes, "step {step}");
            assert_eq!(built.stats, full.stats, "step {step}");
            assert_eq!(built.skipped.len(), full.skipped.len(), "step {step}");
            let mut a: Vec<_> = built.skipped.iter().map(|e| e.domain.clone()).collect();
            let mut b: Vec<_> = full.skipped.iter().map(|e| e.domain.clone()).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "step {step}");
            duplicates += built.skipped.iter().filter(|e| matches!(e.kind, ItemErrorKind::Duplicate { .. })).count();
            invalid += built.skipped.len();
            routes += built.stats.routes;
        }
    }
    assert_eq!(table.len(), mirror.len());
    // The sequence did meet every case.
    assert!(duplicates > 0 && invalid > duplicates && routes > 0, "{duplicates} {invalid} {routes}");
}

/// The watcher's layers: a base built from the mirror, then after every
/// few changes a layer of the mirror's [`Mirror::changes`], now and then
/// the newest layers merged into one. The state always compacts to the
/// bytes the mirror builds, and the mirror's counts match its build.
#[test]
fn layers_of_the_mirrors_changes_compact_to_its_build() {
    use edgeroute_compiler::writer::Lineage;
    use edgeroute_compiler::{compact, merge_layers, write_layer};
    use edgeroute_edge::{Layer, Snapshot, SnapshotId};

    let mut domains = Vec::new();
    for i in 0..30 {
        domains.push(format!("d{i}.example.com"));
        if i % 4 == 0 {
            domains.push(format!("D{i}.Example.COM."));
        }
        if i % 6 == 0 {
            domains.push(format!("*.w{i}.example.com"));
        }
        if i % 9 == 0 {
            domains.push(format!("bad..{i}.example.com"));
        }
    }
    let mut rng = Rng::new(20261202);
    let mut table = Mirror::new();
    for d in domains.iter().step_by(2) {
        table.set(d, Some(Ok(random_item(&mut rng, d))));
    }
    let mut base_bytes = table.build().unwrap().bytes;
    table.settle();
    let mut layers: Vec<Vec<u8>> = Vec::new();
    let (mut written, mut merged, mut compacted, mut empty) = (0, 0, 0, 0);
    for step in 0..800 {
        let domain = rng.pick(&domains).clone();
        match rng.below(4) {
            0 => table.set(&domain, None),
            _ => table.set(&domain, Some(Ok(random_item(&mut rng, &domain)))),
        }
        if rng.below(3) != 0 {
            continue;
        }
        let base_id = SnapshotId::of(&base_bytes);
        let changes = table.changes();
        table.settle();
        if changes.is_empty() {
            empty += 1;
        } else {
            let parent = layers.last().map_or(base_id, |l| SnapshotId::of(l));
            let lineage = Lineage { base: base_id, parent, depth: layers.len() as u32 + 1 };
            layers.push(write_layer(lineage, &changes).unwrap());
            written += 1;
        }
        // Now and then the newest layers become one.
        if layers.len() >= 3 && rng.below(4) == 0 {
            let from = layers.len() - 2 - rng.below(2);
            let parsed: Vec<Layer<&[u8]>> = layers[from..].iter().map(|l| Layer::from_bytes(&l[..]).unwrap()).collect();
            let parent = if from == 0 { base_id } else { SnapshotId::of(&layers[from - 1]) };
            let lineage = Lineage { base: base_id, parent, depth: from as u32 + 1 };
            let one = merge_layers(lineage, &parsed.iter().collect::<Vec<_>>()).unwrap();
            layers.truncate(from);
            layers.push(one);
            merged += 1;
        }
        let base = Snapshot::from_bytes(&base_bytes[..]).unwrap();
        let mut parsed: Vec<Layer<&[u8]>> = Vec::new();
        for l in &layers {
            let layer = Layer::from_bytes(&l[..]).unwrap();
            let top = parsed.last().map_or(base_id, |p: &Layer<&[u8]>| SnapshotId::of(p.as_bytes()));
            layer.check_on(&base_id, &top, parsed.len()).unwrap();
            parsed.push(layer);
        }
        let state = compact(&base, &parsed).unwrap();
        let built = table.build().unwrap();
        assert_eq!(state.bytes, built.bytes, "step {step}");
        assert_eq!(table.routes(), built.stats.routes, "step {step}");
        assert_eq!(table.left_out(), built.skipped.len(), "step {step}");
        for e in &built.skipped {
            let d = e.domain.as_deref().unwrap();
            assert_eq!(table.why_left_out(d).map(|w| w.kind), Some(e.kind.clone()), "step {step}: {d}");
        }
        if rng.below(10) == 0 {
            base_bytes = state.bytes;
            layers.clear();
            compacted += 1;
        }
    }
    assert!(written > 50 && merged > 10 && compacted > 3 && empty > 0, "{written} {merged} {compacted} {empty}");
}
