//! `edgeroute-host resolve`: one request through the WebAssembly module.

use anyhow::{ensure, Result};
use edgeroute_edge::{Resolution, Snapshot};

use super::load;
use crate::flags::ResolveArgs;

/// Prints the module's answer for `args.host` and `args.path`, exactly as
/// `edgeroute resolve` prints the native one: as text, as one JSON object,
/// or explained step by step (the native resolver's trace, after checking
/// that its answer is the module's). A refused host that looks like a URL
/// or a Unicode name gets a hint on stderr.
pub fn run(args: &ResolveArgs) -> Result<()> {
    let (router, bytes) = load(&args.snapshot)?;
    let (host, target) = (args.host.as_encoded_bytes(), args.path.as_encoded_bytes());
    let mut worker = router.worker();
    let answer = worker.resolve(host, target)?;
    let refused = matches!(answer, Resolution::BadRequest(_));
    if args.json {
        println!("{}", answer.json());
    } else if args.explain {
        // The module has no trace; the native resolver has, and answers the same.
        let native = Snapshot::from_bytes(&bytes[..])?;
        let expected = native.resolve(host, target).json().to_string();
        ensure!(
            answer.json().to_string() == expected,
            "the module answered {} where the native resolver answers {expected}",
            answer.json()
        );
        print!("{}", edgeroute_edge::explain(&native, host, target));
    } else {
        println!("{answer}");
    }
    if refused {
        if let Some(hint) = edgeroute_cli::hint::host_value(host) {
            eprintln!("hint: {hint}");
        }
    }
    Ok(())
}
