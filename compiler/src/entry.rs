//! Validation and normalization of table items into [`Entry`]s
//! (`docs/table-schema.md`).

use std::borrow::Cow;
use std::fmt;

use edgeroute_edge::{HostName, Reason, Scheme, MAX_HOST_LEN};

use crate::item::{Location, RawItem, Value};

/// A validated table entry, ready for the snapshot writer. Its strings
/// borrow from the source where the source's text is already normalized,
/// so that compiling a big table allocates little per route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The normalized Domain: lowercase ASCII, punycode, no trailing dot,
    /// `*.` in front for a wildcard.
    pub domain: Cow<'a, str>,
    pub target: Target<'a>,
}

/// Where a route sends requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    Static {
        bucket: Cow<'a, str>,
        /// Without leading or trailing slashes.
        prefix: Cow<'a, str>,
        /// Sorted and deduplicated.
        assets: Option<Vec<Cow<'a, str>>>,
        fallback: Option<Cow<'a, str>>,
    },
    Balancer {
        host: Cow<'a, str>,
        port: u16,
        scheme: Scheme,
    },
}

impl Entry<'_> {
    /// The index key: labels reversed (`com.example.api`); a wildcard
    /// `*.example.com` becomes `com.example.*`, so that the longest matching
    /// wildcard is found on the way down the exact name.
    pub fn key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.domain.len());
        for (i, label) in self.domain.rsplit('.').enumerate() {
            if i > 0 {
                key.push(b'.');
            }
            key.extend_from_slice(label.as_bytes());
        }
        key
    }

    pub fn is_wildcard(&self) -> bool {
        self.domain.starts_with("*.")
    }
}

/// `part`, a slice of `source`, with `source`'s lifetime when it is borrowed.
fn piece<'a>(source: &Cow<'a, str>, part: &str) -> Cow<'a, str> {
    if let Cow::Borrowed(s) = source {
        let start = (part.as_ptr() as usize).wrapping_sub(s.as_ptr() as usize);
        if let Some(p) = s.get(start..start.wrapping_add(part.len())) {
            if p.as_ptr() == part.as_ptr() {
                return Cow::Borrowed(p);
            }
        }
    }
    Cow::Owned(part.to_owned())
}

/// What is wrong with one table item.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ItemErrorKind {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("an item must be a JSON object, not a {0}")]
    NotAnObject(&'static str),
    #[error("attribute {0} is given twice")]
    DuplicateAttribute(&'static str),
    #[error("attribute {0} is missing")]
    Missing(&'static str),
    #[error("attribute {attribute} is missing; the item has {written:?}, but attribute names are case-sensitive: rename it {attribute}")]
    MissingMiscased { attribute: &'static str, written: String },
    #[error("attribute {attribute} must be a {expected}, not a {found}")]
    WrongType { attribute: &'static str, expected: &'static str, found: &'static str },
    #[error("Domain {domain:?}: {why}")]
    BadDomain { domain: String, why: String },
    #[error("Target {target:?}: {why}")]
    BadTarget { target: String, why: String },
    #[error("Origin {origin:?}: {why}")]
    BadOrigin { origin: String, why: String },
    #[error(
        "an ELB ARN Target without Origin must be resolved through the ELBv2 API first (`edgeroute compile` does)"
    )]
    ArnWithoutOrigin,
    #[error("ELB ARN {arn} does not resolve to a load balancer: {why}")]
    ArnNotResolved { arn: String, why: String },
    #[error("Origin is only allowed with an ELB ARN Target")]
    OriginNotAllowed,
    #[error("{0} is only allowed on static sites (s3:// Targets)")]
    StaticOnly(&'static str),
    #[error("Assets item {index} {asset:?}: {why}")]
    BadAsset { index: usize, asset: String, why: String },
    #[error("Fallback {fallback:?}: {why}")]
    BadFallback { fallback: String, why: String },
    #[error("Fallback {0:?} is not one of the Assets")]
    FallbackNotInAssets(String),
    #[error("a line with \"Deleted\": true carries only its Domain (no Target, Origin, Assets or Fallback)")]
    DeletedWithRoute,
    #[error("{other} gives the same Domain, {other_written:?} ({domain:?} once normalized); both are left out")]
    Duplicate { domain: String, other: Location, other_written: String },
}

/// A bad item: where it is, its Domain if it has a usable one, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemError {
    pub location: Location,
    pub domain: Option<String>,
    pub kind: ItemErrorKind,
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location)?;
        match (&self.domain, &self.kind) {
            // These name the Domain themselves.
            (_, ItemErrorKind::BadDomain { .. }) | (None, _) => {}
            (Some(d), _) => write!(f, " (Domain {d:?})")?,
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for ItemError {}

fn string<'v, 'a>(attribute: &'static str, v: &'v Value<'a>) -> Result<&'v Cow<'a, str>, ItemErrorKind> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(ItemErrorKind::WrongType { attribute, expected: "string", found: other.type_name() }),
    }
}

/// Validates one item. On error, the item's Domain (as written) is returned
/// with the error whenever it is a string, so messages can name it.
pub fn validate<'a>(location: Location, item: &RawItem<'a>) -> Result<Entry<'a>, ItemError> {
    validate_inner(item).map_err(|kind| ItemError {
        location,
        domain: match &item.domain {
            Some(Value::Str(s)) => Some(s.to_string()),
            _ => None,
        },
        kind,
    })
}

