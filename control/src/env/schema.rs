//! What the two tables hold, and how items are read and written: every
//! attribute name (each spelled once, here), the state table's partitions
//! and keys, the items themselves (a routing item, an environment's record,
//! a handle), and the time stamps they carry. The tables are described in
//! `docs/environments.md`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeyType};
use edgeroute_compiler::entry::{validate, ItemErrorKind};
use edgeroute_compiler::item::{Location, RawItem, Value};

use super::error::EnvError;
use super::{Environment, Handle};

// The routing table's attributes (`edgeroute compile` reads all but `EnvId`).
/// The routing table's partition key; also an environment record's domain.
pub(super) const DOMAIN: &str = "Domain";
pub(super) const TARGET: &str = "Target";
pub(super) const ASSETS: &str = "Assets";
pub(super) const FALLBACK: &str = "Fallback";
/// The environment a routing item, or a taken handle, belongs to.
pub(super) const ENV_ID: &str = "EnvId";

// The state table's keys and attributes.
/// Partition key: [`ENV_PK`] or [`pool_pk`].
pub(super) const PK: &str = "PK";
/// Sort key: an environment's id, or a handle's name.
pub(super) const SK: &str = "SK";
const APP: &str = "App";
const HOSTNAMES: &str = "Hostnames";
const HANDLE: &str = "Handle";
const HANDLE_POOL: &str = "HandlePool";
/// An environment's ([`ACTIVE`], [`DELETED`]) or a handle's ([`FREE`], [`TAKEN`]).
pub(super) const STATE: &str = "State";
const CREATED_AT: &str = "CreatedAt";
const CREATE_TOKEN: &str = "CreateToken";
pub(super) const DELETED_AT: &str = "DeletedAt";
pub(super) const TAKEN_AT: &str = "TakenAt";

// Values of `State`.
const ACTIVE: &str = "active";
pub(super) const DELETED: &str = "deleted";
/// Being deleted: marked before the routes are removed (`env gc` finishes it).
pub(super) const DELETING: &str = "deleting";
pub(super) const FREE: &str = "free";
pub(super) const TAKEN: &str = "taken";

/// The partition of environment records.
pub(super) const ENV_PK: &str = "env";

/// The partition of a pool's handles.
pub(super) fn pool_pk(pool: &str) -> String {
    format!("pool#{pool}")
}

/// The routing table's key: `Domain`, a string.
pub(super) const ROUTING_KEYS: &[(&str, KeyType)] = &[(DOMAIN, KeyType::Hash)];
/// The state table's keys: `PK` and `SK`, strings.
pub(super) const STATE_KEYS: &[(&str, KeyType)] = &[(PK, KeyType::Hash), (SK, KeyType::Range)];

/// A string attribute.
pub(super) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// Now, as the time stamps (`CreatedAt`, `DeletedAt`, `TakenAt`) are
/// written: RFC 3339 in UTC, to the second.
pub(super) fn now() -> String {
    crate::clock::rfc3339_seconds(crate::clock::now())
}

/// A routing item for `hostname`, validated as `edgeroute compile` would
/// (an ARN Target without Origin is fine: the compile resolves it). A bad
/// one is [`EnvError::BadRoute`], naming `service`, and the hostname if `name_hostname` (not for a
/// probe).
pub(super) fn route_item(
    service: &str,
    hostname: &str,
    name_hostname: bool,
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
        Err(e) => {
            return Err(EnvError::BadRoute {
                service: service.to_owned(),
                hostname: name_hostname.then(|| hostname.to_owned()),
                source: e.kind,
            })
        }
    }
    let mut item = HashMap::from([
        (DOMAIN.to_owned(), s(hostname)),
        (TARGET.to_owned(), s(target)),
        (ENV_ID.to_owned(), s(env_id)),
    ]);
    if let Some(assets) = assets {
        item.insert(ASSETS.into(), AttributeValue::L(assets.iter().map(|a| s(a)).collect()));
    }
    if let Some(fallback) = fallback {
        item.insert(FALLBACK.into(), s(fallback));
    }
    Ok(item)
}

