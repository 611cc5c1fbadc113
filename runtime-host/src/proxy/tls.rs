//! TLS to origins: which name an origin's certificate must carry.

/// Which name a TLS origin's certificate must carry (and is sent as SNI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsName {
    /// The origin's own name, as the table gives it.
    Origin,
    /// The request's host: for load balancers that present the customer's
    /// certificate for every host they serve.
    RequestHost,
}

/// Names the origin's certificate must carry: the host of the URI, or the
/// userinfo part that carries the request's host in
/// [`TlsName::RequestHost`] mode. The userinfo also keeps those connections
/// in pools of their own, one per request host, since the pool is keyed by
/// the URI's authority: a connection verified for one customer's name is
/// never reused for another's.
#[derive(Debug)]
pub(super) struct ServerName;

impl hyper_rustls::ResolveServerName for ServerName {
    fn resolve(
        &self,
        uri: &hyper::Uri,
    ) -> Result<rustls::pki_types::ServerName<'static>, Box<dyn std::error::Error + Sync + Send>> {
        let authority = uri.authority().ok_or("the origin URI has no host")?.as_str();
        let name = match authority.rsplit_once('@') {
            Some((user, _)) => user,
            None => uri.host().ok_or("the origin URI has no host")?,
        };
        Ok(rustls::pki_types::ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']'))?.to_owned())
    }
}
