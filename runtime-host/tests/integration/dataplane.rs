//! The HTTP data plane against real servers on loopback: static sites from
//! a directory and from moto's S3, a local HTTP upstream and a TLS one with
//! a test certificate, HTTP/2 and absolute-form requests, hostile and
//! duplicate Host headers, the admin listener and a graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgeroute_compiler::Options;
use edgeroute_host::body;
use edgeroute_host::http::{self, Limits};
use edgeroute_host::plane::DataPlane;
use edgeroute_host::probe::{exchange, RawResponse};
use edgeroute_host::proxy::{Proxy, ProxyConfig, TlsName};
use edgeroute_host::statics::{DirObjects, Objects, S3Objects};
use edgeroute_host::trust::TrustedProxies;
use edgeroute_host::{EdgeEngine, HostState, Router};
use edgeroute_tests::compile_text;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

pub(super) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-dataplane-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A data plane for `table` on a free port, served as `edgeroute-host serve`
/// serves it: two threads, each with its own runtime, on one listener.
pub(super) struct Plane {
    pub(super) addr: SocketAddr,
    pub(super) state: &'static HostState,
    pub(super) workers: Option<http::Workers>,
}

pub(super) async fn start(table: &str, objects: Objects, proxy: ProxyConfig, limits: Limits) -> Plane {
    let bytes = compile_text(table, Options::default()).unwrap().bytes;
    let state = HostState::leak(Router::new(EdgeEngine::new().unwrap(), &bytes).unwrap(), std::time::Duration::MAX);
    let plane = DataPlane { state, objects, proxy: Proxy::new(proxy).unwrap(), https: Default::default() };
    let listener = http::Listening::plain(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let workers = http::Workers::start(&plane, vec![listener], 2, limits).unwrap();
    Plane { addr: workers.local_addr(), state, workers: Some(workers) }
}

impl Plane {
    pub(super) async fn get(&self, host: &str, path: &str) -> RawResponse {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await
    }

    pub(super) async fn get_with(&self, host: &str, path: &str, headers: &str) -> RawResponse {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n")).await
    }

    pub(super) async fn send(&self, request: &str) -> RawResponse {
        let answer = exchange(self.addr, request.as_bytes()).await.unwrap();
        assert_eq!(
            answer.header("x-edgeroute-snapshot").map(str::len),
            Some(edgeroute_edge::SnapshotId::SHORT_HEX_LEN),
            "every answer names its snapshot: {answer:?}"
        );
        answer
    }
}

pub(super) fn text(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

// ---------------------------------------------------------------- static sites

pub(super) const SITES: &str = r#"
{"Domain": "assets.example.com", "Target": "s3://sites/a", "Assets": ["index.html", "404.html", "about/index.html", "app.js", "big.bin", "café.html"]}
{"Domain": "spa.example.com", "Target": "s3://sites/spa", "Assets": ["index.html", "app.js"], "Fallback": "index.html"}
{"Domain": "bare.example.com", "Target": "s3://sites/bare"}
{"Domain": "bare404.example.com", "Target": "s3://sites/bare404"}
{"Domain": "barespa.example.com", "Target": "s3://sites/barespa", "Fallback": "index.html"}
{"Domain": "stale.example.com", "Target": "s3://sites/stale", "Assets": ["index.html", "gone.html"]}
"#;

/// The objects behind [`SITES`], as (key, body).
fn site_objects() -> Vec<(&'static str, Vec<u8>)> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    vec![
        ("a/index.html", b"<h1>assets home</h1>".to_vec()),
        ("a/404.html", b"<h1>assets 404 page</h1>".to_vec()),
        ("a/about/index.html", b"<h1>about</h1>".to_vec()),
        ("a/app.js", b"console.log('app')".to_vec()),
        ("a/big.bin", big),
        ("a/caf\u{e9}.html", b"<h1>cafe</h1>".to_vec()),
        ("a/secret-not-an-asset.txt", b"secret".to_vec()),
        ("spa/index.html", b"<h1>spa shell</h1>".to_vec()),
        ("spa/app.js", b"spa()".to_vec()),
        ("bare/index.html", b"<h1>bare home</h1>".to_vec()),
        ("bare/deep/page.html", b"<h1>bare deep</h1>".to_vec()),
        ("bare404/index.html", b"<h1>bare404 home</h1>".to_vec()),
        ("bare404/404.html", b"<h1>bare404 not found page</h1>".to_vec()),
        ("barespa/index.html", b"<h1>barespa shell</h1>".to_vec()),
        ("stale/index.html", b"<h1>stale home</h1>".to_vec()),
        ("outside.txt", b"outside any site".to_vec()),
    ]
}

/// Every static-site behaviour, against whichever store `plane` reads.
async fn static_sites_behave(plane: &Plane) {
    // Assets, the index, a directory redirect, a percent-encoded name.
    let r = plane.get("assets.example.com", "/").await;
    assert_eq!((r.status, text(&r).as_str()), (200, "<h1>assets home</h1>"));
    assert!(r.header("content-type").unwrap().starts_with("text/html"), "{r:?}");
    assert!(r.header("etag").is_some() && r.header("last-modified").is_some(), "{r:?}");
    let r = plane.get("assets.example.com", "/app.js").await;
    assert_eq!((r.status, text(&r).as_str()), (200, "console.log('app')"));
    let r = plane.get("assets.example.com", "/about?x=1").await;
    assert_eq!((r.status, r.header("location")), (301, Some("/about/?x=1")));
    let r = plane.get("assets.example.com", "/about/").await;
    assert_eq!((r.status, text(&r).as_str()), (200, "<h1>about</h1>"));
    let r = plane.get("assets.example.com", "/caf%C3%A9.html").await;
    assert_eq!((r.status, text(&r).as_str()), (200, "<h1>cafe</h1>"));
    // Not an asset: the site's own 404 page with 404, even if the bucket has the object.
    let r = plane.get("assets.example.com", "/secret-not-an-asset.txt").await;
    assert_eq!((r.status, text(&r).as_str()), (404, "<h1>assets 404 page</h1>"));
    // A single-page app: its Fallback.
    let r = plane.get("spa.example.com", "/some/client/route").await;
    assert_eq!((r.status, text(&r).as_str()), (200, "<h1>spa shell</h1>"));

    // Sites without Assets: the bucket decides; then Fallback, 404.html, plain 404.
    let r = plane.get("bare.example.com", "/deep/page.html").await;
    assert_eq!((r.status, text(&r).as_str()), (200, "<h1>bare deep</h1>"));
    let r = plane.get("bare.example.com", "/missing.html").await;
    assert_eq!((r.status, text(&r).trim()), (404, "not found"));
    let r = plane.get("bare.example.com", "/deep").await; // a "folder" is no object
    assert_eq!(r.status, 404);
    let r = plane.get("bare404.example.com", "/missing.html").await;
    assert_eq!((r.status, text(&r).as_str()), (404, "<h1>bare404 not found page</h1>"));
    let r = plane.get("barespa.example.com", "/client/route").await;
    assert_eq!((r.status, text(&r).as_str()), (200, "<h1>barespa shell</h1>"));
    // An Assets list that names an object the bucket lacks: a plain 404, no store error.
    let r = plane.get("stale.example.com", "/gone.html").await;
    assert_eq!((r.status, text(&r).trim()), (404, "not found"));
    for r in [&r, &plane.get("bare.example.com", "/missing.html").await] {
        let body = text(r);
        assert!(!body.contains("NoSuchKey") && !body.contains("<Error>") && !body.contains("sites"), "{body}");
    }

    // Traversal attempts never leave the site's prefix: each is refused by
    // the path rule that catches it (docs/resolve.md, rule 4), with or
    // without an Assets list.
    for (path, reason) in [
        ("/../outside.txt", "path_dot_segment"),
        ("/./index.html", "path_dot_segment"),
        ("/a/../../outside.txt", "path_dot_segment"),
        ("/%2e%2e/outside.txt", "path_bad_escape"),
        ("/%2E%2E%2Foutside.txt", "path_bad_escape"),
        ("/a/..%2f..%2foutside.txt", "path_bad_escape"),
        ("/..%5coutside.txt", "path_bad_escape"),
        ("/%00", "path_bad_escape"),
        ("/%zz", "path_bad_escape"),
        ("//outside.txt", "path_empty_segment"),
        ("/a//b.txt", "path_empty_segment"),
        ("/..\\outside.txt", "path_bad_char"),
        ("/a\\..\\..\\outside.txt", "path_bad_char"),
        ("/%5Coutside.txt", "path_bad_escape"),
        ("/caf%C3.html", "path_bad_char"),
    ] {
        for host in ["bare.example.com", "assets.example.com"] {
            let r = plane.get(host, path).await;
            assert_eq!((r.status, text(&r).trim()), (400, format!("bad request: {reason}").as_str()), "{host}{path}");
        }
    }

    // A conditional GET.
    let etag = plane.get("assets.example.com", "/app.js").await.header("etag").unwrap().to_owned();
    let r = plane.get_with("assets.example.com", "/app.js", &format!("If-None-Match: {etag}\r\n")).await;
    assert_eq!((r.status, r.body.len(), r.header("etag")), (304, 0, Some(etag.as_str())));
    let r = plane.get_with("assets.example.com", "/app.js", "If-None-Match: \"other\"\r\n").await;
    assert_eq!(r.status, 200);
    // If-Modified-Since (RFC 9110 13.1.3), as S3 and nginx answer it: 304
    // unless the object changed after the date; a date that is no date is
    // ignored; If-None-Match, when present, decides alone (13.2.2).
    let modified = plane.get("assets.example.com", "/app.js").await.header("last-modified").unwrap().to_owned();
    let since = |date: &str| format!("If-Modified-Since: {date}\r\n");
    let r = plane.get_with("assets.example.com", "/app.js", &since(&modified)).await;
    assert_eq!((r.status, r.body.len(), r.header("etag")), (304, 0, Some(etag.as_str())), "{r:?}");
    let r = plane.get_with("assets.example.com", "/app.js", &since("Fri, 01 Jan 2100 00:00:00 GMT")).await;
    assert_eq!(r.status, 304);
    let r = plane.get_with("assets.example.com", "/app.js", &since("Thu, 01 Jan 1970 00:00:01 GMT")).await;
    assert_eq!((r.status, text(&r).as_str()), (200, "console.log('app')"));
    let r = plane.get_with("assets.example.com", "/app.js", &since("yesterday")).await;
    assert_eq!(r.status, 200);
    let other_tag = format!("If-None-Match: \"other\"\r\n{}", since(&modified));
    assert_eq!(plane.get_with("assets.example.com", "/app.js", &other_tag).await.status, 200);
    let same_tag = format!("If-None-Match: {etag}\r\n{}", since("Thu, 01 Jan 1970 00:00:01 GMT"));
    assert_eq!(plane.get_with("assets.example.com", "/app.js", &same_tag).await.status, 304);
    let r = plane
        .send(&format!(
            "HEAD /app.js HTTP/1.1\r\nHost: assets.example.com\r\n{}Connection: close\r\n\r\n",
            since(&modified)
        ))
        .await;
    assert_eq!(r.status, 304);
    // A site's own 404 page is sent whole, whatever the conditions.
    let r =
        plane.get_with("assets.example.com", "/secret-not-an-asset.txt", &since("Fri, 01 Jan 2100 00:00:00 GMT")).await;
    assert_eq!((r.status, text(&r).as_str()), (404, "<h1>assets 404 page</h1>"));
    // Ranges: a slice, a suffix, one out of bounds.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = plane.get_with("assets.example.com", "/big.bin", "Range: bytes=1000-1999\r\n").await;
    assert_eq!((r.status, r.header("content-range")), (206, Some("bytes 1000-1999/300000")));
    assert_eq!(&r.body[..], &big[1000..2000]);
    let r = plane.get_with("assets.example.com", "/big.bin", "Range: bytes=-10\r\n").await;
    assert_eq!((r.status, &r.body[..]), (206, &big[299_990..]));
    let r = plane.get_with("assets.example.com", "/big.bin", "Range: bytes=400000-\r\n").await;
    assert_eq!((r.status, r.header("content-range")), (416, Some("bytes */300000")));
    // The whole of a large object streams intact.
    let r = plane.get("assets.example.com", "/big.bin").await;
    assert_eq!((r.status, r.body.len()), (200, big.len()));
    assert!(r.body == big);
    // HEAD: headers, no body.
    let r = plane.send("HEAD /big.bin HTTP/1.1\r\nHost: assets.example.com\r\nConnection: close\r\n\r\n").await;
    assert_eq!((r.status, r.header("content-length"), r.body.len()), (200, Some("300000"), 0));
    // Other methods: 405 with Allow.
    let r = plane
        .send("POST / HTTP/1.1\r\nHost: assets.example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
}

pub(super) fn write_sites(root: &Path) {
    for (key, body) in site_objects() {
        let path = root.join("sites").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
}

#[test]
fn static_sites_from_a_directory() {
    let dir = scratch("dir");
    write_sites(&dir);
    std::fs::write(dir.join("outside.txt"), b"outside any site").unwrap();
    let rt = runtime();
    rt.block_on(async {
        let plane = start(SITES, Objects::Dir(DirObjects::new(&dir)), ProxyConfig::default(), Limits::default()).await;
        static_sites_behave(&plane).await;
        // The directory backend guesses Content-Type from the key.
        let r = plane.get("assets.example.com", "/app.js").await;
        assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
    });
}

#[test]
fn static_sites_from_moto_s3() {
    let moto = edgeroute_tests_aws::Moto::start();
    let rt = runtime();
    rt.block_on(async {
        let config = moto.config().await;
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
        s3.create_bucket().bucket("sites").send().await.unwrap();
        for (key, body) in site_objects() {
            let mut put = s3.put_object().bucket("sites").key(key).body(body.into());
            if key.ends_with(".html") {
                put = put.content_type("text/html; charset=utf-8");
            }
            if key == "a/app.js" {
                put = put.content_type("text/javascript").cache_control("max-age=31536000, immutable");
            }
            put.send().await.unwrap();
        }
        s3.put_object()
            .bucket("sites")
            .key("a/app.js.gz")
            .body(b"gzipped".to_vec().into())
            .content_encoding("gzip")
            .send()
            .await
            .unwrap();
        let plane = start(SITES, s3_objects(&config), ProxyConfig::default(), Limits::default()).await;
        static_sites_behave(&plane).await;
        // S3's own metadata is passed through.
        let r = plane.get("assets.example.com", "/app.js").await;
        assert_eq!(r.header("content-type"), Some("text/javascript"));
        assert_eq!(r.header("cache-control"), Some("max-age=31536000, immutable"));
        let r = plane.get("bare.example.com", "/../a/app.js.gz").await;
        assert_eq!(r.status, 400);
        // A bucket that does not exist: a plain 404 that names nothing.
        let missing = r#"{"Domain": "nobucket.example.com", "Target": "s3://no-such-bucket/x"}"#;
        let other = start(missing, s3_objects(&config), ProxyConfig::default(), Limits::default()).await;
        let r = other.get("nobucket.example.com", "/").await;
        assert_eq!((r.status, text(&r).trim()), (404, "not found"));
    });
}

#[test]
fn an_unreachable_s3_is_a_502_that_names_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let rt = runtime();
    rt.block_on(async {
        let config = edgeroute_tests_aws::config_for(&format!("http://127.0.0.1:{port}")).await;
        let plane = start(SITES, s3_objects(&config), ProxyConfig::default(), Limits::default()).await;
        let r = plane.get("assets.example.com", "/").await;
        assert_eq!(r.status, 502);
        assert!(!text(&r).contains("sites"), "{}", text(&r));
    });
}

// ---------------------------------------------------------------- balancers

/// A local upstream: answers with the request's method, URI, headers (one
/// per line) and a SHA-less digest of its body (length and byte sum);
/// `/big` streams 2 MB; `/slow` waits 3 s before answering; `/stall` sends
/// the first part of its body, then nothing for 3 s, then the rest; `/ws`
/// accepts a WebSocket upgrade and echoes what it reads.
pub(super) async fn upstream(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|mut req: Request<hyper::body::Incoming>| async move {
                if req.uri().path() == "/ws" {
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(io) = upgrade.await {
                            let mut io = TokioIo::new(io);
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    });
                    let response = Response::builder()
                        .status(101)
                        .header("connection", "upgrade")
                        .header("upgrade", "websocket")
                        .body(body::empty())
                        .unwrap();
                    return Ok::<_, std::convert::Infallible>(response);
                }
                if req.uri().path() == "/stall" {
                    let parts = futures_util::stream::unfold(0, |step| async move {
                        match step {
                            0 => Some((
                                Ok::<_, body::BoxError>(hyper::body::Frame::data(Bytes::from_static(b"first part\n"))),
                                1,
                            )),
                            1 => {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                                Some((
                                    Ok::<_, body::BoxError>(hyper::body::Frame::data(Bytes::from_static(
                                        b"second part\n",
                                    ))),
                                    2,
                                ))
                            }
                            _ => None,
                        }
                    });
                    let body: body::Body = http_body_util::StreamBody::new(parts).boxed_unsync();
                    return Ok(Response::new(body));
                }
                if req.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                if req.uri().path() == "/big" {
                    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
                    return Ok(Response::new(body::full(big)));
                }
                let mut text = format!("{} {}\n", req.method(), req.uri());
                for (name, value) in req.headers() {
                    text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                }
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let sum: u64 = body.iter().map(|&b| b as u64).sum();
                text.push_str(&format!("body: {} bytes, sum {sum}\n", body.len()));
                let response = Response::builder()
                    .header("x-upstream", "yes")
                    .header("keep-alive", "timeout=5")
                    .body(body::full(text))
                    .unwrap();
                Ok(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

#[test]
fn load_balancers_are_proxied() {
    let rt = runtime();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = listener.local_addr().unwrap();
        tokio::spawn(upstream(listener));
        let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed once dropped
        let table = format!(
            "{{\"Domain\": \"*.lb.example.com\", \"Target\": \"http://127.0.0.1:{}\"}}\n{{\"Domain\": \"down.example.com\", \"Target\": \"http://127.0.0.1:{}\"}}\n",
            up.port(),
            down.port()
        );
        let proxy = ProxyConfig { read_timeout: Duration::from_millis(1500), ..ProxyConfig::default() };
        let plane = start(&table, Objects::Dir(DirObjects::new("/nonexistent")), proxy, Limits::default()).await;

        // Host kept, X-Forwarded-* set and appended, hop-by-hop headers dropped both ways.
        let r = plane
            .get_with(
                "App.PR-7.lb.example.com:8080",
                "/api/x?y=1",
                "X-Forwarded-For: 203.0.113.9\r\nConnection: x-private\r\nX-Private: 1\r\nX-Kept: yes\r\n",
            )
            .await;
        let body = text(&r);
        assert_eq!(r.status, 200, "{body}");
        assert!(body.starts_with("GET /api/x?y=1\n"), "{body}");
        assert!(body.contains("host: App.PR-7.lb.example.com:8080\n"), "{body}");
        // A client's forwarding headers are replaced (hostile.rs has all of them).
        assert!(body.contains("x-forwarded-for: 127.0.0.1\n") && !body.contains("203.0.113.9"), "{body}");
        assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
        assert!(body.contains("x-forwarded-host: App.PR-7.lb.example.com:8080\n"), "{body}");
        assert!(body.contains("x-kept: yes\n") && !body.contains("x-private"), "{body}");
        assert_eq!((r.header("x-upstream"), r.header("keep-alive")), (Some("yes"), None));
        // A client cannot claim https; a trusted proxy in front can, and its
        // X-Forwarded-For is appended to.
        let claim = "X-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.9\r\n";
        assert!(text(&plane.get_with("a.lb.example.com", "/", claim).await).contains("x-forwarded-proto: http\n"));
        let trusting = ProxyConfig {
            trusted_proxies: TrustedProxies::new(vec!["127.0.0.0/8".parse().unwrap()]),
            ..ProxyConfig::default()
        };
        let behind_lb = start(&table, Objects::Dir(DirObjects::new("/nonexistent")), trusting, Limits::default()).await;
        let body = text(&behind_lb.get_with("a.lb.example.com", "/", claim).await);
        assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
        assert!(body.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"), "{body}");
        assert!(text(&behind_lb.get("a.lb.example.com", "/").await).contains("x-forwarded-proto: http\n"));

        // HTTP/2 in, HTTP/1.1 out: the client's cookie fields arrive as one header.
        let stream = tokio::net::TcpStream::connect(plane.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let request = Request::get("http://h2.lb.example.com/cookies")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("cookie: a=1; b=2\n") && body.contains("host: h2.lb.example.com\n"), "{body}");

        // Bodies stream both ways: a 1 MB upload, a 2 MB download.
        let upload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 7) as u8).collect();
        let sum: u64 = upload.iter().map(|&b| b as u64).sum();
        let mut request =
            format!("POST /upload HTTP/1.1\r\nHost: a.lb.example.com\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", upload.len())
                .into_bytes();
        request.extend_from_slice(&upload);
        let r = exchange(plane.addr, &request).await.unwrap();
        assert!(text(&r).contains(&format!("body: 1000000 bytes, sum {sum}")), "{}", text(&r));
        let r = plane.get("a.lb.example.com", "/big").await;
        assert_eq!((r.status, r.body.len()), (200, 2_000_000));
        assert!(r.body.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));

        // A WebSocket upgrade passes through, and the connection echoes.
        let (mut ws, head) = open_websocket(plane.addr).await;
        assert!(head.contains("upgrade: websocket"), "{head}");
        for message in [&b"\x81\x05hello"[..], b"\x81\x03hot", b"reload"] {
            ws.write_all(message).await.unwrap();
            let mut echo = vec![0u8; message.len()];
            ws.read_exact(&mut echo).await.unwrap();
            assert_eq!(echo, message);
        }

        // The origin down: 502 with a generic body (tests/integration/hostile.rs
        // checks what it leaves out). Too slow: 504.
        let r = plane.get("down.example.com", "/").await;
        assert_eq!(r.status, 502);
        assert!(text(&r).starts_with("bad gateway: the origin could not be reached (request id "), "{}", text(&r));
        let r = plane.get("a.lb.example.com", "/slow").await;
        assert_eq!(r.status, 504, "{}", text(&r));
        assert_eq!(plane.state.metrics.origin_errors.load(std::sync::atomic::Ordering::Relaxed), 2);
        // An origin that goes silent in the middle of its body: the answer is
        // cut off (an unfinished chunked body), never completed late.
        let cut = exchange(plane.addr, b"GET /stall HTTP/1.1\r\nHost: a.lb.example.com\r\nConnection: close\r\n\r\n").await;
        match cut {
            Ok(r) => panic!("a stalled body was completed: {r:?}"),
            Err(e) => assert!(e.to_string().contains("first part"), "{e}"),
        }
    });
}

