//! `edgeroute-cli`: what the two binaries (`edgeroute`, `edgeroute-host`)
//! share where they meet a person: an error as [one line](report::one_line)
//! with each cause once, and [hints](hint) for what was typed. Small on
//! purpose, so that the data plane links neither the compiler nor an SDK
//! for it.

pub mod help;
pub mod hint;
pub mod report;
pub mod resolve;