fn validate_inner<'a>(item: &RawItem<'a>) -> Result<Entry<'a>, ItemErrorKind> {
    if let Some(t) = item.not_an_object {
        return Err(ItemErrorKind::NotAnObject(t));
    }
    if let Some(a) = item.duplicate_attribute {
        return Err(ItemErrorKind::DuplicateAttribute(a));
    }
    let missing = |attribute: &'static str| match item.miscased(attribute) {
        Some(written) => ItemErrorKind::MissingMiscased { attribute, written: written.to_owned() },
        None => ItemErrorKind::Missing(attribute),
    };
    let raw = string("Domain", item.domain.as_ref().ok_or_else(|| missing("Domain"))?)?;
    let domain = match normalize_domain(raw) {
        Ok(Cow::Borrowed(d)) => piece(raw, d),
        Ok(Cow::Owned(d)) => Cow::Owned(d),
        Err(why) => return Err(ItemErrorKind::BadDomain { domain: raw.to_string(), why }),
    };
    let target = string("Target", item.target.as_ref().ok_or_else(|| missing("Target"))?)?;
    let target = parse_target(target, item)?;
    Ok(Entry { domain, target })
}

/// Normalizes a Domain the way the WHATWG URL parser does (UTS #46 via
/// `idna::domain_to_ascii`), drops one trailing dot, and applies the host
/// checks of resolve rule 1. `*.` in front makes a wildcard, whose suffix
/// needs at least two labels.
///
/// Borrows from `raw` when it is already normalized (lowercase ASCII),
/// which is the common case.
pub fn normalize_domain(raw: &str) -> Result<Cow<'_, str>, String> {
    let (wildcard, name) = match raw.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if name.contains('*') {
        return Err("`*` is only allowed as the whole first label of a wildcard (`*.example.com`)".into());
    }
    // `domain_to_ascii` itself, without its copy of unchanged input.
    let converted = idna::domain_to_ascii_cow(name.as_bytes(), idna::AsciiDenyList::EMPTY)
        .map_err(|_| "not a valid domain name (UTS #46 / IDNA processing refuses it)".to_owned())?;
    let ascii = converted.strip_suffix('.').unwrap_or(&converted);
    if ascii.contains('*') {
        return Err("`*` is only allowed as the whole first label of a wildcard (`*.example.com`)".into());
    }
    // Rule 1 would take a `:` for a port and strip another trailing dot:
    // neither belongs in a Domain.
    if ascii.contains(':') {
        return Err(format!("{}: a Domain has no port", Reason::HostBadChar));
    }
    if ascii.ends_with('.') || ascii.is_empty() {
        return Err(format!(
            "{}: empty label",
            if ascii.is_empty() { Reason::HostEmpty } else { Reason::HostBadLabel }
        ));
    }
    let host = HostName::parse(ascii.as_bytes()).map_err(|r| format!("{r}: {}", explain(r)))?;
    debug_assert_eq!(host.len(), ascii.len());
    if wildcard {
        if !ascii.contains('.') {
            return Err("a wildcard needs a suffix of at least two labels (`*.example.com`, not `*.com`)".into());
        }
        // A host under the wildcard has one more label and must still fit.
        if ascii.len() + 2 > MAX_HOST_LEN {
            return Err(format!("{}: no host under this wildcard fits in {MAX_HOST_LEN} bytes", Reason::HostTooLong));
        }
    }
    Ok(match converted {
        // Unchanged by IDNA: the result is `raw` without its trailing dot.
        Cow::Borrowed(_) => Cow::Borrowed(&raw[..ascii.len() + if wildcard { 2 } else { 0 }]),
        Cow::Owned(_) if wildcard => Cow::Owned(format!("*.{ascii}")),
        Cow::Owned(_) => Cow::Owned(ascii.to_owned()),
    })
}

