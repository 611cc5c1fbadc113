//! The demo (`edgeroute-host demo`, the README's first command): the demo
//! table's static sites from `snapshots/demo-sites/`, its load balancer
//! `*.pr-42.previews.example.com` answered by a small built-in upstream on
//! 127.0.0.1:9042, and the requests to try; over https too, on
//! 127.0.0.1:8443, with a CA and a certificate it makes at its start. `--smoke` makes those requests
//! itself and checks every answer, so the demo cannot rot: CI runs it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

/// The demo's https listener, unless `--tls-listen` says otherwise.
const TLS_LISTEN: &str = "127.0.0.1:8443";

/// The names of the demo's certificate: every entry of the demo table.
const DEMO_NAMES: [&str; 4] =
    ["*.example.com", "*.previews.example.com", "*.pr-42.previews.example.com", "*.xn--mnchen-3ya.example.com"];

/// Makes a CA and a certificate for [`DEMO_NAMES`] in `folder` (made
/// again at every start: nothing to expire, nothing to keep): `ca.pem`,
/// for clients, and `demo.pem`, the certificate and its key. Returns
/// their paths.
fn make_certificates(folder: &Path) -> Result<(PathBuf, PathBuf)> {
    use edgeroute_host::tls::authority::{LocalAuthority, Validity};
    std::fs::create_dir_all(folder).with_context(|| format!("cannot make {}", folder.display()))?;
    let ca = LocalAuthority::new("edgeroute demo CA").context("cannot make the demo CA")?;
    let pem = ca.issue(&DEMO_NAMES, Validity::current()).context("cannot make the demo certificate")?;
    let (ca_file, cert_file) = (folder.join("ca.pem"), folder.join("demo.pem"));
    std::fs::write(&ca_file, &ca.certificate_pem).with_context(|| format!("cannot write {}", ca_file.display()))?;
    // The key is for this process only (0600), as the docs advise for any key.
    let write_key = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&cert_file)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(pem.as_bytes())
    };
    write_key().with_context(|| format!("cannot write {}", cert_file.display()))?;
    Ok((ca_file, cert_file))
}

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

/// The https checks, against the router's TLS listener at `addr` and the
/// demo CA in `ca`: returns what failed.
async fn smoke_https(addr: SocketAddr, ca: &Path) -> Vec<String> {
    let ca = match std::fs::read(ca) {
        Ok(ca) => ca,
        Err(e) => return vec![format!("cannot read {}: {e}", ca.display())],
    };
    let checks = [
        ("a static site over https", "env-123.example.com", "env-123.example.com", 200, "env-123"),
        (
            "the load balancer over https: X-Forwarded-Proto",
            "web.pr-42.previews.example.com",
            "web.pr-42.previews.example.com",
            200,
            "x-forwarded-proto: https",
        ),
        ("a Host of another entry than the SNI: 421", "env-123.example.com", "docs.example.com", 421, "misdirected"),
    ];
    let mut failed = Vec::new();
    for (what, sni, host, status, body) in checks {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let outcome = match edgeroute_host::probe::exchange_tls(addr, sni, &ca, request.as_bytes()).await {
            Ok(answer) if answer.status == status && String::from_utf8_lossy(&answer.body).contains(body) => Ok(()),
            Ok(answer) => Err(format!(
                "{what}: status {} (want {status}), body {:?}",
                answer.status,
                String::from_utf8_lossy(&answer.body).chars().take(200).collect::<String>()
            )),
            Err(e) => Err(format!("{what}: {e}")),
        };
        match outcome {
            Ok(()) => println!("ok    {what:<56} https {sni} Host: {host}"),
            Err(e) => {
                println!("FAIL  {e}");
                failed.push(e);
            }
        }
    }
    failed
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
        // https too, with a CA of the demo's own, unless told otherwise.
        let mut listener = args.listener.clone();
        let mut ca = None;
        if listener.tls.tls_listen.is_none() {
            let folder = args.snapshot.parent().unwrap_or(Path::new(".")).join("tls");
            let (ca_file, cert_file) = make_certificates(&folder)?;
            listener.tls.tls_listen = Some(TLS_LISTEN.parse().expect("an address"));
            listener.tls.tls_certs = vec![cert_file];
            ca = Some(ca_file);
        }
        let workers = start(state, &listener, &origins, objects).await?;
        let addr = workers.local_addr();
        let https = ca.as_ref().and_then(|ca| Some((*workers.local_addrs().get(1)?, ca.clone())));
        let admin = listener.admin_listen;
        if args.smoke {
            let mut failed = smoke(addr, admin).await;
            if let Some((https, ca)) = &https {
                failed.extend(smoke_https(*https, ca).await);
            }
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
        if let Some((https, ca)) = &https {
            let port = https.port();
            println!("and on https://{https} with a certificate of its own CA (HTTP/2 where curl has it). Try:\n");
            for (what, host) in [
                ("a static site over https", "env-123.example.com"),
                ("the load balancer: X-Forwarded-Proto is https", "web.pr-42.previews.example.com"),
            ] {
                println!(
                    "  # {what}\n  curl -si --cacert {} --resolve {host}:{port}:{} https://{host}:{port}/\n",
                    ca.display(),
                    https.ip()
                );
            }
            println!(
                "  # a Host of another entry than the name the connection was opened for: 421\n  curl -si --cacert {} --resolve env-123.example.com:{port}:{} -H 'Host: docs.example.com' https://env-123.example.com:{port}/\n",
                ca.display(),
                https.ip()
            );
        }
        println!("  # the metrics\n  curl -s http://{admin}/metrics\n");
        shutdown_signal().await;
        workers.shutdown().await;
        Ok(())
    })
}
