//! The intent journal: before a provider is asked to create a node, its name, provider, time
//! and the create attempt's random id (the node's `provision-create-id` tag) are recorded; the entry is cleared when the node is deployed or destroyed, and marked
//! `kept` when it is kept on purpose. Whatever is left is a node that may cost money unseen:
//! `list-nodes --orphans` shows it.

use crate::error::{Error, Result};
use crate::state;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The create call is about to be made or is under way.
    Creating,
    /// The provider created it; it is not ready yet.
    Created,
    /// Kept on purpose (a script failed, --keep-on-failure): not an orphan.
    Kept,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub provider: String,
    pub id: Option<String>,
    /// The create attempt's id, which the node carries as its `provision-create-id` tag: the
    /// only thing a node is matched on after a create whose outcome is unknown.
    #[serde(default)]
    pub create_id: Option<String>,
    pub started: String,
    pub status: Status,
    /// Where the provider reported the node once created (EC2: its availability zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

fn dir() -> PathBuf {
    state::state_dir().join("journal")
}

fn path(provider: &str, name: &str) -> PathBuf {
    dir().join(format!("{provider}--{name}.json"))
}

/// Records that `name` is about to be created on `provider` by the attempt `create_id`.
pub fn begin(provider: &str, name: &str, create_id: &str) -> Result<Entry> {
    let entry = Entry {
        name: name.to_string(),
        provider: provider.to_string(),
        id: None,
        create_id: Some(create_id.to_string()),
        started: crate::now_rfc3339(),
        status: Status::Creating,
        location: None,
    };
    write(&entry)?;
    Ok(entry)
}

/// Updates an entry (id known, status changed).
pub fn write(entry: &Entry) -> Result<()> {
    std::fs::create_dir_all(dir()).map_err(|e| Error::io(dir().display(), e))?;
    state::write_json_atomic(&path(&entry.provider, &entry.name), entry)
}

/// Forgets a node: it is deployed, or destroyed.
pub fn clear(provider: &str, name: &str) {
    let _ = std::fs::remove_file(path(provider, name));
}

impl Entry {
    /// Whether `node` is the one this entry's create made: by create id when the entry has
    /// one (a node of the same name made by anyone else never matches), else by provider id,
    /// else (entries written before create ids) by name.
    pub fn matches(&self, node: &crate::provider::Node) -> bool {
        match (&self.create_id, &self.id) {
            (Some(cid), _) => node.create_id() == Some(cid.as_str()) && node.name == self.name,
            (None, Some(id)) => &node.id == id,
            (None, None) => node.name == self.name,
        }
    }
}

/// The entry of `name` on `provider`, if one is readable.
pub fn load(provider: &str, name: &str) -> Option<Entry> {
    let bytes = std::fs::read(path(provider, name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every entry (unreadable ones skipped).
pub fn entries() -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir()) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = rd
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by(|a: &Entry, b: &Entry| a.started.cmp(&b.started));
    out
}
