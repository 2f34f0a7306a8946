//! provision: create machines on clouds and make them ready over SSH.
//!
//! Three thin binaries (`deploy-node`, `list-nodes`, `destroy-node`) parse flags in [`cli`]
//! and call into this library. Data flows: flags + env + config layers ([`config`]) → a
//! validated [`plan::Plan`] (templates rendered by [`template`]) → a [`provider`] creates the
//! node → SSH makes it ready → [`output`] reports. [`exit`] is the one place errors become
//! exit codes. See DESIGN.md in the repository for the whole contract.

pub mod cli;
pub mod config;
pub mod error;
pub mod exit;
pub mod output;
pub mod plan;
pub mod provider;
pub mod ssh;
pub mod template;

pub use error::{Error, Result};
