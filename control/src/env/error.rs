//! What can go wrong, typed: a request that is refused before anything is
//! written (a bad name, hostname, domain, service or route), a state that
//! does not allow the command (no such environment, an empty pool), and a
//! DynamoDB request that failed for good.
//!
//! Every message is one line that says what is wrong and, where it is not
//! plain, what to do.

use std::fmt;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use edgeroute_compiler::entry::ItemErrorKind;

use super::transaction::MAX_SERVICES;
use crate::aws::{describe, Failed};

/// An environment or handle command that failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    // A bad request, refused before anything is written.
    /// An app, service, handle or pool name breaks the naming rules.
    #[error("{what} {name:?}: {why}")]
    BadName { what: String, name: String, why: NameProblem },
    /// `SERVICE-PART-APP` is longer than a DNS label may be.
    #[error(
        "hostname label {label:?} is {len} bytes; DNS allows 63: shorten the service ({service:?}) or app ({app:?}) name"
    )]
    LabelTooLong { label: String, len: usize, service: String, app: String },
    /// The whole hostname is longer than a DNS name may be.
    #[error("hostname {hostname:?} is {len} bytes; DNS allows 253: use a shorter domain or shorter names")]
    HostnameTooLong { hostname: String, len: usize },
    /// The hostname would be written other than the resolver looks it up.
    #[error("hostname {hostname:?} is not in normal form ({normal:?})")]
    HostnameNotNormal { hostname: String, normal: String },
    /// The hostname breaks the resolver's host rules.
    #[error("hostname {hostname:?}: {why}")]
    BadHostname { hostname: String, why: String },
    /// `--domain *.…`.
    #[error("domain {0:?}: environments get exact hostnames, not wildcards: give the domain without \"*.\"")]
    WildcardDomain(String),
    /// The domain breaks the resolver's host rules.
    #[error("domain {domain:?}: {why}")]
    BadDomain { domain: String, why: String },
    /// A domain of one label, such as `localhost`.
    #[error("domain {0:?}: needs at least two labels (such as example.com)")]
    SingleLabelDomain(String),
    /// A service's routing item (its Target, Assets or Fallback) is one
    /// `edgeroute compile` would refuse.
    #[error("service {service}{}: {source}", in_parentheses(.hostname.as_deref()))]
    BadRoute {
        service: String,
        /// The hostname, once it is known (on `deploy`).
        hostname: Option<String>,
        #[source]
        source: ItemErrorKind,
    },
    #[error("an environment needs at least one --service NAME=TARGET")]
    NoServices,
    #[error("{count} services: one transaction holds at most {MAX_SERVICES}; split them over several environments")]
    TooManyServices { count: usize },
    #[error("service {0:?} is given twice: give each service once")]
    DuplicateService(String),

    // The state of the tables does not allow the command.
    #[error("no environment {0}")]
    NoSuchEnvironment(String),
    /// `deploy` to an environment that was deleted.
    #[error("no environment {0} (it was deleted)")]
    EnvironmentDeleted(String),
    #[error("environment {env_id} has no service {service} (it has: {known})")]
    NoSuchService { env_id: String, service: String, known: String },
    #[error("handle pool {pool} is empty: all {total} handle(s) are taken (add some with `edgeroute handles add`)")]
    PoolEmpty { pool: String, total: usize },
    #[error("there is no handle pool {0} (create it with `edgeroute handles add --table T {0} NAME…`)")]
    NoSuchPool(String),
    /// Far more conditional takes failed than the pool has handles.
    #[error(
        "could not take a handle of pool {pool}: {lost} conditional updates failed in a row; try again, and if it \
         persists look at the pool with `edgeroute handles list`"
    )]
    TakeFailed { pool: String, lost: usize },
    /// A hostname made with a handle is in the routing table already.
    #[error("hostname {0} exists already (another environment's, or a table entry)")]
    HostnameTaken(String),
    /// The create's transaction may or may not have been applied (its reply
    /// and the read-back both failed, or it was still in progress): the
    /// handle is kept.
    #[error(
        "{why}: whether environment {env_id} was created is not known; `env list` will show it if it was, \
         and `handles reclaim` returns its handle after the grace period if it was not"
    )]
    OutcomeUnknown { env_id: String, why: String },
    /// The handle was given back (by `handles reclaim`) before the create's
    /// transaction arrived: nothing was written.
    #[error(
        "handle {handle} of pool {pool} was taken from this environment before its routes were written \
         (`handles reclaim` gave it back); nothing was written: create it again"
    )]
    HandleLost { handle: String, pool: String },
    /// Every random part drawn made a hostname that exists already.
    #[error("no free hostnames after {0} random draws: every draw collided")]
    Collisions(u32),
    /// Every attempt of the transaction was cancelled by another one on the same items.
    #[error(
        "writing the environment (TransactWriteItems) failed after {0} attempt(s): every attempt conflicted with \
         another transaction on the same items; try again"
    )]
    Conflicts(u32),
    /// `deploy` to a route that carries another `EnvId` now, or is gone.
    #[error("the route of {service} ({hostname}) no longer belongs to environment {env_id}")]
    NotOwned { service: String, hostname: String, env_id: String },
    /// A create failed, and so did giving its handle back: the handle stays taken.
    #[error("{create}; and giving handle {handle} back to pool {pool} failed too: {give_back}")]
    HandleNotGivenBack {
        #[source]
        create: Box<EnvError>,
        handle: String,
        pool: String,
        give_back: Box<EnvError>,
    },

    // The tables.
    /// `init` found a table with keys other than the commands need.
    #[error("table {table}: exists with another key: {expected}")]
    WrongKeys { table: String, expected: &'static str },
    #[error("table {0}: did not become ACTIVE within a minute; check it, then run `edgeroute env init` again")]
    NotActive(String),
    /// A request failed for good (after the retries of [`crate::aws::with_retries`]).
    #[error("{what} failed after {attempts} attempt(s): {why}")]
    Aws {
        what: String,
        attempts: u32,
        /// DynamoDB's error code, if it answered with one.
        code: Option<String>,
        /// The failure, described.
        why: String,
    },
    #[error("cannot draw random characters: {0}")]
    Random(#[source] getrandom::Error),
}

/// What is wrong with a name (see [`check_name`](super::check_name)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    TooLong,
    /// A character other than `[a-z0-9-]`.
    Character(char),
    /// A leading or trailing `-`.
    Hyphen,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("empty"),
            NameProblem::TooLong => f.write_str("longer than 63 characters"),
            NameProblem::Character(c) => write!(f, "{c:?} is not allowed: use a-z, 0-9 and - (lowercase)"),
            NameProblem::Hyphen => f.write_str("must not start or end with -"),
        }
    }
}

impl EnvError {
    /// A request that failed for good, named `what`.
    pub(super) fn aws<E: ProvideErrorMetadata + std::error::Error + 'static>(
        what: &str,
        failed: Failed<E>,
    ) -> EnvError {
        EnvError::Aws {
            what: what.to_owned(),
            attempts: failed.attempts,
            code: failed.error.code().map(str::to_owned),
            why: describe(&failed.error),
        }
    }

    /// DynamoDB's error code, for a request that failed.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            EnvError::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// ` (HOSTNAME)`, or nothing.
fn in_parentheses(hostname: Option<&str>) -> String {
    hostname.map_or_else(String::new, |h| format!(" ({h})"))
}
