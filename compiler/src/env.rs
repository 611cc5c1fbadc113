//! Environments and the handle pool: the routing items of one preview
//! environment, written and removed together.
//!
//! An environment gets one hostname per service, `SERVICE-RANDOM-APP.DOMAIN`
//! (RANDOM: 7 characters of `[a-z0-9]` from the operating system's CSPRNG),
//! or `SERVICE-HANDLE-APP.DOMAIN` with a handle taken from a pool that was
//! filled in advance (so that, say, OAuth callback hosts can be allow-listed)
//! and given back when the environment is deleted. Its routing items carry
//! an `EnvId` attribute and are written in one `TransactWriteItems` with the
//! environment's record, each on the condition that its Domain is new: the
//! routes appear whole or not at all. Every later write (a delete, a
//! redeploy, giving a handle back) is conditional on that `EnvId`, so that a
//! stale or repeated command can never touch a newer environment that reuses
//! the same hostnames.
//!
//! The state table's schema is in `docs/environments.md`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

use crate::aws::{describe, with_retries, Failed, RetryPolicy};
use crate::item::{Location, RawItem, Value};
use crate::route::{normalize_domain, validate, ItemErrorKind};

/// Characters of the random part and of generated environment ids.
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Length of the random part of a hostname.
pub const RANDOM_LEN: usize = 7;
/// DynamoDB's limit on the actions of one transaction: the services plus the record.
pub const MAX_SERVICES: usize = 99;
/// Fresh random parts tried when a hostname is taken already.
const COLLISION_ATTEMPTS: u32 = 5;

/// The two tables: the routing table (partition key `Domain`) and the state
/// table of environments and handle pools (`PK`, `SK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    pub routes: String,
    pub state: String,
}

impl Tables {
    /// The routing table `routes` and its state table, `ROUTES-edgeroute` unless named.
    pub fn new(routes: &str, state: Option<&str>) -> Tables {
        Tables { routes: routes.to_owned(), state: state.map_or_else(|| format!("{routes}-edgeroute"), str::to_owned) }
    }
}

/// Where random characters come from: the operating system's CSPRNG, or
/// (in tests) a seeded generator whose draws can be made to collide.
#[derive(Debug)]
pub enum Randomness {
    Os,
    Seeded(fastrand::Rng),
}

impl Randomness {
    /// `len` characters of `[a-z0-9]`, uniformly (rejection sampling).
    pub fn draw(&mut self, len: usize) -> Result<String, EnvError> {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            let mut bytes = [0u8; 32];
            match self {
                Randomness::Os => getrandom::fill(&mut bytes).map_err(|e| EnvError::Random(e.to_string()))?,
                Randomness::Seeded(rng) => rng.fill(&mut bytes),
            }
            // 252 = 7 * 36: larger bytes would favour the first letters.
            for b in bytes.into_iter().filter(|&b| b < 252) {
                if out.len() < len {
                    out.push(ALPHABET[usize::from(b % 36)] as char);
                }
            }
        }
        Ok(out)
    }
}

/// Which handle an environment gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandleChoice {
    /// None: a random part.
    Random,
    /// Any free handle of this pool, taken for the environment and given back on delete.
    Pool(String),
    /// This name, as it is (not from a pool).
    Named(String),
}

/// What `create` is asked for.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub app: String,
    /// (service, Target), in the order given.
    pub services: Vec<(String, String)>,
    pub domain: String,
    pub handle: HandleChoice,
}

/// An environment's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    pub env_id: String,
    pub app: String,
    pub domain: String,
    pub handle: Option<String>,
    /// The pool the handle came from (it goes back there).
    pub pool: Option<String>,
    /// Service → hostname.
    pub hostnames: BTreeMap<String, String>,
    pub created_at: String,
    pub deleted: bool,
}

impl Environment {
    /// `{"env_id": …, "handle": … or null, "hostnames": {"SERVICE": "HOSTNAME", …}}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "env_id": self.env_id, "handle": self.handle, "hostnames": self.hostnames })
    }
}

/// A handle of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handle {
    pub name: String,
    /// The environment holding it, if taken.
    pub env_id: Option<String>,
}

