//! Providers: one trait with libcloud's verbs and one file per driver. A provider creates,
//! lists, finds and destroys nodes; it never touches SSH. Each driver maps its own states to
//! [`NodeState`] through a table with an `Unknown` fallback.

pub mod cloud;
pub mod cloudinit;
pub mod coalesce;
pub mod digitalocean;
pub mod ec2;
pub mod exec;
pub mod hetzner;
pub mod http;
pub mod openstack;
pub mod registry;
pub mod tags;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub mod local;
pub mod static_hosts;
pub mod tables;

/// The tag every node we create carries, so `destroy-node` knows it may destroy it.
pub const TAG_MANAGED: &str = "provision";
/// The tag holding the node's creation time (RFC 3339).
pub const TAG_CREATED: &str = "provision-created";
/// The tag holding the random id of the create attempt that made the node: after a create
/// whose outcome is unknown, a node is ours only when it carries this attempt's id.
pub const TAG_CREATE_ID: &str = "provision-create-id";
/// The deploy's state, on providers whose tags can be updated ([`Provider::updates_tags`]):
/// [`DEPLOYING`] from the create, then [`DEPLOY_READY`] or [`DEPLOY_FAILED`]. A node still
/// `deploying` long after its create was left by a runner that died mid-deploy.
pub const TAG_STATE: &str = "provision-state";
/// [`TAG_STATE`] from the create until the deploy ends.
pub const DEPLOYING: &str = "deploying";
/// [`TAG_STATE`] after every script ran.
pub const DEPLOY_READY: &str = "ready";
/// [`TAG_STATE`] of a node kept after a failed deploy.
pub const DEPLOY_FAILED: &str = "failed";

/// Which of two [`TAG_STATE`] values a node carrying both is in (a DigitalOcean droplet keeps
/// `deploying` beside the end state: one request per update, see its driver): an end state
/// over [`DEPLOYING`], [`DEPLOY_FAILED`] over [`DEPLOY_READY`] (one deploy ends once, so the
/// two never meet but after a hand edit), and among equals (or values we do not know) `b`,
/// the later one read.
pub fn settled_state<'a>(a: &'a str, b: &'a str) -> &'a str {
    let rank = |s: &str| match s {
        DEPLOY_FAILED => 2,
        DEPLOY_READY => 1,
        _ => 0,
    };
    if rank(a) > rank(b) {
        a
    } else {
        b
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Pending,
    Running,
    Stopped,
    Terminated,
    Error,
    Unknown,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("unknown"))
    }
}

/// Looks `state` up in a driver's table; anything not listed is `Unknown`.
pub fn map_state(table: &[(&str, NodeState)], state: &str) -> NodeState {
    table
        .iter()
        .find(|(k, _)| *k == state)
        .map(|(_, v)| *v)
        .unwrap_or(NodeState::Unknown)
}

/// A machine as a provider reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub state: NodeState,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub image: Option<String>,
    pub size: Option<String>,
    pub location: Option<String>,
    pub created: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// How to reach it over SSH (port, login user, pinned host key), when the driver knows.
    #[serde(default)]
    pub ssh: SshEndpoint,
}

impl Node {
    /// Made by provision, so destroy-node may destroy it without `--force`.
    pub fn is_managed(&self) -> bool {
        self.tags.contains_key(TAG_MANAGED)
    }

    /// The id of the create attempt that made it ([`TAG_CREATE_ID`]), if it carries one.
    pub fn create_id(&self) -> Option<&str> {
        self.tags.get(TAG_CREATE_ID).map(String::as_str)
    }

