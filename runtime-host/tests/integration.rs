//! The data plane's tests, in one binary (one link, one process): the
//! router and its hot swaps, the `edgeroute-host` CLI, HTTP serving, store
//! following, and environments end to end with the control plane.

mod integration {
    pub mod dataplane;
    pub mod environments;
    pub mod host;
    pub mod hostile;
    pub mod layers;
    pub mod s3;
    pub mod serve;
    pub mod tls;
}