/// What `delete` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Routing items removed now.
    pub removed: Vec<String>,
    /// Hostnames whose items were gone already or belong to a newer environment.
    pub skipped: Vec<String>,
    /// The handle given back now, if any.
    pub handle_returned: Option<String>,
    /// The environment had been deleted before: nothing was done.
    pub already: bool,
}

/// What `init` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Initialized {
    pub created: Vec<String>,
    pub stream_enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{0}")]
    Invalid(String),
    #[error("no environment {0}")]
    NoSuchEnvironment(String),
    #[error("environment {env_id} has no service {service} (it has: {known})")]
    NoSuchService { env_id: String, service: String, known: String },
    #[error("handle pool {pool} is empty: all {total} handle(s) are taken (add some with `edgeroute handles add`)")]
    PoolEmpty { pool: String, total: usize },
    #[error("there is no handle pool {0} (create it with `edgeroute handles add --table T {0} NAME…`)")]
    NoSuchPool(String),
    #[error("hostname {0} exists already (another environment's, or a table entry)")]
    HostnameTaken(String),
    #[error("no free hostnames after {0} random draws: every draw collided")]
    Collisions(u32),
    #[error("the route of {service} ({hostname}) no longer belongs to environment {env_id}")]
    NotOwned { service: String, hostname: String, env_id: String },
    #[error("table {table}: {why}")]
    Table { table: String, why: String },
    #[error("{what} failed after {attempts} attempt(s): {why}")]
    Aws { what: String, attempts: u32, why: String },
    #[error("cannot draw random characters: {0}")]
    Random(String),
}

/// A failed request, described; `Ok(None)` when it failed only its condition.
fn conditional<T, E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    result: Result<T, Failed<E>>,
) -> Result<Option<T>, EnvError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(failed) if failed.error.code() == Some("ConditionalCheckFailedException") => Ok(None),
        Err(failed) => Err(aws_error(what, failed)),
    }
}

