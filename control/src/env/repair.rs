//! What a crash can leave, and its repair: `handles reclaim` returns the
//! handles held by environments that never came to be (a create killed
//! between taking its handle and writing its routes) or are deleted, and
//! `env gc` finishes the deletes that were killed half way, then reclaims.
//!
//! A reclaim is conditional on the holder and the time it took the handle
//! being unchanged, and a create's transaction checks that its handle is
//! still its own: so a slow create that commits after its handle was
//! reclaimed fails, rather than two environments sharing one handle.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem, Update};

use super::error::EnvError;
use super::schema::{parse_record, pool_pk, s, DELETED, ENV_ID, ENV_PK, FREE, PK, SK, STATE, TAKEN_AT};
use super::{Environments, Handle};

/// A handle returned to its pool.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Reclaimed {
    pub pool: String,
    pub handle: String,
    /// The environment that held it (missing, or deleted).
    pub env_id: String,
}

/// What `env gc` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Collected {
    /// Environments whose delete was finished.
    pub finished: Vec<String>,
    pub reclaimed: Vec<Reclaimed>,
    /// What could not be repaired, and why (`env gc` then fails).
    pub failed: Vec<String>,
}

/// How old a handle's take must be before `reclaim` may return it by
/// default: longer than any create takes between its take and its
/// transaction (its retries included, about eleven minutes at worst). A
/// shorter one is safe (the create's ConditionCheck fails it) but may fail
/// a slow create.
pub const RECLAIM_GRACE: Duration = Duration::from_secs(3600);

impl Environments {
    /// Returns to `pool` every handle whose holder does not exist or is
    /// deleted, taken more than `grace` ago; each on the condition that its
    /// holder and take time are still those read.
    pub async fn reclaim(&self, pool: &str, grace: Duration) -> Result<Vec<Reclaimed>, EnvError> {
        let now = crate::clock::now();
        let mut reclaimed = Vec::new();
        for handle in self.handles(pool).await? {
            let Some(holder) = handle.env_id.clone() else { continue };
            if !old_enough(&handle, now, grace) {
                continue;
            }
            match self.get(&holder).await {
                Ok(env) if !env.deleted => continue,
                Ok(_) | Err(EnvError::NoSuchEnvironment(_)) => {}
                Err(e) => return Err(e),
            }
            if self.return_handle(pool, &handle, &holder).await? {
                reclaimed.push(Reclaimed { pool: pool.to_owned(), handle: handle.name, env_id: holder });
            }
        }
        Ok(reclaimed)
    }

    /// Finishes every delete that began and did not end, then reclaims the
    /// handles of every pool (`grace` as [`reclaim`](Self::reclaim)'s).
    pub async fn gc(&self, grace: Duration) -> Result<Collected, EnvError> {
        let mut collected = Collected::default();
        let records = self.query_all(ENV_PK, true, "listing environments").await?;
        // One failure does not stop the rest: every repair is tried, and
        // the failures are reported together.
        for env in records.iter().filter_map(parse_record).filter(|e| e.deleting && !e.deleted) {
            match self.delete(&env.env_id).await {
                Ok(_) => collected.finished.push(env.env_id),
                Err(e) => collected.failed.push(format!("finishing the delete of {}: {e}", env.env_id)),
            }
        }
        for pool in self.pools().await? {
            match self.reclaim(&pool, grace).await {
                Ok(reclaimed) => collected.reclaimed.extend(reclaimed),
                Err(e) => collected.failed.push(format!("reclaiming in pool {pool}: {e}")),
            }
        }
        Ok(collected)
    }

