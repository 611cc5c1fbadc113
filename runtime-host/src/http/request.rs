//! Phase 1, the request: the host name it names, and its count while it
//! is in flight.

use std::sync::atomic::Ordering;

use hyper::header::HOST;
use hyper::Request;

use crate::metrics::Metrics;

/// One request in flight, counted while it lives.
#[derive(Debug)]
pub struct InFlight<'m>(&'m Metrics);

impl<'m> InFlight<'m> {
    pub fn enter(metrics: &'m Metrics) -> Self {
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The request's host name, as sent: the URI's authority, else the one Host header.
pub fn request_host<B>(req: &Request<B>) -> Result<&[u8], &'static str> {
    if let Some(authority) = req.uri().authority() {
        return Ok(authority.as_str().as_bytes());
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(one), None) => Ok(one.as_bytes()),
        (None, _) => Err("no Host header"),
        (Some(_), Some(_)) => Err("more than one Host header"),
    }
}

/// The host name without its port, lowercased, without a trailing dot (the
/// resolver has checked it already; this is for the TLS name and logs).
pub fn host_name(host: &[u8]) -> String {
    let text = String::from_utf8_lossy(host);
    let name = match text.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => &text,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}