fn aws_error<E: ProvideErrorMetadata + std::error::Error + 'static>(what: &str, failed: Failed<E>) -> EnvError {
    EnvError::Aws { what: what.to_owned(), attempts: failed.attempts, why: describe(&failed.error) }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn now() -> String {
    // RFC 3339 in UTC without a date library: seconds since the epoch, civil-from-days.
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Checks a piece of a hostname label (an app, a service or a handle name).
pub fn check_name(what: &str, name: &str) -> Result<(), EnvError> {
    let bad = |why: &str| Err(EnvError::Invalid(format!("{what} {name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 63 {
        return bad("longer than 63 characters");
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return bad(&format!("{c:?} is not allowed: use a-z, 0-9 and - (lowercase)"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("must not start or end with -");
    }
    Ok(())
}

/// `SERVICE-PART-APP.DOMAIN`, checked against DNS rules (a label of at most
/// 63 bytes, a name of at most 253) and the resolver's host rules.
pub fn hostname(service: &str, part: &str, app: &str, domain: &str) -> Result<String, EnvError> {
    let label = format!("{service}-{part}-{app}");
    if label.len() > 63 {
        return Err(EnvError::Invalid(format!(
            "hostname label {label:?} is {} bytes; DNS allows 63: shorten the service ({service:?}) or app ({app:?}) name",
            label.len()
        )));
    }
    let name = format!("{label}.{domain}");
    if name.len() > 253 {
        return Err(EnvError::Invalid(format!("hostname {name:?} is {} bytes; DNS allows 253", name.len())));
    }
    match normalize_domain(&name) {
        Ok(normal) if normal == name => Ok(name),
        Ok(normal) => Err(EnvError::Invalid(format!("hostname {name:?} is not in normal form ({normal:?})"))),
        Err(why) => Err(EnvError::Invalid(format!("hostname {name:?}: {why}"))),
    }
}

/// The domain, normalized (an IDN becomes punycode); no wildcards.
pub fn check_domain(domain: &str) -> Result<String, EnvError> {
    if domain.starts_with("*.") {
        return Err(EnvError::Invalid(format!("domain {domain:?}: environments get exact hostnames, not wildcards")));
    }
    let normal = normalize_domain(domain).map_err(|why| EnvError::Invalid(format!("domain {domain:?}: {why}")))?;
    if !normal.contains('.') {
        return Err(EnvError::Invalid(format!("domain {domain:?}: needs at least two labels")));
    }
    Ok(normal.into_owned())
}

/// A routing item for `hostname`, validated as `edgeroute compile` would
/// (an ARN Target without Origin is fine: the compile resolves it).
fn route_item(
    label: &str,
    hostname: &str,
    target: &str,
    assets: Option<&[String]>,
    fallback: Option<&str>,
    env_id: &str,
) -> Result<HashMap<String, AttributeValue>, EnvError> {
    let raw = RawItem {
        domain: Some(Value::Str(hostname.into())),
        target: Some(Value::Str(target.into())),
        assets: assets.map(|a| Value::List(a.iter().map(|x| Value::Str(x.as_str().into())).collect())),
        fallback: fallback.map(|f| Value::Str(f.into())),
        ..RawItem::default()
    };
    match validate(Location::Index(0), &raw) {
        Ok(_) => {}
        Err(e) if e.kind == ItemErrorKind::ArnWithoutOrigin => {}
        Err(e) => return Err(EnvError::Invalid(format!("{label}: {}", e.kind))),
    }
    let mut item = HashMap::from([
        ("Domain".to_owned(), s(hostname)),
        ("Target".to_owned(), s(target)),
        ("EnvId".to_owned(), s(env_id)),
    ]);
    if let Some(assets) = assets {
        item.insert("Assets".into(), AttributeValue::L(assets.iter().map(|a| s(a)).collect()));
    }
    if let Some(fallback) = fallback {
        item.insert("Fallback".into(), s(fallback));
    }
    Ok(item)
}

/// Environments and handle pools in DynamoDB.
#[derive(Clone, Debug)]
pub struct Environments {
    client: Client,
    tables: Tables,
    retry: RetryPolicy,
}

const ENV_PK: &str = "env";

fn pool_pk(pool: &str) -> String {
    format!("pool#{pool}")
}

impl Environments {
    pub fn new(client: Client, tables: Tables, retry: RetryPolicy) -> Environments {
        Environments { client, tables, retry }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Creates what the commands need: the routing table (partition key
    /// `Domain`, its stream on with new and old images, for `edgeroute
    /// watch`) and the state table, each if missing; turns a missing stream on.
    pub async fn init(&self) -> Result<Initialized, EnvError> {
        let mut done = Initialized::default();
        let routes = &self.tables.routes;
        match self.describe(routes).await? {
            None => {
                self.create_table(routes, &[("Domain", KeyType::Hash)], true).await?;
                done.created.push(routes.clone());
            }
            Some(table) => {
                let keys: Vec<_> =
                    table.key_schema().iter().map(|k| (k.attribute_name().to_owned(), k.key_type().clone())).collect();
                if keys != [("Domain".to_owned(), KeyType::Hash)] {
                    return Err(EnvError::Table {
                        table: routes.clone(),
                        why: "exists with another key: a routing table's partition key is Domain (a string), alone"
                            .into(),
                    });
                }
                if !table.stream_specification().is_some_and(|s| s.stream_enabled()) {
                    let spec = stream_spec();
                    let result = with_retries(
                        &self.retry,
                        |_| {},
                        || self.client.update_table().table_name(routes).stream_specification(spec.clone()).send(),
                    )
                    .await;
                    result.map_err(|f| aws_error(&format!("enabling the stream of {routes}"), f))?;
                    done.stream_enabled = true;
                }
            }
        }
        let state = &self.tables.state;
        match self.describe(state).await? {
            None => {
                self.create_table(state, &[("PK", KeyType::Hash), ("SK", KeyType::Range)], false).await?;
                done.created.push(state.clone());
            }
            Some(table) => {
                let keys: Vec<_> = table.key_schema().iter().map(|k| k.attribute_name().to_owned()).collect();
                if keys != ["PK", "SK"] {
                    return Err(EnvError::Table {
                        table: state.clone(),
                        why: "exists with another key: the state table's keys are PK and SK (strings)".into(),
                    });
                }
            }
        }
        for table in [routes, state] {
            self.wait_active(table).await?;
        }
        Ok(done)
    }

    async fn describe(&self, table: &str) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>, EnvError> {
        let result = with_retries(&self.retry, |_| {}, || self.client.describe_table().table_name(table).send()).await;
        match result {
            Ok(out) => Ok(out.table),
            Err(f) if f.error.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(f) => Err(aws_error(&format!("DescribeTable {table}"), f)),
        }
    }

    async fn create_table(&self, table: &str, keys: &[(&str, KeyType)], stream: bool) -> Result<(), EnvError> {
        let result = with_retries(
            &self.retry,
            |_| {},
            || {
                let mut create = self.client.create_table().table_name(table).billing_mode(BillingMode::PayPerRequest);
                for (name, kind) in keys {
                    create = create
                        .attribute_definitions(
                            AttributeDefinition::builder()
                                .attribute_name(*name)
                                .attribute_type(ScalarAttributeType::S)
                                .build()
                                .expect("name and type are set"),
                        )
                        .key_schema(
                            KeySchemaElement::builder()
                                .attribute_name(*name)
                                .key_type(kind.clone())
                                .build()
                                .expect("name and type are set"),
                        );
                }
                if stream {
                    create = create.stream_specification(stream_spec());
                }
                create.send()
            },
        )
        .await;
        match result {
            Ok(_) => Ok(()),
            // Created meanwhile by a concurrent init.
            Err(f) if f.error.code() == Some("ResourceInUseException") => Ok(()),
            Err(f) => Err(aws_error(&format!("CreateTable {table}"), f)),
        }
    }

    async fn wait_active(&self, table: &str) -> Result<(), EnvError> {
        for _ in 0..600 {
            if let Some(t) = self.describe(table).await? {
                if t.table_status() == Some(&TableStatus::Active) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(EnvError::Table { table: table.to_owned(), why: "did not become ACTIVE within a minute".into() })
    }

    /// Adds handles to a pool (creating it); a handle already in it stays as
    /// it is (taken or free). Returns, for each name, whether it was added.
    pub async fn add_handles(&self, pool: &str, names: &[String]) -> Result<Vec<(String, bool)>, EnvError> {
        check_name("pool", pool)?;
        for name in names {
            check_name("handle", name)?;
        }
        let mut added = Vec::new();
        for name in names {
            let result = with_retries(
                &self.retry,
                |_| {},
                || {
                    self.client
                        .put_item()
                        .table_name(&self.tables.state)
                        .item("PK", s(&pool_pk(pool)))
                        .item("SK", s(name))
                        .item("State", s("free"))
                        .condition_expression("attribute_not_exists(PK)")
                        .send()
                },
            )
            .await;
            let new = conditional(&format!("adding handle {name} to pool {pool}"), result)?.is_some();
            added.push((name.clone(), new));
        }
        Ok(added)
    }

    /// A pool's handles, by name.
    pub async fn handles(&self, pool: &str) -> Result<Vec<Handle>, EnvError> {
        let items = self.query_all(&pool_pk(pool), true, &format!("listing pool {pool}")).await?;
        let mut handles: Vec<Handle> = items
            .iter()
            .filter_map(|item| {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                // Anything but `free` is unavailable, whoever (or whatever) holds it.
                let env_id = match text("State").as_deref() {
                    Some("free") => None,
                    state => Some(text("EnvId").unwrap_or_else(|| format!("(state {})", state.unwrap_or("missing")))),
                };
                Some(Handle { name: text("SK")?, env_id })
            })
            .collect();
        handles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(handles)
    }

    /// Every item of the state table's partition `pk`, all pages.
    async fn query_all(
        &self,
        pk: &str,
        consistent: bool,
        what: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, EnvError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let result = with_retries(
                &self.retry,
                |_| {},
                || {
                    self.client
                        .query()
                        .table_name(&self.tables.state)
                        .key_condition_expression("PK = :pk")
                        .expression_attribute_values(":pk", s(pk))
                        .consistent_read(consistent)
                        .set_exclusive_start_key(start.clone())
                        .send()
                },
            )
            .await;
            let page = result.map_err(|f| aws_error(what, f))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Takes a free handle of `pool` for `env_id`: a conditional update
    /// (free → taken by this environment), so that two takers never get the
    /// same handle; when another taker wins, the next free one is tried.
    pub async fn take_handle(&self, pool: &str, env_id: &str, rng: &mut Randomness) -> Result<String, EnvError> {
        // Each lost race means another taker got a handle; more losses than
        // the pool has handles means something else is wrong.
        let mut lost = 0;
        loop {
            let handles = self.handles(pool).await?;
            if handles.is_empty() {
                return Err(EnvError::NoSuchPool(pool.to_owned()));
            }
            let free: Vec<&Handle> = handles.iter().filter(|h| h.env_id.is_none()).collect();
            if free.is_empty() {
                return Err(EnvError::PoolEmpty { pool: pool.to_owned(), total: handles.len() });
            }
            // A random free one, so that concurrent takers rarely race for the same.
            let pick = rng.draw(4)?.bytes().fold(0usize, |acc, b| acc * 36 + usize::from(b)) % free.len();
            let name = &free[pick].name;
            let result = with_retries(
                &self.retry,
                |_| {},
                || {
                    self.client
                        .update_item()
                        .table_name(&self.tables.state)
                        .key("PK", s(&pool_pk(pool)))
                        .key("SK", s(name))
                        .update_expression("SET #state = :taken, EnvId = :env, TakenAt = :at")
                        .condition_expression("#state = :free")
                        .expression_attribute_names("#state", "State")
                        .expression_attribute_values(":taken", s("taken"))
                        .expression_attribute_values(":free", s("free"))
                        .expression_attribute_values(":env", s(env_id))
                        .expression_attribute_values(":at", s(&now()))
                        .send()
                },
            )
            .await;
            if conditional(&format!("taking handle {name} of pool {pool}"), result)?.is_some() {
                return Ok(name.clone());
            }
            lost += 1;
            if lost > handles.len() + 10 {
                return Err(EnvError::Invalid(format!(
                    "could not take a handle of pool {pool}: {lost} conditional updates failed in a row"
                )));
            }
        }
    }

    /// Gives `name` back to `pool` if `env_id` holds it; returns whether it did.
    pub async fn give_back(&self, pool: &str, name: &str, env_id: &str) -> Result<bool, EnvError> {
        let result = with_retries(
            &self.retry,
            |_| {},
            || {
                self.client
                    .update_item()
                    .table_name(&self.tables.state)
                    .key("PK", s(&pool_pk(pool)))
                    .key("SK", s(name))
                    .update_expression("SET #state = :free REMOVE EnvId, TakenAt")
                    .condition_expression("EnvId = :env")
                    .expression_attribute_names("#state", "State")
                    .expression_attribute_values(":free", s("free"))
                    .expression_attribute_values(":env", s(env_id))
                    .send()
            },
        )
        .await;
        Ok(conditional(&format!("giving handle {name} back to pool {pool}"), result)?.is_some())
    }

    /// Creates an environment: takes its handle, then writes its routing
    /// items and its record in one transaction. If that fails, the handle is
    /// given back. A hostname that exists already is drawn again (random
    /// parts) or is an error (handles).
    pub async fn create(&self, request: &CreateRequest, rng: &mut Randomness) -> Result<Environment, EnvError> {
        check_name("app", &request.app)?;
        let domain = check_domain(&request.domain)?;
        if request.services.is_empty() {
            return Err(EnvError::Invalid("an environment needs at least one --service NAME=TARGET".into()));
        }
        if request.services.len() > MAX_SERVICES {
            return Err(EnvError::Invalid(format!(
                "{} services: one transaction holds at most {MAX_SERVICES}",
                request.services.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (service, _) in &request.services {
            check_name("service", service)?;
            if !seen.insert(service.as_str()) {
                return Err(EnvError::Invalid(format!("service {service:?} is given twice")));
            }
        }
        if let HandleChoice::Named(name) | HandleChoice::Pool(name) = &request.handle {
            check_name(if matches!(request.handle, HandleChoice::Pool(_)) { "pool" } else { "handle" }, name)?;
        }
        // Everything that can be checked is checked before a handle is taken.
        let probe = match &request.handle {
            HandleChoice::Named(name) => name.clone(),
            _ => "x".repeat(RANDOM_LEN),
        };
        for (service, target) in &request.services {
            let host = hostname(service, &probe, &request.app, &domain)?;
            route_item(&format!("service {service}"), &host, target, None, None, "probe")?;
        }

        let env_id = format!("e{}", rng.draw(12)?);
        let (handle, pool) = match &request.handle {
            HandleChoice::Random => (None, None),
            HandleChoice::Named(name) => (Some(name.clone()), None),
            HandleChoice::Pool(pool) => (Some(self.take_handle(pool, &env_id, rng).await?), Some(pool.clone())),
        };
        let result = self.write_environment(request, &domain, &env_id, handle.as_deref(), pool.as_deref(), rng).await;
        if result.is_err() {
            if let (Some(pool), Some(handle)) = (&pool, &handle) {
                // The create failed: the handle goes back (only if still ours).
                if let Err(e) = self.give_back(pool, handle, &env_id).await {
                    return Err(EnvError::Invalid(format!(
                        "{}; and giving handle {handle} back to pool {pool} failed too: {e}",
                        result.err().map(|e| e.to_string()).unwrap_or_default()
                    )));
                }
            }
        }
        result
    }

    async fn write_environment(
        &self,
        request: &CreateRequest,
        domain: &str,
        env_id: &str,
        handle: Option<&str>,
        pool: Option<&str>,
        rng: &mut Randomness,
    ) -> Result<Environment, EnvError> {
        let mut last_conflict = false;
        for _ in 0..COLLISION_ATTEMPTS {
            last_conflict = false;
            let part = match handle {
                Some(h) => h.to_owned(),
                None => rng.draw(RANDOM_LEN)?,
            };
            let mut hostnames = BTreeMap::new();
            let mut actions = Vec::new();
            for (service, target) in &request.services {
                let host = hostname(service, &part, &request.app, domain)?;
                let item = route_item(&format!("service {service}"), &host, target, None, None, env_id)?;
                actions.push(put(
                    &self.tables.routes,
                    item,
                    "attribute_not_exists(#domain)",
                    Some(("#domain", "Domain")),
                ));
                hostnames.insert(service.clone(), host);
            }
            let env = Environment {
                env_id: env_id.to_owned(),
                app: request.app.clone(),
                domain: domain.to_owned(),
                handle: handle.map(str::to_owned),
                pool: pool.map(str::to_owned),
                hostnames,
                created_at: now(),
                deleted: false,
            };
            actions.push(put(&self.tables.state, record(&env), "attribute_not_exists(PK)", None));
            let result = with_retries(
                &self.retry,
                |_| {},
                || self.client.transact_write_items().set_transact_items(Some(actions.clone())).send(),
            )
            .await;
            let failed = match result {
                Ok(_) => return Ok(env),
                Err(failed) => failed,
            };
            let reasons: Vec<Option<String>> = failed
                .error
                .as_service_error()
                .and_then(|e| match e {
                    TransactWriteItemsError::TransactionCanceledException(canceled) => Some(canceled),
                    _ => None,
                })
                .map(|e| e.cancellation_reasons().iter().map(|r| r.code().map(str::to_owned)).collect())
                .unwrap_or_default();
            let collided: Vec<&String> = request
                .services
                .iter()
                .zip(&reasons)
                .filter(|(_, code)| code.as_deref() == Some("ConditionalCheckFailed"))
                .map(|((service, _), _)| &env.hostnames[service])
                .collect();
            let conflict = reasons.iter().any(|code| code.as_deref() == Some("TransactionConflict"));
            match (collided.first(), handle) {
                (Some(host), Some(_)) => return Err(EnvError::HostnameTaken((*host).clone())),
                // A random part that someone has: draw again.
                (Some(_), None) => continue,
                // Another transaction was writing one of these items: try again shortly.
                (None, _) if conflict => {
                    last_conflict = true;
                    tokio::time::sleep(self.retry.backoff(1)).await;
                    continue;
                }
                (None, _) => return Err(aws_error("writing the environment (TransactWriteItems)", failed)),
            }
        }
        if last_conflict {
            return Err(EnvError::Aws {
                what: "writing the environment (TransactWriteItems)".into(),
                attempts: COLLISION_ATTEMPTS,
                why: "every attempt conflicted with another transaction on the same items".into(),
            });
        }
        Err(EnvError::Collisions(COLLISION_ATTEMPTS))
    }

    /// An environment's record.
    pub async fn get(&self, env_id: &str) -> Result<Environment, EnvError> {
        let result = with_retries(
            &self.retry,
            |_| {},
            || {
                self.client
                    .get_item()
                    .table_name(&self.tables.state)
                    .key("PK", s(ENV_PK))
                    .key("SK", s(env_id))
                    .consistent_read(true)
                    .send()
            },
        )
        .await;
        let out = result.map_err(|f| aws_error(&format!("reading environment {env_id}"), f))?;
        out.item.as_ref().and_then(parse_record).ok_or_else(|| EnvError::NoSuchEnvironment(env_id.to_owned()))
    }

    /// Every environment that is not deleted, oldest first.
    pub async fn list(&self) -> Result<Vec<Environment>, EnvError> {
        let items = self.query_all(ENV_PK, false, "listing environments").await?;
        let mut envs: Vec<Environment> = items.iter().filter_map(parse_record).filter(|e| !e.deleted).collect();
        envs.sort_by(|a, b| (&a.created_at, &a.env_id).cmp(&(&b.created_at, &b.env_id)));
        Ok(envs)
    }

    /// Deletes an environment: its routing items (each only if it still
    /// carries this `EnvId`), then gives its handle back, then marks its
    /// record deleted. Running it again, or after a crash half-way, does the
    /// rest and harms nothing.
    pub async fn delete(&self, env_id: &str) -> Result<Deleted, EnvError> {
        let env = self.get(env_id).await?;
        let mut done =
            Deleted { removed: Vec::new(), skipped: Vec::new(), handle_returned: None, already: env.deleted };
        if env.deleted {
            return Ok(done);
        }
        for host in env.hostnames.values() {
            let result = with_retries(
                &self.retry,
                |_| {},
                || {
                    self.client
                        .delete_item()
                        .table_name(&self.tables.routes)
                        .key("Domain", s(host))
                        .condition_expression("EnvId = :env")
                        .expression_attribute_values(":env", s(env_id))
                        .send()
                },
            )
            .await;
            match conditional(&format!("deleting route {host}"), result)? {
                Some(_) => done.removed.push(host.clone()),
                None => done.skipped.push(host.clone()),
            }
        }
        if let (Some(pool), Some(handle)) = (&env.pool, &env.handle) {
            if self.give_back(pool, handle, env_id).await? {
                done.handle_returned = Some(handle.clone());
            }
        }
        let result = with_retries(
            &self.retry,
            |_| {},
            || {
                self.client
                    .update_item()
                    .table_name(&self.tables.state)
                    .key("PK", s(ENV_PK))
                    .key("SK", s(env_id))
                    .update_expression("SET #state = :deleted, DeletedAt = :at")
                    .expression_attribute_names("#state", "State")
                    .expression_attribute_values(":deleted", s("deleted"))
                    .expression_attribute_values(":at", s(&now()))
                    .send()
            },
        )
        .await;
        result.map_err(|f| aws_error(&format!("marking environment {env_id} deleted"), f))?;
        Ok(done)
    }

    /// Points one service of an environment at a new Target (and asset list
    /// and Fallback: a new version), replacing its routing item only if it
    /// still belongs to the environment. Returns the hostname.
    pub async fn deploy(
        &self,
        env_id: &str,
        service: &str,
        target: &str,
        assets: Option<&[String]>,
        fallback: Option<&str>,
    ) -> Result<String, EnvError> {
        let env = self.get(env_id).await?;
        if env.deleted {
            return Err(EnvError::NoSuchEnvironment(format!("{env_id} (it was deleted)")));
        }
        let Some(host) = env.hostnames.get(service) else {
            return Err(EnvError::NoSuchService {
                env_id: env_id.to_owned(),
                service: service.to_owned(),
                known: env.hostnames.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let item = route_item(&format!("service {service} ({host})"), host, target, assets, fallback, env_id)?;
        let result = with_retries(
            &self.retry,
            |_| {},
            || {
                self.client
                    .put_item()
                    .table_name(&self.tables.routes)
                    .set_item(Some(item.clone()))
                    .condition_expression("EnvId = :env")
                    .expression_attribute_values(":env", s(env_id))
                    .send()
            },
        )
        .await;
        match conditional(&format!("deploying {service} ({host})"), result)? {
            Some(_) => Ok(host.clone()),
            None => Err(EnvError::NotOwned {
                service: service.to_owned(),
                hostname: host.clone(),
                env_id: env_id.to_owned(),
            }),
        }
    }
}

fn stream_spec() -> StreamSpecification {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .expect("stream_enabled is set")
}

fn put(
    table: &str,
    item: HashMap<String, AttributeValue>,
    condition: &str,
    name: Option<(&str, &str)>,
) -> TransactWriteItem {
    let mut put = Put::builder().table_name(table).set_item(Some(item)).condition_expression(condition);
    if let Some((placeholder, attribute)) = name {
        put = put.expression_attribute_names(placeholder, attribute);
    }
    TransactWriteItem::builder().put(put.build().expect("table and item are set")).build()
}

fn record(env: &Environment) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("PK".to_owned(), s(ENV_PK)),
        ("SK".to_owned(), s(&env.env_id)),
        ("App".to_owned(), s(&env.app)),
        ("Domain".to_owned(), s(&env.domain)),
        ("State".to_owned(), s("active")),
        ("CreatedAt".to_owned(), s(&env.created_at)),
        ("Hostnames".to_owned(), AttributeValue::M(env.hostnames.iter().map(|(k, v)| (k.clone(), s(v))).collect())),
    ]);
    if let Some(handle) = &env.handle {
        item.insert("Handle".into(), s(handle));
    }
    if let Some(pool) = &env.pool {
        item.insert("HandlePool".into(), s(pool));
    }
    item
}

fn parse_record(item: &HashMap<String, AttributeValue>) -> Option<Environment> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let hostnames = item
        .get("Hostnames")?
        .as_m()
        .ok()?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
        .collect();
    Some(Environment {
        env_id: text("SK")?,
        app: text("App").unwrap_or_default(),
        domain: text("Domain").unwrap_or_default(),
        handle: text("Handle"),
        pool: text("HandlePool"),
        hostnames,
        created_at: text("CreatedAt").unwrap_or_default(),
        deleted: text("State").as_deref() == Some("deleted"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_parts_are_uniform_lowercase_alphanumerics() {
        let mut rng = Randomness::Seeded(fastrand::Rng::with_seed(7));
        let mut counts = [0u32; 36];
        for _ in 0..2000 {
            let part = rng.draw(RANDOM_LEN).unwrap();
            assert_eq!(part.len(), RANDOM_LEN);
            for b in part.bytes() {
                counts[ALPHABET.iter().position(|&a| a == b).unwrap()] += 1;
            }
        }
        // 14,000 draws, ~389 per character: each within ±30 %.
        assert!(counts.iter().all(|&c| (270..=510).contains(&c)), "{counts:?}");
        let os = Randomness::Os.draw(RANDOM_LEN).unwrap();
        assert!(os.bytes().all(|b| ALPHABET.contains(&b)) && os.len() == RANDOM_LEN);
    }

    #[test]
    fn hostnames_follow_dns_and_resolver_rules() {
        assert_eq!(hostname("api", "t9yhp25", "portal", "example.com").unwrap(), "api-t9yhp25-portal.example.com");
        let long = "a".repeat(40);
        let e = hostname(&long, "t9yhp25", &long, "example.com").unwrap_err().to_string();
        assert!(e.contains("DNS allows 63"), "{e}");
        let domain = format!("{}.com", vec!["b".repeat(60); 4].join("."));
        let e = hostname("api", "t9yhp25", "portal", &domain).unwrap_err().to_string();
        assert!(e.contains("DNS allows 253"), "{e}");
        assert!(check_name("service", "API").unwrap_err().to_string().contains("lowercase"));
        assert!(check_name("app", "-x").is_err());
        assert!(check_name("app", "a_b").is_err());
        assert!(check_name("app", "").is_err());
        assert_eq!(check_domain("Bücher.Example").unwrap(), "xn--bcher-kva.example");
        assert!(check_domain("*.example.com").is_err());
        assert!(check_domain("localhost").is_err());
        assert!(check_domain("exa mple.com").is_err());
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }
}
