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

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};

use super::error::EnvError;
use super::request::conditional;
use super::schema::{parse_record, pool_pk, s, ENV_ID, ENV_PK, FREE, PK, SK, STATE, TAKEN_AT};
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
}

/// How old a handle's take must be before `reclaim` may return it: longer
/// than any create takes between its take and its transaction.
pub const RECLAIM_GRACE: Duration = Duration::from_secs(600);

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
        for env in records.iter().filter_map(parse_record).filter(|e| e.deleting && !e.deleted) {
            self.delete(&env.env_id).await?;
            collected.finished.push(env.env_id);
        }
        for pool in self.pools().await? {
            collected.reclaimed.extend(self.reclaim(&pool, grace).await?);
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
        let unchanged = match &handle.taken_at {
            Some(_) => format!("{ENV_ID} = :env AND {TAKEN_AT} = :at"),
            None => format!("{ENV_ID} = :env AND attribute_not_exists({TAKEN_AT})"),
        };
        let mut values =
            std::collections::HashMap::from([(":free".to_owned(), s(FREE)), (":env".to_owned(), s(holder))]);
        if let Some(at) = &handle.taken_at {
            values.insert(":at".to_owned(), s(at));
        }
        let result = self
            .send(&format!("returning handle {} to pool {pool}", handle.name), || {
                self.client
                    .update_item()
                    .table_name(&self.tables.state)
                    .key(PK, s(&pool_pk(pool)))
                    .key(SK, s(&handle.name))
                    .update_expression(format!("SET #state = :free REMOVE {ENV_ID}, {TAKEN_AT}"))
                    .condition_expression(&unchanged)
                    .expression_attribute_names("#state", STATE)
                    .set_expression_attribute_values(Some(values.clone()))
                    .send()
            })
            .await;
        Ok(conditional(result)?.is_some())
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
