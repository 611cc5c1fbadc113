//! The headers a proxied request gains, loses and joins on its way to the
//! origin.

use std::net::SocketAddr;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// The protocol a request asks to upgrade to (`Connection: upgrade` with an
/// `Upgrade` header), if any.
pub(super) fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(hyper::header::UPGRADE).cloned()).flatten()
}

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
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

/// Appends the client's address to `X-Forwarded-For` (one header, the
/// earlier hops first).
pub(super) fn append_forwarded_for(headers: &mut HeaderMap, client: SocketAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let mut hops: Vec<String> =
        headers.get_all(&name).iter().filter_map(|v| v.to_str().ok()).map(|v| v.trim().to_owned()).collect();
    hops.retain(|h| !h.is_empty());
    hops.push(client.ip().to_string());
    if let Ok(value) = HeaderValue::from_str(&hops.join(", ")) {
        headers.insert(name, value);
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

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.1, 10.0.0.1"));
        append_forwarded_for(&mut h, "127.0.0.1:5555".parse().unwrap());
        assert_eq!(h.get("x-forwarded-for").unwrap(), "203.0.113.7, 198.51.100.1, 10.0.0.1, 127.0.0.1");
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
    fn upgrades_need_both_headers() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_protocol(&h), None);
        h.insert("connection", HeaderValue::from_static("keep-alive, Upgrade"));
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
    }
}
