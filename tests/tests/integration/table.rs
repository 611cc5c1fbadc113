//! Table items: normalization, every kind of bad item, duplicates.

use edgeroute_compiler::{CompileError, ItemErrorKind, Location, Options};
use edgeroute_tests::{compile_text, resolve_json, snapshot};

fn errors(text: &str) -> Vec<(Location, Option<String>, ItemErrorKind)> {
    match compile_text(text, Options::default()) {
        Err(CompileError::Invalid(errors)) => errors.into_iter().map(|e| (e.location, e.domain, e.kind)).collect(),
        Ok(_) => panic!("expected the table to be refused: {text}"),
        Err(e) => panic!("{e}"),
    }
}

fn one_error(item: &str) -> ItemErrorKind {
    let mut e = errors(item);
    assert_eq!(e.len(), 1, "{e:?}");
    e.remove(0).2
}

#[test]
fn domains_are_normalized() {
    let s = snapshot(
        r#"{"Domain":"Mixed.Case.EXAMPLE.com.","Target":"s3://b-1/p"}
{"Domain":"*.Wild.Example.COM","Target":"s3://b-1/w"}
{"Domain":"m\u00fcnchen.example.com","Target":"s3://b-1/m"}
{"Domain":"\uff21\uff22.example.com","Target":"s3://b-1/fullwidth"}"#,
    );
    let mut domains = Vec::new();
    s.for_each_route(|d, _| domains.push(d.to_owned()));
    domains.sort();
    assert_eq!(
        domains,
        ["*.wild.example.com", "ab.example.com", "mixed.case.example.com", "xn--mnchen-3ya.example.com"]
    );
    assert!(resolve_json(&s, "x.wild.example.com", "/").contains("w/index.html"));
}

