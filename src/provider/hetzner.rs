//! Hetzner Cloud driver: servers created with cloud-init user-data that pins an ed25519 host
//! key, the user's keys registered as project SSH keys, and labels marking them as ours
//! (`provision=1`, `provision-created=<unix secs>`).
//!
//! Addresses: `ipv4`/`ipv6` in `[providers.hetzner]` become `public_net.enable_ipv4/6` (both
//! on by default; `ipv4 = false` makes an IPv6-only server, which Hetzner bills less). The API
//! gives a server's IPv6 as its /64 network: the server's own address is the prefix's `::1`
//! (hcloud-cli #395), which is what deploy-node connects to when there is no IPv4 (or
//! `address_family = "ipv6"`).
//!
//! Credentials: `-k`, `HCLOUD_TOKEN` (as the hcloud CLI), then `token` in `[providers.hetzner]`.
//! Base URL: `PROVISION_HETZNER_URL`, then config `api_url`, then <https://api.hetzner.cloud/v1>.

use super::cloud::{cloud_builders, token_driver, CloudCore, DriverInfo};
use super::cloudinit::{self, HostKey};
use super::http::{self, Bearer, Candidate, ErrorFields, Hooks, Resolved};
use super::registry::Registration;
use super::{map_state, Destroyed, Node, NodeSpec, NodeState, Provider, SshEndpoint};
use super::{TAG_CREATED, TAG_CREATE_ID, TAG_MANAGED};
use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "hetzner";
pub const DEFAULT_URL: &str = "https://api.hetzner.cloud/v1";
pub const URL_ENV: &str = "PROVISION_HETZNER_URL";
pub const TOKEN_ENVS: &[&str] = &["HCLOUD_TOKEN"];

/// Server `status` → [`NodeState`].
pub const STATES: &[(&str, NodeState)] = &[
    ("initializing", NodeState::Pending),
    ("starting", NodeState::Pending),
    ("rebuilding", NodeState::Pending),
    ("migrating", NodeState::Pending),
    ("running", NodeState::Running),
    ("stopping", NodeState::Stopped),
    ("off", NodeState::Stopped),
    ("deleting", NodeState::Terminated),
];

pub struct Hetzner {
    core: CloudCore,
    ip: crate::address::IpOptions,
}

/// The `ipv4`/`ipv6`/`address_family` options of `[providers.hetzner]`: Hetzner takes any
/// combination but none (both on by default).
pub fn ip_options(table: &toml::Table) -> Result<crate::address::IpOptions> {
    crate::address::IpOptions::from_table(NAME, table, true)
}

impl std::fmt::Debug for Hetzner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hetzner").field("core", &self.core).finish()
    }
}

/// This driver's registry entry.
pub const DRIVER: Registration = Registration {
    name: NAME,
    help: "token: -k, HCLOUD_TOKEN, or config `token`",
    env: &[URL_ENV],
    declarable: false,
    build: build_driver,
};

/// Hetzner's answers: errors `{"error":{"code","message"}}`; pages by
/// `meta.pagination.next_page`.
struct Api;

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Paged {
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    next_page: Option<u64>,
}

impl Hooks for Api {
    fn error_fields(&self, body: &[u8]) -> ErrorFields {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => ErrorFields {
                message: b.error.message,
                code: b.error.code,
                request_id: None,
            },
            Err(_) => ErrorFields::default(),
        }
    }

    fn next_page(&self, body: &Value, _page: u64) -> std::result::Result<Option<u64>, String> {
        let paged = Paged::deserialize(body).map_err(|e| format!("pagination: {e}"))?;
        Ok(paged
            .meta
            .and_then(|m| m.pagination)
            .and_then(|p| p.next_page))
    }
}

