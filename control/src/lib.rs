//! `edgeroute-control` is edgeroute's control plane: the `edgeroute` binary
//! and everything it does that talks to AWS. It reads routing tables that
//! live in AWS (a DynamoDB table through a parallel [`scan`], an export in
//! S3 through [`export_s3`]), asks the ELBv2 API for load balancers' names
//! ([`elb`]), and hands the items to `edgeroute-compiler`; it [`publish`]es
//! snapshots to stores, [`watch`]es a table's stream to publish on every
//! change, and manages preview environments and handle pools ([`env`]).

pub mod aws;
pub mod clock;
pub mod elb;
pub mod env;
pub mod export_s3;
pub mod lease;
pub mod lineage;
pub mod publish;
pub mod scan;
pub mod source;
pub mod state;
pub mod watch;

pub use crate::source::Source;
