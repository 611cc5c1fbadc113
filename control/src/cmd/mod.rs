//! One module per command of `edgeroute`, each with one documented entry
//! point that `main` dispatches to, and the context they share: [`Aws`],
//! the one way a command gets an async runtime, an AWS configuration and a
//! store.

pub mod apply;
pub mod compile;
pub mod env;
pub mod inspect;
pub mod publish;
pub mod resolve;
pub mod store;
pub mod watch;

use std::future::Future;
use std::path::Path;

use anyhow::{Context as _, Result};
use edgeroute_control::aws::{load_config, AwsOptions};
use edgeroute_edge::Snapshot;
use edgeroute_store::{Store, StoreLocation};

/// The tokio runtime and the AWS configuration, made on first use: a
/// command that reads a JSON file whose ARN Targets all have their Origin,
/// or a `dir:` store, never starts either and never looks for credentials.
pub struct Aws {
    options: AwsOptions,
    runtime: Option<tokio::runtime::Runtime>,
    config: Option<aws_config::SdkConfig>,
}

impl Aws {
    pub fn new(options: AwsOptions) -> Aws {
        Aws { options, runtime: None, config: None }
    }

    /// Runs `future` to completion on the runtime.
    pub fn block_on<F: Future>(&mut self, future: F) -> Result<F::Output> {
        Ok(self.runtime()?.block_on(future))
    }

    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime> {
        if self.runtime.is_none() {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
            self.runtime = Some(runtime);
        }
        Ok(self.runtime.as_ref().expect("just made"))
    }

    /// The AWS configuration: the flags over the environment and `~/.aws`.
    pub fn config(&mut self) -> Result<aws_config::SdkConfig> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
        }
        let options = self.options.clone();
        let config = self.block_on(load_config(&options))??;
        self.config = Some(config.clone());
        Ok(config)
    }

    /// Opens a store to write it (created if it is a directory that is not
    /// there yet); only an S3 store loads the AWS configuration.
    pub fn store(&mut self, location: &StoreLocation) -> Result<Store> {
        let config = self.store_config(location)?;
        Ok(Store::open(location, config.as_ref())?)
    }

    /// Opens a store that must exist, to read it: nothing is created.
    pub fn existing_store(&mut self, location: &StoreLocation) -> Result<Store> {
        let config = self.store_config(location)?;
        Ok(Store::open_existing(location, config.as_ref())?)
    }

    fn store_config(&mut self, location: &StoreLocation) -> Result<Option<aws_config::SdkConfig>> {
        Ok(match location {
            StoreLocation::S3 { .. } => Some(self.config()?),
            StoreLocation::Dir(_) => None,
        })
    }
}

/// Reads and validates a snapshot file.
pub fn load_snapshot(path: &Path) -> Result<Snapshot<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
    Snapshot::from_bytes(bytes).with_context(|| format!("cannot use snapshot {}", path.display()))
}
