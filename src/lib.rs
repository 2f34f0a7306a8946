//! provision: create machines on clouds and make them ready over SSH.
//!
//! Thin binaries (`deploy-node`, `list-nodes`, `destroy-node`, `node`) parse flags in [`cli`]
//! and call into this library. Data flows: flags + env + config layers ([`config`]) → a
//! validated [`plan::Plan`] (templates rendered by `template`) → a [`provider`] creates the
//! node → SSH makes it ready → `output` reports. [`exit`] is the one place errors become
//! exit codes. See DESIGN.md in the repository for the whole contract.

pub mod address;
pub mod applied;
pub mod bastion;
pub mod cli;
pub mod completions;
pub mod config;
pub mod deploy;
pub(crate) mod describe;
pub mod description;
pub mod destroy;
pub mod destroyed;
pub mod error;
pub mod exit;
pub mod expiry;
pub mod file_content;
pub mod journal;
pub mod junit;
pub mod known_nodes;
pub(crate) mod listing;
pub mod node;
pub(crate) mod output;
pub mod phases;
pub mod plan;
pub(crate) mod pool;
pub(crate) mod prompt;
pub mod provider;
pub mod reprovision;
pub mod ssh;
pub(crate) mod state;
pub mod template;
pub mod vars;

pub use error::{Error, Result};

/// Now, as RFC 3339 UTC (for node records, tags and the journal).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
