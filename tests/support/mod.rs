//! Shared test support: real OpenSSH servers on loopback, client keys, and a runner for the
//! real binaries. Each integration test binary includes what it needs.
#![allow(dead_code, unreachable_pub)]

pub mod cli;
pub mod sshd;
