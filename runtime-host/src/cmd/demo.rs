//! The demo (`edgeroute-host demo`, the README's first command): the demo
//! table's static sites from `snapshots/demo-sites/`, its load balancer
//! `*.pr-42.previews.example.com` answered by a small built-in upstream on
//! 127.0.0.1:9042, and the requests to try. `--smoke` makes those requests
//! itself and checks every answer, so the demo cannot rot: CI runs it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use edgeroute_host::body::{self, Body};
use edgeroute_host::probe::exchange;
use edgeroute_host::HostState;

use super::{load_router, shutdown_signal, start, static_objects};
use crate::flags::DemoArgs;

/// Where the demo table's `*.pr-42.previews.example.com` points.
const UPSTREAM: &str = "127.0.0.1:9042";

/// The built-in upstream: answers every request with what it received, so
/// that the proxy's work (Host kept, X-Forwarded-* added) is visible.
async fn upstream_server(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                let header =
                    |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
                let text = format!(
                    "hello from the demo upstream (a load balancer would be here)\n{} {}\nhost: {}\nx-forwarded-for: {}\nx-forwarded-proto: {}\nx-forwarded-host: {}\n",
                    req.method(),
                    req.uri(),
                    header("host"),
                    header("x-forwarded-for"),
                    header("x-forwarded-proto"),
                    header("x-forwarded-host"),
                );
                let mut response = Response::new(body::full(text));
                response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/plain"));
                Ok::<Response<Body>, std::convert::Infallible>(response)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One demo request and what its answer must be.
#[derive(Debug)]
struct Check {
    pub what: &'static str,
    pub host: &'static str,
    pub path: &'static str,
    /// Extra request headers, `Name: value`.
    pub headers: &'static [&'static str],
    pub head: bool,
    pub status: u16,
    /// Text the body must contain.
    pub body: &'static str,
    /// A response header (lowercase name) and text its value must contain.
    pub header: Option<(&'static str, &'static str)>,
}

const fn check(what: &'static str, host: &'static str, path: &'static str, status: u16, body: &'static str) -> Check {
    Check { what, host, path, headers: &[], head: false, status, body, header: None }
}

/// The demo's requests, in the order they are shown.
fn checks() -> Vec<Check> {
    vec![
        Check {
            header: Some(("content-type", "text/html")),
            ..check("a static site's index page", "env-123.example.com", "/", 200, "env-123")
        },
        check("one of its assets", "env-123.example.com", "/app.3f2a9c1b.js", 200, "env-123"),
        Check {
            header: Some(("location", "/about/")),
            ..check("a folder without its slash: redirect", "env-123.example.com", "/about", 301, "")
        },
        check("a page that is not there: the site's 404.html", "env-123.example.com", "/missing", 404, "not here"),
        check("a single-page app: its Fallback", "env-456.example.com", "/deep/link", 200, "single-page app"),
        check("a site without an Assets list: the bucket decides", "docs.example.com", "/guide.html", 200, "guide"),
        check(
            "…and its 404.html when the bucket has no such object",
            "docs.example.com",
            "/nope.html",
            404,
            "no such page",
        ),
        check(
            "a load balancer behind a wildcard: the built-in upstream",
            "web.pr-42.previews.example.com",
            "/api/hello?x=1",
            200,
            "host: web.pr-42.previews.example.com",
        ),
        check("an exact entry beats the wildcard", "pinned.pr-42.previews.example.com", "/", 200, "pinned"),
        check("an IDN site, percent-encoded path", "xn--bcher-kva.example.com", "/%C3%BCber-uns.html", 200, "Über uns"),
        check("no entry", "unknown.example.com", "/", 404, "not found"),
        check("a hostile Host", "evil.example.com/..", "/", 400, "host_bad_char"),
        check("a hostile path", "env-123.example.com", "/a/../../etc/passwd", 400, "path_dot_segment"),
        Check { headers: &["If-None-Match: *"], ..check("a conditional GET", "env-123.example.com", "/", 304, "") },
        Check {
            headers: &["Range: bytes=0-4"],
            header: Some(("content-range", "bytes 0-4/")),
            ..check("a byte range", "env-123.example.com", "/", 206, "<!doc")
        },
    ]
}

impl Check {
    /// The curl line that makes this request.
    pub fn curl(&self, addr: SocketAddr) -> String {
        let mut line = String::from("curl -si");
        if self.path.contains("/..") {
            line.push_str(" --path-as-is");
        }
        if self.head {
            line.push_str(" -I");
        }
        let _ = write!(line, " -H 'Host: {}'", self.host);
        for h in self.headers {
            let _ = write!(line, " -H '{h}'");
        }
        let _ = write!(line, " 'http://{addr}{}'", self.path);
        line
    }

