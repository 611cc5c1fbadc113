//! `edgeroute resolve`: one request against a snapshot, natively.

use anyhow::Result;
use edgeroute_edge::Resolution;

use super::load_snapshot;
use crate::flags::ResolveArgs;

/// Prints the answer for `args.host` and `args.path`: as text, as one JSON
/// object, or explained step by step. A refused host that looks like a
/// URL or a Unicode name gets a hint on stderr.
pub fn run(args: &ResolveArgs) -> Result<()> {
    let snapshot = load_snapshot(&args.snapshot)?;
    let (host, path) = (args.host.as_encoded_bytes(), args.path.as_encoded_bytes());
    let answer = snapshot.resolve(host, path);
    if args.json {
        println!("{}", answer.json());
    } else if args.explain {
        print!("{}", edgeroute_edge::explain(&snapshot, host, path));
    } else {
        println!("{answer}");
    }
    if matches!(answer, Resolution::BadRequest(_)) {
        if let Some(hint) = edgeroute_cli::hint::host_value(host) {
            eprintln!("hint: {hint}");
        }
    }
    Ok(())
}
