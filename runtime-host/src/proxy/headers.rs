//! The headers a proxied request gains, loses and joins on its way to the
//! origin.

use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// The protocol a request asks to upgrade to, if it is a WebSocket
/// (`Connection: upgrade` with `Upgrade: websocket`). Nothing else is
/// passed: an `h2c` or any other upgrade would hand the client a raw
/// connection to the origin, outside every limit of the host; such a
/// request goes on as a plain one, its `Upgrade` dropped with the other
/// hop-by-hop headers.
pub(super) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let mut upgrades = headers.get_all(hyper::header::UPGRADE).iter();
    match (upgrades.next(), upgrades.next()) {
        (Some(one), None) if asks && one.to_str().is_ok_and(|p| p.trim().eq_ignore_ascii_case("websocket")) => {
            Some(one.clone())
        }
        _ => None,
    }
}

/// The hop-by-hop headers every message loses (RFC 9110 §7.6.1), besides
/// those its `Connection` header names.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1): the fixed ones and
/// those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    remove_where(headers, |name| HOP_BY_HOP.contains(&name.as_str()) || named.contains(name));
}

/// Removes every header whose name `gone` picks. One pass over the names a
/// message has (a handful), where removing each candidate by name would
/// parse and hash dozens of names on every request.
fn remove_where(headers: &mut HeaderMap, gone: impl Fn(&HeaderName) -> bool) {
    let picked: Vec<HeaderName> = headers.keys().filter(|name| gone(name)).cloned().collect();
    for name in picked {
        headers.remove(name);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = hyper::header::FORWARDED;

/// Headers through which frameworks learn a client's address or scheme
/// besides the six [`set_forwarding`] sets (Rack reads `X-Forwarded-Ssl`,
/// CDNs send `True-Client-IP`, …): from a client they are dropped, in any
/// spelling with `_` for `-` too (CGI, Rack and WSGI read both alike).
const CLAIMS: [&str; 19] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-server",
    "x-forwarded-prefix",
    "x-url-scheme",
    "front-end-https",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "x-original-forwarded-for",
    "x-forwarded-by",
];

/// How a header name spells one of [`CLAIMS`], if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spelling {
    /// As the claim is written.
    Plain,
    /// With `_` for some `-`.
    Underscored,
}

/// Whether `name` (lowercase, as every `HeaderName` is) spells a claim.
fn claim_spelling(name: &str) -> Option<Spelling> {
    let same = |claim: &str| {
        claim.len() == name.len() && claim.bytes().zip(name.bytes()).all(|(c, n)| c == n || (c == b'-' && n == b'_'))
    };
    CLAIMS.iter().any(|claim| same(claim)).then(|| {
        if name.contains('_') {
            Spelling::Underscored
        } else {
            Spelling::Plain
        }
    })
}

/// Drops every header of [`CLAIMS`] a client sent, whatever its spelling.
fn drop_claims(headers: &mut HeaderMap) {
    remove_where(headers, |name| claim_spelling(name.as_str()).is_some());
}

/// Drops the `_` spellings of [`CLAIMS`], from anyone: no proxy sets them,
/// and one in front passes a client's on (an ALB does, by default).
fn drop_underscored_claims(headers: &mut HeaderMap) {
    remove_where(headers, |name| claim_spelling(name.as_str()) == Some(Spelling::Underscored));
}

/// What the origin is told about the hop a request took to the host.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hop<'a> {
    /// The peer of the connection (a client, or a trusted proxy).
    pub client: IpAddr,
    /// The `Host` the client sent.
    pub host: &'a HeaderValue,
    /// The port the client connected to.
    pub port: u16,
    /// The peer is a trusted proxy, speaking for its clients.
    pub trusted: bool,
    /// The client spoke TLS to this host (`--tls-listen`).
    pub https: bool,
}

