//! The `local` driver, the built-in default: a node is a private OpenSSH server on a loopback
//! address, so deploy-node, list-nodes and destroy-node work end to end with no cloud account
//! (quick starts, tests of scripts, the suite's own tests).
//!
//! `create` writes a per-node directory under `state_dir()/local/<name>/` (node.json,
//! sshd_config, a fresh ed25519 host key, authorized_keys, sshd.log, sshd.pid) and starts
//! `sshd -f <that config>` as the invoking user. sshd daemonizes (forks, `setsid`), so the
//! node outlives deploy-node. Its host key is known before the first connection, so the SSH
//! engine pins it. `destroy` stops sshd and everything started in its sessions, then removes
//! the directory.

mod procs;
mod sshd;

pub use sshd::{banner, check_available, current_user, sshd_path};

use super::{
    Destroyed, Node, NodeSpec, NodeState, Provider, SshEndpoint, TAG_CREATED, TAG_MANAGED,
};
use crate::error::{Error, Result};
use crate::{output, state};
use serde::{Deserialize, Serialize};
use sshd::{bind_failed, free_port, log_tail, wait_listening, START_TIMEOUT};
use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The loopback address local nodes listen on.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// The privilege-separation directory sshd insists on when started as root.
const PRIVSEP_DIR: &str = "/run/sshd";
/// The variable sshd exports into every session of a node, so `destroy` finds its processes.
const MARKER_VAR: &str = "PROVISION_LOCAL_NODE";
/// Ports tried when another process grabs the free port between our probe and sshd's bind.
const START_ATTEMPTS: usize = 5;

/// What `node.json` holds about a local node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub name: String,
    pub address: String,
    pub port: u16,
    /// The daemonized sshd listener.
    pub pid: u32,
    /// The login user: the user that ran `create` (sshd runs as it).
    pub user: String,
    /// `ssh-ed25519 AAAA...`, pinned by the SSH engine.
    pub host_key: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub image: String,
    pub size: String,
    pub location: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// The `local` provider. Cheap to construct; all state lives on disk.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    /// `<state dir>/local`: one subdirectory per node.
    dir: PathBuf,
    /// The sshd to run; `None`: [`sshd_path`].
    sshd: Option<PathBuf>,
}

impl Default for LocalProvider {
    fn default() -> Self {
        Self::new()
    }
}