#[test]
fn bad_domains_are_named_with_their_reason() {
    for (domain, needle) in [
        ("", "host_empty"),
        ("a..example.com", "host_bad_label"),
        ("a b.example.com", "Domain"),
        ("*.com", "at least two labels"),
        ("*.*.x.dev", "first label"),
        ("a.*.x.dev", "first label"),
        ("*x.dev", "first label"),
        ("example.com:8080", "port"),
        ("xn--a.example.com", "UTS #46"),
        ("a/b.example.com", "Domain"),
        ("example.com..", "Domain"),
    ] {
        let item = format!(r#"{{"Domain":{},"Target":"s3://bucket"}}"#, serde_json::to_string(domain).unwrap());
        let e = errors(&item);
        assert_eq!(e.len(), 1, "{domain:?}");
        assert_eq!(e[0].1.as_deref(), Some(domain), "the error names the Domain");
        let msg = e[0].2.to_string();
        assert!(matches!(e[0].2, ItemErrorKind::BadDomain { .. }), "{domain:?}: {msg}");
        assert!(msg.contains(needle), "{domain:?}: {msg}");
    }
    let long = format!("{}.example.com", "a".repeat(64));
    assert!(one_error(&format!(r#"{{"Domain":"{long}","Target":"s3://bucket"}}"#))
        .to_string()
        .contains("host_bad_label"));
    let too_long = format!("{}example.com", "abcdefghi.".repeat(25));
    assert!(one_error(&format!(r#"{{"Domain":"{too_long}","Target":"s3://bucket"}}"#))
        .to_string()
        .contains("host_too_long"));
}

#[test]
fn every_kind_of_bad_item() {
    use ItemErrorKind as K;
    let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/x/1";
    type Check = fn(&K) -> bool;
    let cases: Vec<(String, Check)> = vec![
        (r#"{"Target":"s3://bucket"}"#.into(), |k| matches!(k, K::Missing("Domain"))),
        (r#"{"Domain":"a.dev"}"#.into(), |k| matches!(k, K::Missing("Target"))),
        (r#"{"Domain":7,"Target":"s3://bucket"}"#.into(), |k| {
            matches!(k, K::WrongType { attribute: "Domain", found: "number", .. })
        }),
        (r#"{"Domain":"a.dev","Target":["s3://bucket"]}"#.into(), |k| {
            matches!(k, K::WrongType { attribute: "Target", found: "list", .. })
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":"index.html"}"#.into(), |k| {
            matches!(k, K::WrongType { attribute: "Assets", .. })
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":[1]}"#.into(), |k| {
            matches!(k, K::BadAsset { index: 0, .. })
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":["ok.html","/abs.html"]}"#.into(), |k| {
            matches!(k, K::BadAsset { index: 1, .. })
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":["a/../b"]}"#.into(), |k| {
            k.to_string().contains("path_dot_segment")
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":["a//b"]}"#.into(), |k| {
            k.to_string().contains("path_empty_segment")
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":["a\\b"]}"#.into(), |k| {
            k.to_string().contains("path_bad_char")
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":["dir/"]}"#.into(), |k| matches!(k, K::BadAsset { .. })),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":[""]}"#.into(), |k| matches!(k, K::BadAsset { .. })),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Fallback":3}"#.into(), |k| {
            matches!(k, K::WrongType { attribute: "Fallback", .. })
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Fallback":"/index.html"}"#.into(), |k| {
            matches!(k, K::BadFallback { .. })
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":["a.html"],"Fallback":"index.html"}"#.into(), |k| {
            matches!(k, K::FallbackNotInAssets(_))
        }),
        (r#"{"Domain":"a.dev","Target":"s3://B"}"#.into(), |k| matches!(k, K::BadTarget { .. })),
        (r#"{"Domain":"a.dev","Target":"s3://bucket/a/../b"}"#.into(), |k| matches!(k, K::BadTarget { .. })),
        (r#"{"Domain":"a.dev","Target":"s4://bucket"}"#.into(), |k| matches!(k, K::BadTarget { .. })),
        (r#"{"Domain":"a.dev","Target":"http://h.dev/path"}"#.into(), |k| matches!(k, K::BadTarget { .. })),
        (r#"{"Domain":"a.dev","Target":"http://h.dev?q"}"#.into(), |k| matches!(k, K::BadTarget { .. })),
        (r#"{"Domain":"a.dev","Target":"http://user@h.dev"}"#.into(), |k| matches!(k, K::BadTarget { .. })),
        (r#"{"Domain":"a.dev","Target":"https://h.dev:0"}"#.into(), |k| matches!(k, K::BadTarget { .. })),
        (r#"{"Domain":"a.dev","Target":"https://h.dev:70000"}"#.into(), |k| matches!(k, K::BadTarget { .. })),
        (r#"{"Domain":"a.dev","Target":"http://h.dev","Assets":[]}"#.into(), |k| matches!(k, K::StaticOnly("Assets"))),
        (r#"{"Domain":"a.dev","Target":"http://h.dev","Fallback":"index.html"}"#.into(), |k| {
            matches!(k, K::StaticOnly("Fallback"))
        }),
        (r#"{"Domain":"a.dev","Target":"http://h.dev","Origin":"h.dev"}"#.into(), |k| matches!(k, K::OriginNotAllowed)),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Origin":"h.dev"}"#.into(), |k| matches!(k, K::OriginNotAllowed)),
        (format!(r#"{{"Domain":"a.dev","Target":"{arn}"}}"#), |k| matches!(k, K::ArnWithoutOrigin)),
        (format!(r#"{{"Domain":"a.dev","Target":"{arn}","Origin":"h.dev/x"}}"#), |k| matches!(k, K::BadOrigin { .. })),
        (format!(r#"{{"Domain":"a.dev","Target":"{arn}","Origin":7}}"#), |k| {
            matches!(k, K::WrongType { attribute: "Origin", .. })
        }),
        (r#"{"Domain":"a.dev","Target":"arn:aws:s3:::bucket","Origin":"h.dev"}"#.into(), |k| {
            matches!(k, K::BadTarget { .. })
        }),
        (r#"{"Domain":"a.dev","Target":"s3://bucket","Domain":"b.dev"}"#.into(), |k| {
            matches!(k, K::DuplicateAttribute("Domain"))
        }),
        (r#""just a string""#.into(), |k| matches!(k, K::NotAnObject("string"))),
        (r#"{"Domain": "a.dev", "Target": "#.into(), |k| matches!(k, K::Json(_))),
    ];
    for (item, check) in cases {
        let e = errors(&item);
        assert_eq!(e.len(), 1, "{item}: {e:?}");
        assert!(check(&e[0].2), "{item}: got {:?} ({})", e[0].2, e[0].2);
        assert_eq!(e[0].0, Location::Line(1));
    }
}

#[test]
fn all_bad_items_are_reported_in_one_run() {
    let text = r#"{"Domain":"ok.dev","Target":"s3://bucket"}
{"Domain":"bad..dev","Target":"s3://bucket"}

{"Domain":"also-ok.dev","Target":"s3://bucket"}
{"Domain":"bad-target.dev","Target":"ftp://x"}
not json at all
"#;
    let e = errors(text);
    let lines: Vec<_> = e.iter().map(|e| e.0).collect();
    assert_eq!(lines, [Location::Line(2), Location::Line(5), Location::Line(6)]);
    assert_eq!(e[1].1.as_deref(), Some("bad-target.dev"));
    // With --skip-invalid the good ones compile and the bad ones are counted.
    let c = compile_text(text, Options { skip_invalid: true }).unwrap();
    assert_eq!(c.stats.routes, 2);
    assert_eq!(c.skipped.len(), 3);
}

#[test]
fn duplicates_are_errors_and_both_are_left_out() {
    let text = r#"{"Domain":"same.dev","Target":"s3://bucket/one"}
{"Domain":"other.dev","Target":"s3://bucket/other"}
{"Domain":"SAME.dev.","Target":"s3://bucket/two"}
{"Domain":"*.w.dev","Target":"s3://bucket/w1"}
{"Domain":"*.W.dev","Target":"s3://bucket/w2"}"#;
    let e = errors(text);
    assert_eq!(e.len(), 4, "{e:?}");
    for (loc, domain, kind) in &e {
        let ItemErrorKind::Duplicate { domain: normalized, .. } = kind else { panic!("{loc}: {kind}") };
        assert!(normalized == "same.dev" || normalized == "*.w.dev", "{normalized}");
        // The error names the Domain as the table wrote it.
        let written = domain.as_deref().unwrap_or_default();
        assert!(["same.dev", "SAME.dev.", "*.w.dev", "*.W.dev"].contains(&written), "{written}");
    }
    assert!(e.iter().any(|e| e
        .2
        .to_string()
        .contains(r#"line 3 gives the same Domain, "SAME.dev." ("same.dev" once normalized)"#)));
    let shown = e.iter().map(|e| e.2.to_string()).collect::<Vec<_>>().join("\n");
    assert!(shown.contains("line 3") && shown.contains("line 1"), "{shown}");
    let c = compile_text(text, Options { skip_invalid: true }).unwrap();
    assert_eq!(c.stats.routes, 1);
    let s = edgeroute_edge::Snapshot::from_bytes(c.bytes).unwrap();
    assert_eq!(resolve_json(&s, "same.dev", "/"), r#"{"kind":"not_found"}"#);
    // Order-independent: the other way round gives the same bytes.
    let reversed: Vec<&str> = text.lines().rev().collect();
    let c2 = compile_text(&reversed.join("\n"), Options { skip_invalid: true }).unwrap();
    assert_eq!(c2.id, edgeroute_edge::SnapshotId::of(s.as_bytes()).to_string());
}

#[test]
fn extra_attributes_are_ignored_and_assets_deduplicated() {
    let a = snapshot(
        r#"{"Domain":"a.dev","Target":"s3://bucket","Owner":"team-x","Assets":["x.html","index.html","x.html"],"TTL":3600}"#,
    );
    let b = snapshot(r#"{"Domain":"a.dev","Target":"s3://bucket","Assets":["index.html","x.html"]}"#);
    assert_eq!(a.as_bytes(), b.as_bytes());
}

#[test]
fn empty_table_compiles_and_matches_nothing() {
    let s = snapshot("");
    assert_eq!(s.route_count(), 0);
    assert_eq!(resolve_json(&s, "a.dev", "/"), r#"{"kind":"not_found"}"#);
    let s = snapshot("[]");
    assert_eq!(s.route_count(), 0);
}
