//! `edgeroute-host serve --tls-listen`: https with real clients (curl over
//! HTTP/1.1 and HTTP/2, `openssl s_client`), the certificate chosen by SNI,
//! the 421 rule, `--redirect-https`, certificates replaced under load, bad
//! files refused one by one, and the handshake's deadlines and metrics.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeroute_compiler::Options;
use edgeroute_host::tls::authority::{LocalAuthority, Validity};
use edgeroute_tests::compile_text;

use super::serve::{free_port, scratch, sites, Served};

/// An origin that answers every request with its head, so that a test sees
/// what the host sent.
fn echo_origin() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", head.len());
                let _ = stream.write_all(answer.as_bytes());
                let _ = stream.write_all(&head);
            });
        }
    });
    port
}

/// A host serving https with certificates in a folder of its own.
struct Https {
    served: Served,
    tls_port: u16,
    folder: PathBuf,
    ca_file: PathBuf,
    ca: LocalAuthority,
}

/// The test table: two static sites (`www`, `docs`), a wildcard load
/// balancer (`*.previews.example.com`) on the echo origin, and a wildcard
/// static site with an Assets list (`*.sites.example.com`: its missing
/// pages name no entry).
fn table(origin: u16) -> String {
    format!(
        "{{\"Domain\":\"www.example.com\",\"Target\":\"s3://b-1/site\"}}\n\
         {{\"Domain\":\"docs.example.com\",\"Target\":\"s3://b-2/site\"}}\n\
         {{\"Domain\":\"*.previews.example.com\",\"Target\":\"http://127.0.0.1:{origin}\"}}\n\
         {{\"Domain\":\"*.sites.example.com\",\"Target\":\"s3://b-3/site\",\"Assets\":[\"index.html\"]}}\n"
    )
}

impl Https {
    /// Serves the test table with `certs` (file name → names) in a folder,
    /// and `extra` flags.
    fn start(name: &str, certs: &[(&str, &[&str])], extra: &[&str]) -> Https {
        Https::try_start(name, certs, extra).unwrap()
    }

    /// [`Https::start`], or the host's log if it does not start; `FOLDER/`
    /// in `extra` stands for the certificates' folder.
    fn try_start(name: &str, certs: &[(&str, &[&str])], extra: &[&str]) -> Result<Https, String> {
        Https::try_start_with(name, extra, |folder, ca| {
            for (file, names) in certs {
                std::fs::write(folder.join(file), ca.issue(names, Validity::current()).unwrap()).unwrap();
            }
        })
    }

