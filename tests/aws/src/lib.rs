//! Real AWS-protocol servers for the tests: moto's server (DynamoDB, S3,
//! ELBv2 behind one port) and dynalite, started on 127.0.0.1 and stopped
//! when dropped; a fault-injecting HTTP proxy to put between the SDK and
//! them; and SDK helpers that seed tables. Only the tests of crates that
//! talk to AWS depend on this crate: the compiler's never do.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest, ScalarAttributeType,
    WriteRequest,
};
use serde_json::Value as Json;

/// The workspace root (for `.tools/` and `tests/aws/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The environment a child process needs to reach a local server as AWS:
/// fixed credentials and region, no profile files, no instance metadata.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", endpoint.into()),
        ("AWS_CONFIG_FILE", "/nonexistent/edgeroute-test-aws-config".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/edgeroute-test-aws-credentials".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// The virtualenv that `scripts/setup.sh` installs moto into.
fn venv() -> PathBuf {
    match std::env::var_os("EDGEROUTE_TEST_VENV") {
        Some(v) => v.into(),
        None => workspace_root().join(".tools/venv"),
    }
}

/// A moto server on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// Starts moto's server and waits until it answers.
    pub fn start() -> Moto {
        let server = venv().join("bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: run scripts/setup.sh --tests (it installs moto[server] into .tools/venv)",
            server.display()
        );
        let port = free_port();
        let mut command = Command::new(&server);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let child = listening(command, "moto_server", port);
        Moto { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// moto answering one request at a time (`tests/aws/moto_serial.py`),
    /// so that its conditional writes and transactions are atomic, as
    /// DynamoDB's are; moto_server's threads do not lock its tables.
    pub fn start_serial() -> Moto {
        let python = venv().join("bin/python");
        assert!(python.exists(), "{} is missing: run scripts/setup.sh --tests", python.display());
        let port = free_port();
        let mut command = Command::new(&python);
        command.arg(workspace_root().join("tests/aws/moto_serial.py")).arg(port.to_string());
        let child = listening(command, "moto (serial)", port);
        Moto { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// An SDK configuration for this server.
    pub async fn config(&self) -> aws_config::SdkConfig {
        config_for(&self.endpoint).await
    }

    /// Creates an application load balancer in moto's ELBv2 (through boto3
    /// from the same virtualenv, since it needs EC2 subnets) and returns its
    /// ARN and DNS name.
    pub fn create_load_balancer(&self, name: &str) -> (String, String) {
        self.run_create(&[name]).remove(0)
    }

    /// Creates `count` load balancers named `PREFIX-0`, `PREFIX-1`, …
    pub fn create_load_balancers(&self, prefix: &str, count: usize) -> Vec<(String, String)> {
        let lbs = self.run_create(&[prefix, &count.to_string()]);
        assert_eq!(lbs.len(), count);
        lbs
    }

    fn run_create(&self, args: &[&str]) -> Vec<(String, String)> {
        let script = workspace_root().join("tests/aws/create_load_balancer.py");
        let out = Command::new(venv().join("bin/python"))
            .arg(&script)
            .arg(&self.endpoint)
            .args(args)
            .output()
            .expect("run create_load_balancer.py");
        assert!(out.status.success(), "create_load_balancer.py: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("utf-8");
        text.lines()
            .map(|l| l.split_once(' ').map(|(a, d)| (a.to_owned(), d.to_owned())).expect("ARN DNSNAME"))
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dynalite server (DynamoDB's protocol over LevelDB in memory; it
/// serialises conditional writes, which moto does not) on a free loopback
/// port, killed on drop. `scripts/setup.sh --tests` installs it from
/// `tests/dynalite/package-lock.json`.
#[derive(Debug)]
pub struct Dynalite {
    child: Child,
    pub endpoint: String,
}

impl Dynalite {
    pub fn start() -> Dynalite {
        let cli = workspace_root().join("tests/dynalite/node_modules/dynalite/cli.js");
        assert!(cli.exists(), "{} is missing: run scripts/setup.sh --tests (npm ci in tests/dynalite)", cli.display());
        let port = free_port();
        let mut command = Command::new("node");
        command.arg(&cli).args(["--host", "127.0.0.1", "--port", &port.to_string(), "--createTableMs", "0"]);
        let child = listening(command, "dynalite", port);
        Dynalite { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    pub async fn config(&self) -> aws_config::SdkConfig {
        config_for(&self.endpoint).await
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server and waits (up to a minute) until it listens on `port`;
/// kills it if it does not.
fn listening(mut command: Command, name: &str, port: u16) -> Child {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited at start: {status}");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{name} did not listen on port {port} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// An SDK configuration with test credentials for `endpoint`.
pub async fn config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// Creates an on-demand table keyed by `key` (a string).
pub async fn create_table(config: &aws_config::SdkConfig, table: &str, key: &str) {
    let client = aws_sdk_dynamodb::Client::new(config);
    client
        .create_table()
        .table_name(table)
        .key_schema(KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().expect("key"))
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("definition"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
}

/// Creates an on-demand table keyed by `Domain` with a stream of
/// `NEW_AND_OLD_IMAGES`.
pub async fn create_streamed_table(config: &aws_config::SdkConfig, table: &str) {
    let client = aws_sdk_dynamodb::Client::new(config);
    client
        .create_table()
        .table_name(table)
        .key_schema(KeySchemaElement::builder().attribute_name("Domain").key_type(KeyType::Hash).build().expect("key"))
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("Domain")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("definition"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                .build()
                .expect("stream"),
        )
        .send()
        .await
        .expect("CreateTable");
}

/// Deletes items by Domain.
pub async fn delete_items(config: &aws_config::SdkConfig, table: &str, domains: &[&str]) {
    let client = aws_sdk_dynamodb::Client::new(config);
    for domain in domains {
        client
            .delete_item()
            .table_name(table)
            .key("Domain", AttributeValue::S((*domain).to_owned()))
            .send()
            .await
            .expect("DeleteItem");
    }
}

/// Writes items given in DynamoDB's typed JSON, 25 per BatchWriteItem,
/// eight requests at a time.
pub async fn put_items(config: &aws_config::SdkConfig, table: &str, items: &[Json]) {
    let client = aws_sdk_dynamodb::Client::new(config);
    let mut writes = tokio::task::JoinSet::new();
    for chunk in items.chunks(25) {
        let requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                let put = PutRequest::builder().set_item(Some(attributes(item))).build().expect("put");
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        if writes.len() == 8 {
            check_written(writes.join_next().await);
        }
        writes.spawn(client.batch_write_item().request_items(table, requests).send());
    }
    while let Some(done) = writes.join_next().await {
        check_written(Some(done));
    }
}

type BatchWritten = Result<
    aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput,
    aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemError>,
>;

fn check_written(done: Option<Result<BatchWritten, tokio::task::JoinError>>) {
    let out = done.expect("a write in flight").expect("write task").expect("BatchWriteItem");
    assert!(out.unprocessed_items().is_none_or(|u| u.is_empty()), "moto left items unprocessed");
}

/// An item in DynamoDB's typed JSON as the SDK's attribute map.
pub fn attributes(item: &Json) -> HashMap<String, AttributeValue> {
    item.as_object().expect("an item is an object").iter().map(|(k, v)| (k.clone(), attribute(v))).collect()
}

fn attribute(v: &Json) -> AttributeValue {
    let (tag, value) = v.as_object().and_then(|o| o.iter().next()).expect("a typed value");
    let strings = || value.as_array().expect("a set").iter().map(|s| s.as_str().expect("string").to_owned()).collect();
    match tag.as_str() {
        "S" => AttributeValue::S(value.as_str().expect("S").to_owned()),
        "N" => AttributeValue::N(value.as_str().expect("N").to_owned()),
        "BOOL" => AttributeValue::Bool(value.as_bool().expect("BOOL")),
        "NULL" => AttributeValue::Null(true),
        "L" => AttributeValue::L(value.as_array().expect("L").iter().map(attribute).collect()),
        "M" => {
            AttributeValue::M(value.as_object().expect("M").iter().map(|(k, v)| (k.clone(), attribute(v))).collect())
        }
        "SS" => AttributeValue::Ss(strings()),
        "NS" => AttributeValue::Ns(strings()),
        other => panic!("test items do not use type {other}"),
    }
}

/// What the fault proxy does to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 400 ProvisionedThroughputExceededException, as DynamoDB throttles.
    Throttle,
    /// 500 InternalServerError.
    ServerError,
    /// 503 with an empty body, as an overloaded front end answers.
    Unavailable,
    /// Close the connection without an answer.
    Drop,
    /// This status, content type and body.
    Answer(u16, &'static str, String),
    /// This status and these headers, no body (a HEAD's answer).
    Headers(u16, Vec<(&'static str, String)>),
    /// Forward the request (the server does the work), then close the
    /// connection instead of answering: a reply lost after a commit.
    LoseReply,
}

/// What the proxy knows about a request when it decides.
#[derive(Debug)]
pub struct Request {
    /// `X-Amz-Target`, e.g. `DynamoDB_20120810.Scan` (empty if absent).
    pub target: String,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Json,
    /// The body as sent (ELBv2, for one, sends a form, not JSON).
    pub raw: bytes::Bytes,
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path and query, e.g. `/bucket/key` for S3 path-style requests.
    pub path: String,
    /// The request's headers.
    pub headers: hyper::HeaderMap,
}

type Decide = dyn Fn(&Request) -> Option<Fault> + Send + Sync;

/// Answers recorded by a replaying proxy, by request target and body.
type Recorded = std::sync::Mutex<HashMap<(String, bytes::Bytes), (hyper::http::response::Parts, bytes::Bytes)>>;

/// An HTTP/1.1 proxy in front of a server that injects faults into the
/// requests `decide` picks, and forwards the rest. Runs on its own thread
/// and runtime until dropped.
pub struct FaultProxy {
    pub endpoint: String,
    injected: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl FaultProxy {
    pub fn start(upstream: &str, decide: impl Fn(&Request) -> Option<Fault> + Send + Sync + 'static) -> FaultProxy {
        FaultProxy::spawn(upstream, Arc::new(decide), None)
    }

    /// A proxy without faults that records every answer and replays it
    /// for the same request (same target, same body) instead of asking
    /// upstream again: a second Scan then measures the client alone.
    pub fn replaying(upstream: &str) -> FaultProxy {
        FaultProxy::spawn(upstream, Arc::new(|_: &Request| None), Some(Arc::new(Recorded::default())))
    }

    fn spawn(upstream: &str, decide: Arc<Decide>, recorded: Option<Arc<Recorded>>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let upstream: hyper::Uri = upstream.parse().expect("upstream URL");
        let (injected, forwarded) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (i, f) = (injected.clone(), forwarded.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(serve(listener, upstream, decide, recorded, i, f, rx));
        });
        FaultProxy { endpoint: format!("http://{addr}"), injected, forwarded, shutdown: Some(tx), thread: Some(thread) }
    }

    /// Requests answered with a fault so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Requests passed through so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

async fn serve(
    listener: TcpListener,
    upstream: hyper::Uri,
    decide: Arc<Decide>,
    recorded: Option<Arc<Recorded>>,
    injected: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let client: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = &mut shutdown => return,
        };
        let (client, upstream, decide, recorded) = (client.clone(), upstream.clone(), decide.clone(), recorded.clone());
        let (injected, forwarded) = (injected.clone(), forwarded.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (client, upstream, decide) = (client.clone(), upstream.clone(), decide.clone());
                let recorded = recorded.clone();
                let (injected, forwarded) = (injected.clone(), forwarded.clone());
                async move {
                    use http_body_util::BodyExt as _;
                    let (mut parts, body) = req.into_parts();
                    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
                    let request = Request {
                        target: parts
                            .headers
                            .get("x-amz-target")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        body: serde_json::from_slice(&body).unwrap_or(Json::Null),
                        raw: body.clone(),
                        method: parts.method.to_string(),
                        path: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
                        headers: parts.headers.clone(),
                    };
                    let lose_reply = match decide(&request) {
                        Some(Fault::LoseReply) => true,
                        Some(fault) => {
                            injected.fetch_add(1, Ordering::Relaxed);
                            return fault_response(fault);
                        }
                        None => false,
                    };
                    let key = (request.target.clone(), body.clone());
                    if let Some(recorded) = &recorded {
                        let hit = recorded.lock().expect("lock").get(&key).cloned();
                        if let Some((parts, body)) = hit {
                            return Ok(hyper::Response::from_parts(parts, Body::new(body)));
                        }
                    }
                    forwarded.fetch_add(1, Ordering::Relaxed);
                    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
                    parts.uri =
                        format!("{upstream}{}", path.trim_start_matches('/')).parse().map_err(|e| format!("{e}"))?;
                    let response = client
                        .request(hyper::Request::from_parts(parts, Body::new(body)))
                        .await
                        .map_err(|e| e.to_string())?;
                    let (parts, body) = response.into_parts();
                    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
                    if lose_reply {
                        injected.fetch_add(1, Ordering::Relaxed);
                        return Err("injected: the reply was lost after the server answered".into());
                    }
                    if let Some(recorded) = &recorded {
                        recorded.lock().expect("lock").insert(key, (parts.clone(), body.clone()));
                    }
                    Ok::<_, String>(hyper::Response::from_parts(parts, Body::new(body)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

const JSON_1_0: &str = "application/x-amz-json-1.0";

fn fault_response(fault: Fault) -> Result<hyper::Response<Body>, String> {
    let (status, content_type, body) = match fault {
        Fault::Throttle => (
            400,
            JSON_1_0,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"injected: throughput exceeded"}"#.to_owned(),
        ),
        Fault::ServerError => (
            500,
            JSON_1_0,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected: internal error"}"#.to_owned(),
        ),
        Fault::Unavailable => (503, JSON_1_0, String::new()),
        Fault::Drop => return Err("injected: connection dropped".into()),
        Fault::LoseReply => unreachable!("answered after forwarding"),
        Fault::Answer(status, content_type, body) => (status, content_type, body),
        Fault::Headers(status, headers) => {
            let mut response = hyper::Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            return response.body(Body::new(bytes::Bytes::new())).map_err(|e| e.to_string());
        }
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())
}

/// A TCP server that accepts every connection, reads the request's head,
/// writes `reply` (nothing at all for a silent server) and then holds the
/// connection open without another byte until dropped: an endpoint that
/// hangs, or a body that stalls half way. Counts the requests it took.
#[derive(Debug)]
pub struct StallingServer {
    pub endpoint: String,
    requests: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl StallingServer {
    pub fn start(reply: &'static [u8]) -> StallingServer {
        StallingServer::trickling(reply, b"", 0, Duration::ZERO)
    }

    /// Writes `reply`, then `chunk` `count` times, `gap` apart (a body
    /// that is slow but keeps coming), then holds the connection.
    pub fn trickling(reply: &'static [u8], chunk: &'static [u8], count: usize, gap: Duration) -> StallingServer {
        use std::io::{Read as _, Write as _};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, done, chunks) = (requests.clone(), stop.clone(), count);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        // The request's head (and whatever else came with it).
                        let mut seen = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.write_all(reply);
                        if let Ok(mut writer) = stream.try_clone() {
                            std::thread::spawn(move || {
                                for _ in 0..chunks {
                                    std::thread::sleep(gap);
                                    if writer.write_all(chunk).is_err() {
                                        return;
                                    }
                                }
                            });
                        }
                        held.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StallingServer { endpoint, requests, stop }
    }

    /// Requests taken so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for StallingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