/// Sets the forwarding headers: `X-Forwarded-For`, `-Proto`, `-Host`,
/// `-Port`, `X-Real-IP` and `Forwarded` (RFC 7239). From a client they are
/// replaced, whatever it sent: anyone can claim an address or https. From
/// a trusted proxy they are kept; this hop is appended to the two lists
/// (`X-Forwarded-For`, `Forwarded`) and fills in the others where missing.
pub(super) fn set_forwarding(headers: &mut HeaderMap, hop: &Hop<'_>) {
    use std::fmt::Write as _;
    let client = hop.client.to_canonical();
    // One buffer for both values (each header keeps a copy).
    let mut text = String::with_capacity(128);
    let _ = write!(text, "{client}");
    let ip = header_value(&text);
    text.clear();
    let _ = match client {
        IpAddr::V4(v4) => write!(text, "for={v4}"),
        IpAddr::V6(v6) => write!(text, "for=\"[{v6}]\""),
    };
    if let Ok(host) = hop.host.to_str() {
        text.push_str(";host=");
        push_forwarded_value(&mut text, host);
    }
    text.push_str(if hop.https { ";proto=https" } else { ";proto=http" });
    let element = header_value(&text);
    let port = HeaderValue::from(hop.port);
    let http = HeaderValue::from_static(if hop.https { "https" } else { "http" });
    if hop.trusted {
        drop_underscored_claims(headers);
        append_to_list(headers, X_FORWARDED_FOR, &ip);
        append_to_list(headers, FORWARDED, &element);
        for (name, value) in
            [(X_REAL_IP, ip), (X_FORWARDED_PROTO, http), (X_FORWARDED_HOST, hop.host.clone()), (X_FORWARDED_PORT, port)]
        {
            headers.entry(name).or_insert(value);
        }
    } else {
        drop_claims(headers);
        headers.insert(X_FORWARDED_FOR, ip.clone());
        headers.insert(X_REAL_IP, ip);
        headers.insert(X_FORWARDED_PROTO, http);
        headers.insert(X_FORWARDED_HOST, hop.host.clone());
        headers.insert(X_FORWARDED_PORT, port);
        headers.insert(FORWARDED, element);
    }
}

/// A header value made of `text`, which is header-safe by construction.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("made of header-safe parts")
}

/// Appends a `Forwarded` parameter's value: a token as it is, else a
/// quoted string.
fn push_forwarded_value(text: &mut String, value: &str) {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !value.is_empty() && value.bytes().all(tchar) {
        text.push_str(value);
        return;
    }
    text.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('"');
}

/// Appends `value` to the list header `name` (one header, the earlier
/// entries first, however many fields they came in).
fn append_to_list(headers: &mut HeaderMap, name: HeaderName, value: &HeaderValue) {
    let mut entries: Vec<&[u8]> =
        headers.get_all(&name).iter().map(|v| v.as_bytes().trim_ascii()).filter(|v| !v.is_empty()).collect();
    entries.push(value.as_bytes());
    if let Ok(joined) = HeaderValue::from_bytes(&entries.join(&b", "[..])) {
        headers.insert(name, joined);
    }
}

/// Whether a `Via` names `name` as a host the request passed already: then
/// this request has come round (RFC 9110 §7.6.3: `protocol received-by`).
pub(super) fn via_names(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(hyper::header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|element| element.split_whitespace().nth(1).is_some_and(|by| by.eq_ignore_ascii_case(name)))
}

/// Appends this host (`ours`: `1.1 NAME`) to the request's `Via`.
pub(super) fn append_via(headers: &mut HeaderMap, ours: &HeaderValue) {
    if headers.contains_key(hyper::header::VIA) {
        append_to_list(headers, hyper::header::VIA, ours);
    } else {
        headers.insert(hyper::header::VIA, ours.clone());
    }
}

