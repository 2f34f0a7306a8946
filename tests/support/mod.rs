//! Shared test support: each integration test binary includes what it needs.
#![allow(dead_code)]
pub mod cli;
