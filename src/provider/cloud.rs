//! What the cloud drivers share besides HTTP: construction from `[providers.NAME]` and `-k`
//! (credential, base URL, HTTP settings, poll interval, the user's cloud-config), the host keys
//! of the nodes a driver instance created (so `get` reports them too), and the builder methods
//! tests use to point a driver at a loopback fake, each node's raw tags as last read, and the
//! `Provider` methods the token drivers (DigitalOcean, Hetzner) share. One copy, so the
//! drivers cannot drift. Beside it: the server steps (cloud/servers.rs), key registration
//! (cloud/keys.rs) and the catalogs (cloud/catalog.rs) those drivers share; the paths, keys
//! and names of each API stay with its driver and come in as parameters.

use super::cloudinit::{self, HostKey};
use super::http::{self, Auth, Client, Credential, CredentialSource, Hooks, HttpConfig};
use super::Node;
use crate::error::Result;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod catalog;
pub mod keys;
pub mod servers;
pub use catalog::CloudCatalog;
pub use keys::KeyApi;
pub use servers::{Boot, Servers};

/// A driver's fixed facts.
pub struct DriverInfo {
    pub name: &'static str,
    /// How the driver authenticates with its token.
    pub auth: fn(Credential) -> Arc<dyn Auth>,
    /// How the driver's API answers.
    pub hooks: fn() -> Arc<dyn Hooks>,
    /// Environment variables holding the token, in the order they are tried.
    pub token_envs: &'static [&'static str],
    pub url_env: &'static str,
    pub default_url: &'static str,
    pub default_poll: Duration,
}

pub struct CloudCore {
    pub client: Client,
    /// The user's own cloud-config from `user_data`, merged into what we send.
    pub user: Option<Map<String, Value>>,
    pub poll: Duration,
    /// Where the credential came from, for errors.
    pub source: CredentialSource,
    host_keys: Mutex<HashMap<String, String>>,
    /// The account's references (ids, names) of the public keys of a create, per key set.
    account_keys: Mutex<HashMap<Vec<String>, Vec<Value>>>,
    /// Each node's tags as the provider last answered them, raw (see [`CloudCore::seen_tags`]).
    raw_tags: Mutex<HashMap<String, Value>>,
}

