//! `edgeroute compile` from a live DynamoDB table, against moto's server on
//! 127.0.0.1 (started and stopped by each test; `scripts/setup.sh`
//! installs it): parallel paginated Scans, DynamoDB's types, malformed
//! items, ELB ARNs resolved through moto's ELBv2, table exports, and faults
//! injected between the SDK and the server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use edgeroute_tests::export::{plain, write_export};
use edgeroute_tests_aws::{aws_env, create_table, put_items, Fault, FaultProxy, Moto};
use serde_json::{json, Value as Json};

fn edgeroute(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeroute"));
    cmd.args(args);
    for var in ["AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_DYNAMODB"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.output().expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-ddb-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

const GHOST_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/ghost/0123456789abcdef";

/// The test table in DynamoDB's typed JSON: every kind of good item,
/// `generated` plain environments, and every kind of bad item (named in
/// [`BAD`]). `arn` is a load balancer that exists in moto.
fn table_items(arn: &str, generated: usize) -> Vec<Json> {
    let mut items = vec![
        // Unknown attributes are ignored; Domain normalizes.
        json!({"Domain": {"S": "Portal.Example.com."}, "Target": {"S": "s3://sites/portal/v1"},
               "Assets": {"L": [{"S": "index.html"}, {"S": "app.js"}]}, "Fallback": {"S": "index.html"},
               "EnvId": {"S": "env-1"}, "CreatedAt": {"N": "1700000000"}, "Tags": {"M": {"team": {"S": "web"}}}}),
        // Assets as a string set.
        json!({"Domain": {"S": "docs.example.com"}, "Target": {"S": "s3://sites/docs"},
               "Assets": {"SS": ["index.html", "guide/index.html"]}}),
        // An IDN domain.
        json!({"Domain": {"S": "bücher.example.com"}, "Target": {"S": "s3://sites/books"}}),
        // A wildcard to a direct origin.
        json!({"Domain": {"S": "*.previews.example.com"}, "Target": {"S": "https://previews.internal:8443"}}),
        // ELB ARNs without Origin, resolved through ELBv2 (twice the same ARN).
        json!({"Domain": {"S": "api.example.com"}, "Target": {"S": arn}}),
        json!({"Domain": {"S": "api2.example.com"}, "Target": {"S": arn}}),
        // An ELB ARN with its Origin: not looked up.
        json!({"Domain": {"S": "legacy.example.com"},
               "Target": {"S": "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/legacy/abc"},
               "Origin": {"S": "http://legacy-lb.example.net:8080"}}),
        // Bad items.
        json!({"Domain": {"S": "wrong-type.example.com"}, "Target": {"N": "42"}}),
        json!({"Domain": {"S": "assets-map.example.com"}, "Target": {"S": "s3://sites/x"}, "Assets": {"M": {}}}),
        json!({"Domain": {"S": "assets-number.example.com"}, "Target": {"S": "s3://sites/x"},
               "Assets": {"L": [{"S": "index.html"}, {"N": "1"}]}}),
        json!({"Domain": {"S": "bad..domain.example.com"}, "Target": {"S": "s3://sites/x"}}),
        json!({"Domain": {"S": "a.*.example.com"}, "Target": {"S": "s3://sites/x"}}),
        json!({"Domain": {"S": "ghost.example.com"}, "Target": {"S": GHOST_ARN}}),
        json!({"Domain": {"S": "no-target.example.com"}}),
        // Distinct keys in DynamoDB, the same Domain once normalized.
        json!({"Domain": {"S": "Twice.Example.com"}, "Target": {"S": "s3://sites/one"}}),
        json!({"Domain": {"S": "twice.example.com"}, "Target": {"S": "s3://sites/two"}}),
    ];
    for i in 0..generated {
        items.push(json!({"Domain": {"S": format!("env-{i}.previews.example.com")},
                          "Target": {"S": format!("s3://sites/env-{i}")},
                          "Assets": {"L": [{"S": "index.html"}, {"S": format!("app.{i:x}.js")}]}}));
    }
    items
}

/// Each bad item's Domain and a piece of its error message.
const BAD: &[(&str, &str)] = &[
    ("wrong-type.example.com", "attribute Target must be a string, not a number (N)"),
    ("assets-map.example.com", "attribute Assets must be a list of strings, not a map (M)"),
    ("assets-number.example.com", "Assets item 1"),
    ("bad..domain.example.com", "Domain \"bad..domain.example.com\""),
    ("a.*.example.com", "`*` is only allowed"),
    ("ghost.example.com", "does not resolve to a load balancer"),
    ("no-target.example.com", "attribute Target is missing"),
    ("twice.example.com", "gives the same Domain"),
];

/// Good routes in [`table_items`] besides the generated ones.
const GOOD: usize = 7;

fn json_lines(items: &[Json]) -> String {
    items.iter().map(|i| plain(i).to_string() + "\n").collect()
}

/// A table with the test items and a load balancer in moto; returns the
/// load balancer's DNS name.
fn seed(moto: &Moto, table: &str, generated: usize) -> (Vec<Json>, String) {
    let (arn, dns) = moto.create_load_balancer("env-lb");
    let items = table_items(&arn, generated);
    runtime().block_on(async {
        let config = moto.config().await;
        create_table(&config, table, "Domain").await;
        put_items(&config, table, &items).await;
    });
    (items, dns)
}

fn compile(from: &str, out: &Path, extra: &[&str], env: &[(&str, String)]) -> Output {
    let mut args = vec!["compile", "--from", from, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    edgeroute(&args, env)
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status, text(&o.stdout), text(&o.stderr));
}

#[test]
fn live_table_export_and_json_file_compile_to_the_same_bytes() {
    let moto = Moto::start();
    let dir = scratch("same-bytes");
    let (items, dns) = seed(&moto, "routes", 1500);
    let env = aws_env(&moto.endpoint);

    // The live table, three ways: defaults; small pages over 3 segments;
    // strongly consistent over 1 segment.
    let scans = [
        (vec![], "routes-default.snap"),
        (vec!["--segments", "3", "--page-size", "50"], "routes-paged.snap"),
        (vec!["--segments", "1", "--consistent"], "routes-consistent.snap"),
    ];
    let mut snapshots = Vec::new();
    for (extra, name) in &scans {
        let out = dir.join(name);
        let mut args = extra.clone();
        args.push("--skip-invalid");
        let o = compile("dynamodb://routes", &out, &args, &env);
        assert_ok(&o);
        let stdout = text(&o.stdout);
        assert!(stdout.contains(&format!("compiled {} routes", GOOD + 1500)), "{stdout}");
        assert!(stdout.contains(&format!("dynamodb://routes: {} items", items.len())), "{stdout}");
        assert!(stdout.contains("items/s"), "{stdout}");
        assert!(stdout.contains("1 of 2 ELB ARNs resolved"), "{stdout}");
        if extra.contains(&"--page-size") {
            // 1516 items in pages of 50 over 3 segments.
            let pages: u64 = stdout.split(" pages").next().and_then(|s| s.rsplit(' ').next()).unwrap().parse().unwrap();
            assert!(pages >= 31, "{stdout}");
            assert!(stdout.contains("3 segments"), "{stdout}");
        }
        let stderr = text(&o.stderr);
        for (domain, why) in BAD {
            let line = stderr.lines().find(|l| l.contains(domain)).unwrap_or_else(|| panic!("{domain}: {stderr}"));
            assert!(line.starts_with("skipped: scan segment"), "{line}");
            assert!(line.contains(why), "{domain}: {line}");
        }
        snapshots.push(std::fs::read(&out).unwrap());
    }

    // The same items as a table export and as a JSON file.
    let export = write_export(&dir.join("exports"), "01764000000000-a1b2c3d4", &items, 7);
    let out = dir.join("export.snap");
    let o = compile(&format!("export:{}", export.display()), &out, &["--skip-invalid"], &env);
    assert_ok(&o);
    assert!(text(&o.stdout).contains(&format!("{} items", items.len())), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("skipped: data file "), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).lines().any(|l| l.starts_with("note: data file ")
            && l.contains(" is previews/AWSDynamoDB/01764000000000-a1b2c3d4/data/")),
        "{}",
        text(&o.stderr)
    );
    snapshots.push(std::fs::read(&out).unwrap());

    let file = dir.join("routes.jsonl");
    std::fs::write(&file, json_lines(&items)).unwrap();
    let out = dir.join("file.snap");
    let o = compile(file.to_str().unwrap(), &out, &["--skip-invalid"], &env);
    assert_ok(&o);
    snapshots.push(std::fs::read(&out).unwrap());
    for (i, s) in snapshots.iter().enumerate() {
        assert!(s == &snapshots[0], "snapshot {i} differs from the first");
    }

    // The ARN resolved to the load balancer's DNS name, as if written as Origin.
    let snap = dir.join("file.snap");
    let o = edgeroute(&["resolve", "--snapshot", snap.to_str().unwrap(), "api.example.com"], &[]);
    assert_eq!(text(&o.stdout).split_whitespace().nth(1), Some(format!("https://{dns}:443").as_str()));
    let o = edgeroute(&["resolve", "--snapshot", snap.to_str().unwrap(), "xn--bcher-kva.example.com"], &[]);
    assert!(text(&o.stdout).starts_with("static"), "{}", text(&o.stdout));

    // Without --skip-invalid, every item that is bad without asking AWS is
    // listed and nothing is written; the ELBv2 API is not asked while the
    // table has such items, so the ghost ARN is not among them yet.
    let out = dir.join("strict.snap");
    let o = compile("dynamodb://routes", &out, &[], &env);
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    for (domain, _) in BAD.iter().filter(|(d, _)| *d != "ghost.example.com") {
        assert!(stderr.lines().any(|l| l.starts_with("invalid:") && l.contains(domain)), "{domain}: {stderr}");
    }
    assert!(!stderr.contains("ghost.example.com"), "{stderr}");
    assert!(stderr.contains(&format!("{} invalid item(s); nothing written", BAD.len())), "{stderr}");
    assert!(!out.exists());
}

/// A Scan's fault plan: throttle, fail, drop or refuse one request in three.
fn every_third(counter: &AtomicU64) -> Option<Fault> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    match n % 12 {
        0 => Some(Fault::Throttle),
        3 => Some(Fault::ServerError),
        6 => Some(Fault::Unavailable),
        9 => Some(Fault::Drop),
        _ => None,
    }
}

