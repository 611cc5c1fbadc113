//! [`StoreLocation`]: where a store is, as users write it on the command line.

use std::path::PathBuf;

/// What a directory store's location starts with: `dir:PATH`.
const DIR_SCHEME: &str = "dir:";

/// What an S3 store's location starts with: `s3://BUCKET[/PREFIX]`.
const S3_SCHEME: &str = "s3://";

/// Where a store is: `dir:PATH` or `s3://BUCKET[/PREFIX]`.
///
/// Parsed with [`str::parse`] and written back by [`Display`](std::fmt::Display)
/// in the same form. The scheme is explicit, rather than guessed from the
/// text, so that a typo in a bucket name is never taken for a relative path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A directory (`dir:PATH`), created when the store is opened.
    Dir(PathBuf),
    /// A bucket and a key prefix (`s3://BUCKET/PREFIX`). The prefix is kept
    /// without leading or trailing slashes, and is empty for the bucket's root.
    S3 { bucket: String, prefix: String },
}

impl StoreLocation {
    /// A short name for this store that stays the same from run to run and
    /// differs between stores: 16 hex digits of the SHA-256 of its text. A
    /// host keeps its last good snapshot of the store in a folder of that name.
    pub fn cache_name(&self) -> String {
        use sha2::{Digest as _, Sha256};
        Sha256::digest(self.to_string().as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::str::FromStr for StoreLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<StoreLocation, String> {
        if let Some(path) = s.strip_prefix(DIR_SCHEME) {
            if path.is_empty() {
                return Err("dir: needs a path".into());
            }
            return Ok(StoreLocation::Dir(path.into()));
        }
        if let Some(rest) = s.strip_prefix(S3_SCHEME) {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{s:?}: s3://BUCKET[/PREFIX] needs a bucket"));
            }
            return Ok(StoreLocation::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() });
        }
        Err(format!("{s:?}: a store is dir:PATH or s3://BUCKET[/PREFIX]"))
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Dir(p) => write!(f, "{DIR_SCHEME}{}", p.display()),
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "{S3_SCHEME}{bucket}"),
            StoreLocation::S3 { bucket, prefix } => write!(f, "{S3_SCHEME}{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StoreLocation, String> {
        s.parse()
    }

    #[test]
    fn parses_and_displays_both_forms() {
        assert_eq!(parse("dir:/var/store"), Ok(StoreLocation::Dir("/var/store".into())));
        assert_eq!(
            parse("s3://edge/previews/"),
            Ok(StoreLocation::S3 { bucket: "edge".into(), prefix: "previews".into() })
        );
        assert_eq!(parse("s3://edge"), Ok(StoreLocation::S3 { bucket: "edge".into(), prefix: String::new() }));
        for s in ["dir:/var/store", "s3://edge", "s3://edge/a/b"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }

    /// The name earlier releases gave the cache folder (16 hex digits of the
    /// location's SHA-256), so that an upgraded host finds its cache.
    #[test]
    fn the_cache_name_is_stable() {
        assert_eq!(parse("dir:/var/store").unwrap().cache_name(), "4974f0df23ce37d0");
        assert_ne!(parse("s3://edge").unwrap().cache_name(), parse("s3://edge/a").unwrap().cache_name());
    }

    #[test]
    fn refuses_what_is_not_a_store() {
        assert!(parse("dir:").is_err());
        assert!(parse("s3://").is_err());
        assert!(parse("s3:///prefix").is_err());
        assert!(parse("/var/store").unwrap_err().contains("a store is dir:PATH or s3://"));
    }
}
