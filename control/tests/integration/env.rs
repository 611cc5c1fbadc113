//! Environments and handle pools against local DynamoDB-protocol servers:
//! moto's (transactions, streams) and dynalite (which serialises
//! conditional writes, for the concurrent handle takes), each started on
//! 127.0.0.1 by the test and stopped after it.

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use edgeroute_control::aws::RetryPolicy;
use edgeroute_control::env::{CreateRequest, EnvError, Environments, HandleChoice, Randomness, Tables, RANDOM_LEN};
use edgeroute_tests_aws::{aws_env, Dynalite, Fault, FaultProxy, Moto};
use serde_json::{json, Value as Json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn environments(config: &aws_config::SdkConfig, table: &str) -> Environments {
    let envs = Environments::new(Client::new(config), Tables::new(table, None), RetryPolicy::default());
    envs.init().await.unwrap();
    envs
}

/// A test on a fresh moto server, with the tables `env init` makes
/// (`routes`, `routes-edgeroute`) and a client for checking them.
fn on_moto(test: impl AsyncFnOnce(&Environments, &Client)) {
    let moto = Moto::start();
    runtime().block_on(async {
        let config = moto.config().await;
        let client = Client::new(&config);
        let envs = environments(&config, "routes").await;
        test(&envs, &client).await;
    });
}

fn request(app: &str, services: &[(&str, &str)], handle: HandleChoice) -> CreateRequest {
    CreateRequest {
        app: app.into(),
        services: services.iter().map(|(s, t)| (s.to_string(), t.to_string())).collect(),
        domain: "example.com".into(),
        handle,
    }
}

const SERVICES: &[(&str, &str)] = &[("api", "https://lb.example.net"), ("web", "s3://sites/portal/v1")];

/// The routing table's items, Domain → (Target, EnvId).
async fn routes(client: &Client, table: &str) -> HashMap<String, (String, Option<String>)> {
    let out = client.scan().table_name(table).consistent_read(true).send().await.unwrap();
    out.items()
        .iter()
        .map(|item| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            (text("Domain").unwrap(), (text("Target").unwrap(), text("EnvId")))
        })
        .collect()
}