    /// [`Https::try_start`] with the folder filled by `fill`.
    fn try_start_with(
        name: &str,
        extra: &[&str],
        fill: impl FnOnce(&std::path::Path, &LocalAuthority),
    ) -> Result<Https, String> {
        let dir = scratch(name);
        let folder = dir.join("certs");
        std::fs::create_dir_all(&folder).unwrap();
        let ca = LocalAuthority::new("edgeroute test CA").unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca.certificate_pem).unwrap();
        fill(&folder, &ca);
        let extra: Vec<String> =
            extra.iter().map(|a| a.replace("FOLDER/", &format!("{}/", folder.display()))).collect();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let snapshot = dir.join("routes.snap");
        std::fs::write(&snapshot, compile_text(&table(echo_origin()), Options::default()).unwrap().bytes).unwrap();
        let tls_port = free_port();
        let (sites, tls_listen) = (sites(), format!("127.0.0.1:{tls_port}"));
        let mut args = vec!["--snapshot", snapshot.to_str().unwrap(), "--static-root", sites.to_str().unwrap()];
        args.extend(["--tls-listen", &tls_listen, "--tls-certs", folder.to_str().unwrap()]);
        args.extend(&extra);
        let served = Served::run(&args, &[])?;
        Ok(Https { served, tls_port, folder, ca_file, ca })
    }

    /// `curl` over https to `https://{sni}:PORT/` (the name resolved to
    /// this host) with `extra` arguments: the status, the HTTP version and
    /// the body; `Err` with curl's error.
    fn curl(&self, sni: &str, extra: &[&str]) -> Result<(u16, String, String), String> {
        self.curl_path(sni, "/", extra)
    }

    /// [`Https::curl`] of `path`.
    fn curl_path(&self, sni: &str, path: &str, extra: &[&str]) -> Result<(u16, String, String), String> {
        let resolve = format!("{sni}:{}:127.0.0.1", self.tls_port);
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert", self.ca_file.to_str().unwrap(), "--resolve", &resolve])
            .args(["-w", "\n%{http_code} %{http_version}"])
            .args(extra)
            .arg(format!("https://{sni}:{}{path}", self.tls_port))
            .output()
            .expect("curl runs (scripts/setup.sh checks it is there)");
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, tail) = text.rsplit_once('\n').unwrap();
        let (status, version) = tail.split_once(' ').unwrap();
        Ok((status.parse().unwrap(), version.to_owned(), body.to_owned()))
    }

    /// `openssl s_client` with `-servername sni` (none: `-noservername`) and
    /// `extra` arguments: the subject of the certificate served, or `Err`
    /// with what openssl said.
    fn subject(&self, sni: Option<&str>, extra: &[&str]) -> Result<String, String> {
        let mut command = Command::new("openssl");
        command.args(["s_client", "-connect", &format!("127.0.0.1:{}", self.tls_port)]);
        command.args(["-CAfile", self.ca_file.to_str().unwrap(), "-verify_return_error"]);
        match sni {
            Some(name) => command.args(["-servername", name]),
            None => command.arg("-noservername"),
        };
        let output = command
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("openssl runs (scripts/setup.sh checks it is there)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        match text.lines().find_map(|l| l.strip_prefix("subject=")) {
            Some(subject) if output.status.success() => Ok(subject.trim().to_owned()),
            _ => Err(format!("{}{}", String::from_utf8_lossy(&output.stderr), text)),
        }
    }

    /// The subject alternative names of the certificate served for `sni`,
    /// as `openssl x509 -ext subjectAltName` prints them (empty if none).
    fn served_names(&self, sni: &str) -> String {
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{} -servername {sni} </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName",
                self.tls_port
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Writes `pem` over `file` of the folder (renamed over it, whole).
    fn replace(&self, file: &str, pem: &str) {
        let tmp = self.folder.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, self.folder.join(file)).unwrap();
    }

    fn metric(&self, name: &str) -> f64 {
        self.served.metric(name)
    }
}

/// The names of the test certificates.
const WWW: &[&str] = &["www.example.com", "docs.example.com"];
const PREVIEWS: &[&str] = &["*.previews.example.com"];

#[test]
fn https_is_served_over_http1_and_http2_and_origins_are_told_so() {
    let host = Https::start("https-basics", &[("www.pem", WWW), ("previews.pem", PREVIEWS)], &[]);
    let (status, version, body) = host.curl("www.example.com", &["--http1.1"]).unwrap();
    assert_eq!((status, version.as_str(), body.trim()), (200, "1.1", "site b-1"));
    let (status, version, body) = host.curl("www.example.com", &["--http2"]).unwrap();
    assert_eq!((status, version.as_str(), body.trim()), (200, "2", "site b-1"), "ALPN h2");
    // The origin hears of https, however the client claims otherwise.
    for http in ["--http1.1", "--http2"] {
        let (status, _, head) = host
            .curl("pr-1.previews.example.com", &[http, "-H", "X-Forwarded-Proto: http", "-H", "Forwarded: proto=http"])
            .unwrap();
        let head = head.to_ascii_lowercase();
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("x-forwarded-proto: https\r\n"), "{head}");
        assert!(head.contains(";proto=https"), "{head}");
        assert!(head.contains(&format!("x-forwarded-port: {}\r\n", host.tls_port)), "{head}");
        assert!(!head.contains("proto: http\r\n") && !head.contains("proto=http;"), "{head}");
    }
    // The plain listener beside it still speaks plain HTTP.
    let (_, body) = host.served.get("www.example.com");
    assert_eq!(body, "site b-1");
    // Counted: handshakes by version, the certificates and their expiry.
    assert!(host.metric("edgeroute_tls_handshakes_total{result=\"ok\",version=\"TLSv1.3\"}") >= 4.0);
    host.subject(Some("www.example.com"), &["-tls1_2"]).unwrap();
    assert_eq!(host.metric("edgeroute_tls_handshakes_total{result=\"ok\",version=\"TLSv1.2\"}"), 1.0);
    assert_eq!(host.metric("edgeroute_tls_certificates"), 2.0);
    // A client that comes back resumes its session.
    host.subject(Some("www.example.com"), &["-tls1_2", "-reconnect"]).unwrap();
    assert!(host.metric("edgeroute_tls_handshakes_total{result=\"resumed\",version=\"TLSv1.2\"}") >= 1.0);
    let www = host.folder.join("www.pem");
    let days = host.metric(&format!(
        "edgeroute_tls_certificate_expiry_days{{file=\"{}\",name=\"docs.example.com\"}}",
        www.display()
    ));
    assert!(days > 300.0, "{days}");
}

