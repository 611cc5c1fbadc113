//! Hostile clients against the data plane (`docs/serving.md`, "What a
//! client can and cannot make the host do"): sockets that stay silent or
//! send their head a byte at a time, one address opening thousands of
//! connections, upgrades to anything but a WebSocket, spoofed forwarding
//! headers, requests that loop back through the host, and origins whose
//! failures must not tell a client where they are.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edgeroute_compiler::Options;
use edgeroute_host::http::Limits;
use edgeroute_host::probe::exchange;
use edgeroute_host::proxy::ProxyConfig;
use edgeroute_host::statics::{DirObjects, Objects};
use edgeroute_tests::compile_text;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::dataplane::{runtime, scratch, start, text, tls_upstream_counted, upstream, write_sites, Counts, SITES};
use super::serve::{free_port, raw_get, Served};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads `stream` until the server closes it (an end of file or a reset),
/// for at most `limit`: how long that took from `since`, and what was read;
/// `None` for the time if it was still open at the limit.
async fn wait_closed<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    since: Instant,
    limit: Duration,
) -> (Option<Duration>, Vec<u8>) {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::from_std(since + limit);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (None, read),
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(since.elapsed()), read),
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
        }
    }
}

/// Asserts that a connection was closed by the server at `deadline`: no
/// earlier (less a little for timer granularity), and not after the next
/// deadline could have done it (a second and a bit of slack for a busy
/// machine; the deadlines of a test are further apart than that, and each
/// test also checks the reason counted).
fn assert_closed_at(what: &str, closed: Option<Duration>, deadline: Duration) {
    let closed = closed.unwrap_or_else(|| panic!("{what}: still open {:?} after its deadline", deadline + ms(2500)));
    assert!(closed + ms(100) >= deadline, "{what}: closed after {closed:?}, before its deadline {deadline:?}");
    assert!(closed <= deadline + ms(1100), "{what}: closed after {closed:?}, long past its deadline {deadline:?}");
}

// ---------------------------------------------------------------- HTTP/2 frames by hand

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A GET's header block in HPACK: `:method GET`, `:scheme http` (indexed),
/// `:path` and `:authority` (literals without indexing).
fn hpack_get(host: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, host.len() as u8]);
    block.extend_from_slice(host.as_bytes());
    block
}

/// The frames in `bytes` (whole ones), as (type, flags).
fn frames(bytes: &[u8]) -> Vec<(u8, u8)> {
    let mut found = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        found.push((rest[3], rest[4]));
        rest = &rest[(9 + len).min(rest.len())..];
    }
    found
}

/// A request from `from` (another loopback address than the crowd's).
async fn exchange_from(from: IpAddr, addr: SocketAddr, request: &[u8]) -> std::io::Result<String> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let mut stream = socket.connect(addr).await?;
    stream.write_all(request).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

const GET_ASSETS: &[u8] = b"GET / HTTP/1.1\r\nHost: assets.example.com\r\nConnection: close\r\n\r\n";

// ---------------------------------------------------------------- 1. silent and slow connections

