//! TLS termination on `--tls-listen`, in four pieces as pingora splits a
//! source of updates from what holds them and what drives them:
//!
//! - [`certificate`]: one PEM file (chain and key, HAProxy's convention),
//!   checked whole, or refused saying why;
//! - [`choice`]: the set of certificates a handshake chooses from by SNI,
//!   with RFC 6125's rules;
//! - [`folder`]: the files of `--tls-certs`, read again as they change,
//!   each keeping its last good certificate (the source);
//! - [`handshake`]: the live set (an `ArcSwap`) and each connection's
//!   handshake (the holder); [`watch`]: the reloads (the driver);
//! - [`authority`]: a CA of the process's own, for the demo and the tests.
//!
//! Private keys are read from these files only, kept in memory, and never
//! written anywhere: not to a snapshot, a store, a log or `/metrics`.

pub mod authority;
pub mod certificate;
pub mod choice;
pub mod folder;
pub mod handshake;
pub mod watch;

pub use certificate::{Certificate, Name, Refusal, Resumption};
pub use choice::CertificateSet;
pub use folder::{CertificateFiles, TlsError};
pub use handshake::{Session, TlsTerminator};
