//! Short answers the host makes itself (never an origin's): a plain-text
//! status, a redirect, a 405 with its `Allow`, and the
//! `x-edgeroute-snapshot` header every answer carries.

use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};

use edgeroute_edge::SnapshotId;

use crate::body::{self, Body};

/// The header naming the snapshot that resolved the request.
pub const SNAPSHOT_HEADER: &str = "x-edgeroute-snapshot";

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