#[test]
fn silent_slow_and_idle_connections_are_closed_at_their_deadlines() {
    let dir = scratch("deadlines");
    write_sites(&dir);
    let limits = Limits {
        max_connections_per_client: 0,
        first_byte_timeout: ms(600),
        header_timeout: ms(1200),
        idle_timeout: ms(3000),
        ..Limits::default()
    };
    runtime().block_on(async {
        let plane = start(SITES, Objects::Dir(DirObjects::new(&dir)), ProxyConfig::default(), limits).await;
        let addr = plane.addr;
        let limit = ms(3000 + 2500);

        // A socket that sends nothing.
        let silent = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            wait_closed(&mut stream, Instant::now(), limit).await.0
        };
        // HTTP/1.1 slowloris: a header line every 100 ms, never the end of the head.
        let slowloris = async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut read, mut write) = stream.into_split();
            let start = Instant::now();
            let trickle = tokio::spawn(async move {
                let _ = write.write_all(b"GET / HTTP/1.1\r\nHost: assets.example.com\r\n").await;
                while write.write_all(b"X-Slow: 1\r\n").await.is_ok() {
                    tokio::time::sleep(ms(100)).await;
                }
            });
            let (closed, _) = wait_closed(&mut read, start, limit).await;
            trickle.abort();
            closed
        };
        // HTTP/2: a HEADERS frame whose block arrives a byte every 100 ms.
        let slow_h2 = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            stream.write_all(PREFACE).await.unwrap();
            stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
            let block = hpack_get("assets.example.com", "/");
            let whole = frame(HEADERS, END_STREAM | END_HEADERS, 1, &block);
            stream.write_all(&whole[..9]).await.unwrap();
            let (mut read, mut write) = stream.into_split();
            let trickle = tokio::spawn(async move {
                for byte in &whole[9..] {
                    tokio::time::sleep(ms(100)).await;
                    if write.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                }
                write
            });
            let (closed, _) = wait_closed(&mut read, start, limit).await;
            trickle.abort();
            closed
        };
        // HTTP/2 with no request at all: closed when idle, with a GOAWAY first.
        let idle_h2 = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            stream.write_all(PREFACE).await.unwrap();
            stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
            wait_closed(&mut stream, start, limit).await
        };
        // HTTP/1.1 keep-alive: one answer, then nothing.
        let idle_h1 = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\nHost: assets.example.com\r\n\r\n").await.unwrap();
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&answer).contains("<h1>assets home</h1>") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before its answer: {:?}", String::from_utf8_lossy(&answer));
                answer.extend_from_slice(&buf[..n]);
            }
            wait_closed(&mut stream, Instant::now(), limit).await.0
        };

        let (silent, slowloris, slow_h2, (idle_h2, h2_bytes), idle_h1) =
            tokio::join!(silent, slowloris, slow_h2, idle_h2, idle_h1);
        assert_closed_at("a silent socket", silent, ms(600));
        assert_closed_at("an HTTP/1.1 head sent a line at a time", slowloris, ms(1200));
        assert_closed_at("an HTTP/2 header block sent a byte at a time", slow_h2, ms(1200));
        // Its GOAWAY comes with a PING that this peer never answers: it
        // gets the grace after it (the head timeout) before the close.
        let goaway_sent = idle_h2.map(|closed| closed.saturating_sub(ms(1200)));
        assert_closed_at("an HTTP/2 connection with no request", goaway_sent, ms(3000));
        assert!(frames(&h2_bytes).iter().any(|&(kind, _)| kind == GOAWAY), "no GOAWAY before the close");
        assert_closed_at("an HTTP/1.1 keep-alive connection", idle_h1, ms(3000));
        // Each closed for its own reason.
        let closed = |why| plane.state.metrics.closed_count(why);
        use edgeroute_host::metrics::Closed;
        assert_eq!((closed(Closed::FirstByte), closed(Closed::Head), closed(Closed::Idle)), (1, 2, 2));

        // None of it stops a normal request.
        let r = exchange(addr, GET_ASSETS).await.unwrap();
        assert_eq!((r.status, text(&r).as_str()), (200, "<h1>assets home</h1>"));
    });
}

#[test]
fn http2_connections_are_pinged_and_closed_when_the_peer_stops_answering() {
    let dir = scratch("pings");
    write_sites(&dir);
    let limits = Limits { h2_ping_interval: ms(300), idle_timeout: ms(20_000), ..Limits::default() };
    runtime().block_on(async {
        let plane = start(SITES, Objects::Dir(DirObjects::new(&dir)), ProxyConfig::default(), limits).await;
        let mut stream = TcpStream::connect(plane.addr).await.unwrap();
        let start = Instant::now();
        stream.write_all(PREFACE).await.unwrap();
        stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        // This peer never answers a PING: closed long before its idle timeout.
        let (closed, bytes) = wait_closed(&mut stream, start, ms(5_000)).await;
        assert!(frames(&bytes).iter().any(|&(kind, flags)| kind == PING && flags & ACK == 0), "never pinged");
        assert!(closed.is_some(), "a peer that never answers a PING is still connected after 5 s");
    });
}

#[test]
fn one_client_address_cannot_hold_every_connection() {
    let dir = scratch("per-client");
    write_sites(&dir);
    let limits = Limits {
        max_connections: 30,
        max_connections_per_client: 10,
        first_byte_timeout: ms(30_000),
        ..Limits::default()
    };
    runtime().block_on(async {
        let plane = start(SITES, Objects::Dir(DirObjects::new(&dir)), ProxyConfig::default(), limits).await;
        let addr = plane.addr;
        let mut crowd = Vec::new();
        for _ in 0..25 {
            crowd.push(TcpStream::connect(addr).await.unwrap());
            // In order: the first ten are the ones kept.
            tokio::time::sleep(ms(20)).await;
        }
        let mut closed = Vec::new();
        for (n, stream) in crowd.iter_mut().enumerate() {
            if wait_closed(stream, Instant::now(), ms(300)).await.0.is_some() {
                closed.push(n);
            }
        }
        assert_eq!(closed, (10..25).collect::<Vec<_>>(), "the connections over the cap of 10 are closed");
        assert_eq!(plane.state.metrics.connections.load(Ordering::Relaxed), 10);

        // Another address is served; this one is not until it lets one go.
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let answer = exchange_from(other, addr, GET_ASSETS).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let refused = exchange_from(IpAddr::V4(Ipv4Addr::LOCALHOST), addr, GET_ASSETS).await;
        assert!(refused.as_deref().unwrap_or("").is_empty(), "over the cap yet answered: {refused:?}");
        drop(crowd.remove(0));
        tokio::time::sleep(ms(300)).await;
        let answer = exchange_from(IpAddr::V4(Ipv4Addr::LOCALHOST), addr, GET_ASSETS).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    });
}

