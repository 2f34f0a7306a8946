//! Shared test helpers: real OpenSSH servers on loopback and client keys.
#![allow(dead_code)]

pub mod sshd;
