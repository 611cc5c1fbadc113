//! Static sites, answered as S3 website hosting answers them: the
//! resolved key; when the bucket has no such object, the site's Fallback
//! (200), else its not-found page (404), else a plain 404, never the
//! store's own error. The resolver's answer names each of them
//! (`docs/resolve.md`): the host only follows it. Objects come from S3 or a directory ([`objects`]); a fetched
//! object becomes a response in [`response`].

pub mod objects;
mod response;

use std::sync::atomic::Ordering;

use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};

pub use self::objects::{DirObjects, Fetched, ObjectMeta, Objects, S3Objects, StaticError, Want};
use self::response::object_response;
use crate::body::Body;
use crate::metrics::Metrics;
use crate::respond::{failure, method_not_allowed, plain, RequestId};

/// The resolver's answer for a static site.
#[derive(Clone, Copy, Debug)]
pub struct Site<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// 200, or 404 for the site's own `404.html`.
    pub status: u16,
    /// For sites without an Assets list: what to serve when `key` is missing.
    pub fallback: Option<&'a str>,
    /// What to serve with 404 when neither is there.
    pub not_found_page: Option<&'a str>,
}

/// Serves `site` for `req` (GET or HEAD; conditional (`If-None-Match`,
/// `If-Modified-Since`) and range requests honoured).
pub async fn serve<B>(objects: &Objects, metrics: &Metrics, req: &Request<B>, site: Site<'_>) -> Response<Body> {
    let Site { bucket, key, status, fallback, not_found_page } = site;
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return method_not_allowed("GET, HEAD", "method not allowed"),
    };
    let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let (if_none_match, if_modified_since) =
        Want::conditions(header(hyper::header::IF_NONE_MATCH), header(hyper::header::IF_MODIFIED_SINCE));
    let want = Want {
        head,
        if_none_match,
        if_modified_since,
        range: header(hyper::header::RANGE),
        if_range: header(hyper::header::IF_RANGE),
    };
    // The resolver's 404 (a site's own 404.html) is sent whole, whatever the conditions.
    let first = if status == 404 { want.unconditional() } else { want };
    let mut tries: Vec<(String, u16, Want<'_>)> = vec![(key.to_owned(), status, first)];
    if status == 200 {
        if let Some(fallback) = fallback.filter(|f| *f != key) {
            tries.push((fallback.to_owned(), 200, want));
        }
        if let Some(page) = not_found_page.filter(|p| *p != key) {
            tries.push((page.to_owned(), 404, want.unconditional()));
        }
    }
    for (key, status, want) in tries {
        match objects.fetch(bucket, &key, &want).await {
            Ok(Fetched::Missing) => continue,
            Ok(fetched) => return object_response(fetched, status),
            Err(e) => {
                let id = RequestId::new();
                tracing::warn!("request {id}: {e}");
                metrics.origin_errors.fetch_add(1, Ordering::Relaxed);
                let (status, what) = match e {
                    StaticError::Timeout { .. } => {
                        (StatusCode::GATEWAY_TIMEOUT, "gateway timeout: the site's storage did not answer in time")
                    }
                    StaticError::Denied { .. } => {
                        metrics.static_denied.fetch_add(1, Ordering::Relaxed);
                        (StatusCode::BAD_GATEWAY, "bad gateway: the site's storage refused access")
                    }
                    _ => (StatusCode::BAD_GATEWAY, "bad gateway: the site's storage did not answer"),
                };
                return failure(status, what, id);
            }
        }
    }
    plain(StatusCode::NOT_FOUND, "not found")
}