#[test]
fn the_certificate_is_chosen_by_sni_as_rfc_6125_says() {
    let certs: &[(&str, &[&str])] = &[
        ("www.pem", WWW),
        ("previews.pem", PREVIEWS),
        ("exact.pem", &["pinned.previews.example.com"]),
        ("fallback.pem", &["fallback.example.net"]),
    ];
    let host = Https::start("sni-choice", certs, &[]);
    let subject = |sni: Option<&str>| host.subject(sni, &[]);
    assert_eq!(subject(Some("www.example.com")).unwrap(), "CN = www.example.com");
    assert_eq!(subject(Some("WWW.Example.COM")).unwrap(), "CN = www.example.com", "names are case-insensitive");
    assert_eq!(subject(Some("a.previews.example.com")).unwrap(), "CN = *.previews.example.com");
    assert_eq!(subject(Some("pinned.previews.example.com")).unwrap(), "CN = pinned.previews.example.com");
    for unmatched in [Some("a.b.previews.example.com"), Some("previews.example.com"), Some("nothing.test"), None] {
        let refused = subject(unmatched).unwrap_err();
        assert!(refused.contains("unrecognized name"), "{unmatched:?}: {refused}");
    }
    assert_eq!(host.metric("edgeroute_tls_handshakes_total{result=\"no_certificate\",version=\"none\"}"), 4.0);
    drop(host);

    let host = Https::start("sni-choice-default", certs, &["--tls-default-cert", "FOLDER/fallback.pem"]);
    for unmatched in [Some("a.b.previews.example.com"), Some("nothing.test"), None] {
        assert_eq!(host.subject(unmatched, &[]).unwrap(), "CN = fallback.example.net", "{unmatched:?}");
    }
    assert_eq!(host.subject(Some("a.previews.example.com"), &[]).unwrap(), "CN = *.previews.example.com");
}

#[test]
fn a_host_of_another_entry_than_the_sni_is_misdirected() {
    let certs: &[(&str, &[&str])] = &[
        ("www.pem", WWW),
        ("previews.pem", PREVIEWS),
        ("stray.pem", &["stray.example.com"]),
        ("sites.pem", &["*.sites.example.com"]),
    ];
    let host = Https::start("misdirected", certs, &[]);
    // One entry, coalesced: its pages and its missing pages alike (a missing
    // page names no entry, whichever name asks).
    let on =
        |sni: &str, h: &str, path: &str| host.curl_path(sni, path, &["--http2", "-H", &format!("Host: {h}")]).unwrap();
    let (status, _, body) = on("a.sites.example.com", "b.sites.example.com", "/");
    assert_eq!((status, body.trim()), (200, "site b-3"));
    assert_eq!(on("a.sites.example.com", "b.sites.example.com", "/missing").0, 404);
    assert_eq!(on("www.example.com", "b.sites.example.com", "/").0, 421);
    assert_eq!(on("a.sites.example.com", "www.example.com", "/missing").0, 421);
    let with_host = |sni: &str, h: &str| host.curl(sni, &["--http2", "-H", &format!("Host: {h}")]).unwrap();
    // Another entry: 421; the same wildcard entry (HTTP/2 coalescing): served.
    let (status, _, body) = with_host("www.example.com", "docs.example.com");
    assert_eq!((status, body.contains("misdirected")), (421, true), "{body}");
    assert_eq!(with_host("a.previews.example.com", "b.previews.example.com").0, 200);
    assert_eq!(with_host("www.example.com", "WWW.example.com.:443").0, 200, "the same name, spelled otherwise");
    // An SNI name with no entry: 421, unless the Host has none either (then 404).
    assert_eq!(with_host("stray.example.com", "www.example.com").0, 421);
    assert_eq!(with_host("stray.example.com", "nowhere.example.com").0, 404);
    assert_eq!(with_host("www.example.com", "nowhere.example.com").0, 421);
    assert!(host.metric("edgeroute_requests_total{kind=\"misdirected\",status=\"421\"}") >= 5.0);
    drop(host);

    let host = Https::start("misdirected-allowed", certs, &["--allow-sni-mismatch"]);
    let (status, _, body) = host.curl("www.example.com", &["-H", "Host: docs.example.com"]).unwrap();
    assert_eq!((status, body.trim()), (200, "site b-2"));
}