fn edgeroute(args: &[&str], endpoint: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeroute"))
        .args(args)
        .env_remove("AWS_PROFILE")
        .envs(aws_env(endpoint))
        .output()
        .expect("runs")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn create_writes_every_route_and_the_record_and_delete_removes_them() {
    on_moto(async |envs, client| {
        // init: both tables, the routing table's stream on; a second init changes nothing.
        let described = client.describe_table().table_name("routes").send().await.unwrap();
        assert!(described.table().unwrap().stream_specification().unwrap().stream_enabled());
        assert_eq!(envs.init().await.unwrap().created, Vec::<String>::new());

        let env = envs.create(&request("portal", SERVICES, HandleChoice::Random), &mut Randomness::Os).await.unwrap();
        assert_eq!(env.hostnames.len(), 2);
        let api = &env.hostnames["api"];
        let part = api.strip_prefix("api-").unwrap().strip_suffix("-portal.example.com").unwrap();
        assert_eq!(part.len(), RANDOM_LEN);
        assert!(part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{part}");
        assert_eq!(env.hostnames["web"], format!("web-{part}-portal.example.com"));
        assert_eq!(env.handle, None);

        let table = routes(client, "routes").await;
        assert_eq!(table[api], ("https://lb.example.net".into(), Some(env.env_id.clone())));
        assert_eq!(table[&env.hostnames["web"]].0, "s3://sites/portal/v1");
        assert_eq!(envs.list().await.unwrap(), vec![env.clone()]);
        assert_eq!(env.json()["hostnames"]["api"], Json::String(api.clone()));

        let done = envs.delete(&env.env_id).await.unwrap();
        assert_eq!(done.removed.len(), 2);
        assert!(routes(client, "routes").await.is_empty());
        assert!(envs.list().await.unwrap().is_empty());
        // Twice is harmless; an unknown id is an error.
        assert!(envs.delete(&env.env_id).await.unwrap().already);
        let e = envs.delete("enosuchenv").await.unwrap_err();
        assert!(matches!(e, EnvError::NoSuchEnvironment(_)), "{e}");
    });
}

#[test]
fn bad_requests_are_refused_before_anything_is_written_or_taken() {
    on_moto(async |envs, client| {
        envs.add_handles("oauth", &["blue".into()]).await.unwrap();
        let pool = || HandleChoice::Pool("oauth".into());
        let cases: Vec<(CreateRequest, &str)> = vec![
            (request("Portal", SERVICES, pool()), "app \"Portal\": 'P' is not allowed"),
            (request("portal", &[("api_v2", "https://lb.example.net")], pool()), "service \"api_v2\""),
            (request(&"p".repeat(60), SERVICES, pool()), "DNS allows 63"),
            (request("portal", &[("api", "ftp://nope")], pool()), "Target \"ftp://nope\""),
            (request("portal", &[("api", "https://a"), ("api", "https://b")], pool()), "given twice"),
            (request("portal", &[], pool()), "at least one --service"),
            (CreateRequest { domain: "*.example.com".into(), ..request("portal", SERVICES, pool()) }, "wildcards"),
        ];
        for (req, expected) in cases {
            let e = envs.create(&req, &mut Randomness::Os).await.unwrap_err().to_string();
            assert!(e.contains(expected), "{e:?} should say {expected:?}");
        }
        assert!(routes(client, "routes").await.is_empty());
        assert!(envs.list().await.unwrap().is_empty());
        assert_eq!(envs.handles("oauth").await.unwrap()[0].env_id, None, "the handle was never taken");
    });
}

#[test]
fn handles_are_taken_from_the_pool_given_back_and_reused() {
    on_moto(async |envs, client| {
        let added = envs.add_handles("oauth", &["blue".into(), "green".into()]).await.unwrap();
        assert_eq!(added, vec![("blue".into(), true), ("green".into(), true)]);
        // Adding again leaves a handle as it is.
        assert_eq!(envs.add_handles("oauth", &["blue".into()]).await.unwrap(), vec![("blue".into(), false)]);

        let pool = || HandleChoice::Pool("oauth".into());
        let a = envs.create(&request("portal", SERVICES, pool()), &mut Randomness::Os).await.unwrap();
        let b = envs.create(&request("portal", SERVICES, pool()), &mut Randomness::Os).await.unwrap();
        let mut handles: Vec<_> = [&a, &b].iter().map(|e| e.handle.clone().unwrap()).collect();
        handles.sort();
        assert_eq!(handles, ["blue", "green"]);
        let h = a.handle.as_deref().unwrap();
        assert_eq!(a.hostnames["api"], format!("api-{h}-portal.example.com"));

        // An empty pool: a clear error, nothing written.
        let e = envs.create(&request("portal", SERVICES, pool()), &mut Randomness::Os).await.unwrap_err();
        assert!(matches!(e, EnvError::PoolEmpty { total: 2, .. }), "{e}");
        assert!(e.to_string().contains("all 2 handle(s) are taken"), "{e}");
        assert_eq!(routes(client, "routes").await.len(), 4);
        let e = envs.create(&request("portal", SERVICES, HandleChoice::Pool("nope".into())), &mut Randomness::Os).await;
        assert!(matches!(e, Err(EnvError::NoSuchPool(_))), "{e:?}");

        // Delete and create again, three times: the handle comes back and the
        // hostnames are the same, now another environment's.
        let mut previous = a.clone();
        for _ in 0..3 {
            let done = envs.delete(&previous.env_id).await.unwrap();
            assert_eq!(done.handle_returned.as_deref(), Some(h));
            let next = envs.create(&request("portal", SERVICES, pool()), &mut Randomness::Os).await.unwrap();
            assert_eq!(next.handle.as_deref(), Some(h));
            assert_eq!(next.hostnames, previous.hostnames);
            assert_ne!(next.env_id, previous.env_id);
            let table = routes(client, "routes").await;
            assert_eq!(table[&next.hostnames["api"]].1.as_deref(), Some(next.env_id.as_str()));
            previous = next;
        }

        // A stale delete of the first environment, after its handle was
        // reused: say it crashed before marking its record, and is retried.
        client
            .update_item()
            .table_name("routes-edgeroute")
            .key("PK", AttributeValue::S("env".into()))
            .key("SK", AttributeValue::S(a.env_id.clone()))
            .update_expression("SET #s = :active")
            .expression_attribute_names("#s", "State")
            .expression_attribute_values(":active", AttributeValue::S("active".into()))
            .send()
            .await
            .unwrap();
        let stale = envs.delete(&a.env_id).await.unwrap();
        assert_eq!(stale.removed, Vec::<String>::new(), "the newer environment's routes stay");
        assert_eq!(stale.skipped.len(), 2);
        assert_eq!(stale.handle_returned, None, "the handle stays with the newer environment");
        let table = routes(client, "routes").await;
        assert_eq!(table[&previous.hostnames["api"]].1.as_deref(), Some(previous.env_id.as_str()));
        let pool_now = envs.handles("oauth").await.unwrap();
        assert!(pool_now.iter().any(|x| x.name == h && x.env_id.as_deref() == Some(previous.env_id.as_str())));

        // A named handle that collides with an existing hostname: an error, nothing written.
        let e = envs
            .create(&request("portal", SERVICES, HandleChoice::Named(h.into())), &mut Randomness::Os)
            .await
            .unwrap_err();
        assert!(matches!(e, EnvError::HostnameTaken(_)), "{e}");
    });
}

#[test]
fn a_failed_create_gives_its_handle_back() {
    on_moto(async |envs, client| {
        envs.add_handles("oauth", &["blue".into()]).await.unwrap();
        // Someone wrote a route by hand with the hostname the handle gives.
        client
            .put_item()
            .table_name("routes")
            .item("Domain", AttributeValue::S("web-blue-portal.example.com".into()))
            .item("Target", AttributeValue::S("s3://handmade".into()))
            .send()
            .await
            .unwrap();
        let e = envs
            .create(&request("portal", SERVICES, HandleChoice::Pool("oauth".into())), &mut Randomness::Os)
            .await
            .unwrap_err();
        assert!(matches!(&e, EnvError::HostnameTaken(h) if h == "web-blue-portal.example.com"), "{e}");
        assert_eq!(envs.handles("oauth").await.unwrap()[0].env_id, None, "given back");
        let table = routes(client, "routes").await;
        assert_eq!(table.len(), 1, "no orphan: {table:?}");
        assert_eq!(table["web-blue-portal.example.com"], ("s3://handmade".into(), None));
        assert!(envs.list().await.unwrap().is_empty());
    });
}

#[test]
fn a_random_part_that_collides_is_drawn_again() {
    on_moto(async |envs, client| {
        // The draws a generator seeded with 42 makes: the env id, then random parts.
        let mut twin = Randomness::Seeded(fastrand::Rng::with_seed(42));
        twin.draw(12).unwrap();
        let parts: Vec<String> = (0..6).map(|_| twin.draw(RANDOM_LEN).unwrap()).collect();
        // The first draw's web hostname exists already.
        let taken = format!("web-{}-portal.example.com", parts[0]);
        client
            .put_item()
            .table_name("routes")
            .item("Domain", AttributeValue::S(taken.clone()))
            .item("Target", AttributeValue::S("s3://other".into()))
            .send()
            .await
            .unwrap();
        let mut rng = Randomness::Seeded(fastrand::Rng::with_seed(42));
        let env = envs.create(&request("portal", SERVICES, HandleChoice::Random), &mut rng).await.unwrap();
        assert_eq!(env.hostnames["web"], format!("web-{}-portal.example.com", parts[1]), "the second draw");
        let table = routes(client, "routes").await;
        assert_eq!(table.len(), 3);
        assert_eq!(table[&taken], ("s3://other".into(), None), "left alone");
        assert!(!table.contains_key(&format!("api-{}-portal.example.com", parts[0])), "no orphan of the first try");

        // Every draw collides: a clear error after five, nothing written.
        for part in &parts[..5] {
            client
                .put_item()
                .table_name("routes")
                .item("Domain", AttributeValue::S(format!("api-{part}-shop.example.com")))
                .item("Target", AttributeValue::S("s3://other".into()))
                .send()
                .await
                .unwrap();
        }
        let mut rng = Randomness::Seeded(fastrand::Rng::with_seed(42));
        let e = envs.create(&request("shop", SERVICES, HandleChoice::Random), &mut rng).await.unwrap_err();
        assert!(matches!(e, EnvError::Collisions(5)), "{e}");
        assert_eq!(routes(client, "routes").await.len(), 3 + 5);
        assert_eq!(envs.list().await.unwrap().len(), 1);
    });
}

#[test]
fn deploy_points_a_service_at_a_new_version_only_while_it_is_the_environments() {
    on_moto(async |envs, client| {
        let env = envs.create(&request("portal", SERVICES, HandleChoice::Random), &mut Randomness::Os).await.unwrap();
        let assets: Vec<String> = vec!["index.html".into(), "app.2b.js".into()];
        let host =
            envs.deploy(&env.env_id, "web", "s3://sites/portal/v2", Some(&assets), Some("index.html")).await.unwrap();
        assert_eq!(host, env.hostnames["web"]);
        let item = client
            .get_item()
            .table_name("routes")
            .key("Domain", AttributeValue::S(host.clone()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        assert_eq!(item["Target"].as_s().unwrap(), "s3://sites/portal/v2");
        assert_eq!(item["Assets"].as_l().unwrap().len(), 2);
        assert_eq!(item["Fallback"].as_s().unwrap(), "index.html");
        assert_eq!(item["EnvId"].as_s().unwrap(), &env.env_id);

        let e = envs.deploy(&env.env_id, "admin", "s3://x", None, None).await.unwrap_err();
        assert!(e.to_string().contains("has no service admin (it has: api, web)"), "{e}");
        let e = envs.deploy(&env.env_id, "web", "https://lb.example.net", None, Some("index.html")).await.unwrap_err();
        assert!(e.to_string().contains("Fallback is only allowed on static sites"), "a bad item is refused: {e}");
        // The route now belongs to someone else: refused.
        client
            .update_item()
            .table_name("routes")
            .key("Domain", AttributeValue::S(host.clone()))
            .update_expression("SET EnvId = :other")
            .expression_attribute_values(":other", AttributeValue::S("eother".into()))
            .send()
            .await
            .unwrap();
        let e = envs.deploy(&env.env_id, "web", "s3://sites/portal/v3", None, None).await.unwrap_err();
        assert!(matches!(e, EnvError::NotOwned { .. }), "{e}");
        envs.delete(&env.env_id).await.unwrap();
        let e = envs.deploy(&env.env_id, "api", "https://lb2.example.net", None, None).await.unwrap_err();
        assert!(e.to_string().contains("deleted"), "{e}");
    });
}

#[test]
fn fifty_concurrent_creates_from_one_pool_get_distinct_handles() {
    // Serial moto: its conditional writes are then atomic, as DynamoDB's are
    // (threaded moto lets two takers pass the same condition).
    let moto = Moto::start_serial();
    runtime().block_on(async {
        let config = moto.config().await;
        let client = Client::new(&config);
        let envs = Arc::new(environments(&config, "routes").await);
        let names: Vec<String> = (0..50).map(|i| format!("h{i:02}")).collect();
        envs.add_handles("pr", &names).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let envs = envs.clone();
                tokio::spawn(async move {
                    envs.create(&request("app", SERVICES, HandleChoice::Pool("pr".into())), &mut Randomness::Os).await
                })
            })
            .collect();
        let mut handles = BTreeSet::new();
        for task in tasks {
            let env = task.await.unwrap().unwrap();
            assert!(handles.insert(env.handle.unwrap()), "a handle given twice");
        }
        assert_eq!(handles.len(), 50);
        assert_eq!(routes(&client, "routes").await.len(), 100);
        let e = envs.create(&request("app", SERVICES, HandleChoice::Pool("pr".into())), &mut Randomness::Os).await;
        assert!(matches!(e, Err(EnvError::PoolEmpty { total: 50, .. })), "{e:?}");
    });
}

#[test]
fn concurrent_takes_on_dynalite_never_share_a_handle() {
    // dynalite serialises conditional writes as DynamoDB does (moto does
    // not lock), so this is where the take's condition is really raced.
    let dynalite = Dynalite::start();
    runtime().block_on(async {
        let config = dynalite.config().await;
        let envs = Arc::new(environments(&config, "routes").await);
        let names: Vec<String> = (0..30).map(|i| format!("h{i:02}")).collect();
        envs.add_handles("pr", &names).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let envs = envs.clone();
                tokio::spawn(async move {
                    let env_id = format!("e{i:02}");
                    envs.take_handle("pr", &env_id, &mut Randomness::Os).await.map(|h| (h, env_id))
                })
            })
            .collect();
        let mut taken = HashMap::new();
        let mut empty = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok((handle, env_id)) => assert!(taken.insert(handle, env_id).is_none(), "a handle taken twice"),
                Err(EnvError::PoolEmpty { total: 30, .. }) => empty += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((taken.len(), empty), (30, 20));
        // The table agrees with what each taker was told.
        for handle in envs.handles("pr").await.unwrap() {
            assert_eq!(handle.env_id.as_ref(), taken.get(&handle.name), "{}", handle.name);
        }
        // Giving back checks the holder.
        let (name, holder) = taken.iter().next().unwrap();
        assert!(!envs.give_back("pr", name, "e99").await.unwrap());
        assert!(envs.give_back("pr", name, holder).await.unwrap());
        assert!(!envs.give_back("pr", name, holder).await.unwrap(), "twice is harmless");
    });
}