/// HTTP/2 clients may send their cookies as several `cookie` fields; an
/// HTTP/1.1 origin expects one, joined with `; ` (RFC 9113 §8.2.3).
pub(super) fn join_cookies(headers: &mut HeaderMap) {
    let cookies: Vec<&[u8]> = headers.get_all(hyper::header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
    if cookies.len() < 2 {
        return;
    }
    if let Ok(joined) = HeaderValue::from_bytes(&cookies.join(&b"; "[..])) {
        headers.insert(hyper::header::COOKIE, joined);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    fn forwarded(client: &str, host: &'static str, trusted: bool, sent: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in sent {
            h.append(*name, HeaderValue::from_static(value));
        }
        let host = HeaderValue::from_static(host);
        set_forwarding(
            &mut h,
            &Hop { client: client.parse().unwrap(), host: &host, port: 8443, trusted, https: false },
        );
        h
    }

    #[test]
    fn a_client_s_forwarding_headers_are_replaced() {
        let sent = [
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "1"),
            ("x-forwarded-host", "evil"),
        ];
        let mut sent = sent.to_vec();
        sent.extend([
            ("x-forwarded-ssl", "on"),
            ("x_forwarded_proto", "https"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("true-client-ip", "6.6.6.6"),
            ("cf-connecting-ip", "6.6.6.6"),
            ("front-end-https", "on"),
            ("x_kept_custom", "yes"),
        ]);
        let h = forwarded("192.0.2.7", "a.example.com:8080", false, &sent);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        for gone in [
            "x-forwarded-ssl",
            "x_forwarded_proto",
            "x_forwarded_for",
            "true-client-ip",
            "cf-connecting-ip",
            "front-end-https",
        ] {
            assert!(!names.contains(&gone), "{gone} kept: {names:?}");
        }
        assert_eq!(h.get("x_kept_custom").unwrap(), "yes", "other underscored headers stay");
        let got = |n: &str| h.get_all(n).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(got("x-forwarded-for"), ["192.0.2.7"]);
        assert_eq!(got("x-real-ip"), ["192.0.2.7"]);
        assert_eq!(got("x-forwarded-proto"), ["http"]);
        assert_eq!(got("x-forwarded-port"), ["8443"]);
        assert_eq!(got("x-forwarded-host"), ["a.example.com:8080"]);
        assert_eq!(got("forwarded"), ["for=192.0.2.7;host=\"a.example.com:8080\";proto=http"]);
        let v6 = forwarded("::ffff:192.0.2.7", "b.example.com", false, &[]);
        assert_eq!(v6.get("x-forwarded-for").unwrap(), "192.0.2.7", "an IPv4 client on a dual-stack socket");
        let v6 = forwarded("2001:db8::1", "b.example.com", false, &[]);
        assert_eq!(v6.get("forwarded").unwrap(), "for=\"[2001:db8::1]\";host=b.example.com;proto=http");
    }

    #[test]
    fn a_trusted_proxy_s_forwarding_headers_are_kept_and_appended_to() {
        let sent = [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1, 10.0.0.1"),
            ("forwarded", "for=203.0.113.7;proto=https"),
            ("x-real-ip", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x_forwarded_for", "6.6.6.6"),
        ];
        let h = forwarded("10.0.0.2", "a.example.com", true, &sent);
        assert!(h.get("x_forwarded_for").is_none(), "a _ spelling passed through a trusted proxy");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "203.0.113.7, 198.51.100.1, 10.0.0.1, 10.0.0.2");
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=203.0.113.7;proto=https, for=10.0.0.2;host=a.example.com;proto=http"
        );
        assert_eq!(h.get("x-real-ip").unwrap(), "203.0.113.7");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        // What the proxy did not say, this hop does.
        assert_eq!(h.get("x-forwarded-host").unwrap(), "a.example.com");
        assert_eq!(h.get("x-forwarded-port").unwrap(), "8443");
    }

    #[test]
    fn via_is_appended_and_a_name_in_it_is_a_loop() {
        let mut h = HeaderMap::new();
        let ours = HeaderValue::from_static("1.1 edge-a");
        assert!(!via_names(&h, "edge-a"));
        append_via(&mut h, &ours);
        assert!(via_names(&h, "edge-a") && via_names(&h, "EDGE-A") && !via_names(&h, "edge"));
        let mut h = HeaderMap::new();
        h.append("via", HeaderValue::from_static("1.0 fred, 1.1 p.example.net (Apache/1.1)"));
        h.append("via", HeaderValue::from_static("2 cdn"));
        assert!(via_names(&h, "p.example.net") && via_names(&h, "cdn") && !via_names(&h, "edge-a"));
        append_via(&mut h, &ours);
        assert_eq!(h.get("via").unwrap(), "1.0 fred, 1.1 p.example.net (Apache/1.1), 2 cdn, 1.1 edge-a");
    }

    #[test]
    fn cookies_are_joined_for_http1() {
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_static("a=1"));
        h.append("cookie", HeaderValue::from_static("b=2; c=3"));
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().collect::<Vec<_>>(), ["a=1; b=2; c=3"]);
        let mut one = HeaderMap::new();
        one.append("cookie", HeaderValue::from_static("a=1"));
        join_cookies(&mut one);
        assert_eq!(one.get("cookie").unwrap(), "a=1");
    }

    #[test]
    fn only_websocket_upgrades_and_only_with_both_headers() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert("connection", HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        h.insert("upgrade", HeaderValue::from_static("WebSocket"));
        assert_eq!(upgrade_protocol(&h).unwrap(), "WebSocket");
        for other in ["h2c", "websocket, h2c", "TLS/1.2", ""] {
            h.insert("upgrade", HeaderValue::from_static(other));
            assert_eq!(upgrade_protocol(&h), None, "{other}");
        }
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.append("upgrade", HeaderValue::from_static("h2c"));
        assert_eq!(upgrade_protocol(&h), None, "two Upgrade fields");
    }
}
