//! TLS to origins: which name an origin's certificate must carry (checked,
//! and reused across request hosts, in `pool.rs`).

/// Which name a TLS origin's certificate must carry (and is sent as SNI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsName {
    /// The origin's own name, as the table gives it.
    Origin,
    /// The request's host: for load balancers that present the customer's
    /// certificate for every host they serve.
    RequestHost,
}