#[test]
fn throttling_5xx_and_dropped_connections_are_retried() {
    let moto = Moto::start();
    let dir = scratch("retries");
    let (_, _) = seed(&moto, "routes", 600);
    let direct = dir.join("direct.snap");
    assert_ok(&compile("dynamodb://routes", &direct, &["--skip-invalid"], &aws_env(&moto.endpoint)));

    let counter = AtomicU64::new(0);
    let proxy = FaultProxy::start(&moto.endpoint, move |r| match r.target.as_str() {
        "DynamoDB_20120810.Scan" | "DynamoDB_20120810.DescribeTable" => every_third(&counter),
        _ => None,
    });
    let out = dir.join("through-faults.snap");
    let o = compile(
        "dynamodb://routes",
        &out,
        &["--skip-invalid", "--segments", "4", "--page-size", "40"],
        &aws_env(&proxy.endpoint),
    );
    assert_ok(&o);
    assert!(proxy.injected() >= 4, "only {} faults injected", proxy.injected());
    let stdout = text(&o.stdout);
    let retries: u64 = stdout.split(" retries").next().and_then(|s| s.rsplit(' ').next()).unwrap().parse().unwrap();
    assert!(retries >= 3, "{stdout}");
    assert!(text(&o.stderr).contains("retrying: scan segment"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&direct).unwrap());
}