#[test]
fn plain_requests_are_redirected_to_https_unless_a_trusted_proxy_says_https() {
    let certs: &[(&str, &[&str])] = &[("www.pem", WWW), ("previews.pem", PREVIEWS)];
    let host = Https::start("redirect", certs, &["--redirect-https", "--trusted-proxies", "127.0.0.1"]);
    let port = host.served.port;
    let curl = |extra: &[&str]| {
        let output = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
            .args(extra)
            .arg(format!("http://127.0.0.1:{port}/a/b?c=d"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let tls = host.tls_port;
    assert_eq!(
        curl(&["-H", "Host: www.example.com"]),
        format!("308 https://www.example.com:{tls}/a/b?c=d"),
        "to the TLS listener's port, path and query kept"
    );
    let with_port = format!("Host: www.example.com:{port}");
    assert_eq!(curl(&["-X", "POST", "-H", &with_port]).split(' ').next(), Some("308"));
    // A trusted proxy that terminated TLS itself is served; one that did not is redirected.
    let served = curl(&["-H", "Host: www.example.com", "-H", "X-Forwarded-Proto: https"]);
    assert!(served.starts_with("404 ") || served.starts_with("200 "), "{served}");
    assert!(curl(&["-H", "Host: www.example.com", "-H", "X-Forwarded-Proto: http"]).starts_with("308 "));
    // The nearest proxy's word counts: the last of a list, else Forwarded's proto.
    assert!(!curl(&["-H", "Host: www.example.com", "-H", "X-Forwarded-Proto: http, https"]).starts_with("308 "));
    assert!(curl(&["-H", "Host: www.example.com", "-H", "X-Forwarded-Proto: https, http"]).starts_with("308 "));
    let forwarded = "Forwarded: for=192.0.2.1;proto=http, for=192.0.2.2;proto=https";
    assert!(!curl(&["-H", "Host: www.example.com", "-H", forwarded]).starts_with("308 "));
    // No entry: no redirect, the 404 as over https.
    assert!(curl(&["-H", "Host: nowhere.example.com"]).starts_with("404 "));
    // Over https: never redirected.
    assert_eq!(host.curl("www.example.com", &[]).unwrap().0, 200);
    drop(host);

    // A client that is not a trusted proxy cannot claim https to skip it.
    let host = Https::start("redirect-untrusted", certs, &["--redirect-https=443"]);
    let output = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .args(["-H", "Host: www.example.com", "-H", "X-Forwarded-Proto: https"])
        .arg(format!("http://127.0.0.1:{}/x", host.served.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "308 https://www.example.com/x", "443 is left out");
}

/// An HTTP/2 connection over TLS to `addr` for `sni`, trusting `ca_pem`.
async fn h2_connection(
    addr: std::net::SocketAddr,
    sni: &str,
    ca_pem: &[u8],
) -> Result<hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(ca.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

#[test]
fn a_certificate_replaced_under_load_fails_no_request() {
    let host = Https::start("replaced-under-load", &[("www.pem", WWW), ("previews.pem", PREVIEWS)], &[]);
    let ca = std::fs::read(&host.ca_file).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", host.tls_port).parse().unwrap();
    let (stop, done, failures) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(Vec::new())));
    // One HTTP/2 connection kept open across every replacement, a request
    // on it every 100 ms: any that fails, or a connection lost, fails it.
    let kept_answers = Arc::new(AtomicUsize::new(0));
    let kept = {
        let (stop, answers, ca) = (stop.clone(), kept_answers.clone(), ca.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut sender = h2_connection(addr, "www.example.com", &ca).await?;
                while !stop.load(Ordering::Relaxed) {
                    let request = hyper::Request::get(format!("https://www.example.com:{}/", addr.port()))
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap();
                    let answer = sender.send_request(request).await.map_err(|e| format!("kept connection: {e}"))?;
                    if answer.status() != 200 {
                        return Err(format!("kept connection: status {}", answer.status()));
                    }
                    answers.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(())
            })
        })
    };
    while kept_answers.load(Ordering::Relaxed) == 0 {
        assert!(!kept.is_finished(), "the kept connection failed: {:?}", kept.join());
        std::thread::sleep(Duration::from_millis(20));
    }
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, done, failures, ca) = (stop.clone(), done.clone(), failures.clone(), ca.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let request = b"GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n";
                    match rt.block_on(edgeroute_host::probe::exchange_tls(addr, "www.example.com", &ca, request)) {
                        Ok(answer) if answer.status == 200 => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(answer) => failures.lock().unwrap().push(format!("status {}", answer.status)),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    host.subject(Some("www.example.com"), &[]).unwrap();
    let before = host.metric("edgeroute_tls_handshakes_total{result=\"ok\",version=\"TLSv1.3\"}");
    for round in 0..4 {
        // A new certificate (a new key) for the same names, and one more name each round.
        let extra = format!("round-{round}.example.com");
        let mut names = WWW.to_vec();
        names.push(&extra);
        let pem = host.ca.issue(&names, Validity::current()).unwrap();
        if round == 2 {
            // Written in place, in two halves with a pause: the half is
            // refused, and the last good certificate serves meanwhile.
            let refusals = host.metric("edgeroute_tls_certificates_refused_total{reason=\"not_a_chain_and_key\"}");
            let (first, second) = pem.split_at(pem.len() / 2);
            let mut file = std::fs::File::create(host.folder.join("www.pem")).unwrap();
            file.write_all(first.as_bytes()).unwrap();
            file.sync_all().unwrap();
            host.served.wait_until("the half-written file refused", 20, |h| {
                h.metric("edgeroute_tls_certificates_refused_total{reason=\"not_a_chain_and_key\"}") > refusals
            });
            file.write_all(second.as_bytes()).unwrap();
        } else {
            host.replace("www.pem", &pem);
        }
        let want = format!("DNS:{extra}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if host.served_names("www.example.com").contains(&want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the new certificate never served:\n{}",
                host.served.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A request on the kept connection after the last replacement.
    let answered = kept_answers.load(Ordering::Relaxed);
    while kept_answers.load(Ordering::Relaxed) <= answered + 1 && !kept.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    kept.join().unwrap().unwrap();
    let failures = failures.lock().unwrap();
    let done = done.load(Ordering::Relaxed);
    // (On a failure, what the host counted says which of its limits closed what.)
    let counted = |text: String| -> String {
        text.lines()
            .filter(|l| {
                l.starts_with("edgeroute_connections_closed_total") || l.starts_with("edgeroute_tls_handshakes_total")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}\n{}",
        failures.len(),
        done + failures.len(),
        &failures[..failures.len().min(5)],
        counted(host.served.admin_get("/metrics").1)
    );
    assert!(done > 20, "only {done} requests made");
    let handshakes = host.metric("edgeroute_tls_handshakes_total{result=\"ok\",version=\"TLSv1.3\"}") - before;
    assert!(handshakes >= done as f64, "{handshakes} handshakes for {done} connections");
    assert_eq!(host.metric("edgeroute_tls_certificates_refused_total{reason=\"bad_certificate\"}"), 0.0);
}

#[test]
fn bad_certificate_files_are_refused_one_by_one_and_names_keep_their_last_good() {
    let host = Https::start("bad-files", &[("www.pem", WWW), ("previews.pem", PREVIEWS)], &[]);
    let good = host.subject(Some("www.example.com"), &[]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let (cert, _) = host.ca.issue_with(WWW, Validity::current(), &key).unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let past = Validity { not_before: (2001, 1, 1), not_after: (2002, 1, 1) };
    let future = Validity { not_before: (2090, 1, 1), not_after: (2091, 1, 1) };
    let encrypted = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-v2", "aes256", "-passout", "pass:secret"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut openssl| {
            openssl.stdin.take().unwrap().write_all(key.serialize_pem().as_bytes())?;
            openssl.wait_with_output()
        })
        .unwrap();
    let encrypted = String::from_utf8(encrypted.stdout).unwrap();
    assert!(encrypted.contains("ENCRYPTED PRIVATE KEY"), "{encrypted}");
    let bad: [(&str, String, &str, &str); 8] = [
        ("garbage", "this is not PEM at all\n".into(), "not_a_chain_and_key", "no certificate"),
        ("no key", cert.clone(), "not_a_chain_and_key", "no private key"),
        ("the wrong key", format!("{cert}{other_key}"), "key_mismatch", "not the key of its first certificate"),
        ("expired", host.ca.issue(WWW, past).unwrap(), "expired", "expired on"),
        ("not valid yet", host.ca.issue(WWW, future).unwrap(), "not_yet_valid", "not valid until"),
        ("two keys", format!("{cert}{}{other_key}", key.serialize_pem()), "not_a_chain_and_key", "2 private keys"),
        ("an encrypted key", format!("{cert}{encrypted}"), "bad_key", "its private key is encrypted"),
        ("no DNS name", host.ca.issue(&["192.0.2.1"], Validity::current()).unwrap(), "bad_certificate", "no DNS name"),
    ];
    for (what, pem, reason, says) in bad {
        let metric = format!("edgeroute_tls_certificates_refused_total{{reason=\"{reason}\"}}");
        let before = host.metric(&metric);
        host.replace("www.pem", &pem);
        host.served.wait_until(&format!("{what} refused"), 20, |s| s.metric(&metric) > before);
        let log = host.served.log();
        let line = log.lines().rev().find(|l| l.contains("refused")).unwrap_or_default().to_owned();
        assert!(line.contains("www.pem") && line.contains(says), "{what}: {line}");
        assert!(line.contains("keeps the certificate it had"), "{what}: {line}");
        let now_refused = format!(
            "edgeroute_tls_certificate_refused{{file=\"{}\",reason=\"{reason}\"}}",
            host.folder.join("www.pem").display()
        );
        assert_eq!(host.metric(&now_refused), 1.0, "{what}");
        assert_eq!(host.subject(Some("www.example.com"), &[]).unwrap(), good, "{what}: the last good one serves");
        assert_eq!(host.curl("www.example.com", &[]).unwrap().0, 200, "{what}");
    }
    // Fixed: no longer counted as refused now.
    host.replace("www.pem", &host.ca.issue(WWW, Validity::current()).unwrap());
    host.served
        .wait_until("www.pem fixed", 20, |h| !h.admin_get("/metrics").1.contains("edgeroute_tls_certificate_refused{"));
    // A bad new file leaves the others alone; a good one then serves its names.
    host.replace("stray.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
    host.served.wait_until("stray.pem refused", 20, |s| s.log().contains("refused") && s.log().contains("stray.pem"));
    assert_eq!(host.subject(Some("a.previews.example.com"), &[]).unwrap(), "CN = *.previews.example.com");
    host.replace("stray.pem", &host.ca.issue(&["stray.example.com"], Validity::current()).unwrap());
    host.served.wait_until("stray.pem served", 20, |h| h.metric("edgeroute_tls_certificates") == 3.0);
    assert_eq!(host.subject(Some("stray.example.com"), &[]).unwrap(), "CN = stray.example.com");
    // A folder that cannot be listed (renamed away) keeps what it had.
    let away = host.folder.with_file_name("certs-away");
    let unreadable = host.metric("edgeroute_tls_certificates_refused_total{reason=\"unreadable\"}");
    let refusals = host.served.log().matches("refused").count();
    std::fs::rename(&host.folder, &away).unwrap();
    // (SIGHUP reads the certificates again at once, whatever the watch saw.)
    Command::new("kill").args(["-HUP", &host.served.child.id().to_string()]).status().unwrap();
    host.served.wait_until("the folder found missing", 20, |h| h.log().contains("cannot list --tls-certs"));
    assert_eq!(host.subject(Some("stray.example.com"), &[]).unwrap(), "CN = stray.example.com");
    assert_eq!(host.metric("edgeroute_tls_certificates"), 3.0);
    // Kept quietly: its files are not read (and refused) while it is away.
    assert_eq!(host.metric("edgeroute_tls_certificates_refused_total{reason=\"unreadable\"}"), unreadable);
    assert_eq!(host.served.log().matches("refused").count(), refusals, "{}", host.served.log());
    std::fs::rename(&away, &host.folder).unwrap();
    // Back, and watched again: a change in it is seen at once, not at the next poll.
    std::thread::sleep(Duration::from_millis(500));
    // A file removed takes its names with it.
    std::fs::remove_file(host.folder.join("stray.pem")).unwrap();
    host.served.wait_until("stray.pem gone", 5, |h| h.metric("edgeroute_tls_certificates") == 2.0);
    assert!(host.subject(Some("stray.example.com"), &[]).unwrap_err().contains("unrecognized name"));
}

#[test]
fn a_host_that_cannot_serve_its_certificates_does_not_start() {
    let good: &[(&str, &[&str])] = &[("www.pem", WWW)];
    let missing = scratch("tls-start").join("nowhere");
    let refused = |extra: &[&str]| match Https::try_start("tls-start-refused", good, extra) {
        Ok(_) => panic!("started with {extra:?}"),
        Err(log) => log,
    };
    let log = refused(&["--tls-certs", missing.to_str().unwrap()]);
    assert!(log.contains("cannot read --tls-certs") && log.contains("nowhere"), "{log}");
    let bad_default = scratch("tls-start-default").join("default.pem");
    std::fs::write(&bad_default, "nothing\n").unwrap();
    let log = refused(&["--tls-default-cert", bad_default.to_str().unwrap()]);
    assert!(log.contains("--tls-default-cert") && log.contains("no certificate"), "{log}");
    let empty = scratch("tls-start-empty");
    let log = refused(&["--tls-certs", empty.to_str().unwrap()]);
    assert!(log.contains("no .pem or .crt file"), "{log}");
    let output = Command::new(env!("CARGO_BIN_EXE_edgeroute-host"))
        .args(["serve", "--snapshot", "x.snap", "--tls-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "--tls-listen without --tls-certs is a usage error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-certs"));
    // Only bad files: nothing to serve.
    let log = match Https::try_start_with("tls-start-only-bad", &[], |folder, _| {
        std::fs::write(folder.join("a.pem"), "nothing\n").unwrap();
    }) {
        Ok(_) => panic!("started with no good certificate"),
        Err(log) => log,
    };
    assert!(log.contains("no certificate could be loaded") && log.contains("refused"), "{log}");
}

#[test]
fn handshakes_have_deadlines_and_bad_hellos_cost_nothing() {
    let host = Https::start(
        "handshake-deadlines",
        &[("www.pem", WWW)],
        &["--first-byte-timeout", "1", "--header-timeout", "2", "--tls-sessions", "0"],
    );
    // No resumption: a client that comes back makes a full handshake.
    host.subject(Some("www.example.com"), &["-tls1_2", "-reconnect"]).unwrap();
    assert_eq!(host.metric("edgeroute_tls_handshakes_total{result=\"ok\",version=\"TLSv1.2\"}"), 6.0);
    assert_eq!(host.metric("edgeroute_tls_handshakes_total{result=\"resumed\",version=\"TLSv1.2\"}"), 0.0);
    let port = host.tls_port;
    // Silent: closed after the first-byte timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(silent.read(&mut [0u8; 16]).unwrap_or(0), 0);
    assert!(started.elapsed() < Duration::from_secs(20));
    host.served.wait_until("the silent socket counted", 10, |h| {
        h.metric("edgeroute_connections_closed_total{reason=\"first_byte\"}") == 1.0
    });
    // Half a hello: closed at the handshake's deadline, counted.
    let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03]).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = half.read(&mut [0u8; 64]);
    host.served.wait_until("the slow handshake counted", 10, |h| {
        h.metric("edgeroute_tls_handshakes_total{result=\"timeout\",version=\"none\"}") == 1.0
    });
    assert_eq!(host.metric("edgeroute_connections_closed_total{reason=\"handshake\"}"), 1.0);
    // Not TLS at all: an alert, counted as failed; the host serves on.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n").unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert_eq!(answer.first(), Some(&0x15), "a TLS alert: {answer:?}");
    host.served.wait_until("the failed handshake counted", 10, |h| {
        h.metric("edgeroute_tls_handshakes_total{result=\"failed\",version=\"none\"}") >= 1.0
    });
    assert_eq!(host.curl("www.example.com", &[]).unwrap().0, 200);
}

/// A drain does not wait for handshakes under way: their clients have sent
/// no request yet.
#[test]
fn a_drain_does_not_wait_for_handshakes_under_way() {
    let mut host = Https::start("drain-handshakes", &[("www.pem", WWW)], &["--header-timeout", "60"]);
    let mut half = TcpStream::connect(("127.0.0.1", host.tls_port)).unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03]).unwrap();
    // The handshake is under way once the host has read those bytes.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    Command::new("kill").args(["-TERM", &host.served.child.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(status) = host.served.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still draining: {}", host.served.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", host.served.log());
    assert!(started.elapsed() < Duration::from_secs(5), "the drain took {:?}", started.elapsed());
    drop(half);
}

/// A Kubernetes `kubernetes.io/tls` secret mounted as a folder: `tls.crt`
/// and `tls.key` (paired), `ca.crt` (no key: passed over, not refused),
/// all links into a `..data` folder that is swapped whole on an update.
#[test]
fn a_kubernetes_tls_secret_is_served_and_followed_through_its_swaps() {
    fn version(folder: &std::path::Path, ca: &LocalAuthority, tag: &str, names: &[&str]) {
        let dir = folder.join(format!("..{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let (cert, key) = ca.issue_with(names, Validity::current(), &key).unwrap();
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
        std::fs::write(dir.join("ca.crt"), &ca.certificate_pem).unwrap();
        // Swapped as the kubelet does: a new link renamed over `..data`.
        let tmp = folder.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{tag}"), &tmp).unwrap();
        std::fs::rename(&tmp, folder.join("..data")).unwrap();
        for file in ["tls.crt", "tls.key", "ca.crt"] {
            let link = folder.join(file);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{file}"), &link).unwrap();
            }
        }
    }
    let host = Https::try_start_with("kubernetes-secret", &[], |folder, ca| version(folder, ca, "v1", WWW)).unwrap();
    assert_eq!(host.subject(Some("www.example.com"), &[]).unwrap(), "CN = www.example.com");
    assert_eq!(host.metric("edgeroute_tls_certificates"), 1.0);
    let log = host.served.log();
    assert!(log.contains("ca.crt holds no private key") && !log.contains("refused"), "{log}");
    for reason in edgeroute_host::tls::Refusal::REASONS {
        let metric = format!("edgeroute_tls_certificates_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(host.metric(&metric), 0.0, "{reason}");
    }
    // An update: the new certificate serves from the next handshake on.
    let mut names = WWW.to_vec();
    names.push("rotated.example.com");
    version(&host.folder, &host.ca, "v2", &names);
    host.served.wait_until("the rotated certificate served", 20, |_| {
        host.served_names("www.example.com").contains("rotated.example.com")
    });
    assert!(!host.served.log().contains("refused"), "{}", host.served.log());
}
