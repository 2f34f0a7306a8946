//! The `local` driver, the built-in default: a node is a private OpenSSH server on a loopback
//! address, so deploy-node, list-nodes and destroy-node work end to end with no cloud account
//! (quick starts, tests of scripts, the suite's own tests).
//!
//! `create` writes a per-node directory under `state_dir()/local/<name>/` (node.json,
//! sshd_config, a fresh ed25519 host key, authorized_keys, sshd.log, sshd.pid) and starts
//! sshd detached from deploy-node, so the node outlives it. Its host key is known before the
//! first connection, so the SSH engine pins it. `destroy` stops sshd and everything started
//! in its sessions, then removes the directory.
//!
//! As root on Linux a node is isolated (see [`isolate`]): its scripts change the node, not
//! the host, and it listens on its own 127.x.y.z port 22. Otherwise sshd runs as the invoking
//! user on 127.0.0.1 and a free port, and whatever its scripts do, they do to the host.
//!
//! `ipv6 = true` makes the node listen on `::1` too; `ipv4 = false` makes it IPv6-only (on
//! `::1` alone), so the IPv6 paths of the whole suite are tested on loopback.

mod isolate;
mod procs;
mod sshd;

pub use isolate::{isolation_available, Isolation, NO_ISOLATION_ENV};
pub use sshd::{banner, banner_at, check_available, current_user, sshd_path};

use super::{
    Destroyed, Node, NodeSpec, NodeState, Provider, SshEndpoint, TAG_CREATED, TAG_MANAGED,
};
use crate::error::{Error, Result};
use crate::{output, state};
use serde::{Deserialize, Serialize};
use sshd::{bind_failed, free_port, log_tail, wait_listening, START_TIMEOUT};
use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The loopback address unisolated local nodes listen on.
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
    /// Runs in namespaces of its own; `pid` is then the namespaces' init (the node's sshd).
    #[serde(default)]
    pub isolated: bool,
}

