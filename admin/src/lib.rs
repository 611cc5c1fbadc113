//! `edgeroute-admin`: the admin listener of edgeroute's long-running
//! processes, `/metrics` (Prometheus text format) and `/health`. It is
//! bound to an address of its own (loopback by default), never to a public
//! listener, so that nobody on the internet reads the counters.
//!
//! A crate of its own so that both binaries serve it the same way without
//! the control plane linking wasmtime or the host linking the DynamoDB SDK:
//! each process says what it has to report through [`Status`].

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What a process reports on its admin listener.
pub trait Status: Send + Sync {
    /// Every metric, in the Prometheus text exposition format (0.0.4).
    fn metrics(&self) -> String;
    /// Whether the process is serving, and one line that says what.
    fn health(&self) -> Health;
}

/// A process's state that lives as long as the process (leaked at start).
impl<T: Status + ?Sized> Status for &T {
    fn metrics(&self) -> String {
        (**self).metrics()
    }
    fn health(&self) -> Health {
        (**self).health()
    }
}

/// The answer to `/health`: its state, then one line, e.g. `ok: serving
/// 3f2a… (14 routes)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub state: HealthState,
    /// One line, e.g. `serving 3f2a… (14 routes)`.
    pub detail: String,
}

/// What a load balancer and an operator read from `/health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    /// 200 `ok`.
    Ok,
    /// 200 `degraded`: serving, but something needs a look (e.g. behind
    /// its store). Still 200: a 503 would take every host out of a load
    /// balancer during an outage of the store they all share.
    Degraded,
    /// 503 `unavailable`: cannot serve (e.g. no snapshot yet).
    Unavailable,
}

impl Health {
    pub fn ok(detail: String) -> Health {
        Health { state: HealthState::Ok, detail }
    }
}

/// The content type of the Prometheus text format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A short plain-text answer.
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Answers one admin request: GET or HEAD of `/metrics` or `/health`.
pub fn answer<S: Status + ?Sized, B>(status: &S, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".into());
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(status.metrics())));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_TYPE));
            response
        }
        "/health" => {
            let health = status.health();
            let (code, word) = match health.state {
                HealthState::Ok => (StatusCode::OK, "ok"),
                HealthState::Degraded => (StatusCode::OK, "degraded"),
                HealthState::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            };
            text(code, format!("{word}: {}", health.detail))
        }
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics or /health".into()),
    }
}

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(status: Arc<dyn Status>, listener: tokio::net::TcpListener) {
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (builder, status) = (builder.clone(), status.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let status = status.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&*status, &req)) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    struct Fixed(HealthState);

    impl Status for Fixed {
        fn metrics(&self) -> String {
            "# TYPE up gauge\nup 1\n".into()
        }
        fn health(&self) -> Health {
            Health { state: self.0, detail: "serving abc (2 routes)".into() }
        }
    }

    async fn body(response: Response<Full<Bytes>>) -> String {
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn metrics_health_and_everything_else() {
        let get = |path: &str| Request::get(path).body(()).unwrap();
        let ok = Fixed(HealthState::Ok);
        let r = answer(&ok, &get("/metrics"));
        assert_eq!(r.headers()[CONTENT_TYPE], METRICS_TYPE);
        assert_eq!(body(r).await, "# TYPE up gauge\nup 1\n");
        let r = answer(&ok, &get("/health"));
        assert_eq!(r.status(), 200);
        assert_eq!(body(r).await, "ok: serving abc (2 routes)\n");
        let r = answer(&Fixed(HealthState::Degraded), &get("/health"));
        assert_eq!(r.status(), 200);
        assert_eq!(body(r).await, "degraded: serving abc (2 routes)\n");
        let r = answer(&Fixed(HealthState::Unavailable), &get("/health"));
        assert_eq!(r.status(), 503);
        assert_eq!(body(r).await, "unavailable: serving abc (2 routes)\n");
        assert_eq!(answer(&ok, &get("/")).status(), 404);
        let r = answer(&ok, &Request::post("/metrics").body(()).unwrap());
        assert_eq!((r.status().as_u16(), r.headers()[ALLOW].to_str().unwrap()), (405, "GET, HEAD"));
    }
}
