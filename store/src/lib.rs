//! `edgeroute-store` owns snapshot stores: where `edgeroute publish` puts
//! snapshots and the pointer to the current one, and where hosts
//! (`edgeroute-host serve`) find them (`docs/publishing.md`). It links the
//! S3 SDK only, so that hosts can read stores without the DynamoDB SDK.
//!
//! A store holds content-addressed objects `snapshots/<id>.snap` (written
//! once, never overwritten), the pointer `current.json`, replaced only by a
//! compare-and-swap on its version, and an append-only `history/` of every
//! pointer it ever had. Two forms: a directory (`dir:PATH`; the swap is a
//! write, fsync and rename under an exclusive lock on `PATH/.lock`) and S3
//! (`s3://BUCKET/PREFIX`; the swap is a conditional PUT on the pointer's
//! ETag, `If-None-Match: *` for the first one).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a store is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for StoreLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<StoreLocation, String> {
        if let Some(path) = s.strip_prefix("dir:") {
            if path.is_empty() {
                return Err("dir: needs a path".into());
            }
            return Ok(StoreLocation::Dir(path.into()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{s:?}: s3://BUCKET[/PREFIX] needs a bucket"));
            }
            return Ok(StoreLocation::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() });
        }
        Err(format!("{s:?}: a store is dir:PATH or s3://BUCKET[/PREFIX]"))
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Dir(p) => write!(f, "dir:{}", p.display()),
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// `current.json`: which snapshot is live, and what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// The snapshot's id: the lowercase hex SHA-256 of its bytes.
    pub id: String,
    pub format_version: u32,
    pub routes: u64,
    /// The snapshot's size in bytes.
    pub size: u64,
    /// When this pointer was written (RFC 3339, UTC).
    pub created_at: String,
    /// The id this pointer replaced.
    pub previous: Option<String>,
    /// Where the table came from (`dynamodb://routes`, a file, `rollback`).
    pub source: String,
    /// Items left out of the snapshot as invalid.
    #[serde(default)]
    pub skipped: u64,
    /// Set by `rollback`: publishers hold back until `unpin`.
    #[serde(default)]
    pub pinned: bool,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("S3 {op} s3://{bucket}/{key}: {why}")]
    S3 { op: &'static str, bucket: String, key: String, why: String },
    #[error("{what} is not a valid pointer document: {why}")]
    BadPointer { what: String, why: String },
    #[error("snapshot {id} is not in the store")]
    NoSnapshot { id: String },
}

/// The version of a pointer, for the compare-and-swap: its ETag in S3, the
/// SHA-256 of its bytes in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(String);

