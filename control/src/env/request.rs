//! How this module talks to DynamoDB: every request goes through
//! [`Environments::send`] (or, where the SDK's own failure is needed,
//! [`Environments::attempt`]), which retries it as every DynamoDB request of
//! edgeroute's is retried ([`with_retries`]) and turns a failure for good
//! into [`EnvError::Aws`].

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use super::error::EnvError;
use super::schema::{s, PK};
use super::Environments;
use crate::aws::{retried, Failed};

/// A conditional write whose condition did not hold.
pub(super) const CONDITION_FAILED: &str = "ConditionalCheckFailedException";
/// DescribeTable of a table that does not exist.
pub(super) const NOT_FOUND: &str = "ResourceNotFoundException";
/// CreateTable of a table that exists (or is being created).
pub(super) const IN_USE: &str = "ResourceInUseException";

impl Environments {
    /// Sends a request (`call` makes it anew for each attempt), retrying
    /// throttling, 5xx answers and dropped connections with jittered
    /// backoff; a failure for good is [`EnvError::Aws`] naming `what`.
    pub(super) async fn send<T, E, F, Fut>(&self, what: &str, call: F) -> Result<T, EnvError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        self.attempt(call).await.map_err(|failed| EnvError::aws(what, failed))
    }

    /// [`Environments::send`], with the failure as the SDK gave it: for the
    /// transaction, whose cancellation reasons say what to do next.
    pub(super) async fn attempt<T, E, F, Fut>(&self, call: F) -> Result<T, Failed<E>>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        retried(&self.retry, call).await
    }

    /// Every item of the state table's partition `pk`, all pages.
    pub(super) async fn query_all(
        &self,
        pk: &str,
        consistent: bool,
        what: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, EnvError> {
        let mut items = Vec::new();
        let mut start = None;
        let key_condition = format!("{PK} = :pk");
        loop {
            let page = self
                .send(what, || {
                    self.client
                        .query()
                        .table_name(&self.tables.state)
                        .key_condition_expression(&key_condition)
                        .expression_attribute_values(":pk", s(pk))
                        .consistent_read(consistent)
                        .set_exclusive_start_key(start.clone())
                        .send()
                })
                .await?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

/// `Ok(None)` for a request that failed only with `code` (a condition that
/// did not hold, a table that is missing or there already).
pub(super) fn unless<T>(code: &str, result: Result<T, EnvError>) -> Result<Option<T>, EnvError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.aws_code() == Some(code) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Ok(None)` for a conditional write whose condition did not hold.
pub(super) fn conditional<T>(result: Result<T, EnvError>) -> Result<Option<T>, EnvError> {
    unless(CONDITION_FAILED, result)
}
