//! The S3 backend (`s3://BUCKET/PREFIX`): the [`layout`] as objects under a
//! key prefix, and [`s3_client`].
//!
//! S3 has no locks; the pointer's compare-and-swap is a conditional PUT on
//! its ETag (`If-Match`), or `If-None-Match: *` for the first pointer, which
//! S3 refuses with HTTP 412 when another writer got there first. Snapshot
//! objects are PUT with `If-None-Match: *` too: one already there is left
//! as it is.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, ByteStreamError};

use crate::layout::ObjectKind;
use crate::sdk_error::{describe_body_error, describe_sdk_error};
use crate::{layout, StoreError, Version};
use aws_sdk_s3::types::ChecksumMode;

/// How many times the SDK tries a request before giving up (its standard
/// retry mode, with backoff): stores are small objects, written and read
/// often, and throttling and 5xx answers are worth riding out.
const MAX_ATTEMPTS: u32 = 5;

/// `Cache-Control` of the replaceable documents (the pointer, the lease):
/// they change, so caches must revalidate.
const DOCUMENT_CACHE_CONTROL: &str = "no-cache";

/// `Cache-Control` of a snapshot object: content-addressed, so it never
/// changes and can be cached for a year (the longest HTTP caches honour).
const SNAPSHOT_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

const JSON: &str = "application/json";
const OCTET_STREAM: &str = "application/octet-stream";

/// An S3 client for `config`, with path-style addressing when an endpoint
/// URL is configured (local servers, which have no per-bucket host names).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(config)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
    if config.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// An S3 store, borrowed from [`Store::S3`](crate::Store::S3).
#[derive(Clone, Copy, Debug)]
pub(crate) struct S3Store<'a> {
    pub(crate) client: &'a aws_sdk_s3::Client,
    pub(crate) bucket: &'a str,
    /// Without leading or trailing slashes; empty for the bucket's root.
    pub(crate) prefix: &'a str,
}

