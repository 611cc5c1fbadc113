//! The same table, in any order and in either file form, gives the same bytes.

use edgeroute_compiler::Options;
use edgeroute_tests::{compile_text, generate_table, Rng};

#[test]
fn shuffled_input_and_both_file_forms_give_identical_bytes() {
    let table = generate_table(5_000, 42);
    let lines: Vec<&str> = table.jsonl.lines().collect();
    let reference = compile_text(&table.jsonl, Options::default()).unwrap();
    let mut rng = Rng::new(1);
    for round in 0..4 {
        let mut shuffled = lines.clone();
        rng.shuffle(&mut shuffled);
        let jsonl = compile_text(&shuffled.join("\n"), Options::default()).unwrap();
        assert_eq!(jsonl.bytes, reference.bytes, "JSON Lines, shuffle {round}");
        let array = format!("[\n  {}\n]", shuffled.join(",\n  "));
        let array = compile_text(&array, Options::default()).unwrap();
        assert_eq!(array.bytes, reference.bytes, "array, shuffle {round}");
        assert_eq!(array.id, reference.id);
    }
}

#[test]
fn asset_order_and_spelling_of_domains_do_not_matter() {
    let a = r#"{"Domain":"A.dev","Target":"s3://bucket/p/","Assets":["b.html","a.html","index.html"],"Fallback":"index.html"}
{"Domain":"*.W.dev.","Target":"https://o.dev:443"}"#;
    let b = r#"[{"Target":"https://o.dev","Domain":"*.w.dev"},
 {"Fallback":"index.html","Assets":["index.html","a.html","b.html"],"Target":"s3://bucket/p","Domain":"a.dev"}]"#;
    let a = compile_text(a, Options::default()).unwrap();
    let b = compile_text(b, Options::default()).unwrap();
    assert_eq!(a.bytes, b.bytes);
}

#[test]
fn every_generated_route_resolves_back_to_itself() {
    // More routes than two of the writer's batches of record offsets, and
    // not a multiple of a batch.
    let table = generate_table(20_000, 9);
    let snap = edgeroute_tests::snapshot(&table.jsonl);
    for host in &table.hosts {
        let r = snap.resolve(host.as_bytes(), b"/");
        let domain = r.domain().map(|d| d.to_string());
        assert_eq!(domain.as_deref(), Some(host.as_str()), "{host}");
    }
    // Every route is reachable through the enumeration.
    let mut n = 0;
    snap.for_each_route(|domain, _| {
        if !domain.starts_with("*.") {
            assert!(snap.resolve(domain.as_bytes(), b"/").domain().is_some());
        }
        n += 1;
    });
    assert_eq!(n, snap.route_count());
}
