//! The one error type of the suite. Each variant is a kind of failure a user or a script
//! can act on, and knows its exit code (DESIGN.md's table), so `exit.rs` is the only place
//! that turns an error into a process exit.

use std::fmt;

/// Exit codes of the original tool, kept for scripts that test them.
pub mod code {
    pub const OK: i32 = 0;
    pub const NOT_DESTROYED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const TESTS_FAILED: i32 = 3;
    pub const UNEXPECTED: i32 = 11;
    pub const MALFORMED_RESPONSE: i32 = 12;
    pub const PROVIDER_UNAVAILABLE: i32 = 13;
    pub const DEPLOYMENT: i32 = 14;
    pub const TIMEOUT: i32 = 15;
    pub const INTERRUPTED: i32 = 130;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags or arguments: nothing was created.
    #[error("{0}")]
    Usage(String),
    /// Bad configuration (a file, bundle, variable, template or provider): nothing was created.
    #[error("{0}")]
    Config(String),
    /// destroy-node: a test-results file could not be read as JUnit; nothing was destroyed.
    #[error("{0}")]
    Results(String),
    /// destroy-node: not every test passed (or none ran); nothing was destroyed.
    #[error("{0}")]
    TestsFailed(String),
    /// destroy-node: a node could not be destroyed, was not found, or destroying it was refused.
    #[error("{0}")]
    NotDestroyed(String),
    /// A provider answered with something that is not its API's shape.
    #[error("{provider}: malformed response: {message}")]
    Malformed { provider: String, message: String },
    /// A provider stayed unavailable (5xx/429/connection errors) after retries.
    #[error("{provider}: unavailable: {message}")]
    Unavailable { provider: String, message: String },
    /// A provider refused a request (4xx other than 429), with its own message.
    #[error("{provider}: {message}")]
    Api { provider: String, message: String },
    /// Making the node ready failed: SSH, key install, upload or a script.
    #[error("{node}: {message}")]
    Deploy { node: String, message: String },
    /// A deadline passed (node never running, SSH never ready, script too long).
    #[error("{0}")]
    Timeout(String),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// Anything else: an I/O failure on this machine, a bug.
    #[error("{0}")]
    Unexpected(String),
}

impl Error {
    /// The process exit code for this error (DESIGN.md, "Exit codes").
    pub fn code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) | Error::Results(_) => code::USAGE,
            Error::TestsFailed(_) => code::TESTS_FAILED,
            Error::NotDestroyed(_) => code::NOT_DESTROYED,
            Error::Malformed { .. } => code::MALFORMED_RESPONSE,
            Error::Unavailable { .. } => code::PROVIDER_UNAVAILABLE,
            Error::Api { .. } | Error::Unexpected(_) => code::UNEXPECTED,
            Error::Deploy { .. } => code::DEPLOYMENT,
            Error::Timeout(_) => code::TIMEOUT,
            Error::Interrupted => code::INTERRUPTED,
        }
    }

    pub fn config(msg: impl fmt::Display) -> Self {
        Error::Config(msg.to_string())
    }

    pub fn usage(msg: impl fmt::Display) -> Self {
        Error::Usage(msg.to_string())
    }

    pub fn unexpected(msg: impl fmt::Display) -> Self {
        Error::Unexpected(msg.to_string())
    }

    pub fn deploy(node: &str, msg: impl fmt::Display) -> Self {
        Error::Deploy {
            node: node.to_string(),
            message: msg.to_string(),
        }
    }

    /// An I/O error about a path, with the path and the cause in one line.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        Error::Unexpected(format!("{what}: {err}"))
    }
}
