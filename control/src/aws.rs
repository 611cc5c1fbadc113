//! AWS configuration and request retries, shared by the DynamoDB and ELBv2
//! code.
//!
//! Configuration comes the usual way (environment, `~/.aws/config` and
//! `credentials`, profiles, SSO, `AWS_ENDPOINT_URL`), with flags on top.
//! Retries are edgeroute's own rather than the SDK's, so that a compile can
//! count and report them and so that a throttled Scan keeps going with
//! capped exponential backoff and full jitter instead of giving up when the
//! SDK's retry quota runs dry.

use std::future::Future;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// Where and as whom to talk to AWS; `None` means "as the environment and
/// the config files say".
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    /// A profile from `~/.aws/config` (else `AWS_PROFILE`, else `default`).
    pub profile: Option<String>,
    /// The region (else `AWS_REGION`, else the profile's).
    pub region: Option<String>,
    /// Every service at this URL (else `AWS_ENDPOINT_URL`): for local servers.
    pub endpoint_url: Option<String>,
}

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no AWS region: set AWS_REGION, give the profile a region, or pass --region")]
    NoRegion,
}

/// Loads the SDK configuration. The SDK's own retries are off (see
/// [`with_retries`]); every attempt has a timeout so that a hung connection
/// becomes a retry instead of a hung compile.
pub async fn load_config(options: &AwsOptions) -> Result<SdkConfig, ConfigError> {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(ConfigError::NoRegion);
    }
    Ok(config)
}

/// How often and how patiently to retry a request that failed for a
/// transient reason: throttling, a 5xx, a dropped connection, a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff's upper bound; it doubles on every retry…
    pub base: Duration,
    /// …up to this.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// 10 retries, 50 ms doubling to at most 5 s: a request gives up after
    /// about 20 s of backoff on average.
    fn default() -> RetryPolicy {
        RetryPolicy { max_retries: 10, base: Duration::from_millis(50), cap: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(cap, base * 2^retry)]`, so that
    /// parallel segments throttled together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << retry.min(20)).min(self.cap);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Error codes that mean "slow down", whatever their HTTP status.
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    // DynamoDB: a transaction with this idempotency token is still being
    // applied; the same request is to be sent again later.
    "TransactionInProgressException",
];

/// A request's failure, described for a person in one line, without the
/// SDK's debug structures: `Code: message (HTTP status)` for an answer, the
/// innermost cause for a connection that failed.
pub fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> String {
    edgeroute_store::describe_sdk_error(err)
}

/// Whether a failure is worth another attempt.
pub fn is_transient<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error() || err.code().is_some_and(|c| THROTTLING_CODES.contains(&c))
        }
        _ => false,
    }
}

/// A request that failed for good.
#[derive(Debug)]
pub struct Failed<E> {
    pub error: SdkError<E, HttpResponse>,
    /// Attempts made, the last one included.
    pub attempts: u32,
}

/// [`with_retries`] for a request whose retries nobody needs to hear about.
pub async fn retried<T, E, F, Fut>(policy: &RetryPolicy, call: F) -> Result<T, Failed<E>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    with_retries(policy, |_| {}, call).await
}

/// Runs `call` until it succeeds, fails for a reason that is not
/// transient, or has used up `policy`'s retries. `on_retry` hears about
/// every retry (the failure, described) before its backoff.
pub async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    mut on_retry: impl FnMut(&str),
    mut call: F,
) -> Result<T, Failed<E>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let mut retry = 0;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if retry < policy.max_retries && is_transient(&error) => {
                on_retry(&describe(&error));
                tokio::time::sleep(policy.backoff(retry)).await;
                retry += 1;
            }
            Err(error) => return Err(Failed { error, attempts: retry + 1 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_below_a_doubling_cap() {
        let p = RetryPolicy { max_retries: 5, base: Duration::from_millis(10), cap: Duration::from_millis(70) };
        for retry in 0..40 {
            let ceiling = Duration::from_millis(if retry >= 3 { 70 } else { 10 << retry });
            let samples: Vec<Duration> = (0..200).map(|_| p.backoff(retry)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "retry {retry}");
            // Jitter: not all the same, and some well below the ceiling.
            assert!(samples.iter().any(|d| *d < ceiling / 2), "retry {retry}");
        }
    }
}
