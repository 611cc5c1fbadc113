//! Static sites: objects fetched from S3 ([`S3Objects`]) or from a
//! directory laid out like it ([`DirObjects`]: `ROOT/BUCKET/KEY`), with
//! the HTTP semantics a browser and a CDN expect of them: conditional GETs,
//! byte ranges, HEAD, and the object's own metadata passed through.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::body::{self, Body, BoxError};

/// What the client asked of the object, beyond its key.
#[derive(Clone, Copy, Debug, Default)]
pub struct Want<'a> {
    /// A HEAD request: the metadata only.
    pub head: bool,
    /// The `If-None-Match` header.
    pub if_none_match: Option<&'a str>,
    /// The `If-Modified-Since` header, when it is an HTTP date and no
    /// `If-None-Match` came (which then decides alone: RFC 9110 13.2.2).
    pub if_modified_since: Option<SystemTime>,
    /// The `Range` header (`bytes=…`); ignored when `If-Range` does not
    /// match the object (the whole object is sent instead).
    pub range: Option<&'a str>,
    /// The `If-Range` header.
    pub if_range: Option<&'a str>,
}

impl<'a> Want<'a> {
    /// The conditions of a GET or HEAD as its headers state them: a date
    /// that is no HTTP date is ignored (RFC 9110 13.1.3), and so is
    /// `If-Modified-Since` beside an `If-None-Match`.
    pub fn conditions(
        if_none_match: Option<&'a str>,
        if_modified_since: Option<&str>,
    ) -> (Option<&'a str>, Option<SystemTime>) {
        let since = if_none_match.is_none().then(|| if_modified_since.and_then(|d| httpdate::parse_http_date(d).ok()));
        (if_none_match, since.flatten())
    }

    /// Whether an object last modified at `modified` is unchanged for this
    /// request's conditions (a 304).
    pub fn not_modified(&self, etag: Option<&str>, modified: SystemTime) -> bool {
        if let Some(tags) = self.if_none_match {
            return etag_matches(tags, etag);
        }
        // HTTP dates have whole seconds: an object modified within the
        // second of the date is not newer than it.
        let whole = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.if_modified_since.is_some_and(|since| whole(modified) <= whole(since))
    }

    /// The same request without its conditions (for an error page).
    pub fn unconditional(&self) -> Want<'static> {
        Want { head: self.head, ..Want::default() }
    }
}

/// The object's headers, as S3 stores them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub etag: Option<String>,
    /// An HTTP date.
    pub last_modified: Option<String>,
    pub cache_control: Option<String>,
    /// The length of what is sent: the whole object, or the range.
    pub content_length: u64,
    /// `bytes START-END/SIZE` for a range.
    pub content_range: Option<String>,
}

/// The answer of a store for one object.
#[derive(Debug)]
pub enum Fetched {
    /// The object (or the requested range of it: `partial`); an empty body for HEAD.
    Object { meta: ObjectMeta, partial: bool, body: Body },
    /// `If-None-Match` matched, or the object is not newer than `If-Modified-Since`.
    NotModified { meta: ObjectMeta },
    /// The range lies outside the object of `size` bytes.
    RangeNotSatisfiable { size: u64 },
    /// No such object (or bucket).
    Missing,
}

/// The store could not answer (as opposed to: the object is missing).
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("S3 GetObject s3://{bucket}/{key}: {message}")]
    S3 { bucket: String, key: String, message: String },
    /// Every attempt timed out (a 504, not a 502).
    #[error("S3 GetObject s3://{bucket}/{key}: {message}")]
    Timeout { bucket: String, key: String, message: String },
    /// S3 refused access (expired credentials, a policy): a 502, never a
    /// missing object, unless the host was told that 403 means missing.
    #[error("S3 GetObject s3://{bucket}/{key}: 403 {message} (access denied; if the reader may not list the bucket, a missing key looks like this: see --s3-403-is-missing)")]
    Denied { bucket: String, key: String, message: String },
}

/// Where static sites' objects come from. A clone is cheap and shares the
/// S3 client (and its connection pool).
#[derive(Clone, Debug)]
pub enum Objects {
    Dir(DirObjects),
    S3(S3Objects),
}

