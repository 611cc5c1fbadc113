//! The host's AWS settings and its S3 clients (a followed store's and the
//! static sites'). Looked at only when something is in S3, and with no
//! network request at start for a host whose store is not in S3: the region
//! comes from the flag, the environment or the AWS config files, never from
//! the instance metadata; credentials are fetched on first use.
//!
//! Every S3 request of the host is bounded (`docs/serving.md`): the connect
//! ([`S3Limits::connect`]), the time to the response's head
//! ([`S3Limits::head`]), at most [`S3Limits::attempts`] attempts, and a
//! body's longest silence ([`S3Limits::body_idle`]; a total would cut large
//! assets that are still streaming).

use std::path::PathBuf;
use std::time::Duration;

use aws_config::meta::region::ProvideRegion as _;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// How long an S3 request of the host may take, and how often it is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S3Limits {
    /// The longest wait for a connection.
    pub connect: Duration,
    /// The longest wait for the response's head, from the request's start.
    pub head: Duration,
    /// Attempts per request (the SDK's standard backoff between them).
    pub attempts: u32,
    /// The longest silence within a body.
    pub body_idle: Duration,
}

impl Default for S3Limits {
    /// 3 s to connect, 10 s to the head, 2 attempts, 10 s of silence in a
    /// body: a silent endpoint costs a request about 21 s (two heads and one
    /// backoff of at most 1 s), so the client gets its 504 within 30 s.
    fn default() -> S3Limits {
        S3Limits {
            connect: Duration::from_secs(3),
            head: Duration::from_secs(10),
            attempts: 2,
            body_idle: Duration::from_secs(10),
        }
    }
}

/// Where and as whom the host talks to AWS.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    /// A profile from the AWS config files (else `AWS_PROFILE`, else `default`).
    pub profile: Option<String>,
    /// The region (else `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's).
    pub region: Option<String>,
    /// Every AWS request to this URL, path-style (a local server).
    pub endpoint_url: Option<String>,
    pub limits: S3Limits,
}

/// What of the host is in S3, which says how much a missing setting matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InS3 {
    /// Nothing: AWS settings are never looked at.
    Nothing,
    /// Static sites only: a missing setting is a warning (their requests
    /// then fail with a 502 and a log line).
    StaticSites,
    /// The store the host follows: a missing setting stops the host.
    Store,
}

/// A setting the host cannot do without.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("no AWS region: give --region, set AWS_REGION, or give the profile a region")]
    NoRegion,
    #[error("no AWS profile {0:?} in the AWS config files ({1}): give another --profile or AWS_PROFILE")]
    NoProfile(String, String),
    #[error("no AWS credentials: {0}")]
    NoCredentials(String),
}

/// The AWS configuration for what of the host is in S3: `None` for nothing.
/// With static sites only, a missing region, profile or credentials is one
/// warning line; with a store in S3, an error (credentials are then fetched
/// at start: the store is read at once anyway).
pub async fn load(settings: &AwsSettings, in_s3: InS3) -> Result<Option<SdkConfig>, AwsError> {
    if in_s3 == InS3::Nothing {
        return Ok(None);
    }
    let problem = |e: AwsError| -> Result<(), AwsError> {
        if in_s3 == InS3::Store {
            return Err(e);
        }
        tracing::warn!("{e}; static sites in S3 will answer 502 until it is fixed");
        Ok(())
    };
    let profile = settings.profile.clone().or_else(|| env("AWS_PROFILE"));
    if let Some(name) = &profile {
        if !profile_defined(name) {
            problem(AwsError::NoProfile(name.clone(), config_files().unwrap_or_default().join(", ")))?;
        }
    }
    let region = match settings.region.clone().or_else(|| env("AWS_REGION")).or_else(|| env("AWS_DEFAULT_REGION")) {
        Some(region) => Some(Region::new(region)),
        None => {
            let mut files = aws_config::profile::ProfileFileRegionProvider::builder();
            if let Some(name) = &profile {
                files = files.profile_name(name);
            }
            files.build().region().await
        }
    };
    let has_region = region.is_some();
    if !has_region {
        problem(AwsError::NoRegion)?;
    }
    // The credentials and token chains as the SDK makes them, but told the
    // region (even none), so that they never ask the instance metadata for one.
    let mut credentials = aws_config::default_provider::credentials::DefaultCredentialsChain::builder();
    let mut token = aws_config::default_provider::token::DefaultTokenChain::builder();
    if let Some(name) = &profile {
        credentials = credentials.profile_name(name);
        token = token.profile_name(name);
    }
    credentials.set_region(Some(region.clone()));
    token.set_region(Some(region.clone()));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials.build().await)
        .token_provider(token.build().await);
    if let Some(name) = &profile {
        loader = loader.profile_name(name);
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if in_s3 == InS3::Store {
        use aws_credential_types::provider::error::CredentialsError;
        use aws_credential_types::provider::ProvideCredentials as _;
        if let Some(provider) = config.credentials_provider() {
            match provider.provide_credentials().await {
                Ok(_) => {}
                // None anywhere, or a profile that cannot give any: the host
                // could never read its store.
                Err(e @ (CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_))) => {
                    return Err(AwsError::NoCredentials(one_line(&e)));
                }
                // A provider that failed or was slow this time (the instance
                // metadata at boot, STS): the follower keeps trying.
                Err(e) => {
                    tracing::warn!("cannot get AWS credentials yet ({}); trying again with every read", one_line(&e))
                }
            }
        }
    } else if has_region && !credentials_visible(profile.as_deref()) {
        tracing::warn!(
            "no AWS credentials in the environment or the AWS config files: static sites in S3 will use the instance's role if it has one, else answer 502"
        );
    }
    Ok(Some(config))
}

