//! The control plane's tests, in one binary (one link, one process): the
//! `edgeroute` CLI, reading tables from DynamoDB, exports and ELB names on
//! moto, publishing to stores, watching streams, and environments.

mod integration {
    pub mod cli;
    pub mod dynamodb;
    pub mod env;
    pub mod layers;
    pub mod newcomer;
    pub mod publish;
    pub mod watch;
}
