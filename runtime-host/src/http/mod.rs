//! HTTP in and out: the listener with its serving threads and limits
//! ([`listener`]), and what a request says about itself ([`request`]).
//! HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) are served on one
//! listener.

pub mod listener;
pub mod request;

pub use self::listener::{Limits, Workers};
