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
//!
//! The parts: `names` (names, hostnames, random characters), `schema` (the
//! tables' attributes and items, and the time stamps), `provision`
//! ([`Environments::init`]), `pool` (handle pools), `transaction` (create,
//! get, list, deploy, delete), `request` (how every request is sent and
//! retried) and `error` ([`EnvError`]).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;

use crate::aws::RetryPolicy;

mod error;
mod names;
mod pool;
mod provision;
mod repair;
mod request;
mod schema;
mod transaction;

pub use error::{EnvError, NameProblem};
pub use names::{check_domain, check_name, hostname, Randomness, RANDOM_LEN};
pub use repair::{Collected, Reclaimed, RECLAIM_GRACE};
pub use transaction::MAX_SERVICES;

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
    /// Its delete began and has not finished (`env gc` finishes it).
    pub deleting: bool,
    /// A random token of the create that wrote it (from the operating
    /// system, whatever randomness drew the names): how a create whose
    /// reply was lost knows the record for its own.
    pub create_token: Option<String>,
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
    /// When it was taken (RFC 3339), if taken.
    pub taken_at: Option<String>,
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

/// Environments and handle pools in DynamoDB. Its commands are in
/// `provision` (`init`), `pool` (`add_handles`, `handles`, `take_handle`,
/// `give_back`) and `transaction` (`create`, `get`, `list`, `deploy`,
/// `delete`).
#[derive(Clone, Debug)]
pub struct Environments {
    client: Client,
    tables: Tables,
    retry: RetryPolicy,
}

impl Environments {
    pub fn new(client: Client, tables: Tables, retry: RetryPolicy) -> Environments {
        Environments { client, tables, retry }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }
}
