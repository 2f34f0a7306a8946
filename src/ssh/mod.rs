//! The SSH engine: makes a running node ready. It exists so that everything deploy does on a
//! node goes over one checked, authenticated connection in as few round trips as possible.
//!
//! [`connect`] waits (with backoff, against one deadline) for the TCP port, the SSH banner and
//! authentication, and checks the host key on every connection ([`HostKeyCheck`]).
//! [`Connection::provision`] then sends keys, files and scripts as ONE tar stream over ONE exec
//! channel; a small POSIX sh runner on the node unpacks it into a private staging directory,
//! appends keys, moves files into place atomically, places the scripts and runs them in order,
//! framing each script's output with a random nonce marker so the output can be streamed live
//! and kept per script. One TCP connection, one session, one exec channel per provision —
//! independent of the number of files and scripts.
//!
//! The engine never knows which provider made the node and prints only through
//! `crate::output`.

mod connect;
mod files_tar;
mod hostkey;
pub mod jump;
pub mod known_hosts;
pub mod login;
mod negotiate;
mod pump;
mod remote;

use crate::error::{Error, Result};
use serde::Serialize;
use ssh2::Session;
use std::os::unix::io::RawFd;
use std::path::PathBuf;
use std::time::Duration;

pub use connect::{connect, connect_timed};
pub use jump::{Jump, JumpHost};

/// How the node's host key is checked. It is always checked; [`HostKeyCheck::Insecure`] says so
/// with a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// The driver knows the key: an OpenSSH public key line (`ssh-ed25519 AAAA... [comment]`).
    Pinned(String),
    /// Trust on first use, recorded in the tool's own known_hosts file (OpenSSH format); a
    /// changed key is refused.
    KnownHosts(PathBuf),
    /// Accept any key, with a warning naming its fingerprint.
    Insecure,
}

/// Where and how to reach a node.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node's name, for messages.
    pub node: String,
    /// Host name or IP address.
    pub host: String,
    pub port: u16,
    /// Login user.
    pub user: String,
    pub host_key: HostKeyCheck,
    /// Private key files to try, in order: explicit `--identity` first, then driver-provided.
    /// The user's default keys (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`) are tried after.
    pub identities: Vec<PathBuf>,
    /// Try ssh-agent first (when `SSH_AUTH_SOCK` is set).
    pub use_agent: bool,
    /// Reach `host:port` through this bastion (shared by every node of a run) instead of
    /// connecting directly.
    pub jump: Option<std::sync::Arc<Jump>>,
}

/// Paths on the node used by [`Connection::provision`]. A leading `~/` is the login user's home
/// and `~root/` root's home, expanded on the node. Tests point these into temp dirs so they never
/// touch the real `/root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePaths {
    /// The login user's authorized_keys.
    pub login_keys: String,
    /// Root's authorized_keys (only written when root is reachable).
    pub root_keys: String,
    /// Where scripts are put and run when root is reachable.
    pub script_dir: String,
    /// Where scripts are put and run (as the login user) when root is not reachable.
    pub user_script_dir: String,
}

impl Default for RemotePaths {
    fn default() -> Self {
        RemotePaths {
            login_keys: "~/.ssh/authorized_keys".into(),
            root_keys: "~root/.ssh/authorized_keys".into(),
            script_dir: crate::plan::REMOTE_SCRIPT_DIR.into(),
            user_script_dir: "~/deploy".into(),
        }
    }
}

/// How scripts are run by [`Connection::provision`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run every script even after one failed.
    pub keep_going: bool,
    /// Remove the scripts placed by this run once they ran (they held secrets).
    pub remove_scripts: bool,
    /// A script running longer is killed (with its process group) and reported with status
    /// [`TIMEOUT_STATUS`].
    pub script_timeout: Option<Duration>,
    /// Before the first script, wait at most this long for cloud-init to finish (`cloud-init
    /// status --wait`, or `/var/lib/cloud/instance/boot-finished`), in the same exec; `None`:
    /// do not wait. A node without cloud-init costs nothing.
    pub cloud_init: Option<Duration>,
}

/// The exit status reported for a script killed by `script_timeout` (as timeout(1)).
pub const TIMEOUT_STATUS: i32 = 124;

/// What a provision step was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Keys,
    Files,
    Script,
}

/// One step of a provision: installing keys, writing files, or one script.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// `keys`, `files`, or the script's name.
    pub name: String,
    pub kind: StepKind,
    /// Exit status; `None` when it did not run.
    pub status: Option<i32>,
    pub duration: Duration,
    pub stdout: String,
    pub stderr: String,
    /// Not run because an earlier script failed (and not `keep_going`).
    pub skipped: bool,
}

impl StepReport {
    /// Ran and exited 0.
    pub fn succeeded(&self) -> bool {
        self.status == Some(0)
    }
}