impl Objects {
    /// Fetches `bucket/key` as `want` says.
    pub async fn fetch(&self, bucket: &str, key: &str, want: &Want<'_>) -> Result<Fetched, StaticError> {
        match self {
            Objects::Dir(dir) => dir.fetch(bucket, key, want).await,
            Objects::S3(s3) => s3.fetch(bucket, key, want).await,
        }
    }
}

/// Objects in a directory: one folder per bucket, `ROOT/BUCKET/KEY`.
#[derive(Clone, Debug)]
pub struct DirObjects {
    root: PathBuf,
}

impl DirObjects {
    pub fn new(root: impl Into<PathBuf>) -> DirObjects {
        DirObjects { root: root.into() }
    }

    /// `ROOT/BUCKET/KEY`, or `None` if the bucket or key could leave their
    /// folder (the resolver never produces such a key; this is the second lock).
    fn path(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        let normal = |s: &str| {
            !s.is_empty()
                && !s.contains('\0')
                && !s.contains('\\')
                && Path::new(s).components().all(|c| matches!(c, Component::Normal(_)))
                && !s.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..")
        };
        (normal(bucket) && !bucket.contains('/') && normal(key)).then(|| self.root.join(bucket).join(key))
    }

    async fn fetch(&self, bucket: &str, key: &str, want: &Want<'_>) -> Result<Fetched, StaticError> {
        let Some(path) = self.path(bucket, key) else { return Ok(Fetched::Missing) };
        let io = |source| StaticError::Io { path: path.clone(), source };
        let (root, relative) = (self.root.clone(), Path::new(bucket).join(key));
        let opened = tokio::task::spawn_blocking(move || open_beneath(&root, &relative))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?;
        let (file, stat) = match opened {
            Ok(Some(opened)) => opened,
            Ok(None) => return Ok(Fetched::Missing),
            Err(e) => return Err(io(e)),
        };
        let mut file = tokio::fs::File::from_std(file);
        let size = stat.len();
        let modified = stat.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let nanos = modified.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut meta = ObjectMeta {
            content_type: Some(content_type(key).to_owned()),
            etag: Some(format!("\"{nanos:x}-{size:x}\"")),
            last_modified: Some(httpdate::fmt_http_date(modified)),
            content_length: size,
            ..ObjectMeta::default()
        };
        if want.not_modified(meta.etag.as_deref(), modified) {
            return Ok(Fetched::NotModified { meta });
        }
        let range = match want.range {
            Some(range) if if_range_holds(want.if_range, &meta) => parse_range(range, size),
            _ => Range::Whole,
        };
        let (start, len) = match range {
            Range::Whole => (0, size),
            Range::Unsatisfiable => return Ok(Fetched::RangeNotSatisfiable { size }),
            Range::Part { start, end } => {
                meta.content_range = Some(format!("bytes {start}-{end}/{size}"));
                (start, end - start + 1)
            }
        };
        meta.content_length = len;
        let partial = meta.content_range.is_some();
        if want.head {
            return Ok(Fetched::Object { meta, partial, body: body::empty() });
        }
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start)).await.map_err(io)?;
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 64 * 1024);
        let body = http_body_util::StreamBody::new(futures_util::TryStreamExt::map_ok(
            futures_util::TryStreamExt::map_err(stream, |e| -> BoxError { Box::new(e) }),
            hyper::body::Frame::data,
        ));
        Ok(Fetched::Object { meta, partial, body: body.boxed_unsync() })
    }
}