#[test]
fn the_cli_creates_lists_and_deletes_environments() {
    let moto = Moto::start();
    let e = &moto.endpoint;
    let out = stdout(&edgeroute(&["env", "init", "--table", "routes"], e));
    assert!(out.contains("routes: created") && out.contains("routes-edgeroute: created"), "{out}");
    stdout(&edgeroute(&["handles", "add", "--table", "routes", "oauth", "blue", "green"], e));
    let out = edgeroute(
        &[
            "env",
            "create",
            "--table",
            "routes",
            "--app",
            "portal",
            "--domain",
            "example.com",
            "--service",
            "api=https://lb.example.net",
            "--service",
            "web=s3://sites/portal/v1",
            "--handle-pool",
            "oauth",
            "--json",
        ],
        e,
    );
    let created: Json = serde_json::from_str(&stdout(&out)).unwrap();
    let handle = created["handle"].as_str().unwrap().to_owned();
    let env_id = created["env_id"].as_str().unwrap().to_owned();
    assert_eq!(created["hostnames"]["api"], format!("api-{handle}-portal.example.com"));
    assert_eq!(created.as_object().unwrap().len(), 3, "{created}");

    let random: Json = serde_json::from_str(&stdout(&edgeroute(
        &[
            "env",
            "create",
            "--table",
            "routes",
            "--app",
            "shop",
            "--domain",
            "example.com",
            "--service",
            "web=s3://shop",
            "--json",
        ],
        e,
    )))
    .unwrap();
    assert_eq!(random["handle"], Json::Null);

    let list: Json =
        serde_json::from_str(&stdout(&edgeroute(&["env", "list", "--table", "routes", "--json"], e))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let pool = stdout(&edgeroute(&["handles", "list", "--table", "routes", "oauth"], e));
    assert!(pool.contains(&format!("taken by {env_id}")), "{pool}");

    // Every subcommand that reports something says it in JSON too.
    let json = |args: &[&str]| -> Json {
        let out = edgeroute(args, e);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|err| panic!("{args:?}: {err}: {}", stdout(&out)))
    };
    let init = json(&["env", "init", "--table", "routes", "--json"]);
    assert_eq!(
        (init["routes"]["state"].as_str(), init["state"]["table"].as_str()),
        (Some("exists"), Some("routes-edgeroute"))
    );
    let added = json(&["handles", "add", "--table", "routes", "oauth", "green", "white", "--json"]);
    assert_eq!((added["added"].clone(), added["already_there"].clone()), (json!(["white"]), json!(["green"])));
    let random_id = random["env_id"].as_str().unwrap();
    let deployed =
        json(&["env", "deploy", "--table", "routes", random_id, "web", "--target", "s3://shop/v2", "--json"]);
    assert_eq!(deployed["hostname"], random["hostnames"]["web"]);
    assert_eq!(deployed["target"], "s3://shop/v2");
    let deleted = json(&["env", "delete", "--table", "routes", random_id, "--json"]);
    assert_eq!(
        (deleted["already_deleted"].as_bool(), deleted["removed"].as_array().map(Vec::len)),
        (Some(false), Some(1))
    );

    let out = stdout(&edgeroute(&["env", "delete", "--table", "routes", &env_id], e));
    assert!(out.contains("2 route(s) removed") && out.contains(&format!("handle {handle} is free again")), "{out}");
    let out = stdout(&edgeroute(&["env", "delete", "--table", "routes", &env_id], e));
    assert!(out.contains("deleted already"), "{out}");

    // Failures: a clear message and a non-zero exit.
    let out = edgeroute(
        &["env", "create", "--table", "routes", "--app", "x", "--domain", "example.com", "--service", "web"],
        e,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected NAME=TARGET"));
    let out = edgeroute(&["env", "delete", "--table", "routes", "enope"], e);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no environment enope"));
    let out = edgeroute(
        &[
            "env",
            "create",
            "--table",
            "routes",
            "--app",
            "x",
            "--domain",
            "example.com",
            "--service",
            "web=s3://bucket-a",
            "--handle-pool",
            "empty",
        ],
        e,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no handle pool empty"), "{out:?}");
    let out = edgeroute(
        &["env", "create", "--table", "routes", "--app", "x", "--domain", "example.com", "--service", "web=s3://a"],
        e,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("service web: Target \"s3://a\": bucket \"a\" is not a valid S3 bucket name"), "{err}");
}

/// DynamoDB's answer when another transaction was writing one of the items.
fn transaction_conflict(actions: usize) -> Fault {
    let mut codes = vec![json!({"Code": "None"}); actions];
    codes[0] = json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"});
    let body = json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict]",
        "CancellationReasons": codes,
    });
    Fault::Answer(400, "application/x-amz-json-1.0", body.to_string())
}

