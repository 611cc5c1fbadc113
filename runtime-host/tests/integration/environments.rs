//! Environments end to end: `edgeroute env create` and `delete` write the
//! routing table (moto's DynamoDB, on 127.0.0.1), `edgeroute watch` follows
//! its stream and publishes to a store, and the host follows the store and
//! routes HTTP: a created environment is served, a deleted one is not.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgeroute_control::aws::RetryPolicy;
use edgeroute_control::env::{CreateRequest, Environments, HandleChoice, Randomness, Tables};
use edgeroute_control::watch::{self, WatchOptions};
use edgeroute_host::follow::Follower;
use edgeroute_host::http::{Limits, Listening, Workers};
use edgeroute_host::plane::DataPlane;
use edgeroute_host::probe::exchange;
use edgeroute_host::proxy::{Proxy, ProxyConfig};
use edgeroute_host::statics::{DirObjects, Objects};
use edgeroute_host::{EdgeEngine, HostState, Router};
use edgeroute_store::{Store, StoreLocation};
use edgeroute_tests_aws::Moto;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeroute-envs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The status and body the host gives `host`'s `/`.
async fn get(addr: SocketAddr, host: &str) -> (u16, String) {
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let answer = exchange(addr, request.as_bytes()).await.unwrap();
    (answer.status, String::from_utf8_lossy(&answer.body).into_owned())
}

async fn until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[test]
fn a_created_environment_is_served_and_a_deleted_one_is_not() {
    let moto = Moto::start();
    let dir = scratch("e2e");
    let sites = dir.join("sites");
    std::fs::create_dir_all(sites.join("previews/portal")).unwrap();
    std::fs::write(sites.join("previews/portal/index.html"), "portal preview\n").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let config = moto.config().await;
        let envs = Environments::new(
            aws_sdk_dynamodb::Client::new(&config),
            Tables::new("routes", None),
            RetryPolicy::default(),
        );
        envs.init().await.unwrap();
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(super::dataplane::upstream(upstream));
        let request = |app: &str| CreateRequest {
            app: app.into(),
            services: vec![
                ("web".into(), "s3://previews/portal".into()),
                ("api".into(), format!("http://{upstream_addr}")),
            ],
            domain: "example.com".into(),
            handle: HandleChoice::Random,
        };
        // One environment before the watcher starts (its first snapshot), one after.
        let first = envs.create(&request("first"), &mut Randomness::Os).await.unwrap();

        let location = StoreLocation::Dir(dir.join("store"));
        let store = Store::open(&location, None).unwrap();
        let options = WatchOptions { debounce: Duration::from_millis(30), ..WatchOptions::default() };
        let watch_config = config.clone();
        tokio::spawn(
            async move { watch::watch(&watch_config, "routes", &store, &options, std::future::pending()).await },
        );
        until("the first snapshot is published", async || dir.join("store/current.json").exists()).await;

        let follower = Follower::new(Store::open(&location, None).unwrap(), dir.join("cache"));
        let state = HostState::leak(Router::empty(EdgeEngine::new().unwrap()), std::time::Duration::MAX);
        follower.start(state).await;
        assert!(state.router.live().is_some(), "the first snapshot is served");
        tokio::spawn(async move { follower.follow(state, Duration::from_millis(50)).await });
        let plane = DataPlane {
            state,
            objects: Objects::Dir(DirObjects::new(&sites)),
            proxy: Proxy::new(ProxyConfig::default()).unwrap(),
            https: Default::default(),
        };
        let listener = Listening::plain(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let workers = Workers::start(&plane, vec![listener], 1, Limits::default()).unwrap();
        let addr = workers.local_addr();
        assert_eq!(get(addr, &first.hostnames["web"]).await, (200, "portal preview\n".into()));

        let second = envs.create(&request("second"), &mut Randomness::Os).await.unwrap();
        let web = second.hostnames["web"].clone();
        let api = second.hostnames["api"].clone();
        until("the new environment is served", async || get(addr, &web).await.0 == 200).await;
        let (status, body) = get(addr, &api).await;
        assert_eq!(status, 200);
        assert!(body.contains(&format!("host: {api}")), "the balancer got the request with its Host: {body}");

        envs.delete(&second.env_id).await.unwrap();
        until("the deleted environment is no longer served", async || get(addr, &web).await.0 == 404).await;
        assert_eq!(get(addr, &api).await.0, 404);
        assert_eq!(get(addr, &first.hostnames["web"]).await.0, 200, "the other environment stays");
        workers.shutdown().await;
    });
}