/// Opens `relative` (`BUCKET/KEY`) beneath `root` as S3 would find it: a
/// regular file, reached without following any link (a symlink in the
/// tree could lead anywhere; `O_NOFOLLOW` alone checks only the last
/// component) and without blocking (a FIFO's open would wait for a writer
/// forever). `None`: no such object, as far as a client may know, which
/// covers a link, a folder, a FIFO or a device in its place.
fn open_beneath(root: &Path, relative: &Path) -> std::io::Result<Option<(std::fs::File, std::fs::Metadata)>> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let root = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let read = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    // Kernels before 5.6, or a sandbox that filters openat2 (some container
    // seccomp profiles answer EPERM): the same rule, one component at a
    // time; remembered, so that each open does not try openat2 again.
    static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
    let opened = if NO_OPENAT2.load(Ordering::Relaxed) {
        open_walking(&root, relative)
    } else {
        match rustix::fs::openat2(&root, relative, read, Mode::empty(), resolve) {
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                tracing::info!("openat2 is not available here: static objects are opened one folder at a time");
                open_walking(&root, relative)
            }
            opened => opened.map_err(std::io::Error::from),
        }
    };
    let file = match opened {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) if is_refused_link(&e) => {
            tracing::debug!("{}: a link or a way out of --static-root, answered as missing", relative.display());
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let stat = file.metadata()?;
    // S3 has no folders, nor FIFOs: only a regular file is an object.
    Ok(stat.is_file().then_some((file, stat)))
}

/// [`open_beneath`]'s rule without `openat2`: each folder opened from the
/// last with `O_NOFOLLOW | O_DIRECTORY`, the file with `O_NOFOLLOW`.
/// (`relative` has only normal components: `DirObjects::path`.)
fn open_walking(root: &std::os::fd::OwnedFd, relative: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let mut parts: Vec<_> = relative.components().collect();
    let last = parts.pop().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    let folder = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut at: Option<std::os::fd::OwnedFd> = None;
    for part in parts {
        let here = at.as_ref().unwrap_or(root);
        at = Some(rustix::fs::openat(here, part.as_os_str(), folder, Mode::empty())?);
    }
    let read = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(at.as_ref().unwrap_or(root), last.as_os_str(), read, Mode::empty())?)
}

/// A link refused on the way (`ELOOP`), or a path that would leave the
/// root (`EXDEV`).
fn is_refused_link(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV))
}

fn is_missing(e: &std::io::Error) -> bool {
    // A key whose folder is a file (`index.html/x`) is missing too.
    matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) || e.raw_os_error() == Some(20)
    // ENOTDIR where the kind is not mapped
}

/// A byte range of an object of known size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// No (usable) range: send the whole object.
    Whole,
    /// `start..=end`.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// Parses a `Range` header against an object of `size` bytes (RFC 9110
/// §14). Only one range is served: a malformed header, another unit or a
/// list of ranges is ignored (the whole object is sent), as the RFC allows.
pub fn parse_range(header: &str, size: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return Range::Whole };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Range::Whole };
    let number =
        |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part { start: size.saturating_sub(n), end: size - 1 },
            None => Range::Whole,
        },
        (first, "") => match number(first) {
            Some(start) if start < size => Range::Part { start, end: size - 1 },
            Some(_) => Range::Unsatisfiable,
            None => Range::Whole,
        },
        (first, last) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start > end => Range::Whole,
            (Some(start), Some(_)) if start >= size => Range::Unsatisfiable,
            (Some(start), Some(end)) => Range::Part { start, end: end.min(size - 1) },
            _ => Range::Whole,
        },
    }
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as RFC
/// 9110 §13.1.2 asks for this header).
pub fn etag_matches(list: &str, etag: Option<&str>) -> bool {
    let Some(etag) = etag else { return false };
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    list.trim() == "*" || list.split(',').any(|t| bare(t) == bare(etag))
}

/// `If-Range` holds when absent, or when it is the object's strong ETag or
/// its exact Last-Modified date.
fn if_range_holds(if_range: Option<&str>, meta: &ObjectMeta) -> bool {
    match if_range.map(str::trim) {
        None => true,
        Some(v) if v.starts_with('"') => meta.etag.as_deref() == Some(v),
        Some(v) => meta.last_modified.as_deref() == Some(v),
    }
}

/// The Content-Type for a key, by its extension (a directory has no
/// metadata to say it; S3 objects carry their own).
pub fn content_type(key: &str) -> &'static str {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// Objects in S3 (or a server speaking its protocol), through `aws-sdk-s3`.
#[derive(Clone, Debug)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    /// S3's 403 is a missing object (`--s3-403-is-missing`), not an error.
    denied_is_missing: bool,
}

impl S3Objects {
    /// Objects through `client` (see [`crate::aws::s3_client`] for its
    /// limits); `denied_is_missing` for buckets whose reader may not list
    /// them, to whom S3 answers 403 for a missing key.
    pub fn new(client: aws_sdk_s3::Client, denied_is_missing: bool) -> S3Objects {
        S3Objects { client, denied_is_missing }
    }

