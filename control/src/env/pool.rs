//! Handle pools: names filled in advance (`edgeroute handles add`), each
//! an item of the state table's partition `pool#POOL`, taken by an
//! environment with a conditional update (free → taken by its id) and
//! given back on the condition that it still holds it.

use super::error::EnvError;
use super::names::{check_name, Randomness};
use super::request::conditional;
use super::schema::{now, parse_handle, pool_pk, s, ENV_ID, FREE, PK, SK, STATE, TAKEN, TAKEN_AT};
use super::{Environments, Handle};

/// Lost races, beyond one per handle of the pool, after which a take gives up.
const EXTRA_LOSSES: usize = 10;

impl Environments {
    /// Adds handles to a pool (creating it); a handle already in it stays as
    /// it is (taken or free). Returns, for each name, whether it was added.
    pub async fn add_handles(&self, pool: &str, names: &[String]) -> Result<Vec<(String, bool)>, EnvError> {
        check_name("pool", pool)?;
        for name in names {
            check_name("handle", name)?;
        }
        let is_new = format!("attribute_not_exists({PK})");
        let mut added = Vec::new();
        for name in names {
            let result = self
                .send(&format!("adding handle {name} to pool {pool}"), || {
                    self.client
                        .put_item()
                        .table_name(&self.tables.state)
                        .item(PK, s(&pool_pk(pool)))
                        .item(SK, s(name))
                        .item(STATE, s(FREE))
                        .condition_expression(&is_new)
                        .send()
                })
                .await;
            added.push((name.clone(), conditional(result)?.is_some()));
        }
        Ok(added)
    }

    /// A pool's handles, by name.
    pub async fn handles(&self, pool: &str) -> Result<Vec<Handle>, EnvError> {
        let items = self.query_all(&pool_pk(pool), true, &format!("listing pool {pool}")).await?;
        let mut handles: Vec<Handle> = items.iter().filter_map(parse_handle).collect();
        handles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(handles)
    }

    /// Takes a free handle of `pool` for `env_id`: a conditional update
    /// (free → taken by this environment), so that two takers never get the
    /// same handle; when another taker wins, the next free one is tried.
    /// Idempotent: a handle this environment holds already (a take whose
    /// reply was lost, then retried) is its handle, not a lost race.
    pub async fn take_handle(&self, pool: &str, env_id: &str, rng: &mut Randomness) -> Result<String, EnvError> {
        let update = format!("SET #state = :taken, {ENV_ID} = :env, {TAKEN_AT} = :at");
        // Each lost race means another taker got a handle; more losses than
        // the pool has handles means something else is wrong.
        let mut lost = 0;
        loop {
            let handles = self.handles(pool).await?;
            if handles.is_empty() {
                return Err(EnvError::NoSuchPool(pool.to_owned()));
            }
            if let Some(mine) = handles.iter().find(|h| h.env_id.as_deref() == Some(env_id)) {
                return Ok(mine.name.clone());
            }
            let free: Vec<&Handle> = handles.iter().filter(|h| h.env_id.is_none()).collect();
            if free.is_empty() {
                return Err(EnvError::PoolEmpty { pool: pool.to_owned(), total: handles.len() });
            }
            // A random free one, so that concurrent takers rarely race for the same.
            let name = &free[rng.index(free.len())?].name;
            let result = self
                .send(&format!("taking handle {name} of pool {pool}"), || {
                    self.client
                        .update_item()
                        .table_name(&self.tables.state)
                        .key(PK, s(&pool_pk(pool)))
                        .key(SK, s(name))
                        .update_expression(&update)
                        .condition_expression(format!("#state = :free OR {ENV_ID} = :env"))
                        .expression_attribute_names("#state", STATE)
                        .expression_attribute_values(":taken", s(TAKEN))
                        .expression_attribute_values(":free", s(FREE))
                        .expression_attribute_values(":env", s(env_id))
                        .expression_attribute_values(":at", s(&now()))
                        .send()
                })
                .await;
            if conditional(result)?.is_some() {
                return Ok(name.clone());
            }
            lost += 1;
            if lost > handles.len() + EXTRA_LOSSES {
                return Err(EnvError::TakeFailed { pool: pool.to_owned(), lost });
            }
        }
    }

    /// Gives `name` back to `pool` if `env_id` holds it; returns whether it did.
    pub async fn give_back(&self, pool: &str, name: &str, env_id: &str) -> Result<bool, EnvError> {
        let result = self
            .send(&format!("giving handle {name} back to pool {pool}"), || {
                self.client
                    .update_item()
                    .table_name(&self.tables.state)
                    .key(PK, s(&pool_pk(pool)))
                    .key(SK, s(name))
                    .update_expression(format!("SET #state = :free REMOVE {ENV_ID}, {TAKEN_AT}"))
                    .condition_expression(format!("{ENV_ID} = :env"))
                    .expression_attribute_names("#state", STATE)
                    .expression_attribute_values(":free", s(FREE))
                    .expression_attribute_values(":env", s(env_id))
                    .send()
            })
            .await;
        Ok(conditional(result)?.is_some())
    }
}
