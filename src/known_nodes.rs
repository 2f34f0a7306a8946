//! What deploy-node learned about each node it made ready, remembered in the state directory
//! (`nodes/PROVIDER--NAME.json`, next to the journal) so every later connection trusts the same
//! host key: the host key it pinned or learned, the login user, the `--identity` file, and the
//! jump host it went through.
//! `list-nodes --format ssh-config` writes them as `UserKnownHostsFile` + `StrictHostKeyChecking
//! yes`, `User` and `IdentityFile`; destroying the node forgets them.
//!
//! It also keeps what was last applied ([`crate::applied`]): bundles, variables without
//! secrets, a hash of each file and script, the run count and the last result.
//!
//! A record applies only to the node it was written for: same name, same provider id, and the
//! same create id when both carry one — a later node reusing the name never inherits a key.

use crate::applied::Applied;
use crate::error::Result;
use crate::provider::Node;
use crate::state;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub provider: String,
    pub name: String,
    pub id: String,
    #[serde(default)]
    pub create_id: Option<String>,
    /// The host key the node showed, as an OpenSSH public key line.
    pub host_key: String,
    /// The login user deploy-node used.
    pub user: String,
    /// `--identity`, when given.
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// What the last provisioning applied; none before the first one ended.
    #[serde(default)]
    pub applied: Option<Applied>,
    /// The jump host the node was reached through (`user@host:port`), when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    /// The jump host's pinned host key (`ssh_jump_host_key`), when one was pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump_host_key: Option<String>,
    /// Where the provider reported the node (EC2: its availability zone), so destroy-node
    /// finds it there whatever region is current ([`recorded_location`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Record {
    /// Whether this record was written for `node`.
    pub fn is_for(&self, node: &Node) -> bool {
        self.name == node.name
            && self.id == node.id
            && match (&self.create_id, node.create_id()) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

fn dir() -> PathBuf {
    state::state_dir().join("nodes")
}

fn path(provider: &str, name: &str) -> PathBuf {
    dir().join(format!("{provider}--{name}.json"))
}

/// Remembers `rec` (replacing what was remembered for that name).
pub fn remember(rec: &Record) -> Result<()> {
    state::write_json_atomic(&path(&rec.provider, &rec.name), rec)
}

/// Keeps `applied` in the record of `name` on `provider` (written when its host key was
/// remembered); a failure only warns: the node itself is as the run left it.
pub fn record_applied(provider: &str, name: &str, applied: Applied) {
    let Some(mut rec) = load(provider, name) else {
        return;
    };
    rec.applied = Some(applied);
    if let Err(e) = remember(&rec) {
        crate::output::warn(&format!(
            "{name}: what was applied could not be recorded ({e}); a re-provision will send every file again"
        ));
    }
}

/// What is remembered for `name` on `provider`, if anything readable.
pub fn load(provider: &str, name: &str) -> Option<Record> {
    let bytes = std::fs::read(path(provider, name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Where node `name` on `provider` was made, as this machine recorded it: its node record,
/// else its journal entry (a node never made ready).
pub fn recorded_location(provider: &str, name: &str) -> Option<String> {
    load(provider, name)
        .and_then(|r| r.location)
        .or_else(|| crate::journal::load(provider, name).and_then(|e| e.location))
        .filter(|l| !l.is_empty())
}

/// Every node of `provider` this machine recorded a location for (node records, then
/// journal entries), as (name, location), sorted by name.
pub fn recorded_locations(provider: &str) -> Vec<(String, String)> {
    let prefix = format!("{provider}--");
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let f = e.file_name().to_string_lossy().into_owned();
            Some(f.strip_prefix(&prefix)?.strip_suffix(".json")?.to_string())
        })
        .chain(
            crate::journal::entries()
                .into_iter()
                .filter(|e| e.provider == provider)
                .map(|e| e.name),
        )
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| recorded_location(provider, &n).map(|l| (n, l)))
        .collect()
}

/// Forgets `name` on `provider`: its record, and the known_hosts file `list-nodes --format
/// ssh-config` wrote for it.
pub fn forget(provider: &str, name: &str) {
    let _ = std::fs::remove_file(path(provider, name));
    let _ = std::fs::remove_file(state::state_dir().join("known_hosts.d").join(name));
}

/// Fills in what the provider cannot report (host key, login user, identity file) from the
/// records of these nodes; what the driver reports itself is kept.
pub fn annotate(provider: &str, nodes: &mut [Node]) {
    for n in nodes {
        let Some(rec) = load(provider, &n.name).filter(|r| r.is_for(n)) else {
            continue;
        };
        n.ssh.host_key.get_or_insert(rec.host_key);
        n.ssh.user.get_or_insert(rec.user);
        if let Some(id) = rec.identity {
            n.ssh
                .identity
                .get_or_insert(id.to_string_lossy().into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::TAG_CREATE_ID;

    fn node(id: &str, create_id: Option<&str>) -> Node {
        Node {
            tags: create_id
                .map(|c| [(TAG_CREATE_ID.to_string(), c.to_string())].into())
                .unwrap_or_default(),
            ..crate::provider::test_node(id, "web")
        }
    }

    #[test]
    fn a_record_applies_only_to_its_own_node() {
        let rec = Record {
            provider: "hetzner".into(),
            name: "web".into(),
            id: "7".into(),
            create_id: Some("abc".into()),
            host_key: "ssh-ed25519 AAAA".into(),
            user: "root".into(),
            identity: None,
            applied: None,
            jump: None,
            jump_host_key: None,
            location: None,
        };
        assert!(rec.is_for(&node("7", Some("abc"))));
        assert!(rec.is_for(&node("7", None)));
        assert!(!rec.is_for(&node("8", Some("abc"))), "another id");
        assert!(!rec.is_for(&node("7", Some("def"))), "another create");
    }
}