/// This driver's fixed facts.
pub const INFO: DriverInfo = DriverInfo {
    name: NAME,
    auth: |token| Arc::new(Bearer(token)),
    hooks: || Arc::new(Api),
    token_envs: TOKEN_ENVS,
    url_env: URL_ENV,
    default_url: DEFAULT_URL,
    default_poll: Duration::from_secs(2),
};

cloud_builders!(Hetzner);
token_driver!(Hetzner);

impl Hetzner {
    fn image_candidates(&self) -> Result<Vec<(Candidate, String)>> {
        let list =
            self.core
                .client
                .get_all("/images", "images", &[("status", "available".into())])?;
        let mut out: Vec<(Candidate, String)> = Vec::new();
        for i in &list {
            let Some(id) = i.get("id").and_then(Value::as_u64) else {
                continue;
            };
            let name = i.get("name").and_then(Value::as_str);
            let desc = i.get("description").and_then(Value::as_str).unwrap_or("");
            let arch = i.get("architecture").and_then(Value::as_str).unwrap_or("");
            // system images share a name across architectures: the name is what we send
            let send = name.map(String::from).unwrap_or_else(|| id.to_string());
            if out.iter().any(|(c, _)| c.id == send) {
                continue;
            }
            let mut names: Vec<String> = name.map(String::from).into_iter().collect();
            if name.is_none() && !desc.is_empty() {
                names.push(desc.to_string());
            }
            out.push((Candidate { id: send, names }, format!("{desc} ({arch})")));
        }
        Ok(out)
    }

    /// `(name or id, description)` of every available image, for `list-nodes --images`.
    pub fn images(&self) -> Result<Vec<(String, String)>> {
        let mut v: Vec<_> = self
            .image_candidates()?
            .into_iter()
            .map(|(c, d)| (c.id, d))
            .collect();
        v.sort_by(|a, b| http::natural_cmp(&a.0, &b.0));
        Ok(v)
    }