#[test]
fn a_segment_that_keeps_failing_fails_the_compile_and_writes_nothing() {
    let moto = Moto::start();
    let dir = scratch("segment-fails");
    seed(&moto, "routes", 300);
    let proxy = FaultProxy::start(&moto.endpoint, |r| {
        (r.target == "DynamoDB_20120810.Scan" && r.body["Segment"] == 2).then_some(Fault::ServerError)
    });
    let out = dir.join("routes.snap");
    std::fs::write(&out, b"the previous snapshot").unwrap();
    let o = compile(
        "dynamodb://routes",
        &out,
        &["--skip-invalid", "--segments", "3", "--max-retries", "2"],
        &aws_env(&proxy.endpoint),
    );
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(stderr.contains("scan segment 2 of 3 failed after 3 attempt(s)"), "{stderr}");
    assert!(stderr.contains("InternalServerError"), "{stderr}");
    assert!(stderr.contains("nothing was compiled from a part of the table"), "{stderr}");
    assert_eq!(proxy.injected(), 3);
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous snapshot");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "a temporary file was left behind");
}

#[test]
fn errors_that_are_not_transient_are_not_retried_and_say_what_is_wrong() {
    let moto = Moto::start();
    let dir = scratch("not-transient");
    runtime().block_on(async {
        let config = moto.config().await;
        create_table(&config, "keyed-by-id", "Id").await;
    });
    let env = aws_env(&moto.endpoint);
    let out = dir.join("x.snap");
    // The endpoint from --endpoint-url rather than AWS_ENDPOINT_URL.
    let flag_env: Vec<_> = env.iter().filter(|(k, _)| *k != "AWS_ENDPOINT_URL").cloned().collect();
    let o = compile("dynamodb://no-such-table", &out, &["--endpoint-url", &moto.endpoint], &flag_env);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("table \"no-such-table\" does not exist"), "{}", text(&o.stderr));
    let o = compile("dynamodb://keyed-by-id", &out, &[], &env);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("keyed by Id (HASH S)"), "{}", text(&o.stderr));
    // No region anywhere.
    let no_region: Vec<_> = env.iter().filter(|(k, _)| *k != "AWS_REGION").cloned().collect();
    let o = compile("dynamodb://routes", &out, &[], &no_region);
    assert!(text(&o.stderr).contains("no AWS region"), "{}", text(&o.stderr));
    // A bad source name.
    let o = compile("dynamodb://x", &out, &[], &env);
    assert!(text(&o.stderr).contains("is not a DynamoDB table name"), "{}", text(&o.stderr));
    assert!(!out.exists());
}

