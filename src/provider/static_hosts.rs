//! The `static` driver: machines that already exist (a lab box, a VM someone else made),
//! listed in `provision.toml`, so the same bundles and scripts deploy onto them. Nothing is
//! ever created or destroyed: `create` checks the name is configured and records it as
//! deployed; `destroy` only forgets that record and never touches the machine.
//!
//! ```toml
//! [providers.static]
//! user = "root"            # optional defaults for every host
//! port = 22
//!
//! [providers.static.hosts]
//! lab1 = "192.0.2.10"
//! lab2 = "admin@lab2.example.com:2222"
//! lab3 = "[2001:db8::3]:22"
//! lab4 = { address = "192.0.2.14", user = "ci", port = 2200 }
//! ```
//!
//! `list-nodes` shows the hosts deployed to (recorded under `state_dir()/static/`); with
//! `--all` every configured host, deployed or not. Only recorded hosts carry the managed tag.

use super::{
    Destroyed, Node, NodeSpec, NodeState, Provider, SshEndpoint, TAG_CREATED, TAG_MANAGED,
};
use crate::error::{Error, Result};
use crate::state;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One configured host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticHost {
    pub name: String,
    /// Host name or IP address (IPv6 without brackets).
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
}

/// What `state_dir()/static/<name>.json` holds: a host deployed to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    host: StaticHost,
    /// RFC 3339, UTC, of the last deploy.
    deployed: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// The `static` provider.
#[derive(Debug, Clone)]
pub struct StaticProvider {
    hosts: BTreeMap<String, StaticHost>,
    /// `<state dir>/static`.
    dir: PathBuf,
}

fn bad(name: &str, msg: impl std::fmt::Display) -> Error {
    Error::config(format!("[providers.static.hosts] {name}: {msg}"))
}

fn parse_port(name: &str, s: &str) -> Result<u16> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad(name, format!("invalid port '{s}'")))
}

/// Parses `address`, `user@address`, `address:port`, `user@address:port`; IPv6 addresses go
/// in brackets when a port follows (`[::1]:2222`), bare otherwise (`::1`).
pub fn parse_host(name: &str, spec: &str) -> Result<StaticHost> {
    let spec = spec.trim();
    let (user, rest) = match spec.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => return Err(bad(name, format!("empty user in '{spec}'"))),
        None => (None, spec),
    };
    let (address, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| bad(name, format!("missing ']' in '{spec}'")))?;
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(parse_port(name, p)?),
                None => return Err(bad(name, format!("unexpected '{p}' in '{spec}'"))),
            },
        };
        (addr.to_string(), port)
    } else if rest.matches(':').count() == 1 {
        let (a, p) = rest.split_once(':').unwrap_or((rest, ""));
        (a.to_string(), Some(parse_port(name, p)?))
    } else {
        (rest.to_string(), None)
    };
    if address.is_empty() || address.chars().any(char::is_whitespace) {
        return Err(bad(name, format!("invalid address in '{spec}'")));
    }
    Ok(StaticHost {
        name: name.to_string(),
        address,
        user,
        port,
    })
}

/// One `hosts` entry: a string (see [`parse_host`]) or `{ address, user, port }`.
fn host_from_value(name: &str, v: &toml::Value) -> Result<StaticHost> {
    match v {
        toml::Value::String(s) => parse_host(name, s),
        toml::Value::Table(t) => {
            for k in t.keys() {
                if !matches!(k.as_str(), "address" | "user" | "port") {
                    return Err(bad(
                        name,
                        format!("unknown key '{k}' (address, user, port)"),
                    ));
                }
            }
            let address = match t.get("address") {
                Some(toml::Value::String(a)) if !a.trim().is_empty() => a.trim(),
                _ => return Err(bad(name, "needs address = \"...\"")),
            };
            let address = address
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(address);
            let user = match t.get("user") {
                None => None,
                Some(toml::Value::String(u)) if !u.is_empty() => Some(u.clone()),
                Some(_) => return Err(bad(name, "user must be a non-empty string")),
            };
            let port = match t.get("port") {
                None => None,
                Some(toml::Value::Integer(p)) => Some(parse_port(name, &p.to_string())?),
                Some(toml::Value::String(p)) => Some(parse_port(name, p)?),
                Some(_) => return Err(bad(name, "port must be a number")),
            };
            Ok(StaticHost {
                name: name.to_string(),
                address: address.to_string(),
                user,
                port,
            })
        }
        _ => Err(bad(name, "expected \"[user@]address[:port]\" or a table")),
    }
}

/// Parses a `[providers.static]` table: `hosts`, plus optional `user`/`port` defaults.
pub fn parse_hosts(table: &toml::Table) -> Result<BTreeMap<String, StaticHost>> {
    let default_user = match table.get("user") {
        None => None,
        Some(toml::Value::String(u)) => Some(u.clone()),
        Some(_) => return Err(Error::config("[providers.static] user must be a string")),
    };
    let default_port = match table.get("port") {
        None => None,
        Some(toml::Value::Integer(p)) => Some(
            u16::try_from(*p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| Error::config(format!("[providers.static] invalid port {p}")))?,
        ),
        Some(_) => return Err(Error::config("[providers.static] port must be a number")),
    };
    let hosts = match table.get("hosts") {
        None => return Ok(BTreeMap::new()),
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(Error::config("[providers.static] hosts must be a table")),
    };
    let mut out = BTreeMap::new();
    for (name, v) in hosts {
        let mut h = host_from_value(name, v)?;
        h.user = h.user.or_else(|| default_user.clone());
        h.port = h.port.or(default_port);
        out.insert(name.clone(), h);
    }
    Ok(out)
}