    /// `(name, "description, N cores, M GB")` of every server type.
    pub fn sizes(&self) -> Result<Vec<(String, String)>> {
        let list = self
            .core
            .client
            .get_all("/server_types", "server_types", &[])?;
        Ok(list
            .iter()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?.to_string();
                let n = |k: &str| t.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                let d = t.get("description").and_then(Value::as_str).unwrap_or("");
                let dep = if t.get("deprecated").and_then(Value::as_bool) == Some(true) {
                    " (deprecated)"
                } else {
                    ""
                };
                Some((
                    name,
                    format!(
                        "{d}, {} cores, {} GB RAM, {} GB disk{dep}",
                        n("cores"),
                        n("memory"),
                        n("disk")
                    ),
                ))
            })
            .collect())
    }

    /// `(name, "description, city")` of every location.
    pub fn locations(&self) -> Result<Vec<(String, String)>> {
        let list = self.core.client.get_all("/locations", "locations", &[])?;
        Ok(list
            .iter()
            .filter_map(|l| {
                let name = l.get("name")?.as_str()?.to_string();
                let s = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                Some((name, format!("{}, {}", s("description"), s("city"))))
            })
            .collect())
    }

    /// Checks image, server type and location before anything is created; a wrong one is a
    /// config error with near matches. The image follows the prefix rule.
    pub fn resolve(&self, image: &str, size: &str, location: &str) -> Result<Resolved> {
        let images: Vec<Candidate> = self
            .image_candidates()?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        http::catalog::resolve(
            NAME,
            http::catalog::Labels {
                size: "server type",
                location: "location",
            },
            &images,
            &self.sizes()?,
            &self.locations()?,
            (image, size, location),
        )
    }

    /// The project's key names for `public_keys`, registering the missing ones.
    fn key_names(&self, public_keys: &[String]) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut registered = self.core.client.get_all("/ssh_keys", "ssh_keys", &[])?;
        for line in public_keys {
            let Some(key) = cloudinit::parse_public_key(line) else {
                continue;
            };
            let find = |list: &[Value]| {
                list.iter().find_map(|k| {
                    let pk = k.get("public_key")?.as_str()?;
                    let name = k.get("name")?.as_str()?;
                    cloudinit::same_key(pk, line).then(|| name.to_string())
                })
            };
            if let Some(n) = find(&registered) {
                names.push(n);
                continue;
            }
            let fp = cloudinit::fingerprint(&key);
            // names are unique per project: the fingerprint makes ours unique too
            let name = match key.comment() {
                "" => format!("provision {fp}"),
                c => format!("{c} {fp}"),
            };
            let body =
                json!({"name": name, "public_key": line.trim(), "labels": {TAG_MANAGED: "1"}});
            let lookup = || {
                let list = self.core.client.get_all("/ssh_keys", "ssh_keys", &[])?;
                Ok(find(&list).map(|n| json!({"ssh_key": {"name": n}})))
            };
            let made = match self.core.client.create("/ssh_keys", &body, &lookup) {
                Ok(v) => v,
                Err(e) => match lookup()? {
                    Some(v) => v,
                    None => return Err(e),
                },
            };
            let n = made
                .pointer("/ssh_key/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    self.core
                        .client
                        .malformed("POST /ssh_keys: no ssh_key.name")
                })?
                .to_string();
            crate::output::debug(&format!("{NAME}: registered key {fp}"));
            registered.push(json!({"name": n, "public_key": line.trim()}));
            names.push(n);
        }
        Ok(names)
    }

    /// The server `spec`'s create attempt made, by its create-id label (never by name alone).
    fn find_ours(&self, spec: &NodeSpec) -> Result<Option<Value>> {
        let Some(id) = spec.create_id() else {
            return Ok(None);
        };
        let q = [
            ("name", spec.name.clone()),
            ("label_selector", format!("{TAG_CREATE_ID}={id}")),
        ];
        let list = self.core.client.get_all("/servers", "servers", &q)?;
        Ok(list
            .into_iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(spec.name.as_str()))
            .map(|s| json!({ "server": s })))
    }

    /// Sets the `ipv4`/`ipv6`/`address_family` options (tests; the config sets them otherwise).
    pub fn with_ip_options(mut self, ip: crate::address::IpOptions) -> Self {
        self.ip = ip;
        self
    }

    fn node(&self, s: &Value) -> Result<Node> {
        let mut n = server_node(s, &self.ip).map_err(|m| self.core.client.malformed(m))?;
        if let Some(k) = self.core.host_key(&n.id) {
            n.ssh.host_key = Some(k.clone());
        }
        Ok(n)
    }
}

/// A label key or value Hetzner accepts (values may be empty).
fn label_ok(s: &str, key: bool) -> bool {
    let name = if key {
        s.rsplit('/').next().unwrap_or(s)
    } else {
        s
    };
    let edge = |c: Option<char>| c.map_or(true, |c| c.is_ascii_alphanumeric());
    name.len() <= 63
        && (!key || !name.is_empty())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && edge(name.chars().next())
        && edge(name.chars().last())
}

/// Labels for a node: ours, then the spec's tags Hetzner accepts.
fn labels_for(spec: &NodeSpec, now: u64) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert(TAG_MANAGED.into(), json!("1"));
    labels.insert(TAG_CREATED.into(), json!(now.to_string()));
    for (k, v) in &spec.tags {
        if labels.contains_key(k) {
            continue;
        }
        let v = super::tags::encode(&super::tags::HETZNER, k, v);
        if label_ok(k, true) && label_ok(&v, false) {
            labels.insert(k.clone(), json!(v));
        } else {
            crate::output::warn(&format!(
                "{NAME}: label '{k}={v}' skipped (allowed: letters, digits, - _ .)"
            ));
        }
    }
    labels
}

/// A server object as a [`Node`] whose address is its IPv4 one, else the `::1` of its IPv6
/// network; `Err` names the missing field.
pub fn server_to_node(s: &Value) -> std::result::Result<Node, String> {
    server_node(s, &crate::address::IpOptions::defaults(true))
}

