//! [`TrustedProxies`]: the addresses that may speak for a client.
//!
//! A client's own `X-Forwarded-For`, `Forwarded` or `X-Forwarded-Proto`
//! are claims anyone can make; the host replaces them. Only a load balancer
//! or CDN in front of the host, named by `--trusted-proxies CIDR…`, passes
//! them on: its connections carry many clients, so they are also exempt
//! from the per-client connection cap.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One network: an address and how many of its leading bits count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxies` value is not a network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("{0:?} is not an IP address or ADDRESS/PREFIX (e.g. 10.0.0.0/8, 2001:db8::/32, 203.0.113.7)")]
    Address(String),
    #[error("{text:?}: the prefix must be a number from 0 to {max}")]
    Prefix { text: String, max: u8 },
    #[error("{text:?}: bits are set past the prefix (did you mean {network}?)")]
    HostBits { text: String, network: String },
}

impl Cidr {
    /// Whether `ip` is in this network (an IPv4 client seen as `::ffff:a.b.c.d` too).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask32(u32::from(ip), self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask128(u128::from(ip), self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask32(bits: u32, prefix: u8) -> u32 {
    bits.checked_shr(32 - u32::from(prefix)).map_or(0, |b| b << (32 - u32::from(prefix)))
}

fn mask128(bits: u128, prefix: u8) -> u128 {
    bits.checked_shr(128 - u32::from(prefix)).map_or(0, |b| b << (128 - u32::from(prefix)))
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/PREFIX`, or one address (`/32`, `/128`). Bits set past the
    /// prefix are refused: `10.1.2.3/8` is more likely a slip than a wish.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| CidrError::Address(text.to_owned()))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would take a leading `+`.
            Some(p) => Some(p)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u8>().ok())
                .filter(|&p| p <= max)
                .ok_or_else(|| CidrError::Prefix { text: text.to_owned(), max })?,
        };
        let masked = match network {
            IpAddr::V4(ip) => IpAddr::from(mask32(u32::from(ip), prefix).to_be_bytes()),
            IpAddr::V6(ip) => IpAddr::from(mask128(u128::from(ip), prefix).to_be_bytes()),
        };
        if masked != network {
            return Err(CidrError::HostBits { text: text.to_owned(), network: format!("{masked}/{prefix}") });
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The networks whose connections may speak for a client. Empty (the
/// default): no one's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(networks: Vec<Cidr>) -> TrustedProxies {
        TrustedProxies(networks)
    }

    /// Whether a connection from `ip` comes from a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.255.1.2")) && !net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "an IPv4 client on a dual-stack socket");
        assert!(!net.contains(ip("::1")));
        let one: Cidr = "203.0.113.7".parse().unwrap();
        assert!(one.contains(ip("203.0.113.7")) && !one.contains(ip("203.0.113.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")) && !all.contains(ip("2001:db8::1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::5")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        let proxies = TrustedProxies::new(vec![net, v6]);
        assert!(proxies.trusts(ip("10.9.9.9")) && !proxies.trusts(ip("127.0.0.1")));
        assert!(!TrustedProxies::default().trusts(ip("10.0.0.1")));
    }

    #[test]
    fn malformed_networks_say_why() {
        for (text, says) in [
            ("10.0.0.0/33", "from 0 to 32"),
            ("::/129", "from 0 to 128"),
            ("10.0.0.0/+8", "from 0 to 32"),
            ("10.0.0.0/", "from 0 to 32"),
            ("10.1.2.3/8", "did you mean 10.0.0.0/8"),
            ("localhost", "not an IP address"),
            ("10.0.0/8", "not an IP address"),
        ] {
            let e = text.parse::<Cidr>().unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
