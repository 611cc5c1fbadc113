//! An environment's life: `create` (its routing items and its record in one
//! `TransactWriteItems`), `get` and `list`, `deploy` (one service's item
//! replaced) and `delete`; every write after the create is conditional on
//! the environment's `EnvId`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};

use super::error::EnvError;
use super::names::{check_domain, check_name, hostname, Randomness, RANDOM_LEN};
use super::request::conditional;
use super::schema::{
    now, parse_record, pool_pk, record, route_item, s, DELETED, DELETED_AT, DELETING, DOMAIN, ENV_ID, ENV_PK, PK, SK,
    STATE,
};
use super::{CreateRequest, Deleted, Environment, Environments, HandleChoice};
use crate::aws::Failed;

/// DynamoDB's limit on the actions of one transaction (100): the services,
/// the record, and the check on a pooled handle.
pub const MAX_SERVICES: usize = 98;
/// Attempts at writing an environment: fresh random parts tried when a
/// hostname is taken already, or the same again after a conflict.
const COLLISION_ATTEMPTS: u32 = 5;
/// What the transaction is called in errors.
const TRANSACTION: &str = "writing the environment (TransactWriteItems)";
/// A cancellation reason: this item's condition did not hold.
const REASON_CONDITION: &str = "ConditionalCheckFailed";
/// A cancellation reason: another transaction was writing this item.
const REASON_CONFLICT: &str = "TransactionConflict";

impl Environments {
    /// Creates an environment: takes its handle, then writes its routing
    /// items and its record in one transaction. If that fails, the handle is
    /// given back. A hostname that exists already is drawn again (random
    /// parts) or is an error (handles).
    pub async fn create(&self, request: &CreateRequest, rng: &mut Randomness) -> Result<Environment, EnvError> {
        check_name("app", &request.app)?;
        let domain = check_domain(&request.domain)?;
        if request.services.is_empty() {
            return Err(EnvError::NoServices);
        }
        if request.services.len() > MAX_SERVICES {
            return Err(EnvError::TooManyServices { count: request.services.len() });
        }
        let mut seen = BTreeSet::new();
        for (service, _) in &request.services {
            check_name("service", service)?;
            if !seen.insert(service.as_str()) {
                return Err(EnvError::DuplicateService(service.clone()));
            }
        }
        match &request.handle {
            HandleChoice::Pool(pool) => check_name("pool", pool)?,
            HandleChoice::Named(name) => check_name("handle", name)?,
            HandleChoice::Random => {}
        }
        // Everything that can be checked is checked before a handle is taken.
        let probe = match &request.handle {
            HandleChoice::Named(name) => name.clone(),
            _ => "x".repeat(RANDOM_LEN),
        };
        for (service, target) in &request.services {
            let host = hostname(service, &probe, &request.app, &domain)?;
            route_item(service, &host, false, target, None, None, "probe")?;
        }

        let env_id = rng.env_id()?;
        let (handle, pool) = match &request.handle {
            HandleChoice::Random => (None, None),
            HandleChoice::Named(name) => (Some(name.clone()), None),
            HandleChoice::Pool(pool) => (Some(self.take_handle(pool, &env_id, rng).await?), Some(pool.clone())),
        };
        let result = self.write_environment(request, &domain, &env_id, handle.as_deref(), pool.as_deref(), rng).await;
        match (result, pool, handle) {
            // Whether it was written is not known: the handle stays with it
            // (`handles reclaim` returns it if the environment never came to be).
            (Err(unknown @ EnvError::OutcomeUnknown { .. }), _, _) => Err(unknown),
            // The create failed: the handle goes back (only if still ours,
            // and only if no record of this environment exists).
            (Err(create), Some(pool), Some(handle)) => match self.give_back_unwritten(&pool, &handle, &env_id).await {
                Ok(_) => Err(create),
                Err(give_back) => Err(EnvError::HandleNotGivenBack {
                    create: Box::new(create),
                    handle,
                    pool,
                    give_back: Box::new(give_back),
                }),
            },
            (result, _, _) => result,
        }
    }