/// An active environment's record.
pub(super) fn record(env: &Environment) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (PK.to_owned(), s(ENV_PK)),
        (SK.to_owned(), s(&env.env_id)),
        (APP.to_owned(), s(&env.app)),
        (DOMAIN.to_owned(), s(&env.domain)),
        (STATE.to_owned(), s(ACTIVE)),
        (CREATED_AT.to_owned(), s(&env.created_at)),
        (HOSTNAMES.to_owned(), AttributeValue::M(env.hostnames.iter().map(|(k, v)| (k.clone(), s(v))).collect())),
    ]);
    if let Some(handle) = &env.handle {
        item.insert(HANDLE.into(), s(handle));
    }
    if let Some(pool) = &env.pool {
        item.insert(HANDLE_POOL.into(), s(pool));
    }
    if let Some(token) = &env.create_token {
        item.insert(CREATE_TOKEN.into(), s(token));
    }
    item
}

/// A string attribute of `item`, if it has one.
fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// An environment's record, read back; `None` if it is not one.
pub(super) fn parse_record(item: &HashMap<String, AttributeValue>) -> Option<Environment> {
    let hostnames = item
        .get(HOSTNAMES)?
        .as_m()
        .ok()?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
        .collect();
    Some(Environment {
        env_id: text(item, SK)?,
        app: text(item, APP).unwrap_or_default(),
        domain: text(item, DOMAIN).unwrap_or_default(),
        handle: text(item, HANDLE),
        pool: text(item, HANDLE_POOL),
        hostnames,
        created_at: text(item, CREATED_AT).unwrap_or_default(),
        deleted: text(item, STATE).as_deref() == Some(DELETED),
        deleting: text(item, STATE).as_deref() == Some(DELETING),
        create_token: text(item, CREATE_TOKEN),
    })
}

/// A handle's item, read back; `None` if it has no name.
pub(super) fn parse_handle(item: &HashMap<String, AttributeValue>) -> Option<Handle> {
    // Anything but `free` is unavailable, whoever (or whatever) holds it.
    let env_id = match text(item, STATE).as_deref() {
        Some(FREE) => None,
        state => Some(text(item, ENV_ID).unwrap_or_else(|| format!("(state {})", state.unwrap_or("missing")))),
    };
    Some(Handle { name: text(item, SK)?, taken_at: env_id.as_ref().and(text(item, TAKEN_AT)), env_id })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let t = now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let env = Environment {
            env_id: "eabc".into(),
            app: "portal".into(),
            domain: "example.com".into(),
            handle: Some("blue".into()),
            pool: Some("oauth".into()),
            hostnames: BTreeMap::from([("api".into(), "api-blue-portal.example.com".into())]),
            created_at: "2025-01-01T00:00:00Z".into(),
            deleted: false,
            deleting: false,
            create_token: Some("t".into()),
        };
        let item = record(&env);
        let names: std::collections::BTreeSet<&str> = item.keys().map(String::as_str).collect();
        let expected =
            ["App", "CreateToken", "CreatedAt", "Domain", "Handle", "HandlePool", "Hostnames", "PK", "SK", "State"];
        assert_eq!(names, expected.into_iter().collect());
        assert_eq!(parse_record(&item), Some(env));
    }

    #[test]
    fn handles_are_free_only_when_they_say_so() {
        let item = |state: Option<&str>, env: Option<&str>| {
            let mut item = HashMap::from([("SK".to_owned(), s("blue"))]);
            state.map(|v| item.insert("State".into(), s(v)));
            env.map(|v| item.insert("EnvId".into(), s(v)));
            item
        };
        assert_eq!(parse_handle(&item(Some("free"), None)).unwrap().env_id, None);
        assert_eq!(parse_handle(&item(Some("taken"), Some("e1"))).unwrap().env_id.as_deref(), Some("e1"));
        assert_eq!(parse_handle(&item(Some("odd"), None)).unwrap().env_id.as_deref(), Some("(state odd)"));
        assert_eq!(parse_handle(&item(None, None)).unwrap().env_id.as_deref(), Some("(state missing)"));
    }

    #[test]
    fn a_bad_route_names_its_service() {
        let e = route_item("web", "web-x-a.example.com", false, "s3://a", None, None, "e1").unwrap_err();
        assert!(matches!(e, EnvError::BadRoute { source: ItemErrorKind::BadTarget { .. }, .. }), "{e}");
        assert!(e.to_string().starts_with("service web: Target \"s3://a\": bucket \"a\""), "{e}");
        let e = route_item("web", "web-x-a.example.com", true, "https://lb", None, Some("index.html"), "e1");
        let e = e.unwrap_err().to_string();
        assert_eq!(e, "service web (web-x-a.example.com): Fallback is only allowed on static sites (s3:// Targets)");
        let arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/previews/0123456789abcdef";
        assert!(route_item("api", "api-x-a.example.com", false, arn, None, None, "e1").is_ok(), "resolved later");
    }
}