fn explain(r: Reason) -> &'static str {
    match r {
        Reason::HostBadPort => "bad port",
        Reason::HostEmpty => "empty",
        Reason::HostTooLong => "longer than 253 bytes",
        Reason::HostBadChar => "only a-z 0-9 - . _ are allowed after IDNA processing",
        Reason::HostBadLabel => "a label is empty or longer than 63 bytes",
        _ => "invalid",
    }
}

fn parse_target<'a>(source: &Cow<'a, str>, item: &RawItem<'a>) -> Result<Target<'a>, ItemErrorKind> {
    let target: &str = source;
    let bad = |why: &str| ItemErrorKind::BadTarget { target: target.to_owned(), why: why.to_owned() };
    if let Some(rest) = target.strip_prefix("s3://") {
        if item.origin.is_some() {
            return Err(ItemErrorKind::OriginNotAllowed);
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|why| bad(&why))?;
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            check_key(prefix).map_err(|why| bad(&format!("prefix {prefix:?}: {why}")))?;
        }
        let assets = match &item.assets {
            None => None,
            Some(Value::List(items)) => {
                let mut keys = Vec::with_capacity(items.len());
                for (index, v) in items.iter().enumerate() {
                    let Value::Str(asset) = v else {
                        return Err(ItemErrorKind::BadAsset {
                            index,
                            asset: String::new(),
                            why: format!("must be a string, not a {}", v.type_name()),
                        });
                    };
                    check_asset(asset).map_err(|why| ItemErrorKind::BadAsset {
                        index,
                        asset: asset.to_string(),
                        why,
                    })?;
                    keys.push(piece(asset, asset));
                }
                keys.sort_unstable();
                keys.dedup();
                Some(keys)
            }
            Some(other) => {
                return Err(ItemErrorKind::WrongType {
                    attribute: "Assets",
                    expected: "list of strings",
                    found: other.type_name(),
                })
            }
        };
        let fallback = match &item.fallback {
            None => None,
            Some(v) => {
                let f = string("Fallback", v)?;
                check_asset(f).map_err(|why| ItemErrorKind::BadFallback { fallback: f.to_string(), why })?;
                if let Some(assets) = &assets {
                    if assets.binary_search_by(|a| a.as_ref().cmp(f.as_ref())).is_err() {
                        return Err(ItemErrorKind::FallbackNotInAssets(f.to_string()));
                    }
                }
                Some(piece(f, f))
            }
        };
        return Ok(Target::Static { bucket: piece(source, bucket), prefix: piece(source, prefix), assets, fallback });
    }
    if item.assets.is_some() {
        return Err(ItemErrorKind::StaticOnly("Assets"));
    }
    if item.fallback.is_some() {
        return Err(ItemErrorKind::StaticOnly("Fallback"));
    }
    if target.starts_with("arn:") {
        check_elb_arn(target).map_err(|why| bad(&why))?;
        let origin = match &item.origin {
            None => return Err(ItemErrorKind::ArnWithoutOrigin),
            Some(v) => string("Origin", v)?,
        };
        let bad_origin = |why: String| ItemErrorKind::BadOrigin { origin: origin.to_string(), why };
        let (scheme, rest) = if let Some(r) = origin.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = origin.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            (Scheme::Https, origin.as_ref())
        };
        let (host, port) = parse_authority(origin, rest, scheme).map_err(bad_origin)?;
        return Ok(Target::Balancer { host, port, scheme });
    }
    if item.origin.is_some() {
        return Err(ItemErrorKind::OriginNotAllowed);
    }
    let (scheme, rest) = if let Some(r) = target.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = target.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        return Err(bad(
            "must be s3://BUCKET[/PREFIX], an ELB ARN (arn:aws:elasticloadbalancing:…), or http(s)://HOST[:PORT]",
        ));
    };
    let (host, port) = parse_authority(source, rest, scheme).map_err(|why| bad(&why))?;
    Ok(Target::Balancer { host, port, scheme })
}

