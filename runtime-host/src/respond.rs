//! Short answers the host makes itself (never an origin's): a plain-text
//! status, a redirect, a 405 with its `Allow`, a failure that names only
//! its [`RequestId`], and the `x-edgeroute-snapshot` header every answer
//! carries.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};

use edgeroute_edge::SnapshotId;

use crate::body::{self, Body};

/// The header naming the snapshot that resolved the request.
pub const SNAPSHOT_HEADER: &str = "x-edgeroute-snapshot";

/// The header naming a failed request's [`RequestId`].
pub const REQUEST_ID_HEADER: &str = "x-edgeroute-request-id";

/// The id of a failed request: its answer says only what failed, in general
/// terms, and this id; the log line with the same id says the rest (the
/// origin's address, the error), which a client must not learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId(u64);

impl RequestId {
    /// A new id, never the same twice in one process, and not guessable
    /// from another (a random start, then a bijective mix of a counter).
    pub fn new() -> RequestId {
        static START: OnceLock<u64> = OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let start = *START.get_or_init(|| {
            use std::hash::BuildHasher as _;
            std::collections::hash_map::RandomState::new().hash_one(std::process::id())
        });
        // splitmix64 of start + n·γ: distinct inputs give distinct ids.
        let mut z = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        RequestId(z ^ (z >> 31))
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A failure the host answers for an origin or a store (502, 504): `what`
/// says it in general terms, and the request id ties it to the log line
/// with the details.
pub fn failure(status: StatusCode, what: &str, id: RequestId) -> Response<Body> {
    let mut response = plain(status, &format!("{what} (request id {id})"));
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// A short plain-text answer.
pub fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(body::full(format!("{text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A redirect to `location` (the resolver made it a safe header value).
pub fn redirect(status: u16, location: &str) -> Response<Body> {
    let mut response = plain(StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY), "moved");
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// A 405 that says which methods would do.
pub fn method_not_allowed(allow: &'static str, text: &str) -> Response<Body> {
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, text);
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// Names the snapshot that answered by its short id (git's short form:
/// enough to tell snapshots apart in logs and to give to `rollback --id`).
pub fn name_snapshot(response: &mut Response<Body>, id: &SnapshotId) {
    if let Ok(value) = HeaderValue::from_str(&id.short().to_string()) {
        response.headers_mut().insert(SNAPSHOT_HEADER, value);
    }
}