#[test]
fn conflicting_and_throttled_transactions_are_tried_again_and_then_reported() {
    let moto = Moto::start();
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    // The first two transactions conflict, the third is throttled, the fourth goes through.
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        if r.target != "DynamoDB_20120810.TransactWriteItems" {
            return None;
        }
        match seen.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Some(transaction_conflict(3)),
            2 => Some(Fault::Throttle),
            _ => None,
        }
    });
    runtime().block_on(async {
        let config = edgeroute_tests_aws::config_for(&proxy.endpoint).await;
        let client = Client::new(&config);
        let envs = environments(&config, "routes").await;
        envs.add_handles("oauth", &["blue".into()]).await.unwrap();
        let pool = || HandleChoice::Pool("oauth".into());
        let env = envs.create(&request("portal", SERVICES, pool()), &mut Randomness::Os).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(env.handle.as_deref(), Some("blue"));
        assert_eq!(routes(&client, "routes").await.len(), 2);
        envs.delete(&env.env_id).await.unwrap();
    });
    drop(proxy);

    // Conflicts that never end: a clear error, the handle given back, nothing written.
    // (Only the create's transactions, which write to the routing table, conflict.)
    let proxy = FaultProxy::start(&moto.endpoint, |r| {
        let creates = r.target == "DynamoDB_20120810.TransactWriteItems"
            && r.body.to_string().contains(r#""TableName":"routes""#);
        creates.then(|| transaction_conflict(4))
    });
    runtime().block_on(async {
        let config = edgeroute_tests_aws::config_for(&proxy.endpoint).await;
        let client = Client::new(&config);
        let envs = environments(&config, "routes").await;
        let e = envs
            .create(&request("portal", SERVICES, HandleChoice::Pool("oauth".into())), &mut Randomness::Os)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("every attempt conflicted with another transaction"), "{e}");
        assert_eq!(envs.handles("oauth").await.unwrap()[0].env_id, None, "given back");
        assert!(routes(&client, "routes").await.is_empty());
    });
}

