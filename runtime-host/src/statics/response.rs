//! A fetched object as an HTTP response: status, the object's headers, the
//! body streamed.

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

use super::objects::{Fetched, ObjectMeta};
use crate::body::Body;
use crate::respond::plain;

pub(super) fn object_response(fetched: Fetched, status: u16) -> Response<Body> {
    let (status, meta, body) = match fetched {
        Fetched::Object { meta, partial, body } => {
            let status = if partial && status == 200 { StatusCode::PARTIAL_CONTENT } else { code(status) };
            (status, meta, body)
        }
        Fetched::NotModified { meta } => (StatusCode::NOT_MODIFIED, meta, crate::body::empty()),
        Fetched::RangeNotSatisfiable { size } => {
            let mut response = plain(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(hyper::header::CONTENT_RANGE, value);
            }
            return response;
        }
        Fetched::Missing => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let ObjectMeta {
        content_type,
        content_encoding,
        etag,
        last_modified,
        cache_control,
        content_length,
        content_range,
    } = meta;
    let mut put = |name: hyper::header::HeaderName, value: Option<String>| {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    };
    if status != StatusCode::NOT_MODIFIED {
        put(hyper::header::CONTENT_TYPE, content_type);
        put(hyper::header::CONTENT_ENCODING, content_encoding);
        put(hyper::header::CONTENT_LENGTH, Some(content_length.to_string()));
        put(hyper::header::CONTENT_RANGE, content_range);
        put(hyper::header::ACCEPT_RANGES, Some("bytes".to_owned()));
    }
    put(hyper::header::ETAG, etag);
    put(hyper::header::LAST_MODIFIED, last_modified);
    put(hyper::header::CACHE_CONTROL, cache_control);
    response
}

fn code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}
