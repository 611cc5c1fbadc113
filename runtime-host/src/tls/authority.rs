//! [`LocalAuthority`]: a certificate authority of this process's own, for
//! the demo (which serves https with certificates it makes at its start)
//! and for the tests. Its keys are ECDSA P-256, as a CA would issue today.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A CA that signs certificates for any name.
pub struct LocalAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// Its own certificate, PEM: what a client is told to trust (`curl --cacert`).
    pub certificate_pem: String,
}

impl std::fmt::Debug for LocalAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAuthority").finish_non_exhaustive()
    }
}

/// A certificate's validity, in calendar dates (UTC midnight).
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: (i32, u8, u8),
    pub not_after: (i32, u8, u8),
}

impl Validity {
    /// From a year ago to a year from now: valid whatever the date.
    pub fn current() -> Validity {
        let year = 1970 + (crate::tls::folder::now() / 31_556_952) as i32;
        Validity { not_before: (year - 1, 1, 1), not_after: (year + 2, 1, 1) }
    }
}

impl LocalAuthority {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<LocalAuthority, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key)?;
        Ok(LocalAuthority { certificate_pem: certificate.pem(), issuer: Issuer::new(params, key) })
    }

    /// A certificate for `names` (DNS names, `*.` wildcards among them),
    /// valid over `validity`, and its key, as one PEM file in HAProxy's
    /// convention: the certificate, then the private key.
    pub fn issue(&self, names: &[&str], validity: Validity) -> Result<String, rcgen::Error> {
        let key = KeyPair::generate()?;
        let (pem, key) = self.issue_with(names, validity, &key)?;
        Ok(pem + &key)
    }

    /// [`issue`](Self::issue) with a given key: the certificate's PEM, and
    /// the key's.
    pub fn issue_with(
        &self,
        names: &[&str],
        validity: Validity,
        key: &KeyPair,
    ) -> Result<(String, String), rcgen::Error> {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("edgeroute"));
        let (y, m, d) = validity.not_before;
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = validity.not_after;
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let certificate = params.signed_by(key, &self.issuer)?;
        Ok((certificate.pem(), key.serialize_pem()))
    }
}