// ---------------------------------------------------------------- TLS origins

/// A TLS upstream with a certificate for `names`, signed by a test CA whose
/// PEM is returned.
async fn tls_upstream(names: &[&str]) -> (SocketAddr, Vec<u8>) {
    let (addr, ca, _) = tls_upstream_counted(names).await;
    (addr, ca)
}

/// What a test upstream has seen of its connections.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// TLS handshakes completed.
    pub(super) handshakes: std::sync::atomic::AtomicUsize,
    /// Connections open now.
    pub(super) open: std::sync::atomic::AtomicUsize,
}

/// [`tls_upstream`], counting its handshakes and open connections.
pub(super) async fn tls_upstream_counted(names: &[&str]) -> (SocketAddr, Vec<u8>, Arc<Counts>) {
    use std::sync::atomic::Ordering::Relaxed;
    let counts = Arc::new(Counts::default());
    let counting = counts.clone();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "edgeroute test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (acceptor, counts) = (acceptor.clone(), counting.clone());
            tokio::spawn(async move {
                counts.open.fetch_add(1, Relaxed);
                let Ok(tls) = acceptor.accept(stream).await else {
                    counts.open.fetch_sub(1, Relaxed);
                    return;
                };
                counts.handshakes.fetch_add(1, Relaxed);
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let sni = sni.clone();
                    async move {
                        let host = req.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(format!(
                            "tls ok, sni {sni}, host {host}\n"
                        )))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                counts.open.fetch_sub(1, Relaxed);
            });
        }
    });
    (addr, ca.pem().into_bytes(), counts)
}