/// The state table's view of a pool: handle → holder.
async fn holders(envs: &Environments, pool: &str) -> Vec<(String, Option<String>)> {
    envs.handles(pool).await.unwrap().into_iter().map(|h| (h.name, h.env_id)).collect()
}

/// [3/8] 1 and 4: a transaction whose reply is lost after the server
/// committed is retried with the same ClientRequestToken and byte-identical
/// parameters, and ends with one environment, its routes, and its handle
/// held, not given back. moto ignores the token, so the retry fails its
/// conditions there: the create must read its record back to learn that
/// the write was its own.
#[test]
fn a_create_whose_reply_is_lost_after_the_commit_holds_its_environment_and_handle() {
    let moto = Moto::start();
    let sent = Arc::new(std::sync::Mutex::new(Vec::<(Json, Vec<u8>)>::new()));
    let recorded = sent.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        if r.target != "DynamoDB_20120810.TransactWriteItems" {
            return None;
        }
        let mut sent = recorded.lock().unwrap();
        sent.push((r.body.clone(), r.raw.to_vec()));
        (sent.len() == 1).then_some(Fault::LoseReply)
    });
    runtime().block_on(async {
        let config = edgeroute_tests_aws::config_for(&proxy.endpoint).await;
        let client = Client::new(&config);
        let envs = environments(&config, "routes").await;
        envs.add_handles("oauth", &["blue".into(), "green".into()]).await.unwrap();
        let created =
            envs.create(&request("portal", SERVICES, HandleChoice::Pool("oauth".into())), &mut Randomness::Os).await;
        let env = created.unwrap_or_else(|e| panic!("a committed create reported: {e}"));
        let listed = envs.list().await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:#?}");
        assert_eq!(listed[0].env_id, env.env_id);
        let routes = routes(&client, "routes").await;
        assert_eq!(routes.len(), 2);
        assert!(routes.values().all(|(_, owner)| owner.as_deref() == Some(env.env_id.as_str())), "{routes:?}");
        let held: Vec<_> = holders(&envs, "oauth").await.into_iter().filter(|(_, h)| h.is_some()).collect();
        assert_eq!(
            held,
            [(env.handle.clone().unwrap(), Some(env.env_id.clone()))],
            "the handle was given back or leaked"
        );
    });
    let sent = sent.lock().unwrap();
    assert!(sent.len() >= 2, "the lost reply was not retried: {sent:?}");
    let token = |body: &Json| body["ClientRequestToken"].as_str().map(str::to_owned);
    assert!(token(&sent[0].0).is_some(), "no ClientRequestToken: {}", sent[0].0);
    assert_eq!(token(&sent[0].0), token(&sent[1].0), "a retry of one attempt drew a new token");
    assert_eq!(sent[0].1, sent[1].1, "a retry of one attempt changed its parameters (byte for byte)");
}