/// The `local` provider. Cheap to construct; all state lives on disk.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    /// `<state dir>/local`: one subdirectory per node.
    dir: PathBuf,
    /// The sshd to run; `None`: [`sshd_path`].
    sshd: Option<PathBuf>,
    isolation: Isolation,
    /// `ipv4`/`ipv6`/`address_family`: which loopback addresses the node listens on.
    ip: crate::address::IpOptions,
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
    /// Nodes under `state::state_dir()``/local` (`$PROVISION_STATE_DIR` or the XDG state dir).
    pub fn new() -> Self {
        Self::with_state_dir(&state::state_dir())
    }

    /// Nodes under `state_dir/local`: tests pass their own directory instead of the env var.
    pub fn with_state_dir(state_dir: &Path) -> Self {
        LocalProvider {
            dir: state_dir.join("local"),
            sshd: None,
            isolation: Isolation::Auto,
            ip: crate::address::IpOptions::defaults(false),
        }
    }

    /// [`LocalProvider::new`] with the settings of a `[providers.local]` table:
    /// `isolation = "auto" | "required" | "off"`, `ipv4`, `ipv6`, `address_family`. A bad
    /// value is a config error (exit 2).
    pub fn from_table(table: &toml::Table) -> Result<Self> {
        let mut p = Self::new();
        p.ip = crate::address::IpOptions::from_table("local", table, false)?;
        if let Some(v) = table.get("isolation") {
            let s = v.as_str().ok_or_else(|| {
                Error::config("[providers.local] isolation must be a string: auto, required or off")
            })?;
            p.isolation = s
                .parse()
                .map_err(|e| Error::config(format!("[providers.local] {e}")))?;
        }
        Ok(p)
    }

    /// Runs `sshd` instead of the installed one (tests, non-standard installs). For isolated
    /// nodes it must exist at the same path inside the node (not under /tmp, /run or /root).
    pub fn with_sshd(mut self, sshd: &Path) -> Self {
        self.sshd = Some(sshd.to_path_buf());
        self
    }

    /// Sets whether nodes created from now on are isolated from the host.
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Sets the addresses nodes created from now on listen on (`ipv4`, `ipv6` options).
    pub fn with_ip(mut self, ip: crate::address::IpOptions) -> Self {
        self.ip = ip;
        self
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Whether the next node will be isolated. `Required` without isolation is a usage error
    /// (exit 2); `Auto` without it warns once per process. deploy-node calls this before it
    /// creates anything; `create` calls it too.
    pub fn check_isolation(&self) -> Result<bool> {
        isolate::decide(self.isolation)
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

    /// What the node's sshd has in its command line (pids get reused).
    fn needle(&self, name: &str, isolated: bool) -> String {
        if isolated {
            isolate::title_needle(&self.marker(name))
        } else {
            self.config_path(name).to_string_lossy().into_owned()
        }
    }

    /// True when the record's sshd is alive and is really that node's sshd.
    fn running(&self, rec: &NodeRecord) -> bool {
        procs::is_ours(rec.pid, &self.needle(&rec.name, rec.isolated))
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

    fn sshd_config(&self, name: &str, listen: (&[IpAddr], u16), isolated: bool) -> String {
        let d = self.node_dir(name);
        sshd::config_text(&d, name, listen, &self.marker(name), isolated)
    }

    /// Writes everything but sshd_config and returns the host public key line. The host key
    /// is `host` (an OpenSSH private key) when given, else a fresh ed25519 one.
    fn write_files(&self, spec: &NodeSpec, isolated: bool, host: Option<&str>) -> Result<String> {
        use ssh_key::{Algorithm, LineEnding, PrivateKey};
        let d = self.node_dir(&spec.name);
        let key = match host {
            Some(text) => PrivateKey::from_openssh(text)
                .map_err(|e| Error::usage(format!("the given host key is not usable: {e}")))?,
            None => PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
                .map_err(|e| Error::unexpected(format!("cannot generate a host key: {e}")))?,
        };
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
        if isolated {
            isolate::prepare(&d, keys.as_bytes())?;
        }
        Ok(public)
    }

    /// Starts sshd on `listen` (the first is the node's address) and a port free there (22
    /// first when isolated); retries with another port when the bind races.
    fn start(
        &self,
        name: &str,
        sshd: &Path,
        listen: &[IpAddr],
        isolated: bool,
    ) -> Result<(u16, u32)> {
        let addr = listen[0];
        let d = self.node_dir(name);
        let log_path = d.join("sshd.log");
        let mut last = String::new();
        for attempt in 0..START_ATTEMPTS {
            let port = free_port(addr, isolated && attempt == 0)?;
            if isolated && attempt == 0 && port != 22 {
                output::debug(&format!(
                    "local node {name}: {} is taken, using {port}",
                    crate::address::with_port(&addr.to_string(), 22)
                ));
            }
            let conf = self.config_path(name);
            let text = self.sshd_config(name, (listen, port), isolated);
            state::write_atomic(&conf, text.as_bytes(), 0o600)?;
            let _ = fs::remove_file(d.join("sshd.pid"));
            let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
            let log = fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))?;
            // `None`: started; `Some(why)`: the start command itself failed.
            let failed = if isolated {
                let host = isolate::hostname(name);
                isolate::launch(&d, host, addr, &self.dir, sshd, &self.marker(name), log)?;
                None
            } else {
                sshd::daemonize(sshd, &conf, &log_path, &d, log)?
            };
            let outcome = match failed {
                None => wait_listening(&d, addr, port, log_start),
                Some(_) => Err(None),
            };
            match outcome {
                Ok(pid) => return Ok((port, pid)),
                Err(pid) => {
                    if let Some(pid) = pid {
                        procs::kill_node(Some(pid), &self.marker(name), Duration::from_secs(1));
                    }
                    last = log_tail(&log_path, log_start);
                    if last.is_empty() {
                        let status = failed.unwrap_or_else(|| "running".into());
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

    /// Addresses of the other nodes, which an isolated node must not take.
    fn taken_addresses(&self, except: &str) -> Vec<String> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != except)
            .filter_map(|n| self.record(&n).ok().flatten())
            .map(|r| r.address)
            .collect()
    }

    fn create_in_dir(
        &self,
        spec: &NodeSpec,
        sshd: &Path,
        isolated: bool,
        host: Option<&str>,
    ) -> Result<Node> {
        let host_key = self.write_files(spec, isolated, host)?;
        let v4 = if isolated {
            isolate::pick_address(&spec.name, &self.taken_addresses(&spec.name))
        } else {
            ADDRESS
        };
        let (v4, v6) = (
            self.ip.ipv4.then_some(IpAddr::V4(v4)),
            self.ip.ipv6.then_some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        );
        let addr = self
            .ip
            .choose(v4, v6)
            .ok_or_else(|| Error::config("[providers.local] no address to listen on"))?;
        // the node's address first: the port is probed and the banner awaited there
        let listen: Vec<IpAddr> = std::iter::once(addr)
            .chain(v4.into_iter().chain(v6).filter(|a| *a != addr))
            .collect();
        if !isolated && nix::unistd::geteuid().is_root() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(PRIVSEP_DIR)
                .map_err(|e| Error::io(format!("cannot create {PRIVSEP_DIR}"), e))?;
        }
        let (port, pid) = self.start(&spec.name, sshd, &listen, isolated)?;
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
            address: addr.to_string(),
            port,
            pid,
            user: current_user(),
            host_key,
            created,
            image: or_local(&spec.image),
            size: or_local(&spec.size),
            location: or_local(&spec.location),
            tags,
            isolated,
        };
        if let Err(e) = state::write_json_atomic(&self.node_dir(&spec.name).join("node.json"), &rec)
        {
            procs::kill_node(Some(pid), &self.marker(&spec.name), Duration::from_secs(1));
            return Err(e);
        }
        output::debug(&format!(
            "local node {}: sshd pid {pid} listening on {}{}",
            spec.name,
            crate::address::with_port(&addr.to_string(), port),
            if isolated { ", isolated" } else { "" }
        ));
        Ok(self.to_node(&rec))
    }

    /// [`Provider::create`], but the node's sshd uses `host_private_openssh` (an OpenSSH private
    /// key, as cloud-init's `ssh_keys.ed25519_private` carries it) as its host key instead of
    /// a fresh one: for test fakes of clouds whose nodes are local ones.
    pub fn create_with_host_key(
        &self,
        spec: &NodeSpec,
        host_private_openssh: &str,
    ) -> Result<Node> {
        self.create_node(spec, Some(host_private_openssh))
    }

    fn create_node(&self, spec: &NodeSpec, host: Option<&str>) -> Result<Node> {
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
        let isolated = self.check_isolation()?;
        state::ensure_dir(&self.dir)?;
        let d = self.node_dir(&spec.name);
        // create_dir (not create_dir_all) fails if it exists: the name is claimed atomically.
        {
            if let Err(e) = fs::DirBuilder::new().mode(0o700).create(&d) {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Err(Error::usage(format!(
                        "a local node named '{}' already exists ({}); re-provision it (deploy-node --reprovision -n {}), destroy it first, or choose another name",
                        spec.name,
                        d.display(),
                        spec.name
                    )));
                }
                return Err(Error::io(format!("cannot create {}", d.display()), e));
            }
        }
        let res = self.create_in_dir(spec, &sshd, isolated, host);
        if res.is_err() {
            let _ = fs::remove_dir_all(&d);
        }
        res
    }
}