    /// Every pool's name (a Scan of the state table's `pool#` partitions' keys).
    async fn pools(&self) -> Result<BTreeSet<String>, EnvError> {
        let mut pools = BTreeSet::new();
        let mut start = None;
        loop {
            let page = self
                .send("listing handle pools", || {
                    self.client
                        .scan()
                        .table_name(&self.tables.state)
                        .projection_expression(PK)
                        .filter_expression(format!("begins_with({PK}, :pool)"))
                        .expression_attribute_values(":pool", s(&pool_pk("")))
                        .consistent_read(true)
                        .set_exclusive_start_key(start.clone())
                        .send()
                })
                .await?;
            for item in page.items() {
                if let Some(pool) =
                    item.get(PK).and_then(|v| v.as_s().ok()).and_then(|pk| pk.strip_prefix(&pool_pk("")))
                {
                    pools.insert(pool.to_owned());
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(pools),
            }
        }
    }

    /// Frees `handle` if `holder` still holds it since the same take.
    async fn return_handle(&self, pool: &str, handle: &Handle, holder: &str) -> Result<bool, EnvError> {
        self.free_handle(pool, &handle.name, holder, Some(handle.taken_at.as_deref())).await
    }

    /// Gives back the handle of a create that failed, unless its record
    /// exists after all.
    pub(super) async fn give_back_unwritten(&self, pool: &str, name: &str, env_id: &str) -> Result<bool, EnvError> {
        self.free_handle(pool, name, env_id, None).await
    }

    /// Frees handle `name` of `pool` in one transaction, on the conditions
    /// that `holder` holds it (since the take at `taken_at`, when given) and
    /// that `holder` has no record or a deleted one: a create whose
    /// transaction commits meanwhile keeps its handle.
    async fn free_handle(
        &self,
        pool: &str,
        name: &str,
        holder: &str,
        taken_at: Option<Option<&str>>,
    ) -> Result<bool, EnvError> {
        let held = match taken_at {
            Some(Some(_)) => format!("{ENV_ID} = :env AND {TAKEN_AT} = :at"),
            Some(None) => format!("{ENV_ID} = :env AND attribute_not_exists({TAKEN_AT})"),
            None => format!("{ENV_ID} = :env"),
        };
        let mut values = HashMap::from([(":free".to_owned(), s(FREE)), (":env".to_owned(), s(holder))]);
        if let Some(Some(at)) = taken_at {
            values.insert(":at".to_owned(), s(at));
        }
        let free = Update::builder()
            .table_name(&self.tables.state)
            .key(PK, s(&pool_pk(pool)))
            .key(SK, s(name))
            .update_expression(format!("SET #state = :free REMOVE {ENV_ID}, {TAKEN_AT}"))
            .condition_expression(held)
            .expression_attribute_names("#state", STATE)
            .set_expression_attribute_values(Some(values))
            .build()
            .expect("table, key and expression are set");
        let no_live_record = ConditionCheck::builder()
            .table_name(&self.tables.state)
            .key(PK, s(ENV_PK))
            .key(SK, s(holder))
            .condition_expression(format!("attribute_not_exists({PK}) OR #state = :deleted"))
            .expression_attribute_names("#state", STATE)
            .expression_attribute_values(":deleted", s(DELETED))
            .build()
            .expect("table, key and condition are set");
        let actions = vec![
            TransactWriteItem::builder().update(free).build(),
            TransactWriteItem::builder().condition_check(no_live_record).build(),
        ];
        let result =
            self.attempt(|| self.client.transact_write_items().set_transact_items(Some(actions.clone())).send()).await;
        match result {
            Ok(_) => Ok(true),
            Err(failed)
                if failed.error.as_service_error().is_some_and(|e| {
                    matches!(e, TransactWriteItemsError::TransactionCanceledException(c)
                        if c.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed")))
                }) =>
            {
                Ok(false)
            }
            Err(failed) => Err(EnvError::aws(&format!("returning handle {name} to pool {pool}"), failed)),
        }
    }
}

/// Whether `handle` was taken at least `grace` before `now`. A take time
/// that is missing or unreadable counts as old.
fn old_enough(handle: &Handle, now: SystemTime, grace: Duration) -> bool {
    let Some(at) = handle.taken_at.as_deref() else { return true };
    let Ok(at) = DateTime::from_str(at, DateTimeFormat::DateTime) else { return true };
    let Ok(at) = SystemTime::try_from(at) else { return true };
    now.duration_since(at).is_ok_and(|age| age >= grace)
}