/// [3/8] 2 and 4: a handle taken by an UpdateItem whose reply is lost is
/// this environment's: the retry keeps it rather than taking a second one
/// and leaking the first.
#[test]
fn a_handle_take_whose_reply_is_lost_takes_one_handle() {
    let moto = Moto::start();
    let takes = Arc::new(AtomicU64::new(0));
    let counted = takes.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        let take = r.target == "DynamoDB_20120810.UpdateItem" && r.body.to_string().contains(":taken");
        (take && counted.fetch_add(1, Ordering::SeqCst) == 0).then_some(Fault::LoseReply)
    });
    runtime().block_on(async {
        let config = edgeroute_tests_aws::config_for(&proxy.endpoint).await;
        let envs = environments(&config, "routes").await;
        envs.add_handles("oauth", &["blue".into(), "green".into()]).await.unwrap();
        let env = envs
            .create(&request("portal", SERVICES, HandleChoice::Pool("oauth".into())), &mut Randomness::Os)
            .await
            .unwrap();
        let held: Vec<_> = holders(&envs, "oauth").await.into_iter().filter(|(_, h)| h.is_some()).collect();
        assert_eq!(held, [(env.handle.clone().unwrap(), Some(env.env_id.clone()))], "a second handle was taken");
    });
    assert!(takes.load(Ordering::SeqCst) >= 2, "the lost reply was not retried");
}

/// Holds the requests a proxy picks until the test opens it.
#[derive(Default)]
struct Gate {
    held: std::sync::atomic::AtomicBool,
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    /// Called by the proxy: blocks until the gate opens (or 60 s have
    /// passed: a test that failed before opening it must still end).
    fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
        let open = self.open.lock().unwrap();
        let _unused = self.opened.wait_timeout_while(open, std::time::Duration::from_secs(60), |open| !*open).unwrap();
    }

    fn wait_until_held(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.held.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline, "nothing reached the gate");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// A proxy in front of moto that holds every `target` request at a gate