    async fn fetch(&self, bucket: &str, key: &str, want: &Want<'_>) -> Result<Fetched, StaticError> {
        use aws_sdk_s3::error::SdkError;
        let failed = |message: String| StaticError::S3 { bucket: bucket.to_owned(), key: key.to_owned(), message };
        // S3 answers Range and If-None-Match itself; HEAD is a HeadObject.
        // Its output and GetObject's are distinct types with the same fields.
        macro_rules! s3_meta {
            ($o:ident) => {
                ObjectMeta {
                    content_type: $o.content_type,
                    content_encoding: $o.content_encoding,
                    etag: $o.e_tag,
                    last_modified: $o
                        .last_modified
                        .and_then(|d| d.fmt(aws_sdk_s3::primitives::DateTimeFormat::HttpDate).ok()),
                    cache_control: $o.cache_control,
                    content_length: $o.content_length.unwrap_or(0).max(0) as u64,
                    content_range: $o.content_range,
                }
            };
        }
        let range = want.range.filter(|_| want.if_range.is_none());
        let result = if want.head {
            self.client
                .head_object()
                .bucket(bucket)
                .key(key)
                .set_if_none_match(want.if_none_match.map(str::to_owned))
                .set_if_modified_since(want.if_modified_since.map(aws_sdk_s3::primitives::DateTime::from))
                .set_range(range.map(str::to_owned))
                .send()
                .await
                .map(|o| {
                    let meta = s3_meta!(o);
                    Fetched::Object { partial: meta.content_range.is_some(), meta, body: body::empty() }
                })
                .map_err(|e| e.map_service_error(aws_sdk_s3::Error::from))
        } else {
            self.client
                .get_object()
                .bucket(bucket)
                .key(key)
                .set_if_none_match(want.if_none_match.map(str::to_owned))
                .set_if_modified_since(want.if_modified_since.map(aws_sdk_s3::primitives::DateTime::from))
                .set_range(range.map(str::to_owned))
                .send()
                .await
                .map(|o| {
                    let meta = s3_meta!(o);
                    let body = o.body.into_inner().map_err(|e| -> BoxError { e }).boxed_unsync();
                    Fetched::Object { partial: meta.content_range.is_some(), meta, body }
                })
                .map_err(|e| e.map_service_error(aws_sdk_s3::Error::from))
        };
        let error: SdkError<aws_sdk_s3::Error, _> = match result {
            Ok(fetched) => return Ok(fetched),
            Err(e) => e,
        };
        let (status, headers) = match error.raw_response() {
            Some(raw) => (raw.status().as_u16(), Some(raw.headers())),
            None => {
                let message = edgeroute_store::describe_sdk_error(&error);
                let timed_out = matches!(&error, SdkError::TimeoutError(_))
                    || matches!(&error, SdkError::DispatchFailure(d) if d.is_timeout());
                if timed_out {
                    return Err(StaticError::Timeout { bucket: bucket.to_owned(), key: key.to_owned(), message });
                }
                return Err(failed(message));
            }
        };
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(str::to_owned);
        match status {
            304 => Ok(Fetched::NotModified {
                meta: ObjectMeta {
                    etag: header("etag"),
                    last_modified: header("last-modified"),
                    cache_control: header("cache-control"),
                    ..ObjectMeta::default()
                },
            }),
            416 => {
                // S3's 416 does not say the size; a HeadObject does.
                let size = self
                    .client
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .ok()
                    .and_then(|o| o.content_length)
                    .unwrap_or(0);
                Ok(Fetched::RangeNotSatisfiable { size: size.max(0) as u64 })
            }
            404 => Ok(Fetched::Missing),
            // A missing key, when the reader may not list the bucket, and
            // the host was told so.
            403 if self.denied_is_missing => {
                tracing::debug!("s3://{bucket}/{key}: 403, answered as missing (--s3-403-is-missing)");
                Ok(Fetched::Missing)
            }
            403 => Err(StaticError::Denied {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: edgeroute_store::describe_sdk_error(&error),
            }),
            _ => Err(failed(edgeroute_store::describe_sdk_error(&error))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use Range::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part { start: 0, end: 9 });
        assert_eq!(parse_range("bytes=90-", 100), Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-10", 100), Part { start: 90, end: 99 });
        assert_eq!(parse_range("bytes=-1000", 100), Part { start: 0, end: 99 });
        assert_eq!(parse_range("bytes=50-1000", 100), Part { start: 50, end: 99 });
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
        // Ignored: another unit, lists, malformed, reversed.
        for h in ["items=0-1", "bytes=0-1,5-6", "bytes=a-b", "bytes=5-1", "bytes=", "bytes=-", "bytes=+1-2"] {
            assert_eq!(parse_range(h, 100), Whole, "{h}");
        }
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"a\"", Some("\"a\"")));
        assert!(etag_matches("W/\"a\"", Some("\"a\"")));
        assert!(etag_matches("\"x\", \"a\"", Some("\"a\"")));
        assert!(etag_matches("*", Some("\"a\"")));
        assert!(!etag_matches("\"b\"", Some("\"a\"")));
        assert!(!etag_matches("*", None));
    }