impl StaticProvider {
    /// Hosts from a `[providers.static]` table; records under `state::state_dir()`.
    pub fn from_table(table: &toml::Table) -> Result<Self> {
        Self::with_state_dir(table, &state::state_dir())
    }

    /// Hosts from a `[providers.static]` table; records under `state_dir/static`.
    pub fn with_state_dir(table: &toml::Table, state_dir: &Path) -> Result<Self> {
        Ok(StaticProvider {
            hosts: parse_hosts(table)?,
            dir: state_dir.join("static"),
        })
    }

    /// The configured hosts, by name.
    pub fn hosts(&self) -> &BTreeMap<String, StaticHost> {
        &self.hosts
    }

    fn record_path(&self, name: &str) -> Option<PathBuf> {
        let ok = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0']);
        ok.then(|| self.dir.join(format!("{name}.json")))
    }

    fn record(&self, name: &str) -> Result<Option<Record>> {
        let Some(path) = self.record_path(name) else {
            return Ok(None);
        };
        match fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| Error::unexpected(format!("corrupt {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    }

    fn node(host: &StaticHost, rec: Option<&Record>) -> Node {
        Node {
            id: host.name.clone(),
            name: host.name.clone(),
            state: NodeState::Running,
            public_ip: Some(host.address.clone()),
            private_ip: None,
            image: None,
            size: None,
            location: None,
            created: rec.map(|r| r.deployed.clone()),
            tags: rec.map(|r| r.tags.clone()).unwrap_or_default(),
            ssh: SshEndpoint {
                port: host.port,
                user: host.user.clone(),
                host_key: None,
                identity: None,
            },
        }
    }

    fn known(&self) -> String {
        if self.hosts.is_empty() {
            "none are configured: add them under [providers.static.hosts] in provision.toml"
                .to_string()
        } else {
            let names: Vec<&str> = self.hosts.keys().map(String::as_str).collect();
            format!("known hosts: {}", names.join(", "))
        }
    }

    fn recorded(&self) -> Result<Vec<Record>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("cannot read {}", self.dir.display()), e)),
        };
        let mut out = Vec::new();
        for e in rd.filter_map(|e| e.ok()) {
            let fname = e.file_name().to_string_lossy().into_owned();
            let Some(name) = fname.strip_suffix(".json") else {
                continue;
            };
            match self.record(name) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(err) => crate::output::warn(&format!("static host {name} skipped: {err}")),
            }
        }
        out.sort_by(|a, b| a.host.name.cmp(&b.host.name));
        Ok(out)
    }
}

impl Provider for StaticProvider {
    fn name(&self) -> &str {
        "static"
    }

    fn destroys_machines(&self) -> bool {
        false
    }

    /// Records the configured host `spec.name` as deployed (again, if it already was).
    fn create(&self, spec: &NodeSpec) -> Result<Node> {
        let host = self.hosts.get(&spec.name).ok_or_else(|| {
            Error::config(format!(
                "static host '{}' is not configured ({})",
                spec.name,
                self.known()
            ))
        })?;
        let path = self
            .record_path(&spec.name)
            .ok_or_else(|| Error::config(format!("invalid static host name '{}'", spec.name)))?;
        let deployed = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let mut tags = spec.tags.clone();
        tags.entry(TAG_MANAGED.to_string())
            .or_insert_with(|| "true".to_string());
        tags.entry(TAG_CREATED.to_string())
            .or_insert_with(|| deployed.clone());
        let rec = Record {
            host: host.clone(),
            deployed,
            tags,
        };
        state::write_json_atomic(&path, &rec)?;
        Ok(Self::node(host, Some(&rec)))
    }

    /// Deployed hosts (recorded), or with `all` every configured host plus any recorded one
    /// no longer in the config. A recorded host shows its recorded address when the config
    /// no longer lists it.
    fn list(&self, all: bool) -> Result<Vec<Node>> {
        let recs = self.recorded()?;
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        for r in &recs {
            let host = self.hosts.get(&r.host.name).unwrap_or(&r.host);
            nodes.insert(r.host.name.clone(), Self::node(host, Some(r)));
        }
        if all {
            for h in self.hosts.values() {
                nodes
                    .entry(h.name.clone())
                    .or_insert_with(|| Self::node(h, None));
            }
        }
        Ok(nodes.into_values().collect())
    }

    fn get(&self, id: &str) -> Result<Option<Node>> {
        let rec = self.record(id)?;
        Ok(match (self.hosts.get(id), rec) {
            (Some(h), r) => Some(Self::node(h, r.as_ref())),
            (None, Some(r)) => Some(Self::node(&r.host, Some(&r))),
            (None, None) => None,
        })
    }

    /// Forgets a deployed host (removes its record); the machine is never touched.
    /// `AlreadyGone` when there was no record.
    fn destroy(&self, id: &str) -> Result<Destroyed> {
        let Some(path) = self.record_path(id) else {
            return Ok(Destroyed::AlreadyGone);
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(Destroyed::Forgotten),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Destroyed::AlreadyGone),
            Err(e) => Err(Error::io(format!("cannot remove {}", path.display()), e)),
        }
    }

    fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(10)
    }

    /// A static host's name picks a configured machine that exists already: no name check.
    fn names_must_be_free(&self) -> bool {
        false
    }
}

fn build_driver(table: &toml::Table, _: &super::Credentials) -> Result<Box<dyn Provider>> {
    Ok(Box::new(StaticProvider::from_table(table)?))
}

/// This driver's registry entry.
pub const DRIVER: super::registry::Registration = super::registry::Registration {
    name: "static",
    help: "existing hosts from [providers.static.hosts]; destroy only forgets them",
    env: &[],
    declarable: false,
    build: build_driver,
};