/// Node names become directory names: letters, digits, `.`, `_`, `-`, not starting with `.`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl LocalProvider {
    /// Nodes under [`state::state_dir()`]`/local` (`$PROVISION_STATE_DIR` or the XDG state dir).
    pub fn new() -> Self {
        Self::with_state_dir(&state::state_dir())
    }

    /// Nodes under `state_dir/local`: tests pass their own directory instead of the env var.
    pub fn with_state_dir(state_dir: &Path) -> Self {
        LocalProvider {
            dir: state_dir.join("local"),
            sshd: None,
        }
    }

    /// Runs `sshd` instead of the installed one (tests, non-standard installs).
    pub fn with_sshd(mut self, sshd: &Path) -> Self {
        self.sshd = Some(sshd.to_path_buf());
        self
    }

    /// The directory of node `name` (which need not exist).
    pub fn node_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads a node's record; `Ok(None)` when there is no such node.
    pub fn record(&self, name: &str) -> Result<Option<NodeRecord>> {
        if !valid_name(name) {
            return Ok(None);
        }
        let path = self.node_dir(name).join("node.json");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::unexpected(format!("corrupt {}: {e}", path.display())))
    }

    fn config_path(&self, name: &str) -> PathBuf {
        self.node_dir(name).join("sshd_config")
    }

    fn marker(&self, name: &str) -> String {
        format!("{MARKER_VAR}={}", self.node_dir(name).display())
    }

    /// True when the record's sshd is alive and is really that node's sshd.
    fn running(&self, rec: &NodeRecord) -> bool {
        let conf = self.config_path(&rec.name);
        procs::is_ours(rec.pid, &conf.to_string_lossy())
    }

    fn to_node(&self, rec: &NodeRecord) -> Node {
        Node {
            id: rec.id.clone(),
            name: rec.name.clone(),
            state: if self.running(rec) {
                NodeState::Running
            } else {
                NodeState::Stopped
            },
            public_ip: Some(rec.address.clone()),
            private_ip: None,
            image: Some(rec.image.clone()),
            size: Some(rec.size.clone()),
            location: Some(rec.location.clone()),
            created: Some(rec.created.clone()),
            tags: rec.tags.clone(),
            ssh: SshEndpoint {
                port: Some(rec.port),
                user: Some(rec.user.clone()),
                host_key: Some(rec.host_key.clone()),
                identity: None,
            },
        }
    }

    fn sshd_config(&self, name: &str, port: u16) -> String {
        sshd::config_text(&self.node_dir(name), name, port, &self.marker(name))
    }

    /// Writes everything but sshd_config and returns the host public key line.
    fn write_files(&self, spec: &NodeSpec) -> Result<String> {
        use ssh_key::{Algorithm, LineEnding, PrivateKey};
        let d = self.node_dir(&spec.name);
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
            .map_err(|e| Error::unexpected(format!("cannot generate a host key: {e}")))?;
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| Error::unexpected(format!("cannot encode the host key: {e}")))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| Error::unexpected(format!("cannot encode the host key: {e}")))?;
        state::write_atomic(&d.join("ssh_host_ed25519_key"), private.as_bytes(), 0o600)?;
        state::write_atomic(
            &d.join("ssh_host_ed25519_key.pub"),
            format!("{public}\n").as_bytes(),
            0o644,
        )?;
        let mut keys = String::new();
        for k in &spec.public_keys {
            keys.push_str(k.trim_end());
            keys.push('\n');
        }
        state::write_atomic(&d.join("authorized_keys"), keys.as_bytes(), 0o600)?;
        state::write_atomic(&d.join("sshd.log"), b"", 0o600)?;
        Ok(public)
    }

    /// Starts sshd on a free port; retries with another port when the bind races.
    fn start(&self, name: &str, sshd: &Path) -> Result<(u16, u32)> {
        let d = self.node_dir(name);
        let log_path = d.join("sshd.log");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let conf = self.config_path(name);
            state::write_atomic(&conf, self.sshd_config(name, port).as_bytes(), 0o600)?;
            let _ = fs::remove_file(d.join("sshd.pid"));
            let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
            let log = fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))?;
            let err_log = log
                .try_clone()
                .map_err(|e| Error::io("cannot duplicate the log file", e))?;
            // -f first: the config path stays in the process title, which `list` checks.
            let status = Command::new(sshd)
                .arg("-f")
                .arg(&conf)
                .arg("-E")
                .arg(&log_path)
                .current_dir(&d)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err_log)
                .status()
                .map_err(|e| Error::io(format!("cannot run {}", sshd.display()), e))?;
            let outcome = if status.success() {
                wait_listening(&d, port, log_start)
            } else {
                Err(None)
            };
            match outcome {
                Ok(pid) => return Ok((port, pid)),
                Err(pid) => {
                    if let Some(pid) = pid {
                        procs::kill_node(Some(pid), &self.marker(name), Duration::from_secs(1));
                    }
                    last = log_tail(&log_path, log_start);
                    if last.is_empty() {
                        last = format!(
                            "sshd exited ({status}) or did not listen within {START_TIMEOUT:?}"
                        );
                    }
                    if !bind_failed(&last) {
                        break;
                    }
                    output::debug(&format!("local node {name}: port {port} taken, retrying"));
                }
            }
        }
        Err(Error::Api {
            provider: "local".into(),
            message: format!("node {name}: sshd did not start: {last}"),
        })
    }

    fn create_in_dir(&self, spec: &NodeSpec, sshd: &Path) -> Result<Node> {
        let host_key = self.write_files(spec)?;
        if unsafe { libc::geteuid() } == 0 {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(PRIVSEP_DIR)
                .map_err(|e| Error::io(format!("cannot create {PRIVSEP_DIR}"), e))?;
        }
        let (port, pid) = self.start(&spec.name, sshd)?;
        let created = now_rfc3339();
        let mut tags = spec.tags.clone();
        tags.entry(TAG_MANAGED.to_string())
            .or_insert_with(|| "true".to_string());
        tags.entry(TAG_CREATED.to_string())
            .or_insert_with(|| created.clone());
        let or_local = |s: &str| {
            if s.is_empty() {
                "local".to_string()
            } else {
                s.to_string()
            }
        };
        let rec = NodeRecord {
            id: spec.name.clone(),
            name: spec.name.clone(),
            address: ADDRESS.to_string(),
            port,
            pid,
            user: current_user(),
            host_key,
            created,
            image: or_local(&spec.image),
            size: or_local(&spec.size),
            location: or_local(&spec.location),
            tags,
        };
        if let Err(e) = state::write_json_atomic(&self.node_dir(&spec.name).join("node.json"), &rec)
        {
            procs::kill_node(Some(pid), &self.marker(&spec.name), Duration::from_secs(1));
            return Err(e);
        }
        output::debug(&format!(
            "local node {}: sshd pid {pid} listening on {ADDRESS}:{port}",
            spec.name
        ));
        Ok(self.to_node(&rec))
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    fn create(&self, spec: &NodeSpec) -> Result<Node> {
        if !valid_name(&spec.name) {
            return Err(Error::usage(format!(
                "invalid local node name '{}': use letters, digits, '.', '_' and '-'",
                spec.name
            )));
        }
        let sshd = match &self.sshd {
            Some(p) => p.clone(),
            None => sshd_path()?,
        };
        state::ensure_dir(&self.dir)?;
        let d = self.node_dir(&spec.name);
        // create_dir (not create_dir_all) fails if it exists: the name is claimed atomically.
        {
            if let Err(e) = fs::DirBuilder::new().mode(0o700).create(&d) {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Err(Error::usage(format!(
                        "a local node named '{}' already exists ({}); destroy it first or choose another name",
                        spec.name,
                        d.display()
                    )));
                }
                return Err(Error::io(format!("cannot create {}", d.display()), e));
            }
        }
        let res = self.create_in_dir(spec, &sshd);
        if res.is_err() {
            let _ = fs::remove_dir_all(&d);
        }
        res
    }

    /// Every node directory; all local nodes are ours, so `all` changes nothing. A corrupt
    /// record is warned about and skipped.
    fn list(&self, _all: bool) -> Result<Vec<Node>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("cannot read {}", self.dir.display()), e)),
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        let mut nodes = Vec::new();
        for name in names {
            match self.record(&name) {
                Ok(Some(rec)) => nodes.push(self.to_node(&rec)),
                // Being created right now (no record yet), or a leftover: nothing to show.
                Ok(None) => output::debug(&format!("local node {name}: no node.json, skipped")),
                Err(e) => output::warn(&format!("local node {name} skipped: {e}")),
            }
        }
        Ok(nodes)
    }

    fn get(&self, id: &str) -> Result<Option<Node>> {
        Ok(self.record(id)?.map(|rec| self.to_node(&rec)))
    }

    /// Stops the node's sshd and every process of its sessions, then removes its directory.
    /// Works for nodes whose sshd died and for corrupt records; unknown → `AlreadyGone`.
    fn destroy(&self, id: &str) -> Result<Destroyed> {
        if !valid_name(id) {
            return Ok(Destroyed::AlreadyGone);
        }
        let d = self.node_dir(id);
        if !d.is_dir() {
            return Ok(Destroyed::AlreadyGone);
        }
        let conf = self.config_path(id).to_string_lossy().into_owned();
        let pid_from_file = fs::read_to_string(d.join("sshd.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let pid_from_record = self.record(id).ok().flatten().map(|r| r.pid);
        let root = [pid_from_record, pid_from_file]
            .into_iter()
            .flatten()
            .find(|p| procs::is_ours(*p, &conf));
        let n = procs::kill_node(root, &self.marker(id), Duration::from_secs(2));
        output::debug(&format!("local node {id}: stopped {n} process(es)"));
        fs::remove_dir_all(&d)
            .map_err(|e| Error::io(format!("cannot remove {}", d.display()), e))?;
        Ok(Destroyed::Destroyed)
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(50)
    }
}
