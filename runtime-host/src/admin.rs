//! The admin listener: `/metrics` (Prometheus text format) and `/health`.
//! It is bound to its own address (loopback by default), never to the
//! public listener, so that nobody on the internet reads the host's counters.

use std::sync::Arc;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::body::{self, Body};
use crate::respond::plain;
use crate::state::HostState;

/// Answers one admin request.
pub fn answer<B>(state: &HostState, req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let live = state.router.live();
    match req.uri().path() {
        "/metrics" => {
            let mut response = Response::new(body::full(state.metrics.render(&live)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            response
        }
        "/health" => plain(StatusCode::OK, &format!("ok: serving {} ({} routes)", live.id, live.route_count)),
        _ => plain(StatusCode::NOT_FOUND, "not found: try /metrics or /health"),
    }
}

/// Serves the admin endpoints on `listener` until the process ends.
pub async fn serve(state: &'static HostState, listener: tokio::net::TcpListener) {
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let builder = builder.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(
                    move |req| async move { Ok::<_, std::convert::Infallible>(answer(state, &req)) },
                );
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