/// The measurement, with the default deadlines and cap: 3,000
/// silent sockets from one address against `--max-connections 1000`, and
/// 12 s later another address is answered within 1 s.
#[test]
fn three_thousand_silent_sockets_from_one_address_do_not_shut_out_another() {
    let dir = scratch("crowd");
    write_sites(&dir);
    let limits = Limits { max_connections: 1000, ..Limits::default() };
    runtime().block_on(async {
        let plane = start(SITES, Objects::Dir(DirObjects::new(&dir)), ProxyConfig::default(), limits).await;
        let addr = plane.addr;
        // The crowd comes from 127.0.0.3: its 3,000 ports are taken on that
        // address, where no other test listens or picks a free port.
        let crowd: Vec<_> = (0..3000)
            .map(|_| {
                tokio::spawn(async move {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 0))?;
                    socket.connect(addr).await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(12)).await;
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let answer = tokio::time::timeout(Duration::from_secs(1), exchange_from(other, addr, GET_ASSETS)).await;
        let answer = answer.expect("no answer within 1 s").unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(crowd);
    });
}

/// An origin that answers every request at once, then never reads again
/// from its connection (nor closes it): an upload to it stalls for good.
async fn deaf_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno").await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(stream);
            });
        }
    });
    format!("{{\"Domain\": \"*.deaf.example.com\", \"Target\": \"http://127.0.0.1:{}\"}}\n", up.port())
}

/// A client uploads to an origin that answered without reading the body:
/// the answer is out, and the rest of the upload can go nowhere. The
/// connection is idle once its answer is sent, and is closed at the idle
/// timeout (and its grace), not held for as long as the origin holds its own.
#[test]
fn an_upload_an_origin_stopped_reading_does_not_hold_its_connection() {
    let limits =
        Limits { max_connections_per_client: 0, header_timeout: ms(1000), idle_timeout: ms(1500), ..Limits::default() };
    runtime().block_on(async {
        let table = deaf_origin().await;
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let plane = start(&table, nowhere, ProxyConfig::default(), limits).await;
        let stream = TcpStream::connect(plane.addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        // 1 GiB announced; written until the sockets' buffers are full.
        let upload = tokio::spawn(async move {
            let head = "POST /upload HTTP/1.1\r\nHost: a.deaf.example.com\r\nContent-Length: 1073741824\r\n\r\n";
            write.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            while write.write_all(&chunk).await.is_ok() {}
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"\r\n\r\nno") {
            let n = tokio::time::timeout(ms(5000), read.read(&mut buf)).await.expect("no answer").unwrap();
            assert!(n > 0, "closed before the answer: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 401"), "{}", String::from_utf8_lossy(&answer));
        let (closed, _) = wait_closed(&mut read, Instant::now(), ms(8000)).await;
        let closed = closed.expect("still open 8 s after its answer (idle timeout 1.5 s)");
        // Idle from its answer, checked every idle timeout at worst, then
        // the grace of a graceful close (the head timeout).
        assert!(closed <= ms(1500 * 2 + 1000 + 1100), "closed {closed:?} after its answer");
        upload.abort();
        let closed = |why| plane.state.metrics.closed_count(why);
        assert_eq!(closed(edgeroute_host::metrics::Closed::Idle), 1);
    });
}

// ---------------------------------------------------------------- 2. upgrades

/// Opens a WebSocket through `addr` to the recording upstream, and checks
/// that it echoes.
async fn open_websocket(addr: SocketAddr) -> TcpStream {
    let (mut ws, _) = super::dataplane::open_websocket(addr).await;
    ws.write_all(b"\x81\x02hi").await.unwrap();
    let mut echo = [0u8; 4];
    ws.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"\x81\x02hi");
    ws
}

async fn lb_table() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(upstream(listener));
    format!("{{\"Domain\": \"*.lb.example.com\", \"Target\": \"http://127.0.0.1:{}\"}}\n", up.port())
}