/// `HOST[:PORT]` of an origin (`s`, a slice of `source`), optionally
/// followed by a bare `/`.
fn parse_authority<'a>(source: &Cow<'a, str>, s: &str, scheme: Scheme) -> Result<(Cow<'a, str>, u16), String> {
    let s = s.strip_suffix('/').unwrap_or(s);
    if s.contains('@') {
        return Err("a user part is not allowed".into());
    }
    if s.contains(['/', '?', '#']) {
        return Err("a path, query or fragment is not allowed".into());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => {
            // Digits only: `u16::from_str` would also take a leading `+`.
            let port = Some(p)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?;
            (h, port)
        }
        None => (s, scheme.default_port()),
    };
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        piece(source, host)
    };
    match HostName::parse(host.as_bytes()) {
        Ok(h) if h.len() == host.len() => Ok((host, port)),
        Ok(_) => Err("host has a trailing dot".into()),
        Err(r) => Err(format!("host: {r}: {}", explain(r))),
    }
}

/// S3 bucket naming rules (general purpose buckets).
fn check_bucket(b: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&b.len());
    let ok_chars = b.bytes().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'));
    let ok_ends = b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends && !b.contains("..") {
        Ok(())
    } else {
        Err(format!(
            "bucket {b:?} is not a valid S3 bucket name (3-63 of a-z 0-9 . -, starting and ending with a letter or digit)"
        ))
    }
}

/// Checks an object key the way rule 4 checks a decoded request path.
fn check_key(key: &str) -> Result<(), String> {
    if let Some(c) = key.chars().find(|&c| c == '\\' || c.is_ascii_control()) {
        return Err(format!("{}: {c:?} is not allowed", Reason::PathBadChar));
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err(format!("{}: `.` and `..` segments are not allowed", Reason::PathDotSegment));
    }
    if key.split('/').any(str::is_empty) {
        return Err(format!("{}: empty segment", Reason::PathEmptySegment));
    }
    Ok(())
}

/// An Assets entry or a Fallback: a key relative to the site's prefix.
fn check_asset(a: &str) -> Result<(), String> {
    if a.is_empty() {
        return Err("empty".into());
    }
    if a.starts_with('/') {
        return Err("must not start with `/` (keys are relative to the site's prefix)".into());
    }
    check_key(a)
}

fn check_elb_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b")
        && parts[2] == "elasticloadbalancing"
        && !parts[3].is_empty()
        && parts[3].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].strip_prefix("loadbalancer/").is_some_and(|r| !r.is_empty());
    if ok {
        Ok(())
    } else {
        Err("not an ELB ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/…)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_normalize_like_the_url_parser() {
        let n = |s: &str| normalize_domain(s).map(|d| d.into_owned());
        assert_eq!(n("Env-123.Example.COM."), Ok("env-123.example.com".into()));
        assert_eq!(n("bücher.example"), Ok("xn--bcher-kva.example".into()));
        assert_eq!(n("*.Previews.Example.com"), Ok("*.previews.example.com".into()));
        assert_eq!(n("*.bücher.example"), Ok("*.xn--bcher-kva.example".into()));
        assert_eq!(n("ＡＢＣ.example"), Ok("abc.example".into()));
        assert_eq!(n("under_score.example"), Ok("under_score.example".into()));
        for bad in [
            "",
            ".",
            "a..b",
            "*.com",
            "*.*.x.dev",
            "a.*.x.dev",
            "*x.dev",
            "*",
            "*.",
            "x.dev:80",
            "a b.dev",
            "a/b.dev",
            "xn--zz.dev",
            "example.com..",
            "a@b.dev",
        ] {
            assert!(n(bad).is_err(), "{bad:?} should be refused, got {:?}", n(bad));
        }
        assert!(n(&format!("{}.dev", "a".repeat(64))).is_err());
    }

    #[test]
    fn authority_ports() {
        let p = |s: &'static str, scheme| parse_authority(&Cow::Borrowed(s), s, scheme);
        assert_eq!(p("h.example:8080", Scheme::Http), Ok(("h.example".into(), 8080)));
        assert_eq!(p("H.example/", Scheme::Https), Ok(("h.example".into(), 443)));
        assert_eq!(p("127.0.0.1", Scheme::Http), Ok(("127.0.0.1".into(), 80)));
        assert!(matches!(p("h.example:80", Scheme::Http), Ok((Cow::Borrowed("h.example"), 80))));
        for bad in ["h:0", "h:65536", "h:+80", "h:", "h/x", "u@h", "h?x", "[::1]:80", "h.:80"] {
            assert!(p(bad, Scheme::Http).is_err(), "{bad}");
        }
    }
}
