//! The flags of `resolve`, which both binaries take alike (`edgeroute
//! resolve` natively, `edgeroute-host resolve` through the module): one
//! definition, so that their spelling and help can never drift apart.

use std::ffi::OsString;
use std::path::PathBuf;

/// `resolve --snapshot FILE [--json | --explain] HOST [PATH]`.
#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    /// The snapshot file.
    #[arg(long, value_name = "FILE")]
    pub snapshot: PathBuf,
    /// The Host header value, e.g. `app.example.com` or `app.example.com:8080`
    /// (put it after `--` if it starts with `-`).
    #[arg(value_name = "HOST")]
    pub host: OsString,
    /// The request path, with an optional ?query.
    #[arg(value_name = "PATH", default_value = "/")]
    pub path: OsString,
    /// Print exactly one JSON object.
    #[arg(long, conflicts_with = "explain")]
    pub json: bool,
    /// Show the normalized host, the entries and keys tried, and why.
    #[arg(long)]
    pub explain: bool,
}
