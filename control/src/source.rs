//! Where a routing table comes from: what `edgeroute compile --from` names.

use std::path::PathBuf;

/// Where a routing table comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `dynamodb://TABLE`: the live table, scanned.
    Table(String),
    /// `export:PATH`: a table export's folder (`AWSDynamoDB/<export id>/`).
    Export(PathBuf),
    /// `export:s3://BUCKET/FOLDER`: the same folder, read straight from S3.
    ExportS3 { bucket: String, folder: String },
    /// `PATH` (or `file:PATH`): a JSON file.
    File(PathBuf),
}

impl std::str::FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Source, String> {
        if let Some(table) = s.strip_prefix("dynamodb://") {
            // DynamoDB's table name rules: 3-255 of a-z A-Z 0-9 _ - .
            let ok = (3..=255).contains(&table.len())
                && table.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            return if ok {
                Ok(Source::Table(table.to_owned()))
            } else {
                Err(format!("{table:?} is not a DynamoDB table name (3-255 of a-z A-Z 0-9 _ - .)"))
            };
        }
        if let Some(rest) = s.strip_prefix("export:s3://") {
            let (bucket, folder) = rest.split_once('/').unwrap_or((rest, ""));
            return if bucket.is_empty() || folder.trim_matches('/').is_empty() {
                Err("export:s3://BUCKET/PREFIX/AWSDynamoDB/<export id> names the export's folder in S3".into())
            } else {
                Ok(Source::ExportS3 { bucket: bucket.to_owned(), folder: folder.trim_matches('/').to_owned() })
            };
        }
        if let Some(path) = s.strip_prefix("export:") {
            return if path.is_empty() {
                Err("export: needs the export's folder (the one holding manifest-summary.json)".into())
            } else {
                Ok(Source::Export(path.into()))
            };
        }
        if let Some(table) = s.strip_prefix("dynamodb:") {
            return Err(format!("a live table is dynamodb://TABLE, with two slashes: try dynamodb://{table}"));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            return Err(format!(
                "a table is read from S3 as a DynamoDB export's folder: export:s3://{rest} (or copy a JSON file here)"
            ));
        }
        if s.contains("://") {
            return Err(format!("{s:?}: unknown source; use dynamodb://TABLE, export:PATH or a JSON file's path"));
        }
        let path = s.strip_prefix("file:").unwrap_or(s);
        if path.is_empty() {
            return Err("empty path".into());
        }
        Ok(Source::File(path.into()))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Table(t) => write!(f, "dynamodb://{t}"),
            Source::Export(p) => write!(f, "export:{}", p.display()),
            Source::ExportS3 { bucket, folder } => write!(f, "export:s3://{bucket}/{folder}"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_displays_back() {
        for text in
            ["dynamodb://routes", "export:/tmp/AWSDynamoDB/01-a", "export:s3://bucket/AWSDynamoDB/01-a", "t.json"]
        {
            assert_eq!(text.parse::<Source>().unwrap().to_string(), text);
        }
        assert_eq!("file:t.json".parse::<Source>().unwrap(), Source::File("t.json".into()));
    }

    #[test]
    fn near_misses_say_what_to_type() {
        let e = "dynamodb:routes".parse::<Source>().unwrap_err();
        assert!(e.contains("try dynamodb://routes"), "{e}");
        let e = "s3://bucket/exports/AWSDynamoDB/01-a".parse::<Source>().unwrap_err();
        assert!(e.contains("export:s3://bucket/exports/AWSDynamoDB/01-a"), "{e}");
        assert!("ftp://x".parse::<Source>().unwrap_err().contains("unknown source"));
        assert!("dynamodb://ab".parse::<Source>().unwrap_err().contains("not a DynamoDB table name"));
    }
}