impl std::fmt::Debug for CloudCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudCore")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl CloudCore {
    /// From the driver's `[providers.NAME]` table (`token`, `api_url`, `timeout`,
    /// `connect_timeout`, `retries`, `poll_interval`, `user_data`) and the `-k` flag.
    pub fn from_config(
        info: &DriverInfo,
        table: &toml::Table,
        secret_flag: Option<&str>,
    ) -> Result<Self> {
        let token = Credential::find(info.name, secret_flag, info.token_envs, table)?;
        let source = token.source.clone();
        Self::with_auth(info, table, (info.auth)(token), source)
    }

    /// Like [`CloudCore::from_config`] for a driver that finds its own credentials and signs
    /// its requests itself (`auth`); `source` names where the credentials came from.
    pub fn with_auth(
        info: &DriverInfo,
        table: &toml::Table,
        auth: Arc<dyn Auth>,
        source: CredentialSource,
    ) -> Result<Self> {
        let base = http::base_url(table, info.url_env, info.default_url);
        let cfg = HttpConfig::from_table(info.name, table)?;
        let poll = http::seconds(info.name, table, "poll_interval")?.unwrap_or(info.default_poll);
        Ok(CloudCore {
            client: Client::new(info.name, auth, (info.hooks)(), base, cfg)?,
            user: cloudinit::user_config(info.name, table)?,
            poll,
            source,
            host_keys: Mutex::new(HashMap::new()),
            account_keys: Mutex::new(HashMap::new()),
            raw_tags: Mutex::new(HashMap::new()),
        })
    }

    /// Remembers the pinned host key of a node this instance created.
    pub fn remember_host_key(&self, id: &str, public: &str) {
        self.host_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), public.to_string());
    }

    /// The account's references for `public_keys`, from `lookup` (which may register missing
    /// keys) once per key set and instance: a pool's creates share one lookup instead of
    /// listing the account's keys once per node. Concurrent callers wait for that one.
    pub fn account_keys(
        &self,
        public_keys: &[String],
        lookup: impl FnOnce() -> Result<Vec<Value>>,
    ) -> Result<Vec<Value>> {
        let mut cache = self.account_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(refs) = cache.get(public_keys) {
            return Ok(refs.clone());
        }
        let refs = lookup()?;
        cache.insert(public_keys.to_vec(), refs.clone());
        Ok(refs)
    }

    /// The pinned host key of a node this instance created.
    pub fn host_key(&self, id: &str) -> Option<String> {
        self.host_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// `node` with the host key this instance pinned for it, if it made it.
    pub fn pinned(&self, mut node: Node) -> Node {
        if let Some(k) = self.host_key(&node.id) {
            node.ssh.host_key = Some(k);
        }
        node
    }

    /// A node this instance just created with `host` pinned: remembered, logged in as root.
    pub fn created(&self, mut node: Node, host: &HostKey) -> Node {
        node.ssh.host_key = Some(host.public.clone());
        node.ssh.user = Some("root".into());
        self.remember_host_key(&node.id, &host.public);
        node
    }

    /// Remembers a node's tags as the provider answered them (a driver whose tag update
    /// replaces them all sends them back without reading them first).
    pub fn remember_tags(&self, id: &str, raw: Value) {
        self.raw_tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), raw);
    }

    /// A node's tags as the provider last answered them to this instance (a list, get or
    /// create), raw; `None` when it never showed the node.
    pub fn seen_tags(&self, id: &str) -> Option<Value> {
        self.raw_tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The items under `key` of every page of `path` that parse as `T` (the catalog entries
    /// whose shape a driver reads); the others are skipped.
    pub fn list_of<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>> {
        let list = self.client.get_all(path, key, query)?;
        Ok(list
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect())
    }
}

/// Seconds since the Unix epoch (0 before it), for creation-time tags.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The builder methods of a driver whose `core` field is a [`CloudCore`].
macro_rules! cloud_builders {
    ($ty:ty) => {
        impl $ty {
            pub fn with_base_url(mut self, url: impl AsRef<str>) -> Self {
                self.core.client.set_base_url(url.as_ref());
                self
            }

            pub fn with_http_config(mut self, cfg: super::http::HttpConfig) -> Result<Self> {
                self.core.client.set_config(cfg)?;
                Ok(self)
            }

            /// Shares one rate-limit budget between driver instances of the same account.
            pub fn with_budget(mut self, budget: std::sync::Arc<super::http::RateBudget>) -> Self {
                self.core.client.set_budget(budget);
                self
            }

            pub fn with_inspector(mut self, f: super::http::Inspector) -> Self {
                self.core.client.set_inspector(f);
                self
            }

            pub fn with_poll_interval(mut self, d: std::time::Duration) -> Self {
                self.core.poll = d;
                self
            }

            pub fn budget(&self) -> std::sync::Arc<super::http::RateBudget> {
                self.core.client.budget()
            }

            pub fn credential_source(&self) -> &super::http::CredentialSource {
                &self.core.source
            }
        }
    };
}
pub(crate) use cloud_builders;

/// `from_config` and the registry's constructor of a driver that is a [`CloudCore`] with a
/// token (`core` and `ip` its fields, `INFO` its facts, `ip_options` its reader of the
/// `ipv4`/`ipv6` options).
macro_rules! token_driver {
    ($ty:ident) => {
        impl $ty {
            /// From `[providers.NAME]` (see [`CloudCore::from_config`]) and the `-k` flag.
            pub fn from_config(table: &toml::Table, secret_flag: Option<&str>) -> Result<Self> {
                Ok($ty {
                    core: CloudCore::from_config(&INFO, table, secret_flag)?,
                    ip: ip_options(table)?,
                })
            }
        }

        fn build_driver(
            table: &toml::Table,
            creds: &super::Credentials,
        ) -> Result<Box<dyn super::Provider>> {
            Ok(Box::new($ty::from_config(table, creds.secret.as_deref())?))
        }
    };
}
pub(crate) use token_driver;

/// The [`super::Provider`] methods a token cloud's driver shares, for inside its `impl
/// Provider`: catalogs and their check through [`CloudCatalog`], list, get and destroy through
/// the [`Servers`] given (each raw server read by the driver's own `node`), its name `NAME`,
/// the poll interval, and tags that can be updated (the driver writes `update_tags`).
macro_rules! token_provider {
    ($servers:expr) => {
        fn catalog(&self, kind: super::Catalog) -> Result<Vec<(String, String)>> {
            self.catalog_of(kind)
        }

        fn prepare(&self, image: &str, size: &str, location: &str) -> Result<super::Prepared> {
            self.prepared(image, size, location)
        }

        fn name(&self) -> &str {
            NAME
        }

        fn list(&self, all: bool) -> Result<Vec<Node>> {
            let list = self.core.list_servers(&$servers, all)?;
            list.iter().map(|s| self.node(s)).collect()
        }

        fn get(&self, id: &str) -> Result<Option<Node>> {
            match self.core.get_server(&$servers, id)? {
                None => Ok(None),
                Some(s) => self.node(&s).map(Some),
            }
        }

        fn destroy(&self, id: &str) -> Result<Destroyed> {
            self.core.destroy_server(&$servers, id)
        }

        fn poll_interval(&self) -> Duration {
            self.core.poll
        }

        fn updates_tags(&self) -> bool {
            true
        }
    };
}
pub(crate) use token_provider;