    /// The deploy state recorded on it ([`TAG_STATE`]), if any.
    pub fn deploy_state(&self) -> Option<&str> {
        self.tags.get(TAG_STATE).map(String::as_str)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SshEndpoint {
    /// Port when not 22.
    pub port: Option<u16>,
    /// Login user when the driver decides it (static hosts).
    pub user: Option<String>,
    /// The node's host public key in OpenSSH format, when the driver knows it: pinned.
    pub host_key: Option<String>,
    /// A private key file the driver made for this node (local nodes), tried for auth.
    pub identity: Option<String>,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub image: String,
    pub size: String,
    pub location: String,
    /// authorized_keys lines for the login user.
    pub public_keys: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// A running node with only an id and a name, for unit tests.
#[cfg(test)]
pub(crate) fn test_node(id: &str, name: &str) -> Node {
    Node {
        id: id.into(),
        name: name.into(),
        state: NodeState::Running,
        public_ip: None,
        private_ip: None,
        image: None,
        size: None,
        location: None,
        created: None,
        tags: BTreeMap::new(),
        ssh: SshEndpoint::default(),
    }
}

impl NodeSpec {
    /// The create attempt's id ([`TAG_CREATE_ID`]).
    pub fn create_id(&self) -> Option<&str> {
        self.tags.get(TAG_CREATE_ID).map(String::as_str)
    }

    /// This spec with a create id: the caller's (deploy journals it before the create), or a
    /// new one. Drivers create from this, so every node they make carries an identity.
    pub fn identified(&self) -> NodeSpec {
        let mut s = self.clone();
        s.tags
            .entry(TAG_CREATE_ID.to_string())
            .or_insert_with(new_create_id);
        s
    }
}

/// A new random create id: 16 lowercase hex digits (every provider's tag charset takes it).
pub fn new_create_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The result of a destroy call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destroyed {
    /// The provider destroyed it.
    Destroyed,
    /// It was already gone (404).
    AlreadyGone,
    /// Only forgotten: the machine itself is untouched (static hosts).
    Forgotten,
}

/// What `list-nodes` can list besides nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalog {
    Images,
    Sizes,
    Locations,
}

impl fmt::Display for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Catalog::Images => "images",
            Catalog::Sizes => "sizes",
            Catalog::Locations => "locations",
        })
    }
}

/// What [`Provider::prepare`] resolved: the values `create` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub image: String,
    pub size: String,
    pub location: String,
}