    /// Makes the request and says what is wrong with the answer, if anything.
    pub async fn run(&self, addr: SocketAddr) -> Result<(), String> {
        let mut request = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            if self.head { "HEAD" } else { "GET" },
            self.path,
            self.host
        );
        for h in self.headers {
            let _ = write!(request, "{h}\r\n");
        }
        request.push_str("\r\n");
        let answer = exchange(addr, request.as_bytes()).await.map_err(|e| format!("{}: {e}", self.what))?;
        let body = String::from_utf8_lossy(&answer.body);
        let mut wrong = Vec::new();
        if answer.status != self.status {
            wrong.push(format!("status {} (want {})", answer.status, self.status));
        }
        if !body.contains(self.body) {
            wrong.push(format!("body without {:?}: {:?}", self.body, body.chars().take(200).collect::<String>()));
        }
        if let Some((name, want)) = self.header {
            let value = answer.header(name).unwrap_or_default();
            if !value.contains(want) {
                wrong.push(format!("{name}: {value:?} (want {want:?})"));
            }
        }
        if answer.header("x-edgeroute-snapshot").is_none_or(|v| v.len() != edgeroute_edge::SnapshotId::SHORT_HEX_LEN) {
            wrong.push("no x-edgeroute-snapshot header".to_owned());
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("{} ({} {}): {}", self.what, self.host, self.path, wrong.join("; ")))
        }
    }
}

/// Runs every check against the router at `addr` and the metrics at
/// `admin`; returns what failed.
async fn smoke(addr: SocketAddr, admin: SocketAddr) -> Vec<String> {
    let mut failed = Vec::new();
    for check in checks() {
        match check.run(addr).await {
            Ok(()) => println!("ok    {:<56} {} {}", check.what, check.host, check.path),
            Err(e) => {
                println!("FAIL  {e}");
                failed.push(e);
            }
        }
    }
    match exchange(admin, b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").await {
        Ok(answer)
            if answer.status == 200
                && String::from_utf8_lossy(&answer.body)
                    .contains("edgeroute_requests_total{kind=\"static\",status=\"200\"}") =>
        {
            println!("ok    {:<56} {admin}/metrics", "the admin listener's metrics");
        }
        Ok(answer) => {
            failed.push(format!("metrics: status {} {:?}", answer.status, String::from_utf8_lossy(&answer.body)))
        }
        Err(e) => failed.push(format!("metrics: {e}")),
    }
    failed
}

/// `edgeroute-host demo`: the built-in upstream and the router on the demo
/// snapshot and sites; prints the requests to try, or with `--smoke` makes
/// them, checks every answer and exits.
pub fn run(args: &DemoArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    runtime.block_on(async {
        let mut origins = args.origins.clone();
        origins.static_root.get_or_insert_with(|| PathBuf::from("snapshots/demo-sites"));
        if !args.snapshot.exists() {
            anyhow::bail!("there is no demo snapshot at {}: scripts/demo.sh compiles it", args.snapshot.display());
        }
        let router = load_router(&args.snapshot)?;
        let state = HostState::leak(router, std::time::Duration::MAX);
        let upstream = tokio::net::TcpListener::bind(UPSTREAM)
            .await
            .with_context(|| format!("cannot start the demo upstream on {UPSTREAM}"))?;
        tokio::spawn(upstream_server(upstream));
        // Static sites come from the directory backend; AWS is never asked.
        let objects = static_objects(&origins, None, &Default::default())?;
        let workers = start(state, &args.listener, &origins, objects).await?;
        let addr = workers.local_addr();
        let admin = args.listener.admin_listen;
        if args.smoke {
            let failed = smoke(addr, admin).await;
            workers.shutdown().await;
            if !failed.is_empty() {
                anyhow::bail!("{} demo check(s) failed:\n  {}", failed.len(), failed.join("\n  "));
            }
            println!("the demo answers as it should");
            return Ok(());
        }
        println!("edgeroute is routing the demo table on http://{addr} (Ctrl-C stops it). Try:\n");
        for check in checks() {
            println!("  # {}\n  {}\n", check.what, check.curl(addr));
        }
        println!("  # the metrics\n  curl -s http://{admin}/metrics\n");
        shutdown_signal().await;
        workers.shutdown().await;
        Ok(())
    })
}