#[test]
fn tls_origins_are_checked_against_their_name_or_the_request_host() {
    let rt = runtime();
    rt.block_on(async {
        let (addr, ca) = tls_upstream(&["localhost"]).await;
        let table = format!(
            "{{\"Domain\": \"tls.example.com\", \"Target\": \"https://localhost:{}\"}}\n{{\"Domain\": \"ip.example.com\", \"Target\": \"https://127.0.0.1:{}\"}}\n",
            addr.port(),
            addr.port()
        );
        let trusted = ProxyConfig { extra_roots: vec![ca.clone()], ..ProxyConfig::default() };
        let plane = start(&table, Objects::Dir(DirObjects::new("/nonexistent")), trusted, Limits::default()).await;
        let r = plane.get("tls.example.com", "/").await;
        assert_eq!((r.status, text(&r).as_str()), (200, "tls ok, sni localhost, host tls.example.com\n"));
        // The certificate does not name 127.0.0.1: refused.
        let r = plane.get("ip.example.com", "/").await;
        assert_eq!(r.status, 502, "{}", text(&r));
        // Without the test CA, the certificate is not trusted.
        let untrusted = start(&table, Objects::Dir(DirObjects::new("/nonexistent")), ProxyConfig::default(), Limits::default()).await;
        let r = untrusted.get("tls.example.com", "/").await;
        assert_eq!(r.status, 502, "{}", text(&r));
        // Why (the certificate) is logged with the request id, not told the client.
        assert!(!text(&r).to_lowercase().contains("certificate"), "{}", text(&r));

        // A load balancer presenting the customer's certificate: checked
        // against the request's host in request-host mode.
        let (addr, ca) = tls_upstream(&["shop.example.com"]).await;
        let table = format!("{{\"Domain\": \"shop.example.com\", \"Target\": \"https://localhost:{}\"}}\n", addr.port());
        let by_origin = ProxyConfig { extra_roots: vec![ca.clone()], ..ProxyConfig::default() };
        let plane = start(&table, Objects::Dir(DirObjects::new("/nonexistent")), by_origin, Limits::default()).await;
        assert_eq!(plane.get("shop.example.com", "/").await.status, 502);
        let by_host = ProxyConfig { extra_roots: vec![ca], tls_name: TlsName::RequestHost, ..ProxyConfig::default() };
        let plane = start(&table, Objects::Dir(DirObjects::new("/nonexistent")), by_host, Limits::default()).await;
        let r = plane.get("SHOP.example.com.:443", "/").await;
        assert_eq!((r.status, text(&r).as_str()), (200, "tls ok, sni shop.example.com, host SHOP.example.com.:443\n"));
    });
}

