//! Names and hostnames: the rules for app, service, handle and pool names,
//! the hostname `SERVICE-PART-APP.DOMAIN` they make, and the random
//! characters of PART (when there is no handle) and of environment ids.

use edgeroute_compiler::entry::normalize_domain;

use super::error::{EnvError, NameProblem};

/// Characters of the random part and of generated environment ids.
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Length of the random part of a hostname.
pub const RANDOM_LEN: usize = 7;
/// Length of an environment id after its `e`.
const ENV_ID_LEN: usize = 12;

/// Where random characters come from: the operating system's CSPRNG, or
/// (in tests) a seeded generator whose draws can be made to collide.
#[derive(Debug)]
pub enum Randomness {
    Os,
    Seeded(fastrand::Rng),
}

impl Randomness {
    /// A transaction's idempotency token: 32 hex digits from the
    /// operating system's CSPRNG, whatever this randomness is (a seeded
    /// one draws the test's hostnames; tokens must never repeat).
    pub fn token(&mut self) -> Result<String, EnvError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(EnvError::Random)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// `len` characters of `[a-z0-9]`, uniformly (rejection sampling).
    pub fn draw(&mut self, len: usize) -> Result<String, EnvError> {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            let mut bytes = [0u8; 32];
            match self {
                Randomness::Os => getrandom::fill(&mut bytes).map_err(EnvError::Random)?,
                Randomness::Seeded(rng) => rng.fill(&mut bytes),
            }
            // 252 = 7 * 36: larger bytes would favour the first letters.
            for b in bytes.into_iter().filter(|&b| b < 252) {
                if out.len() < len {
                    out.push(ALPHABET[usize::from(b % 36)] as char);
                }
            }
        }
        Ok(out)
    }

    /// A new environment id: `e` and 12 random characters.
    pub(super) fn env_id(&mut self) -> Result<String, EnvError> {
        Ok(format!("e{}", self.draw(ENV_ID_LEN)?))
    }

    /// A random index below `len` (which must not be 0), from 4 random characters.
    pub(super) fn index(&mut self, len: usize) -> Result<usize, EnvError> {
        Ok(self.draw(4)?.bytes().fold(0usize, |acc, b| acc * 36 + usize::from(b)) % len)
    }
}

/// Checks a piece of a hostname label (an app, a service or a handle name).
pub fn check_name(what: &str, name: &str) -> Result<(), EnvError> {
    let bad = |why| Err(EnvError::BadName { what: what.to_owned(), name: name.to_owned(), why });
    if name.is_empty() {
        return bad(NameProblem::Empty);
    }
    if name.len() > 63 {
        return bad(NameProblem::TooLong);
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return bad(NameProblem::Character(c));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad(NameProblem::Hyphen);
    }
    Ok(())
}

/// `SERVICE-PART-APP.DOMAIN`, checked against DNS rules (a label of at most
/// 63 bytes, a name of at most 253) and the resolver's host rules.
pub fn hostname(service: &str, part: &str, app: &str, domain: &str) -> Result<String, EnvError> {
    let label = format!("{service}-{part}-{app}");
    if label.len() > 63 {
        return Err(EnvError::LabelTooLong {
            len: label.len(),
            label,
            service: service.to_owned(),
            app: app.to_owned(),
        });
    }
    let name = format!("{label}.{domain}");
    if name.len() > 253 {
        return Err(EnvError::HostnameTooLong { len: name.len(), hostname: name });
    }
    match normalize_domain(&name) {
        Ok(normal) if normal == name => Ok(name),
        Ok(normal) => Err(EnvError::HostnameNotNormal { normal: normal.into_owned(), hostname: name }),
        Err(why) => Err(EnvError::BadHostname { hostname: name, why }),
    }
}