/// [`server_to_node`] choosing the address as `ip` says.
pub fn server_node(s: &Value, ip: &crate::address::IpOptions) -> std::result::Result<Node, String> {
    let id = s
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("server without a numeric id")?;
    let name = s
        .get("name")
        .and_then(Value::as_str)
        .ok_or("server without a name")?;
    let status = s
        .get("status")
        .and_then(Value::as_str)
        .ok_or("server without a status")?;
    let st = |p: &str| s.pointer(p).and_then(Value::as_str).map(String::from);
    let mut tags = BTreeMap::new();
    for (k, v) in s
        .get("labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let v = v.as_str().unwrap_or("");
        tags.insert(k.clone(), super::tags::decode(&super::tags::HETZNER, v));
    }
    let private_ip = s
        .get("private_net")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|n| n.get("ip"))
        .and_then(Value::as_str)
        .map(String::from);
    Ok(Node {
        id: id.to_string(),
        name: name.to_string(),
        state: map_state(STATES, status),
        public_ip: ip.choose(
            st("/public_net/ipv4/ip"),
            st("/public_net/ipv6/ip").and_then(|n| crate::address::host_in_network(&n)),
        ),
        private_ip,
        image: st("/image/name").or_else(|| st("/image/description")),
        size: st("/server_type/name"),
        location: st("/location/name").or_else(|| st("/datacenter/location/name")),
        created: st("/created"),
        tags,
        ssh: SshEndpoint::default(),
    })
}

impl Provider for Hetzner {
    fn catalog(&self, kind: super::Catalog) -> Result<Vec<(String, String)>> {
        match kind {
            super::Catalog::Images => self.images(),
            super::Catalog::Sizes => self.sizes(),
            super::Catalog::Locations => self.locations(),
        }
    }

    fn prepare(&self, image: &str, size: &str, location: &str) -> Result<super::Prepared> {
        let r = self.resolve(image, size, location)?;
        Ok(super::Prepared {
            image: r.image,
            size: r.size,
            location: r.location,
        })
    }

    fn name(&self) -> &str {
        NAME
    }

    fn create(&self, spec: &NodeSpec) -> Result<Node> {
        let spec = &spec.identified();
        let host = HostKey::generate()?;
        let user_data = cloudinit::user_data(&spec.public_keys, &host, self.core.user.as_ref());
        self.core.client.add_secret(host.private_openssh(), true);
        self.core.client.add_secret(&user_data, false);
        let keys: Vec<String> = self
            .core
            .account_keys(&spec.public_keys, || {
                Ok(self
                    .key_names(&spec.public_keys)?
                    .into_iter()
                    .map(Value::String)
                    .collect())
            })?
            .into_iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut body = json!({
            "name": spec.name,
            "server_type": spec.size,
            "image": spec.image,
            "ssh_keys": keys,
            "labels": labels_for(spec, now),
            "user_data": user_data,
            "start_after_create": true,
            "public_net": {"enable_ipv4": self.ip.ipv4, "enable_ipv6": self.ip.ipv6},
        });
        if !spec.location.is_empty() {
            body["location"] = json!(spec.location);
        }
        let lookup = || self.find_ours(spec);
        let v = self.core.client.create("/servers", &body, &lookup)?;
        let s = v.get("server").ok_or_else(|| {
            self.core
                .client
                .malformed("POST /servers: no 'server' in the response")
        })?;
        let mut node = self.node(s)?;
        node.ssh.host_key = Some(host.public.clone());
        node.ssh.user = Some("root".into());
        self.core.remember_host_key(&node.id, &host.public);
        Ok(node)
    }

