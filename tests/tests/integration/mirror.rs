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