#[test]
fn upgrades_are_websocket_only_and_tunnels_stay_within_the_limits() {
    let limits = Limits { max_connections: 1, idle_timeout: ms(1500), drain: ms(10_000), ..Limits::default() };
    runtime().block_on(async {
        let table = lb_table().await;
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let mut plane = start(&table, nowhere, ProxyConfig::default(), limits).await;
        let addr = plane.addr;

        // h2c (or any protocol but websocket) is no upgrade: the origin
        // sees a plain request.
        let r = plane
            .get_with(
                "a.lb.example.com",
                "/",
                "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
            )
            .await;
        let body = text(&r).to_ascii_lowercase();
        assert_eq!(r.status, 200, "{body}");
        assert!(!body.contains("upgrade") && !body.contains("h2c") && !body.contains("http2-settings"), "{body}");

        // A tunnel holds its connection's slot: with one slot, another
        // client waits.
        let mut ws = open_websocket(addr).await;
        let echoed = Instant::now();
        let waiting = tokio::spawn(async move {
            exchange(addr, b"GET / HTTP/1.1\r\nHost: a.lb.example.com\r\nConnection: close\r\n\r\n").await
        });
        tokio::time::sleep(ms(700)).await;
        assert!(!waiting.is_finished(), "answered while the one connection slot was the tunnel's");
        assert_eq!(plane.state.metrics.connections.load(Ordering::Relaxed), 1);
        // A silent tunnel is closed at the idle timeout; then the other client is served.
        let (closed, _) = wait_closed(&mut ws, echoed, ms(1500 + 2500)).await;
        assert_closed_at("a silent WebSocket tunnel", closed, ms(1500));
        let r = waiting.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", text(&r));

        // A tunnel is closed when the host drains, not waited for.
        let mut ws = open_websocket(addr).await;
        let started = Instant::now();
        let shutdown = tokio::spawn(plane.workers.take().unwrap().shutdown());
        let (closed, _) = wait_closed(&mut ws, started, ms(3000)).await;
        assert!(closed.is_some(), "a tunnel outlived the drain's start by 3 s");
        tokio::time::timeout(ms(3000), shutdown).await.expect("the drain waited for a tunnel").unwrap();
    });
}

// ---------------------------------------------------------------- 3. forwarding headers

#[test]
fn clients_cannot_spoof_forwarding_headers() {
    runtime().block_on(async {
        let table = lb_table().await;
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let plane = start(&table, nowhere, ProxyConfig::default(), Limits::default()).await;
        let spoof = "X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 6.6.6.7\r\nForwarded: for=6.6.6.6;proto=https\r\n\
                     X-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 6666\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n\
                     X-Forwarded-Ssl: on\r\nTrue-Client-IP: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.6\r\n";
        let r = plane.get_with("a.lb.example.com", "/", spoof).await;
        let body = text(&r);
        assert_eq!(r.status, 200, "{body}");
        for spoofed in ["6.6.6.", "6666", "evil.example", "https", "x-forwarded-ssl"] {
            assert!(!body.contains(spoofed), "{spoofed} reached the origin:\n{body}");
        }
        let port = plane.addr.port();
        for set in [
            "x-forwarded-for: 127.0.0.1\n".to_owned(),
            "x-real-ip: 127.0.0.1\n".to_owned(),
            "x-forwarded-proto: http\n".to_owned(),
            "x-forwarded-host: a.lb.example.com\n".to_owned(),
            format!("x-forwarded-port: {port}\n"),
            "forwarded: for=127.0.0.1;host=a.lb.example.com;proto=http\n".to_owned(),
        ] {
            assert!(body.contains(&set), "no {set:?} in:\n{body}");
        }
    });
}