    /// The rule of `open_beneath`, by both ways of opening.
    #[test]
    fn opening_beneath_the_root_follows_no_link_and_finds_regular_files_only() {
        use std::os::unix::fs::symlink;
        let root = std::env::temp_dir().join(format!("edgeroute-beneath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("b/sub")).unwrap();
        std::fs::write(root.join("b/ok.html"), "ok").unwrap();
        std::fs::write(root.join("b/sub/deep.html"), "deep").unwrap();
        std::fs::write(root.join("outside.txt"), "outside").unwrap();
        symlink(root.join("outside.txt"), root.join("b/leak.html")).unwrap();
        symlink(root.join("b/sub"), root.join("b/linked")).unwrap();
        assert!(std::process::Command::new("mkfifo").arg(root.join("b/fifo.html")).status().unwrap().success());
        let found = |relative: &str| {
            let opened = open_beneath(&root, Path::new(relative)).unwrap();
            opened.map(|(file, _)| std::io::read_to_string(file).unwrap())
        };
        assert_eq!(found("b/ok.html").as_deref(), Some("ok"));
        assert_eq!(found("b/sub/deep.html").as_deref(), Some("deep"));
        for missing in ["b/leak.html", "b/linked/deep.html", "b/fifo.html", "b/sub", "b/none.html", "b/ok.html/x"] {
            assert_eq!(found(missing), None, "{missing}");
        }
        // Without openat2, one component at a time: the same verdicts.
        use rustix::fs::{Mode, OFlags};
        let dir = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let walked = |relative: &str| open_walking(&dir, Path::new(relative)).map(std::fs::File::from);
        assert_eq!(std::io::read_to_string(walked("b/sub/deep.html").unwrap()).unwrap(), "deep");
        for link in ["b/leak.html", "b/linked/deep.html"] {
            // A linked file is ELOOP; a linked folder, opened as a folder
            // without following it, ENOTDIR: neither is served.
            let e = walked(link).unwrap_err();
            assert!(is_refused_link(&e) || is_missing(&e), "{link}: {e}");
        }
        let fifo = walked("b/fifo.html").expect("a FIFO opens without blocking");
        assert!(!fifo.metadata().unwrap().is_file());
        assert!(is_missing(&walked("b/none.html").unwrap_err()));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn paths_stay_in_their_bucket() {
        let dir = DirObjects::new("/srv/sites");
        assert_eq!(dir.path("b", "site/index.html"), Some(PathBuf::from("/srv/sites/b/site/index.html")));
        for (bucket, key) in [
            ("b", "../x"),
            ("b", "site/../../x"),
            ("b", "/etc/passwd"),
            ("b", "a//b"),
            ("b", "./a"),
            ("b", "a\\..\\b"),
            ("..", "x"),
            ("b/c", "x"),
            ("", "x"),
            ("b", ""),
            ("b", "a\0b"),
        ] {
            assert_eq!(dir.path(bucket, key), None, "{bucket} {key}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.3f2a9c1b.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(content_type(".hidden/x"), "application/octet-stream");
    }
}
