//! The REST steps a token cloud's driver takes with its servers, the same on DigitalOcean and
//! Hetzner but for the paths and keys its [`Servers`] names: a create's host key, user-data
//! and key references ([`Boot`]), the create (a lost answer looks the server up by its create
//! id), list, get by numeric id, destroy. Each raw server is read by the driver's own code.

use super::{CloudCore, KeyApi};
use crate::error::{Error, Result};
use crate::provider::cloudinit::{self, HostKey};
use crate::provider::{Destroyed, Node};
use serde_json::{json, Value};

/// What every token cloud's server create sends besides its own fields.
pub struct Boot {
    /// The node's host key, generated here and pinned by the user-data.
    pub host: HostKey,
    /// The cloud-config: the user's keys, the host key, the user's own `user_data` merged.
    pub user_data: String,
    /// The account's references to the user's keys (registered where missing).
    pub keys: Vec<Value>,
}

/// Where a driver's servers live in its REST API.
pub struct Servers {
    /// The collection (`/v2/droplets`, `/servers`).
    pub path: &'static str,
    /// The list's key in a list answer (`droplets`).
    pub list_key: &'static str,
    /// The server's key in a create or get answer (`droplet`).
    pub item_key: &'static str,
    /// What the provider calls a server, for errors.
    pub noun: &'static str,
    /// The list query that selects ours (`("tag_name", "provision")`).
    pub ours: (&'static str, &'static str),
}

impl CloudCore {
    /// A server create's [`Boot`] for `public_keys`: the host key and user-data (both
    /// redacted from every error and log line from now on), the keys' references (looked up
    /// once per key set and instance, see [`CloudCore::account_keys`]).
    pub fn boot(&self, keys: &KeyApi, public_keys: &[String]) -> Result<Boot> {
        let host = HostKey::generate()?;
        let user_data = cloudinit::user_data(public_keys, &host, self.user.as_ref());
        self.client.add_secret(host.private_openssh(), true);
        self.client.add_secret(&user_data, false);
        let keys = self.account_keys(public_keys, || self.register_keys(keys, public_keys))?;
        Ok(Boot {
            host,
            user_data,
            keys,
        })
    }

    /// POSTs `body` to the servers' collection (a lost answer asks `lookup`, see
    /// [`Client::create`]) and reads the created server with `node`, its host key pinned.
    pub fn create_server(
        &self,
        servers: &Servers,
        body: &Value,
        lookup: &dyn Fn() -> Result<Option<Value>>,
        host: &HostKey,
        node: impl Fn(&Value) -> Result<Node>,
    ) -> Result<Node> {
        let v = self.client.create(servers.path, body, lookup)?;
        let what = format!("POST {}", servers.path);
        let s = self.item(&what, &v, servers.item_key)?;
        Ok(self.created(node(s)?, host))
    }

    /// The object under `key` of the answer `v` to `what` (`POST /v2/droplets`).
    pub fn item<'a>(&self, what: &str, v: &'a Value, key: &str) -> Result<&'a Value> {
        v.get(key).ok_or_else(|| {
            self.client
                .malformed(format!("{what}: no '{key}' in the response"))
        })
    }

    /// The server `id` (a number; anything else is no server), `None` when it is gone.
    pub fn get_server(&self, servers: &Servers, id: &str) -> Result<Option<Value>> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(None);
        };
        let path = format!("{}/{id}", servers.path);
        match self.client.get_opt(&path, &[])? {
            None => Ok(None),
            Some(v) => Ok(Some(
                self.item(&format!("GET {path}"), &v, servers.item_key)?
                    .clone(),
            )),
        }
    }

    /// The server named `name` among those `query` lists (by a create-id tag, never by name
    /// alone), as a create answer would hold it.
    pub fn find_created(
        &self,
        servers: &Servers,
        query: &[(&str, String)],
        name: &str,
    ) -> Result<Option<Value>> {
        let list = self.client.get_all(servers.path, servers.list_key, query)?;
        Ok(list
            .into_iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
            .map(|s| json!({ servers.item_key: s })))
    }

    /// Every server of the account, or only ours (`servers.ours`), raw.
    pub fn list_servers(&self, servers: &Servers, all: bool) -> Result<Vec<Value>> {
        let (k, v) = servers.ours;
        let q = if all {
            vec![]
        } else {
            vec![(k, v.to_string())]
        };
        self.client.get_all(servers.path, servers.list_key, &q)
    }

    /// DELETEs the server `id` (a number, else a usage error naming the provider).
    pub fn destroy_server(&self, servers: &Servers, id: &str) -> Result<Destroyed> {
        let id: u64 = id.parse().map_err(|_| {
            Error::usage(format!(
                "{}: '{id}' is not a {} id (a number)",
                self.client.provider(),
                servers.noun
            ))
        })?;
        Ok(if self.client.delete(&format!("{}/{id}", servers.path))? {
            Destroyed::Destroyed
        } else {
            Destroyed::AlreadyGone
        })
    }
}