/// A store, opened.
#[derive(Debug)]
pub enum Store {
    Dir(PathBuf),
    S3 { client: aws_sdk_s3::Client, bucket: String, prefix: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside
/// it, fsync, rename, fsync of the directory.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.{:x}.tmp", std::process::id(), fastrand::u64(..)));
    let tmp = dir.join(name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An S3 client for `config`, with path-style addressing when an endpoint
/// URL is configured (local servers).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    // Stores are small objects, written and read often: the SDK's standard
    // retries (with backoff) ride out throttling and 5xx answers.
    let mut builder = aws_sdk_s3::config::Builder::from(config)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5));
    if config.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

impl Store {
    /// Opens a store; a directory is created if missing. S3 uses path-style
    /// addressing when an endpoint URL is configured (local servers).
    pub fn open(location: &StoreLocation, config: Option<&aws_config::SdkConfig>) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Dir(dir) => {
                for sub in ["snapshots", "history"] {
                    std::fs::create_dir_all(dir.join(sub)).map_err(io(dir))?;
                }
                Ok(Store::Dir(dir.clone()))
            }
            StoreLocation::S3 { bucket, prefix } => {
                let config = config.expect("an S3 store needs an AWS configuration");
                Ok(Store::S3 { client: s3_client(config), bucket: bucket.clone(), prefix: prefix.clone() })
            }
        }
    }

    fn key(prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        }
    }

    /// The folder of a directory store.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Store::Dir(dir) => Some(dir),
            Store::S3 { .. } => None,
        }
    }

    /// The current pointer and its version, or `None` before the first publish.
    pub async fn read_pointer(&self) -> Result<Option<(Pointer, Version)>, StoreError> {
        self.fetch_pointer(None).await
    }

    /// The pointer; in S3 `None` also when its ETag is `if_none_match`.
    async fn fetch_pointer(&self, if_none_match: Option<&str>) -> Result<Option<(Pointer, Version)>, StoreError> {
        let (bytes, version, what) = match self {
            Store::Dir(dir) => {
                let path = dir.join("current.json");
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        let version = Version(hex_sha256(&bytes));
                        (bytes, version, path.display().to_string())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io(&path)(e)),
                }
            }
            Store::S3 { client, bucket, prefix } => {
                let key = Store::key(prefix, "current.json");
                let get =
                    client.get_object().bucket(bucket).key(&key).set_if_none_match(if_none_match.map(str::to_owned));
                let out = match get.send().await {
                    Ok(out) => out,
                    Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) => return Ok(None),
                    Err(e) => return Err(s3_error("GET", bucket, &key, &e)),
                };
                let etag = out.e_tag().unwrap_or_default().to_owned();
                let bytes = out.body.collect().await.map_err(|e| StoreError::S3 {
                    op: "GET",
                    bucket: bucket.clone(),
                    key: key.clone(),
                    why: e.to_string(),
                })?;
                (bytes.to_vec(), Version(etag), format!("s3://{bucket}/{key}"))
            }
        };
        let pointer = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::BadPointer { what: what.clone(), why: e.to_string() })?;
        Ok(Some((pointer, version)))
    }

    /// The pointer if it differs from the version `known` (in S3 a
    /// conditional GET with `If-None-Match`, so an unchanged pointer costs
    /// a 304 and no body); `Ok(None)` if it is unchanged or absent.
    pub async fn read_pointer_if_changed(
        &self,
        known: Option<&Version>,
    ) -> Result<Option<(Pointer, Version)>, StoreError> {
        match (self, known) {
            (Store::S3 { .. }, Some(Version(etag))) => self.fetch_pointer(Some(etag)).await,
            _ => Ok(self.read_pointer().await?.filter(|(_, v)| Some(v) != known)),
        }
    }

    /// Replaces the pointer if it is still at `expected` (`None`: there is
    /// none yet). Returns false, writing nothing, when another writer got
    /// there first.
    pub async fn replace_pointer(&self, new: &Pointer, expected: Option<&Version>) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec_pretty(new).expect("a pointer serializes");
        match self {
            Store::Dir(dir) => {
                let lock_path = dir.join(".lock");
                let lock = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(io(&lock_path))?;
                lock.lock().map_err(io(&lock_path))?;
                let current = self.read_pointer().await?.map(|(_, v)| v);
                if current.as_ref() != expected {
                    return Ok(false);
                }
                // Still under the lock (released when `lock` drops).
                let path = dir.join("current.json");
                write_file_atomically(&path, &bytes).map_err(io(&path))?;
                Ok(true)
            }
            Store::S3 { client, bucket, prefix } => {
                let key = Store::key(prefix, "current.json");
                let put = client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/json")
                    .cache_control("no-cache")
                    .body(ByteStream::from(bytes));
                let put = match expected {
                    Some(Version(etag)) => put.if_match(etag),
                    None => put.if_none_match("*"),
                };
                match put.send().await {
                    Ok(_) => Ok(true),
                    Err(e) if is_precondition_failed(&e) => Ok(false),
                    Err(e) => Err(s3_error("PUT", bucket, &key, &e)),
                }
            }
        }
    }

    /// Stores a snapshot under its id; an object already there (same id,
    /// so the same bytes) is left as it is.
    pub async fn put_snapshot(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let name = format!("snapshots/{id}.snap");
        match self {
            Store::Dir(dir) => {
                let path = dir.join(&name);
                if path.exists() {
                    return Ok(());
                }
                write_file_atomically(&path, bytes).map_err(io(&path))
            }
            Store::S3 { client, bucket, prefix } => {
                let key = Store::key(prefix, &name);
                let put = client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .if_none_match("*")
                    .content_type("application/octet-stream")
                    .cache_control("public, max-age=31536000, immutable")
                    .body(ByteStream::from(bytes.to_vec()));
                match put.send().await {
                    Ok(_) => Ok(()),
                    Err(e) if is_precondition_failed(&e) => Ok(()),
                    Err(e) => Err(s3_error("PUT", bucket, &key, &e)),
                }
            }
        }
    }

    /// A snapshot's bytes, as stored (the caller checks them).
    pub async fn get_snapshot(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        let name = format!("snapshots/{id}.snap");
        match self {
            Store::Dir(dir) => {
                let path = dir.join(&name);
                std::fs::read(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => StoreError::NoSnapshot { id: id.to_owned() },
                    _ => io(&path)(e),
                })
            }
            Store::S3 { client, bucket, prefix } => {
                let key = Store::key(prefix, &name);
                let out = match client.get_object().bucket(bucket).key(&key).send().await {
                    Ok(out) => out,
                    Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                        return Err(StoreError::NoSnapshot { id: id.to_owned() })
                    }
                    Err(e) => return Err(s3_error("GET", bucket, &key, &e)),
                };
                let bytes = out.body.collect().await.map_err(|e| StoreError::S3 {
                    op: "GET",
                    bucket: bucket.clone(),
                    key,
                    why: e.to_string(),
                })?;
                Ok(bytes.to_vec())
            }
        }
    }

    /// Records a pointer that was made current in `history/`, under a name
    /// that sorts by time.
    pub async fn append_history(&self, pointer: &Pointer) -> Result<(), StoreError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let name = format!("history/{nanos:020}-{}.json", pointer.id);
        let bytes = serde_json::to_vec_pretty(pointer).expect("a pointer serializes");
        match self {
            Store::Dir(dir) => {
                let path = dir.join(&name);
                write_file_atomically(&path, &bytes).map_err(io(&path))
            }
            Store::S3 { client, bucket, prefix } => {
                let key = Store::key(prefix, &name);
                client
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .content_type("application/json")
                    .body(ByteStream::from(bytes))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| s3_error("PUT", bucket, &key, &e))
            }
        }
    }

    /// Every pointer the store has had, oldest first.
    pub async fn history(&self) -> Result<Vec<Pointer>, StoreError> {
        let mut out = Vec::new();
        for (name, bytes) in self.read_all("history/").await? {
            let pointer = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::BadPointer { what: name.clone(), why: e.to_string() })?;
            out.push(pointer);
        }
        Ok(out)
    }

    /// The ids of the snapshots stored.
    pub async fn snapshot_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list("snapshots/")
            .await?
            .into_iter()
            .filter_map(|name| name.strip_suffix(".snap").map(str::to_owned))
            .collect())
    }

    /// Deletes a snapshot object.
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), StoreError> {
        let name = format!("snapshots/{id}.snap");
        match self {
            Store::Dir(dir) => {
                let path = dir.join(&name);
                std::fs::remove_file(&path).map_err(io(&path))
            }
            Store::S3 { client, bucket, prefix } => {
                let key = Store::key(prefix, &name);
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| s3_error("DELETE", bucket, &key, &e))
            }
        }
    }

    /// Names (relative to `folder`) in a folder of the store, sorted.
    async fn list(&self, folder: &str) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        match self {
            Store::Dir(dir) => {
                let path = dir.join(folder);
                for entry in std::fs::read_dir(&path).map_err(io(&path))? {
                    let name = entry.map_err(io(&path))?.file_name().to_string_lossy().into_owned();
                    if !name.ends_with(".tmp") {
                        names.push(name);
                    }
                }
            }
            Store::S3 { client, bucket, prefix } => {
                let full = Store::key(prefix, folder);
                let mut pages = client.list_objects_v2().bucket(bucket).prefix(&full).into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| s3_error("LIST", bucket, &full, &e))?;
                    for object in page.contents() {
                        if let Some(name) = object.key().and_then(|k| k.strip_prefix(&full)) {
                            names.push(name.to_owned());
                        }
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    async fn read_all(&self, folder: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for name in self.list(folder).await? {
            let bytes = match self {
                Store::Dir(dir) => {
                    let path = dir.join(folder).join(&name);
                    std::fs::read(&path).map_err(io(&path))?
                }
                Store::S3 { client, bucket, prefix } => {
                    let key = Store::key(prefix, &format!("{folder}{name}"));
                    let object = client
                        .get_object()
                        .bucket(bucket)
                        .key(&key)
                        .send()
                        .await
                        .map_err(|e| s3_error("GET", bucket, &key, &e))?;
                    object
                        .body
                        .collect()
                        .await
                        .map_err(|e| StoreError::S3 { op: "GET", bucket: bucket.clone(), key, why: e.to_string() })?
                        .to_vec()
                }
            };
            out.push((name, bytes));
        }
        Ok(out)
    }
}

fn is_precondition_failed<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 412)
        || matches!(e.code(), Some("PreconditionFailed" | "ConditionalRequestConflict"))
}

fn s3_error<E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static>(
    op: &'static str,
    bucket: &str,
    key: &str,
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError {
    use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
    let why = match (e, e.code()) {
        (SdkError::ServiceError(s), Some(code)) => format!("{code} (HTTP {})", s.raw().status().as_u16()),
        _ => DisplayErrorContext(e).to_string(),
    };
    StoreError::S3 { op, bucket: bucket.to_owned(), key: key.to_owned(), why }
}