/// The host's log, and the snapshot of `table` in a file for `serve --snapshot`.
fn snapshot_file(name: &str, table: &str) -> String {
    let path = scratch(name).join("routes.snap");
    std::fs::write(&path, compile_text(table, Options::default()).unwrap().bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn trusting_every_client_s_forwarded_proto_is_refused_with_its_replacement() {
    let snap = snapshot_file("trust-proto", "{\"Domain\": \"a.example.com\", \"Target\": \"https://o.example\"}\n");
    let Err(why) = Served::run(&["--snapshot", &snap, "--trust-forwarded-proto"], &[]) else {
        panic!("--trust-forwarded-proto was accepted")
    };
    assert!(why.contains("--trusted-proxies"), "{why}");
}

// ---------------------------------------------------------------- 5. what a failed origin tells

#[test]
fn a_failed_origin_is_answered_generically_with_a_request_id_its_details_logged() {
    let rt = runtime();
    let silent = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let down_port = free_port(); // nothing listens there
    let table = format!(
        "{{\"Domain\": \"down.example.com\", \"Target\": \"http://127.0.0.1:{down_port}\"}}\n\
         {{\"Domain\": \"slow.example.com\", \"Target\": \"http://127.0.0.1:{silent_port}\"}}\n"
    );
    let snap = snapshot_file("origin-failures", &table);
    let host = Served::run(&["--snapshot", &snap, "--read-timeout-ms", "500"], &[]).unwrap();
    for (name, port, status) in [("down.example.com", down_port, 502), ("slow.example.com", silent_port, 504)] {
        let (got, head, body) = raw_get(host.port, name, "/");
        assert_eq!(got, status, "{head}\n{body}");
        for leak in ["127.0.0.1", &port.to_string(), "Connect", "origin http"] {
            assert!(!body.contains(leak), "{name}: the answer tells {leak:?}: {body}");
        }
        let id = body
            .split("request id ")
            .nth(1)
            .map(|rest| rest.chars().take_while(char::is_ascii_alphanumeric).collect::<String>())
            .unwrap_or_else(|| panic!("{name}: no request id in {body:?}"));
        assert!(id.len() >= 8, "{id}");
        assert!(head.to_ascii_lowercase().contains(&format!("x-edgeroute-request-id: {id}")), "{head}");
        let log = host.log();
        let line = log.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{id} not in the log:\n{log}"));
        assert!(line.contains(&format!("127.0.0.1:{port}")), "the log line does not name the origin: {line}");
    }
    drop(silent);
}

// ---------------------------------------------------------------- 7. loops

/// The machine's host name, the default `--via-name`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned()
}

#[test]
fn a_request_that_already_passed_this_host_is_a_508_not_a_loop() {
    let rt = runtime();
    let table = rt.block_on(lb_table());
    let port = free_port();
    let table = format!("{table}{{\"Domain\": \"loop.example.com\", \"Target\": \"http://127.0.0.1:{port}\"}}\n");
    let snap = snapshot_file("loops", &table);
    let host = Served::run_at(port, &["--snapshot", &snap], &[]).unwrap();
    let name = hostname();

    // The origin learns which host the request passed.
    let (status, _, body) = raw_get(host.port, "a.lb.example.com", "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("via: 1.1 {name}\n")), "{body}");
    // A request that names this host in its Via already has been here.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", host.port)).unwrap();
    use std::io::{Read as _, Write as _};
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: a.lb.example.com\r\nVia: 1.0 cdn-7, 1.1 {name} (edgeroute)\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 508"), "{answer}");
    // An entry whose origin is the host itself: one pass, then 508.
    let (status, _, body) = raw_get(host.port, "loop.example.com", "/");
    assert_eq!(status, 508, "{body}");
    drop(rt);
}

// ---------------------------------------------------------------- 6. outside --static-root

#[test]
fn static_answers_stay_beneath_the_root_follow_no_link_and_are_regular_files() {
    use std::os::unix::fs::{symlink, OpenOptionsExt as _};
    let dir = scratch("beneath");
    write_sites(&dir);
    let outside = scratch("beneath-outside");
    std::fs::write(outside.join("secret.txt"), "secret outside the root").unwrap();
    let bare = dir.join("sites/bare");
    symlink(outside.join("secret.txt"), bare.join("leak.html")).unwrap();
    symlink(&outside, bare.join("linked")).unwrap();
    symlink("index.html", bare.join("alias.html")).unwrap(); // a link, even one that stays inside
    std::fs::create_dir_all(bare.join("folder.html")).unwrap();
    let fifo = bare.join("fifo.html");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    runtime().block_on(async {
        let plane = start(SITES, Objects::Dir(DirObjects::new(&dir)), ProxyConfig::default(), Limits::default()).await;
        for path in ["/leak.html", "/linked/secret.txt", "/alias.html", "/folder.html", "/fifo.html"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: bare.example.com\r\nConnection: close\r\n\r\n");
            let answer = tokio::time::timeout(Duration::from_secs(5), exchange(plane.addr, request.as_bytes())).await;
            if answer.is_err() {
                // Let a thread blocked in open(2) on the FIFO go, then fail.
                let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
            }
            let r = answer.unwrap_or_else(|_| panic!("{path}: no answer within 5 s")).unwrap();
            assert_eq!((r.status, text(&r).trim()), (404, "not found"), "{path}");
        }
        let r = plane.get("bare.example.com", "/index.html").await;
        assert_eq!((r.status, text(&r).as_str()), (200, "<h1>bare home</h1>"));
    });
}

// ---------------------------------------------------------------- 8. smuggling and malformed framing

/// An origin that records every request it receives whole: method, target,
/// headers, and its body (or how the body failed).
async fn recording_origin() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let mut text = format!("{} {}\n", req.method(), req.uri());
                        for (name, value) in req.headers() {
                            text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
                        }
                        match req.into_body().collect().await {
                            Ok(body) => text.push_str(&format!("body: {:?}\n", body.to_bytes())),
                            Err(e) => text.push_str(&format!("body failed: {e}\n")),
                        }
                        record.lock().unwrap().push(text);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(edgeroute_host::body::full("recorded")))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Sends `raw` on one connection and reads until the host closes it (or 5 s).
async fn send_raw(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(raw).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn ambiguous_framing_never_reaches_an_origin() {
    runtime().block_on(async {
        let (origin, seen) = recording_origin().await;
        let table = format!("{{\"Domain\": \"a.lb.example.com\", \"Target\": \"http://127.0.0.1:{}\"}}\n", origin.port());
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let limits = Limits { header_timeout: ms(1000), ..Limits::default() };
        let plane = start(&table, nowhere, ProxyConfig::default(), limits).await;
        let addr = plane.addr;
        let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a.lb.example.com\r\n\r\n";

        // Content-Length beside Transfer-Encoding: read by the
        // Transfer-Encoding alone (RFC 9112 6.3), the connection closed after
        // it, and forwarded with one framing: the origin sees that request
        // whole, and nothing hidden in its body.
        for (case, raw, path) in [
            (
                "Content-Length with Transfer-Encoding",
                format!("POST /te-cl HTTP/1.1\r\nHost: a.lb.example.com\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
                "POST /te-cl",
            ),
            (
                "Transfer-Encoding with Content-Length",
                "POST /cl-te HTTP/1.1\r\nHost: a.lb.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nhello".to_owned(),
                "POST /cl-te",
            ),
        ] {
            let answer = send_raw(addr, raw.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("connection: close"), "{case}: {answer:?}");
            let seen = std::mem::take(&mut *seen.lock().unwrap());
            assert_eq!(seen.len(), 1, "{case}: {seen:#?}");
            assert!(seen[0].starts_with(path) && seen[0].ends_with("body: b\"\"\n"), "{case}: {seen:#?}");
            assert!(!seen[0].contains("content-length: 6") && !seen[0].contains("content-length: 3"), "{case}: {seen:#?}");
        }

        // Each of these is refused with a 400 (or its connection closed),
        // and nothing of it reaches the origin.
        for (case, raw) in [
            (
                "two different Content-Lengths",
                format!("POST /two-cl HTTP/1.1\r\nHost: a.lb.example.com\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello{smuggled}"),
            ),
            (
                "a list of two Content-Lengths",
                format!("POST /cl-list HTTP/1.1\r\nHost: a.lb.example.com\r\nContent-Length: 5, 40\r\n\r\nhello{smuggled}"),
            ),
            (
                "obs-fold",
                "POST /fold HTTP/1.1\r\nHost: a.lb.example.com\r\nContent-Length: 5\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\nhello".to_owned(),
            ),
            (
                "a Transfer-Encoding other than chunked last",
                "POST /te-gzip HTTP/1.1\r\nHost: a.lb.example.com\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_owned(),
            ),
            (
                "Transfer-Encoding on HTTP/1.0",
                "POST /te-10 HTTP/1.0\r\nHost: a.lb.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_owned(),
            ),
            (
                "a space before the colon",
                "POST /space HTTP/1.1\r\nHost: a.lb.example.com\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello".to_owned(),
            ),
        ] {
            let answer = send_raw(addr, raw.as_bytes()).await;
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
                "{case}: answered {answer:?}"
            );
            let seen = seen.lock().unwrap();
            assert!(seen.is_empty(), "{case}: reached the origin: {seen:#?}");
        }

        // A chunk size past any length: the origin never sees a complete body.
        let answer = send_raw(
            addr,
            b"POST /huge-chunk HTTP/1.1\r\nHost: a.lb.example.com\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
        tokio::time::sleep(ms(300)).await;
        for request in seen.lock().unwrap().iter() {
            assert!(request.contains("body failed"), "a complete request reached the origin: {request}");
        }
        seen.lock().unwrap().clear();

        // Bare LF line ends: one request, reframed with CRLF and one length
        // the origin cannot read otherwise.
        let answer = send_raw(addr, b"POST /bare-lf HTTP/1.1\nHost: a.lb.example.com\nContent-Length: 5\nConnection: close\n\nhello").await;
        assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 400"), "{answer}");
        // Two equal Content-Lengths are one length (RFC 9112 6.3): forwarded once.
        let answer = send_raw(
            addr,
            b"POST /same-cl HTTP/1.1\r\nHost: a.lb.example.com\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let seen = seen.lock().unwrap().clone();
        for request in &seen {
            assert_eq!(request.matches("content-length").count(), 1, "one framing header: {request}");
            assert!(!request.contains("transfer-encoding") && !request.contains("smuggled"), "{request}");
            assert!(request.ends_with("body: b\"hello\"\n"), "{request}");
        }
        assert!(seen.iter().any(|r| r.starts_with("POST /same-cl")), "{seen:#?}");
    });
}

#[test]
fn http2_rapid_reset_is_cut_off_and_the_host_keeps_serving() {
    runtime().block_on(async {
        let (origin, seen) = recording_origin().await;
        let table =
            format!("{{\"Domain\": \"a.lb.example.com\", \"Target\": \"http://127.0.0.1:{}\"}}\n", origin.port());
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let plane = start(&table, nowhere, ProxyConfig::default(), Limits::default()).await;
        let mut stream = TcpStream::connect(plane.addr).await.unwrap();
        let mut burst = PREFACE.to_vec();
        burst.extend(frame(SETTINGS, 0, 0, &[]));
        let block = hpack_get("a.lb.example.com", "/reset");
        const RST_STREAM: u8 = 0x3;
        for n in 0..5_000u32 {
            let id = 2 * n + 1;
            burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
            burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
        }
        let start = Instant::now();
        let _ = stream.write_all(&burst).await;
        let (closed, bytes) = wait_closed(&mut stream, start, ms(5_000)).await;
        assert!(closed.is_some(), "a connection resetting 5,000 streams is still open");
        assert!(frames(&bytes).iter().any(|&(kind, _)| kind == GOAWAY), "no GOAWAY");
        let reached = seen.lock().unwrap().len();
        assert!(reached < 500, "{reached} of the reset requests reached the origin");
        let r = plane.get("a.lb.example.com", "/after").await;
        assert_eq!(r.status, 200, "{}", text(&r));
    });
}

// ---------------------------------------------------------------- 4. connections to origins

#[test]
fn random_subdomains_ride_one_connection_their_certificate_covers_and_no_other() {
    runtime().block_on(async {
        // A load balancer presenting the customer's wildcard certificate.
        let (up, ca, counts) = tls_upstream_counted(&["*.pr-7.example.com"]).await;
        let table = format!(
            "{{\"Domain\": \"*.pr-7.example.com\", \"Target\": \"https://localhost:{port}\"}}\n\
             {{\"Domain\": \"other.example.com\", \"Target\": \"https://localhost:{port}\"}}\n",
            port = up.port()
        );
        let by_host = ProxyConfig {
            extra_roots: vec![ca],
            tls_name: edgeroute_host::proxy::TlsName::RequestHost,
            ..ProxyConfig::default()
        };
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let plane = start(&table, nowhere, by_host, Limits::default()).await;
        // Thirty names never seen before, one after another: each serving
        // thread makes one connection, and its certificate covers them all.
        for n in 0..30 {
            let host = format!("r{n}-{}.pr-7.example.com", n * 7919);
            let r = plane.get(&host, "/").await;
            let body = text(&r);
            assert_eq!(r.status, 200, "{host}: {body}");
            assert!(body.starts_with("tls ok, sni ") && body.ends_with(&format!("host {host}\n")), "{body}");
        }
        let handshakes = counts.handshakes.load(Ordering::Relaxed);
        assert!(handshakes <= 2, "{handshakes} TLS handshakes for 30 hosts one certificate covers");
        // A host that certificate does not cover never rides those
        // connections: it gets a handshake of its own, and is refused.
        let r = plane.get("other.example.com", "/").await;
        assert_eq!(r.status, 502, "{}", text(&r));
        assert!(counts.handshakes.load(Ordering::Relaxed) == handshakes, "the refused handshake did not complete");
        assert!(counts.open.load(Ordering::Relaxed) <= 2);
    });
}

/// A plain upstream that answers after `delay`, counting its open connections.
async fn slow_upstream(delay: Duration) -> (SocketAddr, std::sync::Arc<Counts>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = std::sync::Arc::new(Counts::default());
    let counting = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let counts = counting.clone();
            tokio::spawn(async move {
                counts.open.fetch_add(1, Ordering::Relaxed);
                let service =
                    hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(edgeroute_host::body::full("slow")))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                counts.open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    (addr, counts)
}

#[test]
fn idle_connections_to_origins_are_capped_across_the_host() {
    runtime().block_on(async {
        let (up, counts) = slow_upstream(ms(300)).await;
        let table = format!("{{\"Domain\": \"*.lb.example.com\", \"Target\": \"http://127.0.0.1:{}\"}}\n", up.port());
        let capped = ProxyConfig { max_idle_connections: 4, ..ProxyConfig::default() };
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let plane = start(&table, nowhere, capped, Limits::default()).await;
        let addr = plane.addr;
        // Forty requests at once: forty connections to the origin.
        let requests: Vec<_> = (0..40)
            .map(|n| {
                let request = format!("GET / HTTP/1.1\r\nHost: h{n}.lb.example.com\r\nConnection: close\r\n\r\n");
                tokio::spawn(async move { exchange(addr, request.as_bytes()).await })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.unwrap().unwrap().status, 200);
        }
        // Then at most four stay open, idle, for the next requests.
        let deadline = Instant::now() + Duration::from_secs(5);
        while counts.open.load(Ordering::Relaxed) > 4 && Instant::now() < deadline {
            tokio::time::sleep(ms(50)).await;
        }
        let open = counts.open.load(Ordering::Relaxed);
        assert!(open <= 4, "{open} idle connections to the origin, over a cap of 4");
        assert_eq!(plane.get("again.lb.example.com", "/").await.status, 200);
    });
}

#[test]
fn a_websocket_carrying_traffic_outlives_the_head_and_idle_timeouts() {
    let limits = Limits { header_timeout: ms(800), idle_timeout: ms(1200), ..Limits::default() };
    runtime().block_on(async {
        let table = lb_table().await;
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let plane = start(&table, nowhere, ProxyConfig::default(), limits).await;
        let mut ws = open_websocket(plane.addr).await;
        // A frame each way every 300 ms for 3 s: past both timeouts, never idle.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(ms(300)).await;
            ws.write_all(b"\x81\x04ping").await.expect("the tunnel was closed while carrying traffic");
            let mut echo = [0u8; 6];
            ws.read_exact(&mut echo).await.expect("the tunnel was closed while carrying traffic");
            assert_eq!(&echo, b"\x81\x04ping");
        }
        assert_eq!(plane.state.metrics.closed_count(edgeroute_host::metrics::Closed::Head), 0);
    });
}

#[test]
fn an_http2_client_that_stops_reading_is_closed_at_the_idle_timeout() {
    let dir = scratch("h2-stalled");
    write_sites(&dir);
    let limits = Limits { idle_timeout: ms(1500), ..Limits::default() };
    runtime().block_on(async {
        let plane = start(SITES, Objects::Dir(DirObjects::new(&dir)), ProxyConfig::default(), limits).await;
        let mut stream = TcpStream::connect(plane.addr).await.unwrap();
        let start = Instant::now();
        stream.write_all(PREFACE).await.unwrap();
        // SETTINGS_INITIAL_WINDOW_SIZE = 0: the server may send no DATA at all.
        stream.write_all(&frame(SETTINGS, 0, 0, &[0x00, 0x04, 0, 0, 0, 0])).await.unwrap();
        let block = hpack_get("assets.example.com", "/big.bin");
        stream.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block)).await.unwrap();
        let (closed, bytes) = wait_closed(&mut stream, start, ms(1500 + 2500)).await;
        assert!(frames(&bytes).iter().any(|&(kind, _)| kind == HEADERS), "no answer began");
        assert_closed_at("an HTTP/2 client that never opens its window", closed, ms(1500));
        // Its slot is given back once the stream's task has seen the close.
        let deadline = Instant::now() + Duration::from_secs(5);
        while plane.state.metrics.connections.load(Ordering::Relaxed) > 0 {
            assert!(Instant::now() < deadline, "the connection's slot is still held 5 s after its close");
            tokio::time::sleep(ms(20)).await;
        }
    });
}

#[test]
fn an_upgrade_request_whose_body_never_comes_does_not_hold_its_connection() {
    let limits = Limits { header_timeout: ms(1000), idle_timeout: ms(1500), ..Limits::default() };
    runtime().block_on(async {
        let table = lb_table().await;
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let plane = start(&table, nowhere, ProxyConfig::default(), limits).await;
        let mut ws = TcpStream::connect(plane.addr).await.unwrap();
        let start = Instant::now();
        // The origin answers 101 without reading the body this request announces and never sends.
        ws.write_all(b"GET /ws HTTP/1.1\r\nHost: a.lb.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 10\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
        let (closed, _) = wait_closed(&mut ws, start, ms(8000)).await;
        assert!(closed.is_some(), "still held 8 s later");
        tokio::time::sleep(ms(200)).await;
        assert_eq!(plane.state.metrics.connections.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn an_http2_answer_waiting_on_its_origin_is_not_a_client_that_stopped_reading() {
    use http_body_util::BodyExt as _;
    let limits = Limits { idle_timeout: ms(1000), ..Limits::default() };
    runtime().block_on(async {
        let table = lb_table().await;
        let nowhere = Objects::Dir(DirObjects::new("/nonexistent"));
        let patient = ProxyConfig { read_timeout: ms(5000), ..ProxyConfig::default() };
        let plane = start(&table, nowhere, patient, limits).await;
        let stream = TcpStream::connect(plane.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        // The origin sends a part, is silent for 3 s (past the idle timeout,
        // within its read timeout), then sends the rest: a stream of events.
        let request = hyper::Request::get("http://a.lb.example.com/stall")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.expect("the answer was cut").to_bytes();
        assert_eq!(&body[..], b"first part\nsecond part\n");
    });
}
