//! Shared test support: real OpenSSH servers on loopback, client keys, and a runner for the
//! real binaries. Each integration test binary includes what it needs.

pub mod cli;
pub mod cloudnodes;
pub mod fakecloud;
pub mod moto;
pub mod motoproxy;
pub mod netns;
pub mod prism;
pub mod procs;
pub mod sshd;
pub mod tools;