// ---------------------------------------------------------------- the request's host

#[test]
fn the_host_comes_from_the_authority_or_exactly_one_host_header() {
    let dir = scratch("hosts");
    write_sites(&dir);
    let rt = runtime();
    rt.block_on(async {
        let plane = start(SITES, Objects::Dir(DirObjects::new(&dir)), ProxyConfig::default(), Limits::default()).await;
        // Absolute-form: the URI's authority wins over the Host header.
        let r = plane
            .send(
                "GET http://assets.example.com/app.js HTTP/1.1\r\nHost: bare.example.com\r\nConnection: close\r\n\r\n",
            )
            .await;
        assert_eq!((r.status, text(&r).as_str()), (200, "console.log('app')"));
        // No Host, two Host headers, hostile ones: 400 with the reason,
        // never a route, and named by the snapshot like every answer.
        for (request, why) in [
            ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "no Host header"),
            ("GET / HTTP/1.0\r\n\r\n", "no Host header"),
            (
                "GET / HTTP/1.1\r\nHost: assets.example.com\r\nHost: bare.example.com\r\nConnection: close\r\n\r\n",
                "more than one Host header",
            ),
            (
                "GET / HTTP/1.1\r\nHost: assets.example.com/../bare.example.com\r\nConnection: close\r\n\r\n",
                "host_bad_char",
            ),
            ("GET / HTTP/1.1\r\nHost: assets.example.com@bare.example.com\r\nConnection: close\r\n\r\n", "host_bad_char"),
            // Absolute-form with user information: the authority is the host, and `@` is refused.
            (
                "GET http://user@assets.example.com/app.js HTTP/1.1\r\nHost: assets.example.com\r\nConnection: close\r\n\r\n",
                "host_bad_char",
            ),
            (
                "GET http://assets.example.com@bare.example.com/ HTTP/1.1\r\nHost: bare.example.com\r\nConnection: close\r\n\r\n",
                "host_bad_char",
            ),
            ("GET / HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n", "host_bad_char"),
            ("GET / HTTP/1.1\r\nHost: assets.example.com:123456\r\nConnection: close\r\n\r\n", "host_bad_port"),
            ("GET / HTTP/1.1\r\nHost: a..example.com\r\nConnection: close\r\n\r\n", "host_bad_label"),
            ("GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n", "host_empty"),
        ] {
            let answer = plane.send(request).await;
            assert_eq!((answer.status, text(&answer).trim()), (400, format!("bad request: {why}").as_str()), "{request:?}");
        }
        // No tunnels.
        let r = plane
            .send(
                "CONNECT assets.example.com:443 HTTP/1.1\r\nHost: assets.example.com:443\r\nConnection: close\r\n\r\n",
            )
            .await;
        assert_eq!(r.status, 405, "{r:?}");
        // Longer than the module's input buffer (16 KiB): 414, not a server error.
        let long = format!("/{}", "a".repeat(20_000));
        let r = plane.get("assets.example.com", &long).await;
        assert_eq!(r.status, 414, "{r:?}");
        // Hyper refuses a Host with bytes no header may carry before we see it; still a 400.
        let answer = exchange(plane.addr, b"GET / HTTP/1.1\r\nHost: a\x01b.example.com\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(answer.status, 400);

        // HTTP/2 with prior knowledge: the :authority pseudo-header.
        let stream = tokio::net::TcpStream::connect(plane.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let request =
            Request::get("http://spa.example.com/deep/route").body(http_body_util::Empty::<Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-edgeroute-snapshot"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"<h1>spa shell</h1>");
    });
}

// ---------------------------------------------------------------- limits, metrics, shutdown

#[test]
fn limits_metrics_and_a_graceful_shutdown() {
    let dir = scratch("limits");
    write_sites(&dir);
    let rt = runtime();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = listener.local_addr().unwrap();
        tokio::spawn(upstream(listener));
        let table =
            format!("{SITES}\n{{\"Domain\": \"slow.example.com\", \"Target\": \"http://127.0.0.1:{}\"}}\n", up.port());
        let limits = Limits { max_header_bytes: 16 * 1024, drain: Duration::from_secs(10), ..Limits::default() };
        let mut plane = start(&table, Objects::Dir(DirObjects::new(&dir)), ProxyConfig::default(), limits).await;

        // A request head over the limit: 431, not a crash.
        let huge = format!("X-Big: {}\r\n", "a".repeat(40 * 1024));
        let answer = exchange(
            plane.addr,
            format!("GET / HTTP/1.1\r\nHost: assets.example.com\r\n{huge}Connection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(answer.unwrap().status, 431);

        plane.get("assets.example.com", "/").await;
        plane.get("nothing.example.com", "/").await;
        plane.get("bad_host!", "/").await;
        let metrics = plane.state.metrics.render(plane.state.router.live().as_deref(), &plane.state.freshness);
        for line in [
            "edgeroute_requests_total{kind=\"static\",status=\"200\"} 1",
            "edgeroute_requests_total{kind=\"not_found\",status=\"404\"} 1",
            "edgeroute_requests_total{kind=\"bad_request\",status=\"400\"} 1",
            "edgeroute_resolve_seconds_count 3",
            "edgeroute_snapshot_routes 7",
        ] {
            assert!(metrics.contains(line), "{line} not in\n{metrics}");
        }
        let admin = edgeroute_admin::answer(plane.state, &Request::get("/health").body(()).unwrap());
        assert_eq!(admin.status(), 200);

        // A request in flight when the shutdown begins is answered; then the
        // listener is closed.
        let addr = plane.addr;
        let slow = tokio::spawn(async move {
            exchange(addr, b"GET /slow HTTP/1.1\r\nHost: slow.example.com\r\nConnection: close\r\n\r\n").await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let shutdown = tokio::spawn(plane.workers.take().unwrap().shutdown());
        let answer = slow.await.unwrap().unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        shutdown.await.unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening after the shutdown");
    });
}

/// Static sites' objects from the S3 at `config`, with the host's default limits.
fn s3_objects(config: &aws_config::SdkConfig) -> Objects {
    Objects::S3(S3Objects::new(edgeroute_host::aws::s3_client(config, &Default::default()), false))
}

/// Opens a WebSocket to `a.lb.example.com/ws` through `addr`: the stream,
/// and the head of its 101 answer (lowercased).
pub(super) async fn open_websocket(addr: SocketAddr) -> (tokio::net::TcpStream, String) {
    let mut ws = tokio::net::TcpStream::connect(addr).await.unwrap();
    ws.write_all(b"GET /ws HTTP/1.1\r\nHost: a.lb.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(ws.read(&mut byte).await.unwrap(), 1, "closed during the handshake: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    (ws, head)
}
