//! The resolve rules of docs/resolve.md, one named test (or more) per rule.

use edgeroute_edge::{Reason, Resolution};
use edgeroute_tests::snapshot;

/// The JSON answer without its `not_found_page`, which
/// `rule4_the_not_found_page_is_named_in_the_answer` checks on its own.
fn resolve_json<D: AsRef<[u8]>>(snap: &edgeroute_edge::Snapshot<D>, host: &str, path: &str) -> String {
    let json = edgeroute_tests::resolve_json(snap, host, path);
    match json.find(r#","not_found_page":""#) {
        Some(at) => {
            let value = at + r#","not_found_page":""#.len();
            let end = value + json[value..].find('"').expect("a closing quote");
            format!("{}{}", &json[..at], &json[end + 1..])
        }
        None => json,
    }
}

/// The page a static answer names for when the bucket has neither its key nor its Fallback.
fn not_found_page<D: AsRef<[u8]>>(snap: &edgeroute_edge::Snapshot<D>, host: &str, path: &str) -> Option<String> {
    match snap.resolve(host.as_bytes(), path.as_bytes()) {
        Resolution::Static { not_found_page, .. } => not_found_page.map(|p| p.to_string()),
        other => panic!("{host} {path}: not static: {other}"),
    }
}

const TABLE: &str = r#"
{"Domain": "site.example.com", "Target": "s3://bucket/sites/one", "Assets": ["index.html", "404.html", "about/index.html", "app.js", "docs/guide.html", "a b.html", "caf\u00e9.html", "100%.html"]}
{"Domain": "spa.example.com", "Target": "s3://bucket/spa", "Assets": ["index.html", "main.js", "404.html"], "Fallback": "index.html"}
{"Domain": "bare.example.com", "Target": "s3://bucket", "Assets": ["index.html", "about/index.html"]}
{"Domain": "free.example.com", "Target": "s3://bucket/free/", "Fallback": "index.html"}
{"Domain": "open.example.com", "Target": "s3://bucket/open"}
{"Domain": "empty.example.com", "Target": "s3://bucket/empty", "Assets": []}
{"Domain": "lb.example.com", "Target": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/x/1", "Origin": "x-1.eu-west-1.elb.amazonaws.com"}
{"Domain": "plain.example.com", "Target": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/x/1", "Origin": "http://x-1.eu-west-1.elb.amazonaws.com:8080"}
{"Domain": "direct.example.com", "Target": "http://10.1.2.3:3000"}
{"Domain": "*.example.com", "Target": "https://catchall.example.net"}
{"Domain": "*.pr.example.com", "Target": "https://pr.example.net:8443"}
{"Domain": "*.a.pr.example.com", "Target": "s3://bucket/deep", "Assets": ["index.html"]}
{"Domain": "exact.a.pr.example.com", "Target": "http://exact.example.net"}
{"Domain": "b\u00fccher.example.org", "Target": "s3://bucket/books"}
"#;

fn snap() -> edgeroute_edge::Snapshot<Vec<u8>> {
    snapshot(TABLE)
}

fn bad(reason: &str) -> String {
    format!(r#"{{"kind":"bad_request","reason":"{reason}"}}"#)
}

fn static_(domain: &str, key: &str, status: u16) -> String {
    format!(r#"{{"kind":"static","domain":"{domain}","bucket":"bucket","key":"{key}","status":{status}}}"#)
}

// ---- Rule 1: the host ----

#[test]
fn rule1_port_is_dropped_and_must_be_digits() {
    let s = snap();
    assert_eq!(resolve_json(&s, "open.example.com:8443", "/"), static_("open.example.com", "open/index.html", 200));
    assert_eq!(resolve_json(&s, "open.example.com:", "/"), bad("host_bad_port"));
    assert_eq!(resolve_json(&s, "open.example.com:123456", "/"), bad("host_bad_port"));
    assert_eq!(resolve_json(&s, "open.example.com:http", "/"), bad("host_bad_port"));
    assert_eq!(resolve_json(&s, "open.example.com:80:80", "/"), bad("host_bad_char"));
}

#[test]
fn rule1_trailing_dot_and_case_are_normalized() {
    let s = snap();
    for host in ["OPEN.Example.Com", "open.example.com.", "Open.Example.COM.:80"] {
        assert_eq!(resolve_json(&s, host, "/"), static_("open.example.com", "open/index.html", 200), "{host}");
    }
    assert_eq!(resolve_json(&s, "open.example.com..", "/"), bad("host_bad_label"));
}

#[test]
fn rule1_every_host_reason() {
    let s = snap();
    let long = format!("{}.example.com", "a.".repeat(125));
    assert!(long.len() > 253);
    let cases = [
        ("", "host_empty"),
        (".", "host_empty"),
        (":443", "host_empty"),
        (long.as_str(), "host_too_long"),
        ("site.example.com/", "host_bad_char"),
        ("site example.com", "host_bad_char"),
        ("site.example.com\r\nx-injected: 1", "host_bad_port"),
        ("site.example.com\r\nx-injected", "host_bad_char"),
        ("site.example.com\0", "host_bad_char"),
        ("user@site.example.com", "host_bad_char"),
        ("[::1]:80", "host_bad_char"),
        ("b\u{fc}cher.example.org", "host_bad_char"),
        ("site..example.com", "host_bad_label"),
        (".site.example.com", "host_bad_label"),
        ("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.com", "host_bad_label"),
        ("site.example.com:x", "host_bad_port"),
    ];
    for (host, reason) in cases {
        assert_eq!(resolve_json(&s, host, "/"), bad(reason), "{host:?}");
    }
}

// ---- Rule 2: matching ----

#[test]
fn rule2_exact_beats_wildcard() {
    let s = snap();
    assert!(resolve_json(&s, "exact.a.pr.example.com", "/").contains(r#""domain":"exact.a.pr.example.com""#));
    assert!(resolve_json(&s, "lb.example.com", "/").contains(r#""domain":"lb.example.com""#));
}

#[test]
fn rule2_longest_wildcard_suffix_wins() {
    let s = snap();
    let domain = |h: &str| {
        let r = s.resolve(h.as_bytes(), b"/");
        r.domain().map(|d| d.to_string())
    };
    assert_eq!(domain("x.example.com").as_deref(), Some("*.example.com"));
    assert_eq!(domain("x.pr.example.com").as_deref(), Some("*.pr.example.com"));
    assert_eq!(domain("y.x.pr.example.com").as_deref(), Some("*.pr.example.com"));
    assert_eq!(domain("x.a.pr.example.com").as_deref(), Some("*.a.pr.example.com"));
    assert_eq!(domain("z.y.a.pr.example.com").as_deref(), Some("*.a.pr.example.com"));
    // `a.pr.example.com` itself is under `*.pr.example.com`, not `*.a.pr…`.
    assert_eq!(domain("a.pr.example.com").as_deref(), Some("*.pr.example.com"));
    // Longer exact names below an exact entry fall back to a wildcard.
    assert_eq!(domain("deeper.exact.a.pr.example.com").as_deref(), Some("*.a.pr.example.com"));
}

#[test]
fn rule2_wildcard_needs_one_more_label() {
    let s = snap();
    assert_eq!(resolve_json(&s, "example.com", "/"), r#"{"kind":"not_found"}"#);
    assert_eq!(
        resolve_json(&s, "pr.example.com", "/"),
        r#"{"kind":"balancer","domain":"*.example.com","origin":"catchall.example.net","port":443,"scheme":"https"}"#
    );
    assert_eq!(resolve_json(&s, "example.org", "/"), r#"{"kind":"not_found"}"#);
    assert_eq!(resolve_json(&s, "x.example.net", "/"), r#"{"kind":"not_found"}"#);
    assert_eq!(resolve_json(&s, "com", "/"), r#"{"kind":"not_found"}"#);
}

#[test]
fn rule2_idn_entries_match_punycode_hosts() {
    let s = snap();
    let expect = r#"{"kind":"static","domain":"xn--bcher-kva.example.org","bucket":"bucket","key":"books/index.html","status":200}"#;
    assert_eq!(resolve_json(&s, "xn--bcher-kva.example.org", "/"), expect);
    assert_eq!(resolve_json(&s, "XN--BCHER-KVA.Example.ORG.", "/"), expect);
}

#[test]
fn rule2_domain_is_reported_as_stored() {
    let s = snap();
    let r = s.resolve(b"Deep.A.PR.Example.com", b"/");
    assert_eq!(r.domain().map(|d| d.to_string()).as_deref(), Some("*.a.pr.example.com"));
    let r = s.resolve(b"SITE.example.com", b"/");
    assert_eq!(r.domain().map(|d| d.to_string()).as_deref(), Some("site.example.com"));
}

// ---- Rule 3: balancers ----

#[test]
fn rule3_balancer_answers_whatever_the_path() {
    let s = snap();
    let lb = r#"{"kind":"balancer","domain":"lb.example.com","origin":"x-1.eu-west-1.elb.amazonaws.com","port":443,"scheme":"https"}"#;
    for path in ["/", "/x/../y", "relative", "", "/%zz", "//a"] {
        assert_eq!(resolve_json(&s, "lb.example.com", path), lb, "{path:?}");
    }
    assert_eq!(
        resolve_json(&s, "plain.example.com", "/"),
        r#"{"kind":"balancer","domain":"plain.example.com","origin":"x-1.eu-west-1.elb.amazonaws.com","port":8080,"scheme":"http"}"#
    );
    assert_eq!(
        resolve_json(&s, "direct.example.com", "/"),
        r#"{"kind":"balancer","domain":"direct.example.com","origin":"10.1.2.3","port":3000,"scheme":"http"}"#
    );
}

// ---- Rule 4: static sites ----

#[test]
fn rule4_every_path_reason() {
    let s = snap();
    let cases = [
        ("", "path_not_absolute"),
        ("index.html", "path_not_absolute"),
        ("?x=/", "path_not_absolute"),
        ("/%", "path_bad_escape"),
        ("/%4", "path_bad_escape"),
        ("/%G0", "path_bad_escape"),
        ("/a%2Fb", "path_bad_escape"),
        ("/a%2fb", "path_bad_escape"),
        ("/a%5Cb", "path_bad_escape"),
        ("/%2e%2e/secret", "path_bad_escape"),
        ("/..%2fsecret", "path_bad_escape"),
        ("/a%00", "path_bad_escape"),
        ("/a\\b", "path_bad_char"),
        ("/a%0Db", "path_bad_char"),
        ("/a%7f", "path_bad_char"),
        ("/a\tb", "path_bad_char"),
        ("/%FF", "path_bad_char"),
        ("/%C0%AF", "path_bad_char"),
        ("/.", "path_dot_segment"),
        ("/..", "path_dot_segment"),
        ("/a/../b", "path_dot_segment"),
        ("/a/./b", "path_dot_segment"),
        ("//", "path_empty_segment"),
        ("/a//b", "path_empty_segment"),
        ("//etc/passwd", "path_empty_segment"),
    ];
    for (path, reason) in cases {
        assert_eq!(resolve_json(&s, "site.example.com", path), bad(reason), "{path:?}");
    }
    // First failing check wins.
    assert_eq!(resolve_json(&s, "site.example.com", "/a//../%zz"), bad("path_bad_escape"));
    assert_eq!(resolve_json(&s, "site.example.com", "/a//..\\"), bad("path_bad_char"));
    assert_eq!(resolve_json(&s, "site.example.com", "/a//.."), bad("path_dot_segment"));
    let all: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(all.len(), 10);
}

#[test]
fn rule4_index_html_is_appended() {
    let s = snap();
    assert_eq!(resolve_json(&s, "site.example.com", "/"), static_("site.example.com", "sites/one/index.html", 200));
    assert_eq!(
        resolve_json(&s, "site.example.com", "/about/"),
        static_("site.example.com", "sites/one/about/index.html", 200)
    );
    assert_eq!(resolve_json(&s, "open.example.com", "/x/y/"), static_("open.example.com", "open/x/y/index.html", 200));
}

#[test]
fn rule4_assets_are_served_by_decoded_path() {
    let s = snap();
    assert_eq!(resolve_json(&s, "site.example.com", "/app.js"), static_("site.example.com", "sites/one/app.js", 200));
    assert_eq!(
        resolve_json(&s, "site.example.com", "/app.js?v=2#top"),
        static_("site.example.com", "sites/one/app.js", 200)
    );
    assert_eq!(
        resolve_json(&s, "site.example.com", "/a%20b.html"),
        static_("site.example.com", "sites/one/a b.html", 200)
    );
    assert_eq!(
        resolve_json(&s, "site.example.com", "/caf%C3%A9.html"),
        static_("site.example.com", "sites/one/café.html", 200)
    );
    assert_eq!(
        resolve_json(&s, "site.example.com", "/100%25.html"),
        static_("site.example.com", "sites/one/100%.html", 200)
    );
    assert_eq!(
        resolve_json(&s, "site.example.com", "/docs/guide.html"),
        static_("site.example.com", "sites/one/docs/guide.html", 200)
    );
    // Keys are case-sensitive, like S3's.
    assert_eq!(resolve_json(&s, "site.example.com", "/APP.js"), static_("site.example.com", "sites/one/404.html", 404));
}

#[test]
fn rule4_folder_redirects_with_query_kept() {
    let s = snap();
    assert_eq!(
        resolve_json(&s, "site.example.com", "/about"),
        r#"{"kind":"redirect","domain":"site.example.com","location":"/about/","status":301}"#
    );
    assert_eq!(
        resolve_json(&s, "site.example.com", "/about?tab=team&x=%20#frag"),
        r#"{"kind":"redirect","domain":"site.example.com","location":"/about/?tab=team&x=%20","status":301}"#
    );
    // The location is ASCII whatever the request held.
    assert_eq!(
        resolve_json(&s, "bare.example.com", "/about?q=\u{e9}\"<>"),
        r#"{"kind":"redirect","domain":"bare.example.com","location":"/about/?q=%C3%A9%22%3C%3E","status":301}"#
    );
}

#[test]
fn rule4_fallback_serves_unknown_paths() {
    let s = snap();
    assert_eq!(
        resolve_json(&s, "spa.example.com", "/settings/profile"),
        static_("spa.example.com", "spa/index.html", 200)
    );
    assert_eq!(resolve_json(&s, "spa.example.com", "/main.js"), static_("spa.example.com", "spa/main.js", 200));
    // A Fallback wins over the site's 404.html.
    assert_eq!(resolve_json(&s, "spa.example.com", "/missing.png"), static_("spa.example.com", "spa/index.html", 200));
}

#[test]
fn rule4_site_404_page_then_not_found() {
    let s = snap();
    assert_eq!(
        resolve_json(&s, "site.example.com", "/missing"),
        static_("site.example.com", "sites/one/404.html", 404)
    );
    assert_eq!(resolve_json(&s, "bare.example.com", "/missing"), r#"{"kind":"not_found"}"#);
    // An empty Assets list is a list: nothing exists.
    assert_eq!(resolve_json(&s, "empty.example.com", "/"), r#"{"kind":"not_found"}"#);
    assert_eq!(resolve_json(&s, "empty.example.com", "/index.html"), r#"{"kind":"not_found"}"#);
}

#[test]
fn rule4_without_assets_the_bucket_decides() {
    let s = snap();
    assert_eq!(
        resolve_json(&s, "open.example.com", "/anything/at/all.txt"),
        static_("open.example.com", "open/anything/at/all.txt", 200)
    );
    match s.resolve(b"free.example.com", b"/x") {
        Resolution::Static { key, fallback, status: 200, .. } => {
            assert_eq!(key.to_string(), "free/x");
            assert_eq!(fallback.map(|f| f.to_string()).as_deref(), Some("free/index.html"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rule4_key_is_prefix_slash_name_or_just_name() {
    let s = snap();
    assert_eq!(resolve_json(&s, "bare.example.com", "/"), static_("bare.example.com", "index.html", 200));
    // A site without Assets: the key as the path makes it, and its Fallback for when the bucket has no such object.
    assert_eq!(
        resolve_json(&s, "free.example.com", "/a"),
        r#"{"kind":"static","domain":"free.example.com","bucket":"bucket","key":"free/a","status":200,"fallback":"free/index.html"}"#
    );
}

#[test]
fn rule4_hostile_paths_never_leave_the_prefix() {
    // Whatever the path, a static answer's key is under the entry's prefix.
    let s = snap();
    let mut rng = edgeroute_tests::Rng::new(7);
    let pieces =
        ["/", "..", ".", "%2e", "%2f", "%5c", "\\", "%00", "%25", "a", "%C3%A9", "?", "#", "%", "//", "~", "\u{e9}"];
    for _ in 0..20_000 {
        let mut path = String::from("/");
        for _ in 0..rng.below(8) {
            let piece: &&str = rng.pick(&pieces);
            path.push_str(piece);
        }
        for host in ["open.example.com", "site.example.com", "bare.example.com"] {
            let json = resolve_json(&s, host, &path);
            let v: serde_json::Value = serde_json::from_str(&json).expect("answers are JSON");
            if v["kind"] == "static" {
                let key = v["key"].as_str().unwrap_or_default();
                let ok = match host {
                    "open.example.com" => key.starts_with("open/"),
                    "site.example.com" => key.starts_with("sites/one/"),
                    _ => !key.starts_with('/'),
                };
                assert!(ok && !key.split('/').any(|seg| seg == ".." || seg == "."), "{host} {path:?} -> {key}");
            }
        }
    }
}

/// Rule 4's not-found page: named in every static answer with status 200
/// where the site has one (a listed `404.html`, or without a list always),
/// never when the answer is that page.
#[test]
fn rule4_the_not_found_page_is_named_in_the_answer() {
    let s = snap();
    let page = |host: &str, path: &str| not_found_page(&s, host, path);
    // Without Assets: the bucket decides, so always (the Fallback before it).
    assert_eq!(page("open.example.com", "/x/y"), Some("open/404.html".into()));
    assert_eq!(page("free.example.com", "/x"), Some("free/404.html".into()));
    assert_eq!(page("xn--bcher-kva.example.org", "/"), Some("books/404.html".into()));
    // …but not when the request is for that page itself.
    assert_eq!(page("open.example.com", "/404.html"), None);
    assert_eq!(page("open.example.com", "/%34%30%34.html"), None);
    assert_eq!(page("open.example.com", "/a/404.html"), Some("open/404.html".into()));
    // With Assets: only a listed 404.html, for a 200 answer.
    assert_eq!(page("site.example.com", "/app.js"), Some("sites/one/404.html".into()));
    assert_eq!(page("site.example.com", "/nothing"), None, "the 404.html answer itself");
    assert_eq!(page("spa.example.com", "/route"), Some("spa/404.html".into()), "the Fallback's answer");
    assert_eq!(page("bare.example.com", "/"), None, "no 404.html listed");
    let json = edgeroute_tests::resolve_json(&s, "site.example.com", "/app.js");
    assert!(json.ends_with(r#","status":200,"not_found_page":"sites/one/404.html"}"#), "{json}");
}