    /// The transaction of `create`, tried up to [`COLLISION_ATTEMPTS`] times.
    async fn write_environment(
        &self,
        request: &CreateRequest,
        domain: &str,
        env_id: &str,
        handle: Option<&str>,
        pool: Option<&str>,
        rng: &mut Randomness,
    ) -> Result<Environment, EnvError> {
        let route_is_new = "attribute_not_exists(#domain)";
        let record_is_new = format!("attribute_not_exists({PK})");
        // One time stamp for every attempt: a retry sends the very same
        // parameters, as its idempotency token requires.
        let created_at = now();
        let create_token = rng.token()?;
        let mut last_conflict = false;
        for _ in 0..COLLISION_ATTEMPTS {
            last_conflict = false;
            // One token per attempt, reused by the retries of that attempt:
            // DynamoDB then applies the transaction once however many
            // replies are lost (for ten minutes).
            let token = rng.token()?;
            let part = match handle {
                Some(h) => h.to_owned(),
                None => rng.draw(RANDOM_LEN)?,
            };
            let mut hostnames = BTreeMap::new();
            let mut actions = Vec::new();
            for (service, target) in &request.services {
                let host = hostname(service, &part, &request.app, domain)?;
                let item = route_item(service, &host, false, target, None, None, env_id)?;
                actions.push(put(&self.tables.routes, item, route_is_new, Some(("#domain", DOMAIN))));
                hostnames.insert(service.clone(), host);
            }
            let env = Environment {
                env_id: env_id.to_owned(),
                app: request.app.clone(),
                domain: domain.to_owned(),
                handle: handle.map(str::to_owned),
                pool: pool.map(str::to_owned),
                hostnames,
                created_at: created_at.clone(),
                deleted: false,
                deleting: false,
                create_token: Some(create_token.clone()),
            };
            actions.push(put(&self.tables.state, record(&env), &record_is_new, None));
            // The handle must still be this environment's (a reclaim may have
            // given it back meanwhile): else two environments would share it.
            let handle_check = actions.len();
            if let (Some(handle), Some(pool)) = (handle, pool) {
                actions.push(handle_is(&self.tables.state, pool, handle, env_id));
            }
            let result = self
                .attempt(|| {
                    self.client
                        .transact_write_items()
                        .set_transact_items(Some(actions.clone()))
                        .client_request_token(&token)
                        .send()
                })
                .await;
            let failed = match result {
                Ok(_) => return Ok(env),
                Err(failed) => failed,
            };
            // A failure may follow a commit whose reply was lost (the
            // retry then fails its conditions, or a server other than
            // DynamoDB ignores the token): the record says whether the write
            // was this create's (any of its attempts': its token is in it):
            // what it says is what was written.
            let unknown = |why: String| EnvError::OutcomeUnknown { env_id: env_id.to_owned(), why };
            match self.written(env_id).await {
                Ok(Some(stored)) if stored.create_token.as_ref() == Some(&create_token) => return Ok(stored),
                Ok(Some(_)) => {}
                Ok(None) => {}
                Err(e) => {
                    return Err(unknown(format!(
                        "{}; and reading its record back failed: {e}",
                        describe_failed(&failed)
                    )))
                }
            }
            // Still being applied, past every retry: it may yet commit.
            if failed.error.as_service_error().is_some_and(|e| e.is_transaction_in_progress_exception())
                || crate::aws::is_transient(&failed.error)
            {
                return Err(unknown(describe_failed(&failed)));
            }
            if is_idempotent_mismatch(&failed) {
                return Err(EnvError::aws(TRANSACTION, failed));
            }
            let reasons = cancellation_reasons(&failed);
            if let (Some(handle), Some(pool)) = (handle, pool) {
                if reasons.get(handle_check).and_then(Option::as_deref) == Some(REASON_CONDITION) {
                    return Err(EnvError::HandleLost { handle: handle.to_owned(), pool: pool.to_owned() });
                }
            }
            let collided: Vec<&String> = request
                .services
                .iter()
                .zip(&reasons)
                .filter(|(_, code)| code.as_deref() == Some(REASON_CONDITION))
                .map(|((service, _), _)| &env.hostnames[service])
                .collect();
            let conflict = reasons.iter().any(|code| code.as_deref() == Some(REASON_CONFLICT));
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
                (None, _) => return Err(EnvError::aws(TRANSACTION, failed)),
            }
        }
        if last_conflict {
            return Err(EnvError::Conflicts(COLLISION_ATTEMPTS));
        }
        Err(EnvError::Collisions(COLLISION_ATTEMPTS))
    }

    /// The record of environment `env_id`, if it is in the table (a
    /// consistent read).
    async fn written(&self, env_id: &str) -> Result<Option<Environment>, EnvError> {
        match self.get(env_id).await {
            Ok(stored) => Ok(Some(stored)),
            Err(EnvError::NoSuchEnvironment(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An environment's record.
    pub async fn get(&self, env_id: &str) -> Result<Environment, EnvError> {
        let out = self
            .send(&format!("reading environment {env_id}"), || {
                self.client
                    .get_item()
                    .table_name(&self.tables.state)
                    .key(PK, s(ENV_PK))
                    .key(SK, s(env_id))
                    .consistent_read(true)
                    .send()
            })
            .await?;
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
        // Marked first, so that a delete killed half way is found and
        // finished by `env gc`.
        // (Only from active: a delete that finished meanwhile stays deleted.)
        if !env.deleting {
            let result = self
                .send(&format!("marking environment {env_id} deleting"), || {
                    self.client
                        .update_item()
                        .table_name(&self.tables.state)
                        .key(PK, s(ENV_PK))
                        .key(SK, s(env_id))
                        .update_expression("SET #state = :deleting")
                        .condition_expression("#state <> :deleted")
                        .expression_attribute_names("#state", STATE)
                        .expression_attribute_values(":deleting", s(DELETING))
                        .expression_attribute_values(":deleted", s(DELETED))
                        .send()
                })
                .await;
            if conditional(result)?.is_none() {
                done.already = true;
                return Ok(done);
            }
        }
        let owned = format!("{ENV_ID} = :env");
        for host in env.hostnames.values() {
            let result = self
                .send(&format!("deleting route {host}"), || {
                    self.client
                        .delete_item()
                        .table_name(&self.tables.routes)
                        .key(DOMAIN, s(host))
                        .condition_expression(&owned)
                        .expression_attribute_values(":env", s(env_id))
                        .send()
                })
                .await;
            match conditional(result)? {
                Some(_) => done.removed.push(host.clone()),
                None => done.skipped.push(host.clone()),
            }
        }
        if let (Some(pool), Some(handle)) = (&env.pool, &env.handle) {
            if self.give_back(pool, handle, env_id).await? {
                done.handle_returned = Some(handle.clone());
            }
        }
        let mark = format!("SET #state = :deleted, {DELETED_AT} = :at");
        self.send(&format!("marking environment {env_id} deleted"), || {
            self.client
                .update_item()
                .table_name(&self.tables.state)
                .key(PK, s(ENV_PK))
                .key(SK, s(env_id))
                .update_expression(&mark)
                .expression_attribute_names("#state", STATE)
                .expression_attribute_values(":deleted", s(DELETED))
                .expression_attribute_values(":at", s(&now()))
                .send()
        })
        .await?;
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
        if env.deleted || env.deleting {
            return Err(EnvError::EnvironmentDeleted(env_id.to_owned()));
        }
        let Some(host) = env.hostnames.get(service) else {
            return Err(EnvError::NoSuchService {
                env_id: env_id.to_owned(),
                service: service.to_owned(),
                known: env.hostnames.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let item = route_item(service, host, true, target, assets, fallback, env_id)?;
        let result = self
            .send(&format!("deploying {service} ({host})"), || {
                self.client
                    .put_item()
                    .table_name(&self.tables.routes)
                    .set_item(Some(item.clone()))
                    .condition_expression(format!("{ENV_ID} = :env"))
                    .expression_attribute_values(":env", s(env_id))
                    .send()
            })
            .await;
        match conditional(result)? {
            Some(_) => Ok(host.clone()),
            None => Err(EnvError::NotOwned {
                service: service.to_owned(),
                hostname: host.clone(),
                env_id: env_id.to_owned(),
            }),
        }
    }
}

/// A transaction's Put of `item` into `table` on `condition`, with one
/// attribute name placeholder if given.
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

/// A transaction's check that handle `handle` of `pool` is still held by `env_id`.
fn handle_is(table: &str, pool: &str, handle: &str, env_id: &str) -> TransactWriteItem {
    let check = ConditionCheck::builder()
        .table_name(table)
        .key(PK, s(&pool_pk(pool)))
        .key(SK, s(handle))
        .condition_expression(format!("{ENV_ID} = :env"))
        .expression_attribute_values(":env", s(env_id))
        .build()
        .expect("table, key and condition are set");
    TransactWriteItem::builder().condition_check(check).build()
}

/// A transaction's failure in one line.
fn describe_failed(failed: &Failed<TransactWriteItemsError>) -> String {
    format!("{TRANSACTION} failed after {} attempt(s): {}", failed.attempts, crate::aws::describe(&failed.error))
}

/// DynamoDB refused a token it saw with other parameters: a bug, not a retry.
fn is_idempotent_mismatch(failed: &Failed<TransactWriteItemsError>) -> bool {
    matches!(failed.error.as_service_error(), Some(TransactWriteItemsError::IdempotentParameterMismatchException(_)))
}

/// Why each action of a cancelled transaction was cancelled (its code, in
/// the order of the actions); nothing if the transaction was not cancelled.
fn cancellation_reasons(failed: &Failed<TransactWriteItemsError>) -> Vec<Option<String>> {
    match failed.error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
            canceled.cancellation_reasons().iter().map(|r| r.code().map(str::to_owned)).collect()
        }
        _ => Vec::new(),
    }
}