/// libcloud's verbs.
pub trait Provider: Send + Sync {
    /// The driver's name (`local`, `digitalocean`, ...).
    fn name(&self) -> &str;
    fn create(&self, spec: &NodeSpec) -> Result<Node>;
    /// Our nodes (tagged) — or every node when `all`.
    fn list(&self, all: bool) -> Result<Vec<Node>>;
    /// [`Provider::list`] where calls go now only (EC2: the current region, not config
    /// `regions`): what a deploy's polls read. Default: `list`.
    fn list_here(&self, all: bool) -> Result<Vec<Node>> {
        self.list(all)
    }
    fn get(&self, id: &str) -> Result<Option<Node>>;
    fn destroy(&self, id: &str) -> Result<Destroyed>;
    /// How long to wait between polls while waiting for a node to run.
    /// Checks and resolves what the user asked for before anything is created: image, size
    /// and location names become what the API takes (a wrong one is a config error listing
    /// near matches), and the driver's own preconditions are checked. Called once per run.
    fn prepare(&self, image: &str, size: &str, location: &str) -> Result<Prepared> {
        Ok(Prepared {
            image: image.to_string(),
            size: size.to_string(),
            location: location.to_string(),
        })
    }
    /// The valid values for `-i`, `-s` or `-l`, as (name, description), for `list-nodes
    /// --images/--sizes/--locations`.
    fn catalog(&self, kind: Catalog) -> Result<Vec<(String, String)>> {
        Err(Error::usage(format!(
            "provider '{}' has no {kind} to list: it ignores -i, -s and -l",
            self.name()
        )))
    }
    fn poll_interval(&self) -> Duration {
        Duration::from_secs(2)
    }
    /// When a poll can next see something new, for a provider whose polls share one list call
    /// (a pool's [`coalesce::Coalesced`]): every waiting node then wakes for that refresh
    /// instead of backing off on its own. `None`: the waiter's own backoff.
    fn next_poll_in(&self) -> Option<Duration> {
        None
    }
    /// Whether a deploy must first check that the node's name is free on the account. True
    /// for every driver that makes new machines; false where the name picks an existing one
    /// (static hosts).
    fn names_must_be_free(&self) -> bool {
        true
    }
    /// Whether [`Provider::update_tags`] works. A deploy records its state on the node
    /// ([`TAG_STATE`]) only then: a `deploying` tag that could never change would read as a
    /// deploy that never completed.
    fn updates_tags(&self) -> bool {
        false
    }
    /// Adds or replaces `tags` on an existing node (others stay), each encoded to the
    /// provider's rules. Default: not supported.
    fn update_tags(&self, node: &Node, tags: &BTreeMap<String, String>) -> Result<()> {
        let _ = tags;
        Err(Error::usage(format!(
            "{}: the tags of {} cannot be updated on this provider",
            self.name(),
            node.name
        )))
    }
    /// The provider's limit of tags per node, counting [`NodeSpec::tags`] and
    /// [`Provider::driver_tags`]. `None`: no limit.
    fn max_tags(&self) -> Option<usize> {
        None
    }
    /// How many tags the driver adds to [`NodeSpec::tags`] on create (EC2's `Name`).
    fn driver_tags(&self) -> usize {
        0
    }
    /// Where the driver's calls go, for a driver whose calls reach only part of the account
    /// (EC2: one region). `None`: every call sees every node.
    fn scope(&self) -> Option<String> {
        None
    }
    /// The scope a node reported at `location` lives in (EC2: the region of a zone).
    fn scope_of(&self, location: &str) -> Option<String> {
        let _ = location;
        None
    }
    /// Every scope [`Provider::list`] covers (EC2: config `regions` and the current region).
    /// Default: [`Provider::scope`] alone.
    fn scopes(&self) -> Vec<String> {
        self.scope().into_iter().collect()
    }
    /// Sends later calls to `scope` (one [`Provider::scope`] or [`Provider::scope_of`] gave).
    fn enter_scope(&self, scope: &str) {
        let _ = scope;
    }
    /// Whether `destroy` really destroys the machine (false for static hosts, which are only
    /// forgotten: an expiry on them warns).
    fn destroys_machines(&self) -> bool {
        true
    }
}

/// The error for a provider name this build does not know.
pub fn unknown(name: &str) -> Error {
    registry::unknown(name)
}

/// Checks a provider name without constructing anything.
pub fn check_name(name: &str) -> Result<()> {
    if registry::names().contains(&name) {
        Ok(())
    } else {
        Err(unknown(name))
    }
}

/// Credentials from `-u/-k`; drivers fall back to their environment variables, then config.
#[derive(Clone, Default)]
pub struct Credentials {
    pub userid: Option<String>,
    /// Never printed: `Debug` redacts it.
    pub secret: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("userid", &self.userid)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Checks the provider a plan chose, before anything is built: the original's names are
/// refused naming their replacement, a config-declared exec provider is checked, and any
/// other name must be a built-in driver.
pub fn check_chosen(
    cfg: &crate::config::Config,
    chosen: &crate::config::Sourced<String>,
) -> Result<()> {
    crate::config::original::check_provider(chosen)?;
    if !exec::check_declared(cfg, &chosen.value)? {
        check_name(&chosen.value)?;
    }
    Ok(())
}

/// Constructs the driver `name` from its `[providers.NAME]` config table and credentials,
/// through the [`registry`]. Unknown names are a config error (exit 2), like [`check_name`].
pub fn build(
    name: &str,
    cfg: &crate::config::Config,
    creds: &Credentials,
) -> Result<Box<dyn Provider>> {
    // a config-declared `[providers.NAME] type = "exec"` (its path is relative to its layer)
    if exec::declared(cfg, name) {
        return Ok(Box::new(exec::ExecProvider::from_config(name, cfg)?));
    }
    let table = cfg.provider_table(name);
    match registry::find(name, &table) {
        Some(r) => (r.build)(&table, creds),
        None => Err(unknown(name)),
    }
}
