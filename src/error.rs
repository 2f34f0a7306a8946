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
    /// Making the node ready failed: SSH, key install, upload or a script. `source` is the
    /// transport's own error when there is one; the message ends with its chain.
    #[error("{node}: {message}{}", Chain(source.as_ref()))]
    Deploy {
        node: String,
        message: String,
        #[source]
        source: Option<Cause>,
    },
    /// A deadline passed (node never running, SSH never ready, script too long).
    #[error("{0}")]
    Timeout(String),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// Anything else: an I/O failure on this machine, a bug.
    #[error(transparent)]
    Unexpected(Unexpected),
}

/// The typed cause an error keeps (`std::error::Error::source`), so the whole chain is there
/// for messages and for code that asks (`io::ErrorKind`, libssh2's code, reqwest's kind).
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Ssh(#[from] ssh2::Error),
    /// Always without its URL ([`Error::http`]): a URL may carry a secret.
    #[error(transparent)]
    Http(reqwest::Error),
}

/// [`Error::Unexpected`]'s payload: what failed, and the cause when it was a typed error.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", Chain(source.as_ref()))]
pub struct Unexpected {
    message: String,
    #[source]
    source: Option<Cause>,
}

/// `: cause: its cause: ...` — the chain of an error's sources, on one line; nothing for none.
struct Chain<'a>(Option<&'a Cause>);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cause) => write!(f, ": {}", chain(cause)),
            None => Ok(()),
        }
    }
}

/// An error and its sources, on one line: `error: cause: its cause`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let text = c.to_string();
        // wrappers (io::Error around a library error) often repeat their cause's text
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = c.source();
    }
    s
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
        Error::Unexpected(Unexpected {
            message: msg.to_string(),
            source: None,
        })
    }

    pub fn deploy(node: &str, msg: impl fmt::Display) -> Self {
        Error::Deploy {
            node: node.to_string(),
            message: msg.to_string(),
            source: None,
        }
    }

    /// An I/O error about a path (or another thing on this machine): `WHAT: CAUSE`, the
    /// `io::Error` kept as the source.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        Self::unexpected_from(what, err)
    }

    /// An unexpected failure of `what` with a typed cause: `WHAT: CAUSE`.
    pub fn unexpected_from(what: impl fmt::Display, err: impl Into<Cause>) -> Self {
        Error::Unexpected(Unexpected {
            message: what.to_string(),
            source: Some(err.into()),
        })
    }

    /// Making `node` ready failed because of `err` (the SSH transport, a local file): `NODE:
    /// WHAT: CAUSE`, exit 14, the cause kept as the source.
    pub fn deploy_from(node: &str, what: impl fmt::Display, err: impl Into<Cause>) -> Self {
        Error::Deploy {
            node: node.to_string(),
            message: what.to_string(),
            source: Some(err.into()),
        }
    }

    /// An HTTP client failure outside a provider's answer (building the client): `WHAT: CAUSE:
    /// ...`, with reqwest's chain and without the URL, which may carry a secret.
    pub fn http(what: impl fmt::Display, err: reqwest::Error) -> Self {
        Self::unexpected_from(what, Cause::Http(err.without_url()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_keeps_the_message_and_the_typed_cause() {
        let e = Error::io(
            "/etc/x",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(e.to_string(), "/etc/x: gone");
        assert_eq!(e.code(), code::UNEXPECTED);
        assert!(matches!(e, Error::Unexpected(_)));
        let Some(Cause::Io(io)) = e.source().and_then(|s| s.downcast_ref::<Cause>()) else {
            panic!("the io::Error is the source: {:?}", e.source());
        };
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(Error::unexpected("plain").source().is_none());
    }

    #[test]
    fn deploy_from_names_the_node_and_keeps_the_chain() {
        let inner = std::io::Error::other("libssh2: socket closed");
        let e = Error::deploy_from(
            "web-1",
            "SSH to root@127.0.0.2:22 failed while uploading",
            inner,
        );
        assert_eq!(
            e.to_string(),
            "web-1: SSH to root@127.0.0.2:22 failed while uploading: libssh2: socket closed"
        );
        assert_eq!(e.code(), code::DEPLOYMENT);
        assert!(matches!(e, Error::Deploy { .. }));
        assert!(e.source().is_some());
        let ssh = Error::deploy_from(
            "web-1",
            "opening a channel",
            ssh2::Error::new(ssh2::ErrorCode::Session(-7), "Unable to send"),
        );
        assert_eq!(
            ssh.to_string(),
            "web-1: opening a channel: [Session(-7)] Unable to send"
        );
        assert!(matches!(
            ssh.source().and_then(|s| s.downcast_ref::<Cause>()),
            Some(Cause::Ssh(s)) if s.code() == ssh2::ErrorCode::Session(-7)
        ));
        assert_eq!(
            Error::deploy("web-1", "script failed").to_string(),
            "web-1: script failed"
        );
    }

    #[test]
    fn http_keeps_reqwests_chain_without_the_url() {
        let err = reqwest::blocking::Client::new()
            .get("http://127.0.0.1:1/v2/account?token=SECRET-TOKEN-123")
            .send()
            .expect_err("nothing listens on port 1");
        let e = Error::http("calling the API", err);
        let text = e.to_string();
        assert!(text.starts_with("calling the API: "), "{text}");
        assert!(!text.contains("SECRET-TOKEN-123"), "{text}");
        assert!(!text.contains("127.0.0.1:1/v2"), "{text}");
        // the chain reaches the operating system's refusal, not just reqwest's summary
        assert!(
            text.to_lowercase().contains("refused"),
            "the cause chain is kept: {text}"
        );
        assert!(e.source().is_some());
    }

    #[test]
    fn chain_joins_causes_once() {
        let inner = std::io::Error::other("disk full");
        let e = Error::io("state", inner);
        assert_eq!(chain(&e), "state: disk full");
    }
}