/// An S3 client for the host: path-style addressing when an endpoint URL is
/// set (local servers), and every request bounded by `limits`.
pub fn s3_client(config: &SdkConfig, limits: &S3Limits) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(config)
        .retry_config(RetryConfig::standard().with_max_attempts(limits.attempts.max(1)))
        .timeout_config(TimeoutConfig::builder().connect_timeout(limits.connect).read_timeout(limits.head).build())
        .stalled_stream_protection(StalledStreamProtectionConfig::enabled().grace_period(limits.body_idle).build());
    if config.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// An error and its sources, on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The AWS config and credentials files, as the SDK finds them; `None`
/// when there is no home folder to find them in.
fn config_files() -> Option<Vec<String>> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let file = |var: &str, default: &str| {
        env(var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let files = [file("AWS_CONFIG_FILE", "config")?, file("AWS_SHARED_CREDENTIALS_FILE", "credentials")?];
    Some(files.iter().map(|p| p.display().to_string()).collect())
}

/// Whether the AWS config files hold a section for profile `name`
/// (`[profile NAME]` or `[NAME]` in the config file, `[NAME]` in the
/// credentials file). Read without the SDK: no network, no warnings. When
/// the files cannot be found (no home folder), the SDK is left to decide.
fn profile_defined(name: &str) -> bool {
    let Some(files) = config_files() else { return true };
    files
        .iter()
        .any(|file| std::fs::read_to_string(file).is_ok_and(|text| text.lines().any(|l| section_names(l, name))))
}

/// Whether an INI line is the header of profile `name`'s section.
fn section_names(line: &str, name: &str) -> bool {
    // A comment may follow the header: `[profile dev] # staging`.
    let line = line.split(['#', ';']).next().unwrap_or_default().trim();
    let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else { return false };
    let mut words = section.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(only), None, _) => only == name,
        (Some("profile"), Some(profile), None) => profile == name,
        _ => false,
    }
}

/// Whether credentials can be had without asking the instance metadata: in
/// the environment, a web identity or container setting, or a profile.
fn credentials_visible(profile: Option<&str>) -> bool {
    [
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|v| env(v).is_some())
        || profile_defined(profile.unwrap_or("default"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_sections_are_read_as_the_sdk_reads_them() {
        assert!(section_names("[profile dev]", "dev"));
        assert!(section_names("  [profile   dev]  # staging", "dev"));
        assert!(section_names("[dev]", "dev"));
        assert!(section_names("[default] ; the usual", "default"));
        assert!(!section_names("[profiledev]", "dev"));
        assert!(!section_names("[profile dev x]", "dev"));
        assert!(!section_names("[profile devops]", "dev"));
        assert!(!section_names("# [profile dev]", "dev"));
    }

    /// The defaults answer a silent endpoint's request within 30 s: two
    /// attempts, each bounded by the head timeout (which counts from the
    /// request's start, the connect included), and one backoff of at most 1 s.
    #[test]
    fn a_silent_endpoint_is_given_up_within_30_seconds() {
        let limits = S3Limits::default();
        assert_eq!(
            (limits.connect, limits.head, limits.attempts),
            (Duration::from_secs(3), Duration::from_secs(10), 2)
        );
        assert!(limits.head * limits.attempts + Duration::from_secs(1) < Duration::from_secs(30));
    }
}
