//! Jump hosts (bastions), as OpenSSH's `ProxyJump`: nodes on a private network are reached
//! through one SSH connection to a bastion, shared by every node of a run. Each node session
//! runs over a direct-tcpip channel of that connection, bridged to a local socket pair by one
//! pump thread ([`bridge`]); the bastion's host key is checked like any node's (pinned, or the
//! known_hosts files) and the node's own host key is still checked at the end of the tunnel.
//! No `ssh` process is started.

mod bridge;
mod spec;

pub use spec::JumpHost;

use super::{HostKeyCheck, Target};
use crate::error::{Error, Result};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long one try waits for the bastion to open a channel to the node (as one TCP connect
/// try is bounded when there is no bastion).
const OPEN_LIMIT: Duration = Duration::from_secs(15);

/// One bastion, connected on first use and shared (an `Arc<Jump>` in every node's [`Target`]).
pub struct Jump {
    host: JumpHost,
    user: String,
    host_key: HostKeyCheck,
    identities: Vec<PathBuf>,
    bridge: Mutex<Option<bridge::Bridge>>,
    connections: AtomicUsize,
}

impl std::fmt::Debug for Jump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jump({})", self.label())
    }
}

/// Why a tunnel could not be opened.
pub(super) enum TunnelError {
    /// The bastion refused us (host key, login) or never answered: final.
    Fatal(Error),
    /// The bastion could not reach the node yet (connection refused...): try again.
    Retry(String),
}

impl Jump {
    /// A bastion reached as `host`, logging in as its user (else `default_user`), its host
    /// key checked by `host_key`, authenticating with the agent, then `identities`, then the
    /// user's default keys.
    pub fn new(
        host: JumpHost,
        default_user: &str,
        host_key: HostKeyCheck,
        identities: Vec<PathBuf>,
    ) -> Jump {
        Jump {
            user: host
                .user
                .clone()
                .unwrap_or_else(|| default_user.to_string()),
            host,
            host_key,
            identities,
            bridge: Mutex::new(None),
            connections: AtomicUsize::new(0),
        }
    }

    /// As written by the user.
    pub fn host(&self) -> &JumpHost {
        &self.host
    }

    /// The login user on the bastion.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The bastion's pinned host key, when one is pinned.
    pub fn pinned_key(&self) -> Option<String> {
        match &self.host_key {
            HostKeyCheck::Pinned(k) => Some(k.clone()),
            _ => None,
        }
    }

    /// `user@host:port`, for messages (and [`JumpHost::parse`] reads it back).
    pub fn label(&self) -> String {
        format!("{}@{}", self.user, self.host.address())
    }

    /// How many SSH connections to the bastion were made (one per run unless it was lost).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// A socket whose other end is a direct-tcpip channel from the bastion to `host:port`,
    /// connecting to the bastion first when this run has no connection to it yet. Waits for
    /// the bastion at most until `deadline`.
    pub(super) fn tunnel(
        &self,
        node: &str,
        host: &str,
        port: u16,
        deadline: Instant,
    ) -> std::result::Result<UnixStream, TunnelError> {
        let (mine, theirs) = UnixStream::pair()
            .map_err(|e| TunnelError::Fatal(Error::io("a local socket pair", e)))?;
        let (reply, answer) = mpsc::channel();
        // as a TCP connect try is bounded, so a node the bastion cannot reach is retried
        let until = deadline.min(Instant::now() + OPEN_LIMIT);
        let open = bridge::Open {
            host: host.to_string(),
            port,
            local: theirs,
            reply,
            until,
        };
        {
            let mut slot = self.bridge.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(self.connect(node, deadline).map_err(TunnelError::Fatal)?);
            }
            if !slot.as_ref().is_some_and(|b| b.send(open)) {
                *slot = None;
                return Err(TunnelError::Retry(format!(
                    "the connection to jump host {} was lost",
                    self.label()
                )));
            }
        }
        let left = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        match answer.recv_timeout(left) {
            Ok(Ok(())) => Ok(mine),
            Ok(Err(why)) => Err(TunnelError::Retry(format!(
                "jump host {} cannot reach it: {why}",
                self.label()
            ))),
            Err(_) => Err(TunnelError::Retry(format!(
                "jump host {} opened no channel",
                self.label()
            ))),
        }
    }

    /// Connects and authenticates to the bastion (announced on `node`'s line), and starts the
    /// bridge thread that owns the session from then on.
    fn connect(&self, node: &str, deadline: Instant) -> Result<bridge::Bridge> {
        let target = Target {
            node: node.to_string(),
            host: self.host.host.clone(),
            port: self.host.port,
            user: self.user.clone(),
            host_key: self.host_key.clone(),
            identities: self.identities.clone(),
            use_agent: true,
            jump: None,
        };
        let hop = format!("jump host {}", self.label());
        let conn = super::connect(&target, deadline, &mut || Ok(true)).map_err(|e| match e {
            Error::Deploy {
                node,
                message,
                source,
            } => Error::Deploy {
                node,
                message: format!("{hop}: {message}"),
                source,
            },
            Error::Timeout(m) => Error::Timeout(match m.strip_prefix(&format!("{node}: ")) {
                Some(rest) => format!("{node}: {hop}: {rest}"),
                None => format!("{hop}: {m}"),
            }),
            other => other,
        })?;
        self.connections.fetch_add(1, Ordering::Relaxed);
        crate::output::debug(&format!("{node}: connected to {hop}"));
        let super::Connection { session, fd, .. } = conn;
        bridge::Bridge::start(session, fd, self.label())
            .map_err(|e| Error::deploy_from(node, format!("{hop}: cannot start the bridge"), e))
    }
}