/// and, once the gate opens, drops it unanswered and unforwarded.
fn holding_proxy(moto: &Moto, target: &'static str) -> (FaultProxy, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let held = gate.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        (r.target == target).then(|| {
            held.hold();
            Fault::Drop
        })
    });
    (proxy, gate)
}

/// Runs `edgeroute ARGS` against `endpoint` and kills it once its request
/// reaches `gate` (then opens the gate): a process killed half way.
fn killed_at_gate(args: &[&str], endpoint: &str, gate: &Gate) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeroute"))
        .args(args)
        .env_remove("AWS_PROFILE")
        .envs(aws_env(endpoint))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    gate.wait_until_held();
    child.kill().unwrap();
    child.wait().unwrap();
    gate.open();
}

/// [3/8] 2, 3 and 4: a reclaim racing a slow create. The create has taken
/// its handle and its transaction is held up; meanwhile `handles reclaim`
/// (grace 0) returns the handle, whose holder has no record yet, and
/// another environment takes it. When the slow transaction arrives, its
/// ConditionCheck on the handle fails it: no two environments share one.
#[test]
fn a_reclaim_racing_a_slow_create_fails_the_create_instead_of_sharing_the_handle() {
    let moto = Moto::start();
    let gate = Arc::new(Gate::default());
    let held = gate.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        if r.target == "DynamoDB_20120810.TransactWriteItems" {
            held.hold();
        }
        None
    });
    let rt = runtime();
    let (direct, slow) = rt.block_on(async {
        let direct = environments(&moto.config().await, "routes").await;
        direct.add_handles("oauth", &["blue".into()]).await.unwrap();
        let slow = environments(&edgeroute_tests_aws::config_for(&proxy.endpoint).await, "routes").await;
        (direct, slow)
    });
    let create = rt.spawn(async move {
        slow.create(&request("slow", SERVICES, HandleChoice::Pool("oauth".into())), &mut Randomness::Os).await
    });
    gate.wait_until_held();
    let out = edgeroute(&["handles", "reclaim", "--table", "routes", "oauth", "--grace-seconds", "0"], &moto.endpoint);
    assert!(stdout(&out).contains("blue"), "{}", String::from_utf8_lossy(&out.stdout));
    let fast = rt
        .block_on(direct.create(&request("fast", SERVICES, HandleChoice::Pool("oauth".into())), &mut Randomness::Os))
        .unwrap();
    assert_eq!(fast.handle.as_deref(), Some("blue"));
    gate.open();
    let slow = rt.block_on(create).unwrap();
    assert!(
        matches!(&slow, Err(EnvError::HandleLost { handle, .. }) if handle == "blue"),
        "two environments share handle blue, or the create failed otherwise: {slow:?}"
    );
    rt.block_on(async {
        assert_eq!(holders(&direct, "oauth").await, [("blue".to_owned(), Some(fast.env_id.clone()))]);
        let listed = direct.list().await.unwrap();
        assert_eq!(listed.iter().map(|e| &e.app).collect::<Vec<_>>(), ["fast"], "{listed:#?}");
        let client = Client::new(&moto.config().await);
        let routes = routes(&client, "routes").await;
        assert!(routes.values().all(|(_, owner)| owner.as_deref() == Some(fast.env_id.as_str())), "{routes:?}");
    });
}

/// [3/8] 3 and 4: a create killed between taking its handle and its
/// transaction leaves the handle taken by an environment that never came
/// to be; `handles reclaim` returns it once it is older than the grace
/// period, and not before.
#[test]
fn a_create_killed_between_take_and_transaction_leaves_a_handle_that_reclaim_returns() {
    let moto = Moto::start();
    let (proxy, gate) = holding_proxy(&moto, "DynamoDB_20120810.TransactWriteItems");
    let rt = runtime();
    let envs = rt.block_on(async {
        let envs = environments(&moto.config().await, "routes").await;
        envs.add_handles("oauth", &["blue".into()]).await.unwrap();
        envs
    });
    let create = ["env", "create", "--table", "routes", "--app", "portal", "--domain", "example.com"];
    let pooled = ["--service", "web=s3://sites/portal", "--handle-pool", "oauth"];
    killed_at_gate(&[&create[..], &pooled[..]].concat(), &proxy.endpoint, &gate);
    let orphan = rt.block_on(holders(&envs, "oauth"));
    assert!(orphan[0].1.is_some(), "the killed create took no handle: {orphan:?}");

    let reclaim = |grace: &str| {
        edgeroute(
            &["handles", "reclaim", "--table", "routes", "oauth", "--grace-seconds", grace, "--json"],
            &moto.endpoint,
        )
    };
    let young = stdout(&reclaim("3600"));
    assert_eq!(rt.block_on(holders(&envs, "oauth")), orphan, "reclaimed inside the grace period: {young}");
    let old = stdout(&reclaim("0"));
    assert!(old.contains("blue"), "{old}");
    assert_eq!(rt.block_on(holders(&envs, "oauth")), [("blue".to_owned(), None)]);
    // A live environment's handle is never reclaimed.
    let env = rt
        .block_on(envs.create(&request("portal", SERVICES, HandleChoice::Pool("oauth".into())), &mut Randomness::Os))
        .unwrap();
    stdout(&reclaim("0"));
    assert_eq!(rt.block_on(holders(&envs, "oauth")), [("blue".to_owned(), Some(env.env_id))]);
}

