//! HTTP in and out: the listener with its serving threads and limits
//! ([`listener`]), each connection's share of them ([`connection`]) and
//! deadlines ([`deadlines`]), and what a request says about itself
//! ([`request`]).
//! HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) are served on one
//! listener.

pub mod connection;
pub mod deadlines;
pub mod listener;
pub mod request;

pub use self::connection::Connection;
pub use self::deadlines::Deadlines;
pub use self::listener::{Limits, Listening, Workers};