#[test]
fn an_unreachable_elbv2_api_fails_the_compile_instead_of_dropping_routes() {
    let dir = scratch("elb-unreachable");
    let file = dir.join("routes.jsonl");
    std::fs::write(
        &file,
        format!(
            "{{\"Domain\": \"api.example.com\", \"Target\": \"{GHOST_ARN}\"}}\n{{\"Domain\": \"a.example.com\", \"Target\": \"s3://sites/a\"}}\n"
        ),
    )
    .unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = dir.join("x.snap");
    let o = compile(
        file.to_str().unwrap(),
        &out,
        &["--skip-invalid", "--max-retries", "1"],
        &aws_env(&format!("http://127.0.0.1:{port}")),
    );
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(stderr.contains("cannot resolve 1 ELB ARN(s) without Origin"), "{stderr}");
    assert!(stderr.contains("failed after 2 attempt(s)"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn a_profile_from_the_config_files_gives_region_credentials_and_endpoint() {
    let moto = Moto::start();
    let dir = scratch("profile");
    runtime().block_on(async {
        let config = moto.config().await;
        create_table(&config, "routes", "Domain").await;
        put_items(&config, "routes", &[json!({"Domain": {"S": "a.example.com"}, "Target": {"S": "s3://sites/a"}})])
            .await;
    });
    let config = dir.join("config");
    let credentials = dir.join("credentials");
    std::fs::write(&config, format!("[profile preview]\nregion = eu-west-1\nendpoint_url = {}\n", moto.endpoint))
        .unwrap();
    std::fs::write(&credentials, "[preview]\naws_access_key_id = testing\naws_secret_access_key = testing\n").unwrap();
    let env = vec![
        ("AWS_CONFIG_FILE", config.display().to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let out = dir.join("x.snap");
    // moto keeps tables per region: the table is in us-east-1, the profile says eu-west-1.
    let o = compile("dynamodb://routes", &out, &["--profile", "preview"], &env);
    assert!(text(&o.stderr).contains("does not exist"), "{}", text(&o.stderr));
    let o = compile("dynamodb://routes", &out, &["--profile", "preview", "--region", "us-east-1"], &env);
    assert_ok(&o);
    assert!(text(&o.stdout).contains("compiled 1 routes"), "{}", text(&o.stdout));
}

/// ELBv2's answer when one ARN of a DescribeLoadBalancers call is unknown.
const LB_NOT_FOUND: &str = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>LoadBalancerNotFound</Code><Message>One or more load balancers not found</Message></Error><RequestId>5b3f0c1e-test</RequestId></ErrorResponse>"#;

#[test]
fn elb_arns_are_resolved_in_batches_and_an_unknown_one_is_its_items_error() {
    let moto = Moto::start();
    let dir = scratch("elb-batches");
    let lbs = moto.create_load_balancers("preview", 25);
    // Real ELBv2 fails the whole call when one ARN is unknown (moto leaves
    // it out instead): the proxy answers as AWS does, so the batch is split
    // until the unknown ARN stands alone.
    let calls = std::sync::Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        let form = String::from_utf8_lossy(&r.raw);
        if !form.contains("Action=DescribeLoadBalancers") {
            return None;
        }
        counted.fetch_add(1, Ordering::Relaxed);
        form.contains("ghost").then(|| Fault::Answer(400, "text/xml", LB_NOT_FOUND.to_owned()))
    });
    let mut table = String::new();
    for (i, (arn, _)) in lbs.iter().enumerate() {
        table.push_str(&format!("{{\"Domain\": \"env-{i}.example.com\", \"Target\": \"{arn}\"}}\n"));
    }
    // The same ARN twice is asked for once.
    table.push_str(&format!("{{\"Domain\": \"again.example.com\", \"Target\": \"{}\"}}\n", lbs[3].0));
    table.push_str(&format!("{{\"Domain\": \"ghost.example.com\", \"Target\": \"{GHOST_ARN}\"}}\n"));
    let file = dir.join("routes.jsonl");
    std::fs::write(&file, table).unwrap();
    let out = dir.join("routes.snap");
    let o = compile(file.to_str().unwrap(), &out, &["--skip-invalid"], &aws_env(&proxy.endpoint));
    assert_ok(&o);
    let stdout = text(&o.stdout);
    assert!(stdout.contains("compiled 26 routes"), "{stdout}");
    assert!(stdout.contains("25 of 26 ELB ARNs resolved through DescribeLoadBalancers (26 items)"), "{stdout}");
    let stderr = text(&o.stderr);
    let ghost = stderr.lines().find(|l| l.contains("ghost.example.com")).unwrap_or_default();
    assert!(ghost.contains("does not resolve to a load balancer: LoadBalancerNotFound"), "{stderr}");
    // 26 ARNs: two batches (20 + 6); the one with the ghost splits down to it.
    let calls = calls.load(Ordering::Relaxed);
    assert!((4..=12).contains(&calls), "{calls} DescribeLoadBalancers calls");
    for (i, (_, dns)) in lbs.iter().enumerate().step_by(6) {
        let o = edgeroute(&["resolve", "--snapshot", out.to_str().unwrap(), &format!("env-{i}.example.com")], &[]);
        assert_eq!(text(&o.stdout).split_whitespace().nth(1), Some(format!("https://{dns}:443").as_str()));
    }
}

#[test]
fn an_export_is_read_straight_from_s3_with_the_same_checks() {
    let moto = Moto::start();
    let dir = scratch("export-s3");
    let items = table_items("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/x/1", 400)
        .into_iter()
        .filter(|i| !i.to_string().contains("elasticloadbalancing"))
        .collect::<Vec<_>>();
    let id = "01764000000000-s3export";
    let folder = write_export(&dir, id, &items, 5);
    let rt = runtime();
    let config = rt.block_on(moto.config());
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
    rt.block_on(async {
        s3.create_bucket().bucket("routes-exports").send().await.unwrap();
        for entry in walk(&folder) {
            let key = format!("previews/AWSDynamoDB/{id}/{}", entry.strip_prefix(&folder).unwrap().display());
            let body = std::fs::read(&entry).unwrap();
            s3.put_object().bucket("routes-exports").key(key).body(body.into()).send().await.unwrap();
        }
    });
    let env = aws_env(&moto.endpoint);
    let (local, remote) = (dir.join("local.snap"), dir.join("remote.snap"));
    assert_ok(&compile(&format!("export:{}", folder.display()), &local, &["--skip-invalid"], &env));
    let source = format!("export:s3://routes-exports/previews/AWSDynamoDB/{id}");
    let o = compile(&source, &remote, &["--skip-invalid"], &env);
    assert_ok(&o);
    assert!(text(&o.stdout).contains(&format!("{source}: {} items", items.len())), "{}", text(&o.stdout));
    assert_eq!(std::fs::read(&local).unwrap(), std::fs::read(&remote).unwrap());

    // A data file changed in the bucket fails its MD5; nothing is written.
    let manifest = std::fs::read_to_string(folder.join("manifest-files.json")).unwrap();
    let first: Json = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    let key = first["dataFileS3Key"].as_str().unwrap().to_owned();
    rt.block_on(s3.put_object().bucket("routes-exports").key(&key).body(b"garbage".to_vec().into()).send()).unwrap();
    let out = dir.join("damaged.snap");
    let o = compile(&source, &out, &["--skip-invalid"], &env);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("MD5"), "{}", text(&o.stderr));
    assert!(!out.exists());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A JSON Lines file is compiled a chunk at a time: in chunks of a few
/// lines it compiles to the bytes, the errors (line numbers included) and
/// the ELB lookups it gives read whole, with bad lines, a duplicate and
/// ARN Targets without Origin only past the first chunks; and a table
/// that comes through a pipe (read once: whole) compiles the same, as a
/// JSON Lines table needing a second pass and as an array.
#[test]
fn a_table_file_compiles_the_same_in_chunks_and_through_a_pipe() {
    use std::io::Write as _;
    let moto = Moto::start();
    let dir = scratch("chunks");
    let lbs = moto.create_load_balancers("chunked", 3);
    let env = aws_env(&moto.endpoint);
    let mut lines = Vec::new();
    for i in 0..120 {
        lines.push(match i {
            17 => "{\"Domain\": \"bad..example.com\", \"Target\": \"s3://site-bucket\"}".to_owned(),
            40 => "not json".to_owned(),
            // The same Domain as line 3, in another case, chunks away.
            95 => "{\"Domain\": \"ENV-2.example.com\", \"Target\": \"s3://site-bucket/b\"}".to_owned(),
            i if i >= 100 && i % 4 == 0 => {
                format!("{{\"Domain\": \"lb-{i}.example.com\", \"Target\": \"{}\"}}", lbs[i % 3].0)
            }
            i => format!("{{\"Domain\": \"env-{i}.example.com\", \"Target\": \"s3://site-bucket/{i}\"}}"),
        });
    }
    let table = lines.join("\n") + "\n";
    let file = dir.join("routes.jsonl");
    std::fs::write(&file, &table).unwrap();
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec!["--skip-invalid"];
        args.extend_from_slice(extra);
        let o = compile(file.to_str().unwrap(), out, &args, &env);
        assert_ok(&o);
        (std::fs::read(out).unwrap(), text(&o.stdout), text(&o.stderr))
    };
    let (whole, stdout, stderr) = run(&dir.join("whole.snap"), &[]);
    assert!(stdout.contains("compiled 116 routes"), "{stdout}");
    assert!(stdout.contains("3 of 3 ELB ARNs resolved through DescribeLoadBalancers (5 items)"), "{stdout}");
    for expected in ["line 18", "line 41: not valid JSON", "line 96", "line 3 (Domain \"env-2.example.com\")"] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    for chunk in ["1", "150", "700"] {
        let (bytes, chunked_stdout, chunked_stderr) =
            run(&dir.join(format!("c{chunk}.snap")), &["--chunk-bytes", chunk]);
        assert_eq!(bytes, whole, "chunks of {chunk} bytes");
        assert_eq!(chunked_stderr, stderr, "chunks of {chunk} bytes");
        assert_eq!(chunked_stdout.replace(&format!("c{chunk}.snap"), "whole.snap"), stdout);
    }

    // Through a pipe: the file cannot be read twice, nor its start looked at first.
    let piped = |body: &str, out: &Path| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgeroute"))
            .args(["compile", "--skip-invalid", "--from", "/dev/stdin", "--out", out.to_str().unwrap()])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        assert_ok(&o);
        std::fs::read(out).unwrap()
    };
    assert_eq!(piped(&table, &dir.join("piped.snap")), whole);
    let good: Vec<&str> =
        lines.iter().map(String::as_str).filter(|l| l.starts_with('{') && !l.contains("..")).collect();
    let array = format!("[{}]", good.join(",\n"));
    std::fs::write(dir.join("array.json"), &array).unwrap();
    let from_file = dir.join("array-file.snap");
    assert_ok(&compile(dir.join("array.json").to_str().unwrap(), &from_file, &["--skip-invalid"], &env));
    let from_pipe = piped(&array, &dir.join("array-piped.snap"));
    assert_eq!(from_pipe, std::fs::read(&from_file).unwrap());
    assert_eq!(from_pipe, whole, "the same routes");
}
