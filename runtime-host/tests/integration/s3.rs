//! The host's S3 clients under faults: an endpoint that accepts and never
//! answers, a body that stalls half way, and an S3 that denies access.
//! Static sites and a followed store alike must answer (or give up) in
//! bounded time, and a denial must not pass for a missing object.

use std::time::Duration;

use edgeroute_tests_aws::{aws_env, Fault, FaultProxy, Moto, StallingServer};

use super::serve::{id, raw_get_within, runtime, scratch, snapshot, Served};

/// `serve --snapshot` of [`snapshot`]`(1)` (its `probe.example.com` is the
/// site `s3://b-1/site`), with static sites from S3 at `endpoint`.
fn static_host(name: &str, endpoint: &str, extra: &[&str]) -> Served {
    let dir = scratch(name);
    let file = dir.join("routes.snap");
    std::fs::write(&file, snapshot(1)).unwrap();
    let mut args = vec!["--snapshot", file.to_str().unwrap(), "--endpoint-url", endpoint];
    args.extend(extra);
    Served::run(&args, &aws_env(endpoint)).unwrap()
}

/// [4/8] 4: a static fetch from an S3 endpoint that accepts the connection
/// and never answers is a 504 within 30 s with the default limits (two
/// attempts, each bounded by the time to the response's head), not a
/// request that hangs.
#[test]
fn a_silent_s3_endpoint_gets_a_504_not_a_hang() {
    let silent = StallingServer::start(b"");
    let host = static_host("silent-static", &silent.endpoint, &[]);
    let (status, _, body) = raw_get_within(host.port, "probe.example.com", "/", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", host.log()));
    assert_eq!(status, 504, "{body}");
    assert_eq!(silent.requests(), 2, "two attempts, no more");
    assert_eq!(host.metric("edgeroute_origin_errors_total"), 1.0);
}

/// [4/8] 4: a body that stops half way is cut after its idle gap (the
/// client sees the connection end short of the length), rather than
/// holding the client forever.
#[test]
fn a_stalled_s3_body_is_cut_after_its_idle_gap() {
    let stalled = StallingServer::start(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 100000\r\nETag: \"e\"\r\n\r\n<html>the first bytes",
    );
    let host = static_host("stalled-static", &stalled.endpoint, &["--s3-body-idle-ms", "1500"]);
    let (status, head, body) = raw_get_within(host.port, "probe.example.com", "/", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", host.log()));
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-length: 100000"), "{head}");
    assert!(body.starts_with("<html>the first bytes") && body.len() < 100_000, "{} bytes", body.len());
}

/// [4/8] 4: the idle gap is a gap, not a total: a body that is slow but
/// keeps coming (here 2.4 s in all, never 1.5 s silent) is sent whole.
#[test]
fn a_slow_s3_body_that_keeps_coming_is_not_cut() {
    let slow = StallingServer::trickling(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n\r\n",
        b"0123456789",
        4,
        Duration::from_millis(600),
    );
    let host = static_host("slow-static", &slow.endpoint, &["--s3-body-idle-ms", "1500"]);
    let (status, _, body) = raw_get_within(host.port, "probe.example.com", "/", Duration::from_secs(30)).unwrap();
    assert_eq!((status, body.as_str()), (200, "0123456789".repeat(4).as_str()));
}

/// [4/8] 3, 4: a store on an endpoint that never answers does not hold the
/// host's start: it listens at once, and serves its cache after a short
/// wait for the store (5 s), well before the store's requests time out.
#[test]
fn a_silent_s3_store_does_not_hold_the_start() {
    let silent = StallingServer::start(b"");
    let dir = scratch("silent-store");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("current.snap"), snapshot(1)).unwrap();
    let host = Served::run(
        &["--store", "s3://edge/p", "--cache-dir", cache.to_str().unwrap(), "--endpoint-url", &silent.endpoint]
            .into_iter()
            .chain(["--static-root", dir.to_str().unwrap()])
            .collect::<Vec<_>>(),
        &aws_env(&silent.endpoint),
    )
    .unwrap_or_else(|e| panic!("the host did not start: {e}"));
    let started = std::time::Instant::now();
    assert_eq!(host.admin_get("/health").0, 503, "no snapshot yet, and it says so");
    host.wait_until("the cached snapshot served", 30, |h| h.get("probe.example.com").0 == id(&snapshot(1))[..12]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the cache waited for the store's timeouts: {:?}",
        started.elapsed()
    );
    assert!(host.log().contains("serving the cached snapshot"), "{}", host.log());
}

const ACCESS_DENIED: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";

/// [4/8] 6: S3's 403 on a static object (expired credentials, a policy
/// that changed) is a 502, logged and counted, never a silent 404; only
/// `--s3-403-is-missing` (a reader without ListBucket, to whom S3 answers
/// 403 for a missing key) makes it a missing object.
#[test]
fn an_s3_403_is_a_502_unless_it_is_declared_to_mean_missing() {
    let moto = Moto::start();
    let rt = runtime();
    let config = rt.block_on(moto.config());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    rt.block_on(s3.create_bucket().bucket("b-1").send()).unwrap();
    rt.block_on(s3.put_object().bucket("b-1").key("site/404.html").body(b"the site's own 404".to_vec().into()).send())
        .unwrap();
    let proxy = FaultProxy::start(&moto.endpoint, |req| {
        req.path.contains("site/index.html").then(|| Fault::Answer(403, "application/xml", ACCESS_DENIED.to_owned()))
    });

    let host = static_host("denied", &proxy.endpoint, &[]);
    let (status, _, body) = raw_get_within(host.port, "probe.example.com", "/", Duration::from_secs(20)).unwrap();
    assert_eq!(status, 502, "{body}");
    assert_eq!(host.metric("edgeroute_static_denied_total"), 1.0);
    assert!(host.log().contains("AccessDenied") && host.log().contains("s3://b-1/site/index.html"), "{}", host.log());

    let host = static_host("denied-missing", &proxy.endpoint, &["--s3-403-is-missing"]);
    let (status, _, body) = raw_get_within(host.port, "probe.example.com", "/", Duration::from_secs(20)).unwrap();
    assert_eq!((status, body.trim()), (404, "the site's own 404"));
}

/// `edgeroute-host serve ARGS` with no AWS settings at all (no variables,
/// an empty home) and the instance-metadata endpoint at `imds`, until it
/// exits or listens (it reads its AWS settings before). Its exit code
/// (`None`: it was serving) and its log.
fn without_aws_settings(args: &[&str], imds: &str) -> (Option<i32>, String) {
    let home = scratch("empty-home");
    let port = super::serve::free_port();
    let log = home.join(format!("host-{port}.log"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgeroute-host"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break None;
        }
        assert!(std::time::Instant::now() < deadline, "neither exited nor listened in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    (code, std::fs::read_to_string(&log).unwrap())
}

/// [4/8] 9: AWS settings are looked at only when something is in S3, with
/// no network request at start (not even to the instance metadata); a
/// missing region is one clear warning line (no metadata warnings, no
/// debug dumps) and stops the host only when its store is in S3;
/// `--region` and `--profile` are the host's flags too.
#[test]
fn aws_settings_are_read_lazily_and_a_missing_region_is_one_line() {
    let imds = StallingServer::start(b"");
    let dir = scratch("no-aws");
    let file = dir.join("routes.snap");
    std::fs::write(&file, snapshot(1)).unwrap();
    let file = file.to_str().unwrap();

    // Static sites in S3, no region: the host serves, and says so once.
    let (code, log) = without_aws_settings(&["--snapshot", file], &imds.endpoint);
    assert_eq!(code, None, "the host serves: {log}");
    let warnings: Vec<_> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    assert_eq!(warnings.len(), 1, "one warning line: {log}");
    assert!(warnings[0].contains("region") && warnings[0].contains("--region"), "{log}");
    assert!(!log.to_ascii_lowercase().contains("imds"), "{log}");

    // A store in S3 without a region: a clear error, exit 1.
    let (code, log) = without_aws_settings(&["--store", "s3://edge/p"], &imds.endpoint);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.lines().any(|l| l.starts_with("error: ") && l.contains("--region")), "{log}");
    assert!(!log.to_ascii_lowercase().contains("imds"), "{log}");

    // The region from the flag; no credentials anywhere: one warning line.
    let (code, log) = without_aws_settings(&["--snapshot", file, "--region", "eu-west-1"], &imds.endpoint);
    assert_eq!(code, None, "the host serves: {log}");
    let warnings: Vec<_> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    assert_eq!(warnings.len(), 1, "one warning line: {log}");
    assert!(warnings[0].contains("credentials"), "{log}");

    // A profile that does not exist is named.
    let (code, log) = without_aws_settings(&["--store", "s3://edge/p", "--profile", "nope"], &imds.endpoint);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("nope"), "{log}");

    // A directory store with static sites on disk never looks at AWS at all.
    let (code, log) =
        without_aws_settings(&["--snapshot", file, "--static-root", dir.to_str().unwrap()], &imds.endpoint);
    assert_eq!(code, None, "{log}");
    assert!(!log.contains("WARN"), "{log}");

    assert_eq!(imds.requests(), 0, "no request to the instance metadata at start");
}