    fn list(&self, all: bool) -> Result<Vec<Node>> {
        let q = if all {
            vec![]
        } else {
            vec![("label_selector", TAG_MANAGED.to_string())]
        };
        let list = self.core.client.get_all("/servers", "servers", &q)?;
        list.iter().map(|s| self.node(s)).collect()
    }

    fn get(&self, id: &str) -> Result<Option<Node>> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(None);
        };
        match self.core.client.get_opt(&format!("/servers/{id}"), &[])? {
            None => Ok(None),
            Some(v) => {
                let s = v.get("server").ok_or_else(|| {
                    self.core
                        .client
                        .malformed("GET server: no 'server' in the response")
                })?;
                self.node(s).map(Some)
            }
        }
    }

    fn destroy(&self, id: &str) -> Result<Destroyed> {
        let id: u64 = id
            .parse()
            .map_err(|_| Error::usage(format!("{NAME}: '{id}' is not a server id (a number)")))?;
        Ok(if self.core.client.delete(&format!("/servers/{id}"))? {
            Destroyed::Destroyed
        } else {
            Destroyed::AlreadyGone
        })
    }

    fn poll_interval(&self) -> Duration {
        self.core.poll
    }

    fn updates_tags(&self) -> bool {
        true
    }

    /// `PUT /servers/{id}` with the server's labels (read first: the PUT replaces them all)
    /// and these, encoded.
    fn update_tags(&self, node: &Node, tags: &BTreeMap<String, String>) -> Result<()> {
        let path = format!("/servers/{}", node.id);
        let current = self.core.client.get(&path, &[])?;
        let mut labels = current
            .pointer("/server/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in tags {
            labels.insert(
                k.clone(),
                json!(super::tags::encode(&super::tags::HETZNER, k, v)),
            );
        }
        self.core
            .client
            .update(reqwest::Method::PUT, &path, &json!({ "labels": labels }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(v4: Value, v6: Value) -> Value {
        json!({
            "id": 42, "name": "n", "status": "running",
            "public_net": {"ipv4": v4, "ipv6": v6}
        })
    }

    fn opts(t: &str) -> crate::address::IpOptions {
        ip_options(&t.parse().unwrap()).unwrap()
    }

    #[test]
    fn an_ipv6_only_server_is_reached_on_the_1_of_its_64() {
        let s = server(Value::Null, json!({"ip": "2001:db8:5:6::/64"}));
        let n = server_node(&s, &opts("ipv4 = false")).unwrap();
        assert_eq!(n.public_ip.as_deref(), Some("2001:db8:5:6::1"));
        // the defaults too: no IPv4, so IPv6
        let n = server_to_node(&s).unwrap();
        assert_eq!(n.public_ip.as_deref(), Some("2001:db8:5:6::1"));
    }

    #[test]
    fn ipv4_is_preferred_unless_the_family_says_ipv6() {
        let s = server(
            json!({"ip": "192.0.2.7"}),
            json!({"ip": "2001:db8:5:6::/64"}),
        );
        let n = server_node(&s, &opts("")).unwrap();
        assert_eq!(n.public_ip.as_deref(), Some("192.0.2.7"));
        let n = server_node(&s, &opts("address_family = \"ipv6\"")).unwrap();
        assert_eq!(n.public_ip.as_deref(), Some("2001:db8:5:6::1"));
        let n = server_node(&s, &opts("address_family = \"ipv4\"")).unwrap();
        assert_eq!(n.public_ip.as_deref(), Some("192.0.2.7"));
        // not addressed yet
        let s = server(Value::Null, Value::Null);
        assert_eq!(server_node(&s, &opts("")).unwrap().public_ip, None);
    }

    #[test]
    fn options_map_to_public_net() {
        let o = opts("ipv4 = false");
        assert!(!o.ipv4 && o.ipv6);
        let o = opts("ipv6 = false");
        assert!(o.ipv4 && !o.ipv6);
        assert!(ip_options(&"ipv4 = false\nipv6 = false".parse().unwrap()).is_err());
    }
}