/// The domain, normalized (an IDN becomes punycode); no wildcards.
pub fn check_domain(domain: &str) -> Result<String, EnvError> {
    if domain.starts_with("*.") {
        return Err(EnvError::WildcardDomain(domain.to_owned()));
    }
    let normal = normalize_domain(domain).map_err(|why| EnvError::BadDomain { domain: domain.to_owned(), why })?;
    if !normal.contains('.') {
        return Err(EnvError::SingleLabelDomain(domain.to_owned()));
    }
    Ok(normal.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_parts_are_uniform_lowercase_alphanumerics() {
        let mut rng = Randomness::Seeded(fastrand::Rng::with_seed(7));
        let mut counts = [0u32; 36];
        for _ in 0..2000 {
            let part = rng.draw(RANDOM_LEN).unwrap();
            assert_eq!(part.len(), RANDOM_LEN);
            for b in part.bytes() {
                counts[ALPHABET.iter().position(|&a| a == b).unwrap()] += 1;
            }
        }
        // 14,000 draws, ~389 per character: each within ±30 %.
        assert!(counts.iter().all(|&c| (270..=510).contains(&c)), "{counts:?}");
        let os = Randomness::Os.draw(RANDOM_LEN).unwrap();
        assert!(os.bytes().all(|b| ALPHABET.contains(&b)) && os.len() == RANDOM_LEN);
    }

    #[test]
    fn env_ids_and_indexes_are_the_draws_they_always_were() {
        // A seeded generator's env id is the same 12-character draw, after an `e`.
        let mut a = Randomness::Seeded(fastrand::Rng::with_seed(42));
        let mut b = Randomness::Seeded(fastrand::Rng::with_seed(42));
        assert_eq!(a.env_id().unwrap(), format!("e{}", b.draw(12).unwrap()));
        let expected = b.draw(4).unwrap().bytes().fold(0usize, |acc, x| acc * 36 + usize::from(x)) % 7;
        assert_eq!(a.index(7).unwrap(), expected);
    }

    #[test]
    fn hostnames_follow_dns_and_resolver_rules() {
        assert_eq!(hostname("api", "t9yhp25", "portal", "example.com").unwrap(), "api-t9yhp25-portal.example.com");
        let long = "a".repeat(40);
        let e = hostname(&long, "t9yhp25", &long, "example.com").unwrap_err().to_string();
        assert!(e.contains("DNS allows 63"), "{e}");
        let domain = format!("{}.com", vec!["b".repeat(60); 4].join("."));
        let e = hostname("api", "t9yhp25", "portal", &domain).unwrap_err().to_string();
        assert!(e.contains("DNS allows 253"), "{e}");
        assert!(check_name("service", "API").unwrap_err().to_string().contains("lowercase"));
        assert!(check_name("app", "-x").is_err());
        assert!(check_name("app", "a_b").is_err());
        assert!(check_name("app", "").is_err());
        assert_eq!(check_domain("Bücher.Example").unwrap(), "xn--bcher-kva.example");
        assert!(check_domain("*.example.com").is_err());
        assert!(check_domain("localhost").is_err());
        assert!(check_domain("exa mple.com").is_err());
    }

    #[test]
    fn bad_names_say_what_is_wrong_as_before() {
        let e = check_name("app", "Portal").unwrap_err();
        assert!(matches!(e, EnvError::BadName { why: NameProblem::Character('P'), .. }), "{e}");
        assert_eq!(e.to_string(), "app \"Portal\": 'P' is not allowed: use a-z, 0-9 and - (lowercase)");
        assert_eq!(check_name("handle", "").unwrap_err().to_string(), "handle \"\": empty");
        assert_eq!(check_name("pool", "x-").unwrap_err().to_string(), "pool \"x-\": must not start or end with -");
        let long = "a".repeat(64);
        assert_eq!(
            check_name("app", &long).unwrap_err().to_string(),
            format!("app {long:?}: longer than 63 characters")
        );
        assert!(matches!(check_domain("localhost"), Err(EnvError::SingleLabelDomain(_))));
        assert!(matches!(check_domain("*.example.com"), Err(EnvError::WildcardDomain(_))));
        assert!(matches!(check_domain("exa mple.com"), Err(EnvError::BadDomain { .. })));
    }
}