/// [3/8] 3: `env gc` finishes an environment whose delete was killed half
/// way: its routes removed, its handle given back, its record marked deleted.
#[test]
fn env_gc_finishes_a_delete_that_was_killed_half_way() {
    let moto = Moto::start();
    let (proxy, gate) = holding_proxy(&moto, "DynamoDB_20120810.DeleteItem");
    let rt = runtime();
    let (envs, client) = rt.block_on(async {
        let config = moto.config().await;
        let envs = environments(&config, "routes").await;
        envs.add_handles("oauth", &["blue".into()]).await.unwrap();
        (envs, Client::new(&config))
    });
    let env = rt
        .block_on(envs.create(&request("portal", SERVICES, HandleChoice::Pool("oauth".into())), &mut Randomness::Os))
        .unwrap();
    killed_at_gate(&["env", "delete", "--table", "routes", &env.env_id], &proxy.endpoint, &gate);
    assert_eq!(rt.block_on(routes(&client, "routes")).len(), 2, "the killed delete removed routes");

    let out = stdout(&edgeroute(&["env", "gc", "--table", "routes", "--json"], &moto.endpoint));
    assert!(out.contains(&env.env_id), "{out}");
    rt.block_on(async {
        assert!(routes(&client, "routes").await.is_empty());
        assert_eq!(holders(&envs, "oauth").await, [("blue".to_owned(), None)]);
        assert!(envs.list().await.unwrap().is_empty());
        assert!(envs.get(&env.env_id).await.unwrap().deleted);
    });
}

/// [3/8] 1: a random-part create whose reply is lost after the commit is
/// one environment too (it does not draw again and write a second set of
/// routes), and each attempt after a collision draws a token of its own
/// (one token for two different transactions would be refused by DynamoDB
/// as IdempotentParameterMismatch).
#[test]
fn a_random_create_is_exactly_once_and_each_attempt_has_its_own_token() {
    let moto = Moto::start();
    let tokens = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = tokens.clone();
    let proxy = FaultProxy::start(&moto.endpoint, move |r| {
        if r.target != "DynamoDB_20120810.TransactWriteItems" {
            return None;
        }
        let mut tokens = recorded.lock().unwrap();
        tokens.push(r.body["ClientRequestToken"].as_str().unwrap_or_default().to_owned());
        // The first transaction of the second create: its reply is lost.
        (tokens.len() == 3).then_some(Fault::LoseReply)
    });
    runtime().block_on(async {
        let config = edgeroute_tests_aws::config_for(&proxy.endpoint).await;
        let client = Client::new(&config);
        let envs = environments(&config, "routes").await;
        // The seeded generator's first random part is taken: the first create collides once.
        let mut twin = Randomness::Seeded(fastrand::Rng::with_seed(7));
        twin.draw(12).unwrap();
        let first = twin.draw(RANDOM_LEN).unwrap();
        client
            .put_item()
            .table_name("routes")
            .item("Domain", AttributeValue::S(format!("web-{first}-portal.example.com")))
            .item("Target", AttributeValue::S("s3://other".into()))
            .send()
            .await
            .unwrap();
        let mut rng = Randomness::Seeded(fastrand::Rng::with_seed(7));
        envs.create(&request("portal", SERVICES, HandleChoice::Random), &mut rng).await.unwrap();
        {
            let tokens = tokens.lock().unwrap();
            assert_eq!(tokens.len(), 2, "{tokens:?}");
            assert!(!tokens[0].is_empty() && tokens[0] != tokens[1], "two attempts, one token: {tokens:?}");
        }
        let env = envs.create(&request("shop", SERVICES, HandleChoice::Random), &mut Randomness::Os).await.unwrap();
        let shop: Vec<_> = routes(&client, "routes").await.into_iter().filter(|(d, _)| d.contains("-shop.")).collect();
        assert_eq!(shop.len(), 2, "a second set of routes was drawn and written: {shop:?}");
        assert!(
            shop.iter().all(|(d, (_, owner))| owner.as_deref() == Some(env.env_id.as_str())
                && env.hostnames.values().any(|h| h == d)),
            "{shop:?} vs {env:?}"
        );
        assert_eq!(envs.list().await.unwrap().len(), 2);
    });
}