/// Every step of one provision, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProvisionReport {
    pub steps: Vec<StepReport>,
    /// From the start of provisioning until keys, files and scripts were in place.
    pub upload: Option<Duration>,
    /// From then until the first script started (waiting for cloud-init); `None` without
    /// scripts.
    pub cloud_init: Option<Duration>,
}

impl ProvisionReport {
    /// The first script that ran and failed.
    pub fn failed_script(&self) -> Option<&StepReport> {
        self.steps
            .iter()
            .find(|s| s.kind == StepKind::Script && matches!(s.status, Some(c) if c != 0))
    }
}

/// An authenticated SSH session to one node: one TCP connection, one session.
pub struct Connection {
    session: Session,
    fd: RawFd,
    node: String,
    user: String,
    addr: String,
    channels: usize,
    paths: RemotePaths,
    /// How long connecting took in each phase: TCP port open, SSH banner, authentication.
    phases: [Duration; 3],
}

impl Connection {
    /// How long connecting took: until the port first answered (`tcp`), until the first good
    /// banner (`banner`), until authenticated (`auth`). They add up to the whole wait.
    pub fn phases(&self) -> [(&'static str, Duration); 3] {
        [
            ("tcp", self.phases[0]),
            ("banner", self.phases[1]),
            ("auth", self.phases[2]),
        ]
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The host key the node showed on this (checked) connection, as an OpenSSH public key
    /// line, for remembering it.
    pub fn host_key_line(&self) -> Option<String> {
        let (blob, _) = self.session.host_key()?;
        Some(format!("{} {}", key_type(blob)?, b64(blob)))
    }

    /// How many channels this connection has opened (each exec is one).
    pub fn channels_opened(&self) -> usize {
        self.channels
    }

    /// Overrides the node paths [`Connection::provision`] writes to (tests).
    pub fn set_remote_paths(&mut self, paths: RemotePaths) {
        self.paths = paths;
    }

    /// Runs `command` with the login user's shell and returns (exit status, stdout, stderr).
    /// One exec channel; stdin is empty.
    pub fn exec(&mut self, command: &str) -> Result<(i32, String, String)> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let status = {
            let mut channel = self.open_exec(command)?;
            let mut sink = |is_err: bool, data: &[u8]| {
                if is_err { &mut err } else { &mut out }.extend_from_slice(data);
                false
            };
            pump::pump(
                &self.session,
                self.fd,
                &mut channel,
                &mut std::io::empty(),
                None,
                &mut sink,
            )
            .map_err(|e| self.transport(&format!("running {command:?}"), e))?;
            pump::finish(&self.session, &mut channel)
                .map_err(|e| self.transport(&format!("running {command:?}"), e))?
        };
        Ok((
            status.unwrap_or(-1),
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }

    /// Runs `command` with the login user's shell on one exec channel, sending `stdin` (then
    /// EOF) and handing stdout (`false`) and stderr (`true`) data to `sink` as it arrives, kept
    /// apart. Returns the remote exit status (-1 when the node reported none, e.g. a signal).
    pub fn exec_streamed(
        &mut self,
        command: &str,
        stdin: &[u8],
        sink: &mut dyn FnMut(bool, &[u8]),
    ) -> Result<i32> {
        let mut channel = self.open_exec(command)?;
        let mut each = |is_err: bool, data: &[u8]| {
            sink(is_err, data);
            false
        };
        pump::pump(
            &self.session,
            self.fd,
            &mut channel,
            &mut std::io::Cursor::new(stdin),
            None,
            &mut each,
        )
        .map_err(|e| self.transport(&format!("running {command:?}"), e))?;
        let status = pump::finish(&self.session, &mut channel)
            .map_err(|e| self.transport(&format!("running {command:?}"), e))?;
        Ok(status.unwrap_or(-1))
    }

    /// Installs the plan on the node over one exec channel:
    /// (1) appends every plan public key to the login user's and root's authorized_keys (no
    /// duplicates; `.ssh` 0700, file 0600; root's only when root is reachable: the login is root
    /// or `sudo -n` works); (2) writes every file to its absolute target atomically (temp file in
    /// the same directory + rename), creating parent directories, with its mode; (3) puts the
    /// scripts in the script directory as `remote_name` and runs them in order (interpreter from
    /// the shebang, `sh` without one), streaming each output line live through
    /// `on_line(script_name, is_stderr, line)`. Stops at the first failing script unless
    /// `keep_going`; a script running past `script_timeout` is killed with its process group and
    /// reported with status [`TIMEOUT_STATUS`]. Non-root logins reach root through `sudo -n`.
    ///
    /// Returns the report when the transport worked, even if a script failed; `Error::Deploy`
    /// when SSH, key installation or a file write failed.
    pub fn provision(
        &mut self,
        plan: &crate::plan::Plan,
        opts: &RunOptions,
        on_line: &mut dyn FnMut(&str, bool, &str),
    ) -> Result<ProvisionReport> {
        remote::provision(self, plan, opts, on_line, &mut Vec::new())
    }

    /// [`Connection::provision`], and when it fails the phases it got through in `reached`
    /// (upload, cloud-init, each script) ending with the one it broke in, marked failed.
    pub fn provision_timed(
        &mut self,
        plan: &crate::plan::Plan,
        opts: &RunOptions,
        on_line: &mut dyn FnMut(&str, bool, &str),
        reached: &mut Vec<crate::phases::Phase>,
    ) -> Result<ProvisionReport> {
        remote::provision(self, plan, opts, on_line, reached)
    }

    fn open_exec(&mut self, command: &str) -> Result<ssh2::Channel> {
        self.session.set_blocking(true);
        let mut channel = self
            .session
            .channel_session()
            .map_err(|e| self.transport("opening a channel", e.into()))?;
        self.channels += 1;
        channel
            .exec(command)
            .map_err(|e| self.transport("starting a remote command", e.into()))?;
        Ok(channel)
    }

    fn transport(&self, what: &str, e: std::io::Error) -> Error {
        Error::deploy_from(
            &self.node,
            format!("SSH to {}@{} failed while {what}", self.user, self.addr),
            e,
        )
    }
}

/// The SHA256 fingerprint (`SHA256:...`, as `ssh-keygen -l`) of an OpenSSH public key line
/// (`[options] ssh-ed25519 AAAA... [comment]`) or of a raw SSH wire-format key blob.
pub fn fingerprint(key: impl AsRef<[u8]>) -> String {
    let key = key.as_ref();
    let blob = std::str::from_utf8(key)
        .ok()
        .and_then(openssh_blob)
        .unwrap_or_else(|| key.to_vec());
    let digest = ssh_key::HashAlg::Sha256.digest(&blob);
    ssh_key::Fingerprint::Sha256(digest.try_into().expect("SHA256 digests are 32 bytes"))
        .to_string()
}

/// The key blob of an OpenSSH public key line: the first `TYPE BASE64` pair of fields that
/// ssh-key reads as a public key of that type. Accepts leading options (or a known_hosts host
/// field) and a trailing comment.
pub(crate) fn openssh_blob(line: &str) -> Option<Vec<u8>> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    fields.windows(2).find_map(|w| {
        let key = ssh_key::PublicKey::from_openssh(&format!("{} {}", w[0], w[1])).ok()?;
        key.to_bytes().ok()
    })
}

/// The key type name (`ssh-ed25519`, ...) at the start of an SSH key blob.
pub(crate) fn key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

/// The base64 field of a key blob's OpenSSH line (`TYPE BASE64`); empty when ssh-key cannot
/// read the blob.
pub(crate) fn b64(blob: &[u8]) -> String {
    ssh_key::PublicKey::from_bytes(blob)
        .ok()
        .and_then(|k| k.to_openssh().ok())
        .and_then(|line| line.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -lf` of this key prints SHA256:MY7L6nbK1w55j8ZgzBe1xlR98Plbr+ajkyRvcj2qXRo
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPB7Q9QmBx/M4z7mBdMIvUrDkjVGVb4ILLGkugVD0bLJ test";

    #[test]
    fn fingerprint_of_line_and_blob_agree() {
        let blob = openssh_blob(KEY).unwrap();
        assert_eq!(key_type(&blob), Some("ssh-ed25519"));
        assert_eq!(fingerprint(KEY), fingerprint(&blob));
        assert_eq!(
            fingerprint(KEY),
            "SHA256:MY7L6nbK1w55j8ZgzBe1xlR98Plbr+ajkyRvcj2qXRo"
        );
        let with_opts = format!("no-pty,command=\"x y\" {KEY}");
        assert_eq!(fingerprint(&with_opts), fingerprint(KEY));
    }

    #[test]
    fn connection_can_move_to_a_worker_thread() {
        fn send<T: Send>() {}
        send::<Connection>();
    }

    #[test]
    fn failed_script_is_first_nonzero_script() {
        let step = |name: &str, kind, status| StepReport {
            name: name.into(),
            kind,
            status,
            duration: Duration::ZERO,
            stdout: String::new(),
            stderr: String::new(),
            skipped: status.is_none(),
        };
        let r = ProvisionReport {
            steps: vec![
                step("keys", StepKind::Keys, Some(0)),
                step("a", StepKind::Script, Some(0)),
                step("b", StepKind::Script, Some(3)),
                step("c", StepKind::Script, None),
            ],
            upload: None,
            cloud_init: None,
        };
        assert_eq!(r.failed_script().unwrap().name, "b");
    }
}
