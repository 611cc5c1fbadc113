//! `edgeroute watch`: publish on every change to a table.

use anyhow::Result;
use edgeroute_control::watch;

use super::Aws;
use crate::flags::WatchArgs;

/// Follows the table's stream (or scans it periodically) and publishes a
/// new snapshot after every burst of changes, until Ctrl-C.
pub fn run(args: &WatchArgs) -> Result<()> {
    let mut aws = Aws::new(args.aws.options());
    let config = aws.config()?;
    let store = aws.store(&args.store)?;
    let options = args.options();
    eprintln!("info: watching {}, publishing to {}", args.table, args.store);
    aws.block_on(async {
        tokio::select! {
            result = watch::watch(&config, &args.table, &store, &options) => result.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("info: stopped");
                Ok(())
            }
        }
    })?
}