impl Provider for LocalProvider {
    /// Needs sshd; says once whether nodes will be isolated (or fails when required).
    fn prepare(&self, image: &str, size: &str, location: &str) -> Result<super::Prepared> {
        check_available()?;
        self.check_isolation()?;
        Ok(super::Prepared {
            image: image.to_string(),
            size: size.to_string(),
            location: location.to_string(),
        })
    }

    fn name(&self) -> &str {
        "local"
    }

    fn create(&self, spec: &NodeSpec) -> Result<Node> {
        self.create_node(spec, None)
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
        let pid_from_file = fs::read_to_string(d.join("sshd.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let pid_from_record = self.record(id).ok().flatten().map(|r| r.pid);
        // A corrupt record does not say whether the node was isolated: try both.
        let ours = |isolated: bool| {
            let needle = self.needle(id, isolated);
            [pid_from_record, pid_from_file]
                .into_iter()
                .flatten()
                .find(|p| procs::is_ours(*p, &needle))
        };
        let root = ours(false);
        if let Some(init) = ours(true) {
            // The init of the node's PID namespace: SIGKILL takes every process of the node
            // with it, and the mounts go with the last of them.
            procs::kill_now(init, Duration::from_secs(5));
        }
        // The rest: an unisolated node's sessions, an isolated node's namespace holder.
        let n = procs::kill_node(root, &self.marker(id), Duration::from_secs(2));
        output::debug(&format!("local node {id}: stopped {n} process(es)"));
        fs::remove_dir_all(&d)
            .map_err(|e| Error::io(format!("cannot remove {}", d.display()), e))?;
        Ok(Destroyed::Destroyed)
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(50)
    }

    fn updates_tags(&self) -> bool {
        true
    }

    /// Rewrites the tags in the node's `node.json` (atomically).
    fn update_tags(&self, node: &Node, tags: &BTreeMap<String, String>) -> Result<()> {
        let mut rec = self
            .record(&node.id)?
            .ok_or_else(|| Error::unexpected(format!("local node {}: gone", node.id)))?;
        rec.tags.extend(tags.clone());
        state::write_json_atomic(&self.node_dir(&node.id).join("node.json"), &rec)
    }
}

fn build_driver(table: &toml::Table, _: &super::Credentials) -> Result<Box<dyn Provider>> {
    Ok(Box::new(LocalProvider::from_table(table)?))
}

/// This driver's registry entry.
pub const DRIVER: super::registry::Registration = super::registry::Registration {
    name: "local",
    help: "(default) each node is a private sshd on a loopback address; isolated in its\n\
           own namespaces when run as root on Linux (--isolation)",
    env: &[],
    declarable: false,
    build: build_driver,
};