impl S3Store<'_> {
    /// The key of the store's object `name`.
    fn key(self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// A replaceable document (the pointer, the lease) and its version, or
    /// `None` if there is none yet or, with `if_none_match`, if its ETag is
    /// still that one (a conditional GET: an unchanged pointer costs a 304
    /// and no body). The name it is known by goes with it, for errors.
    pub(crate) async fn read_document(
        self,
        name: &str,
        if_none_match: Option<&Version>,
    ) -> Result<Option<(Vec<u8>, Version, String)>, StoreError> {
        let key = self.key(name);
        let get = self
            .client
            .get_object()
            .bucket(self.bucket)
            .key(&key)
            .set_if_none_match(if_none_match.map(|v| v.as_etag().to_owned()));
        let out = match get.send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 304) => return Ok(None),
            Err(e) => return Err(self.error("GET", &key, &e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let bytes = self.body("GET", &key, out.body).await?;
        Ok(Some((bytes, Version::from_etag(etag), format!("s3://{}/{key}", self.bucket))))
    }

    /// Writes document `name` if it is still at `expected` and returns its
    /// new version (its ETag); `None`, writing nothing, if it is not.
    pub(crate) async fn replace_document(
        self,
        name: &str,
        bytes: Vec<u8>,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StoreError> {
        let key = self.key(name);
        let put = self
            .client
            .put_object()
            .bucket(self.bucket)
            .key(&key)
            .content_type(JSON)
            .cache_control(DOCUMENT_CACHE_CONTROL)
            .body(ByteStream::from(bytes));
        let put = match expected {
            Some(version) => put.if_match(version.as_etag()),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(out) => Ok(Some(Version::from_etag(out.e_tag().unwrap_or_default().to_owned()))),
            Err(e) if is_precondition_failed(&e) => Ok(None),
            Err(e) => Err(self.error("PUT", &key, &e)),
        }
    }

    /// Stores snapshot `id` unless an object is already there (the same id,
    /// so the same bytes).
    ///
    /// Bytes that are the id's go up with their SHA-256 as S3's
    /// `x-amz-checksum-sha256`: S3 refuses an upload that does not match it,
    /// and keeps it, so a copy already there is checked by a HEAD (its
    /// stored checksum and length) without a download. A copy without that
    /// checksum (written by hand, or by an older publisher) is downloaded
    /// and compared.
    pub(crate) async fn put_object(self, kind: ObjectKind, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let key = self.key(&layout::object(kind, id));
        let checksum = layout::is_id_of(id, bytes).then(|| {
            use sha2::{Digest as _, Sha256};
            aws_smithy_types::base64::encode(Sha256::digest(bytes))
        });
        let put = |only_if_absent: bool| {
            let put = self
                .client
                .put_object()
                .bucket(self.bucket)
                .key(&key)
                .content_type(OCTET_STREAM)
                .cache_control(SNAPSHOT_CACHE_CONTROL)
                .set_checksum_sha256(checksum.clone())
                .body(ByteStream::from(bytes.to_vec()));
            if only_if_absent {
                put.if_none_match("*")
            } else {
                put
            }
        };
        match put(true).send().await {
            Ok(_) => return Ok(()),
            Err(e) if is_precondition_failed(&e) => {}
            Err(e) => return Err(self.error("PUT", &key, &e)),
        }
        // Content-addressed: the copy already there must be these very
        // bytes. One that is not (a torn upload, a hand-made object) is
        // replaced, by bytes that are the id's (never by others).
        let Some(expected) = checksum.clone() else { return Ok(()) };
        if self.stored_checksum(&key).await == Some((expected, bytes.len() as i64))
            || self.get_object(kind, id).await.is_ok_and(|stored| stored == bytes)
        {
            return Ok(());
        }
        put(false).send().await.map(|_| ()).map_err(|e| self.error("PUT", &key, &e))
    }

    /// The SHA-256 checksum S3 keeps for an object (base64) and its length,
    /// if it has one.
    async fn stored_checksum(self, key: &str) -> Option<(String, i64)> {
        let head = self.client.head_object().bucket(self.bucket).key(key).checksum_mode(ChecksumMode::Enabled);
        let out = head.send().await.ok()?;
        Some((out.checksum_sha256()?.to_owned(), out.content_length()?))
    }

    /// Snapshot `id`'s bytes, or [`StoreError::NoSnapshot`].
    pub(crate) async fn get_object(self, kind: ObjectKind, id: &str) -> Result<Vec<u8>, StoreError> {
        let key = self.key(&layout::object(kind, id));
        let out = match self.client.get_object().bucket(self.bucket).key(&key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(StoreError::missing(kind, id.to_owned()))
            }
            Err(e) => return Err(self.error("GET", &key, &e)),
        };
        self.body("GET", &key, out.body).await
    }

    /// Writes object `id`'s body into `out` chunk by chunk as it arrives.
    pub(crate) async fn get_object_into<W: std::io::Write + Send + 'static>(
        self,
        kind: ObjectKind,
        id: &str,
        mut out: W,
    ) -> Result<W, StoreError> {
        let key = self.key(&layout::object(kind, id));
        let object = match self.client.get_object().bucket(self.bucket).key(&key).send().await {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(StoreError::missing(kind, id.to_owned()))
            }
            Err(e) => return Err(self.error("GET", &key, &e)),
        };
        let mut body = object.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.body_error("GET", &key, &e))?;
            out.write_all(&chunk).map_err(|e| StoreError::S3 {
                op: "GET",
                bucket: self.bucket.to_owned(),
                key: key.clone(),
                why: format!("cannot keep the body: {e}"),
            })?;
        }
        Ok(out)
    }

    /// Deletes snapshot `id`'s object.
    pub(crate) async fn delete_object(self, kind: ObjectKind, id: &str) -> Result<(), StoreError> {
        let key = self.key(&layout::object(kind, id));
        self.client
            .delete_object()
            .bucket(self.bucket)
            .key(&key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("DELETE", &key, &e))
    }

    /// The bytes of the object `name` (relative to the prefix).
    pub(crate) async fn read_named(self, name: String) -> Result<Vec<u8>, StoreError> {
        let key = self.key(&name);
        let object = self
            .client
            .get_object()
            .bucket(self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.error("GET", &key, &e))?;
        self.body("GET", &key, object.body).await
    }

    /// Deletes the object `name` (relative to the prefix).
    pub(crate) async fn delete_named(self, name: String) -> Result<(), StoreError> {
        let key = self.key(&name);
        self.client
            .delete_object()
            .bucket(self.bucket)
            .key(&key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("DELETE", &key, &e))
    }

    /// Writes a history entry (`name` from [`layout::history_entry`]).
    pub(crate) async fn put_history(self, name: String, bytes: Vec<u8>) -> Result<(), StoreError> {
        let key = self.key(&name);
        self.client
            .put_object()
            .bucket(self.bucket)
            .key(&key)
            .content_type(JSON)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("PUT", &key, &e))
    }

    /// The names of the objects in `folder` (relative to it) with when each
    /// was last written, sorted by name.
    pub(crate) async fn list_with_times(
        self,
        folder: &str,
    ) -> Result<Vec<(String, std::time::SystemTime)>, StoreError> {
        let full = self.key(&format!("{folder}/"));
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(self.bucket).prefix(&full).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("LIST", &full, &e))?;
            for object in page.contents() {
                if let Some(name) = object.key().and_then(|k| k.strip_prefix(&full)) {
                    // No time given: taken as written now, so that it is kept.
                    let modified = object
                        .last_modified()
                        .and_then(|t| std::time::SystemTime::try_from(*t).ok())
                        .unwrap_or_else(std::time::SystemTime::now);
                    out.push((name.to_owned(), modified));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The names of the objects in `folder` (relative to it), sorted.
    pub(crate) async fn list(self, folder: &str) -> Result<Vec<String>, StoreError> {
        // The slash keeps `history/` from matching a `history-old/`.
        let full = self.key(&format!("{folder}/"));
        let mut names = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(self.bucket).prefix(&full).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("LIST", &full, &e))?;
            for object in page.contents() {
                if let Some(name) = object.key().and_then(|k| k.strip_prefix(&full)) {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every object in `folder` with its bytes, sorted by name.
    pub(crate) async fn read_folder(self, folder: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for name in self.list(folder).await? {
            let key = self.key(&format!("{folder}/{name}"));
            let object = self
                .client
                .get_object()
                .bucket(self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.error("GET", &key, &e))?;
            let bytes = self.body("GET", &key, object.body).await?;
            out.push((name, bytes));
        }
        Ok(out)
    }

    /// Reads a response's body whole.
    async fn body(self, op: &'static str, key: &str, body: ByteStream) -> Result<Vec<u8>, StoreError> {
        match body.collect().await {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e) => Err(self.body_error(op, key, &e)),
        }
    }

    fn body_error(self, op: &'static str, key: &str, e: &ByteStreamError) -> StoreError {
        StoreError::S3 { op, bucket: self.bucket.to_owned(), key: key.to_owned(), why: describe_body_error(e) }
    }

    fn error<E>(self, op: &'static str, key: &str, e: &SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        StoreError::S3 { op, bucket: self.bucket.to_owned(), key: key.to_owned(), why: describe_sdk_error(e) }
    }
}

/// Whether S3 refused a conditional request because its condition failed:
/// HTTP 412, or the codes S3 answers with when a concurrent conditional
/// write won (`ConditionalRequestConflict` is a 409).
fn is_precondition_failed<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 412)
        || matches!(e.code(), Some("PreconditionFailed" | "ConditionalRequestConflict"))
}

#[cfg(test)]
mod tests {
    use crate::{Store, StoreError};

    /// The whole path, through the SDK's real HTTP client: a store nobody
    /// listens for is reported in one line a person can act on.
    #[tokio::test]
    async fn an_unreachable_endpoint_is_one_readable_line() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::for_tests(),
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        // Not `Store::open`: its client retries (with backoff) what is
        // certain to fail again here.
        let client =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build());
        let store = Store::S3 { client, bucket: "edge".into(), prefix: "p".into() };
        let err = store.read_pointer().await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::S3 { op: "GET", .. }), "{text}");
        assert!(text.starts_with("S3 GET s3://edge/p/current.json: cannot connect: "), "{text}");
        assert!(!text.contains('{') && !text.contains("DispatchFailure"), "{text}");
    }
}
