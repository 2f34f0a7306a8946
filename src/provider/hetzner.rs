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

use super::cloud::{cloud_builders, now_secs, token_driver, token_provider};
use super::cloud::{CloudCatalog, CloudCore, DriverInfo};
use super::cloud::{KeyApi, Servers};
use super::http::catalog::Labels;
use super::http::{Bearer, Candidate, ErrorFields, Hooks};
use super::registry::Registration;
use super::{map_state, Destroyed, Node, NodeSpec, NodeState, Provider, SshEndpoint};
use super::{TAG_CREATED, TAG_CREATE_ID, TAG_MANAGED};
use crate::error::Result;
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

/// Where servers live.
const SERVERS: Servers = Servers {
    path: "/servers",
    list_key: "servers",
    item_key: "server",
    noun: "server",
    ours: ("label_selector", TAG_MANAGED),
};

/// The project's SSH keys: a server create takes their names, unique per project, so a new
/// key's name carries its fingerprint; ours carry our label.
const KEYS: KeyApi = KeyApi {
    path: "/ssh_keys",
    list_key: "ssh_keys",
    item_key: "ssh_key",
    reference: "name",
    name: |comment, fp| match comment {
        "" => format!("provision {fp}"),
        c => format!("{c} {fp}"),
    },
    extra: || {
        let mut m = Map::new();
        m.insert("labels".into(), json!({ TAG_MANAGED: "1" }));
        m
    },
};

/// An image of `GET /images`, the fields we read.
#[derive(Deserialize)]
struct Image {
    id: Option<u64>,
    name: Option<String>,
    description: Option<String>,
    architecture: Option<String>,
}

/// A server type of `GET /server_types`.
#[derive(Deserialize)]
struct ServerType {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    cores: f64,
    #[serde(default)]
    memory: f64,
    #[serde(default)]
    disk: f64,
    deprecated: Option<bool>,
}

/// A location of `GET /locations`.
#[derive(Deserialize)]
struct Location {
    name: Option<String>,
    description: Option<String>,
    city: Option<String>,
}

impl CloudCatalog for Hetzner {
    const PROVIDER: &'static str = NAME;
    const LABELS: Labels = Labels {
        size: "server type",
        location: "location",
    };

    fn image_candidates(&self) -> Result<Vec<(Candidate, String)>> {
        let list: Vec<Image> =
            self.core
                .list_of("/images", "images", &[("status", "available".into())])?;
        let mut out: Vec<(Candidate, String)> = Vec::new();
        for i in list {
            let Some(id) = i.id else {
                continue;
            };
            let desc = i.description.unwrap_or_default();
            let arch = i.architecture.unwrap_or_default();
            // system images share a name across architectures: the name is what we send
            let send = i.name.clone().unwrap_or_else(|| id.to_string());
            if out.iter().any(|(c, _)| c.id == send) {
                continue;
            }
            let mut names: Vec<String> = i.name.iter().cloned().collect();
            if i.name.is_none() && !desc.is_empty() {
                names.push(desc.clone());
            }
            out.push((Candidate { id: send, names }, format!("{desc} ({arch})")));
        }
        Ok(out)
    }

    /// `(name, "description, N cores, M GB")` of every server type.
    fn sizes(&self) -> Result<Vec<(String, String)>> {
        let list: Vec<ServerType> = self.core.list_of("/server_types", "server_types", &[])?;
        Ok(list
            .into_iter()
            .filter_map(|t| {
                let d = t.description.unwrap_or_default();
                let dep = if t.deprecated == Some(true) {
                    " (deprecated)"
                } else {
                    ""
                };
                let desc = format!(
                    "{d}, {} cores, {} GB RAM, {} GB disk{dep}",
                    t.cores, t.memory, t.disk
                );
                Some((t.name?, desc))
            })
            .collect())
    }

    /// `(name, "description, city")` of every location.
    fn locations(&self) -> Result<Vec<(String, String)>> {
        let list: Vec<Location> = self.core.list_of("/locations", "locations", &[])?;
        Ok(list
            .into_iter()
            .filter_map(|l| {
                let desc = format!(
                    "{}, {}",
                    l.description.unwrap_or_default(),
                    l.city.unwrap_or_default()
                );
                Some((l.name?, desc))
            })
            .collect())
    }
}

impl Hetzner {
    /// The server `spec`'s create attempt made, by its create-id label (never by name alone).
    fn find_ours(&self, spec: &NodeSpec) -> Result<Option<Value>> {
        let Some(id) = spec.create_id() else {
            return Ok(None);
        };
        let q = [
            ("name", spec.name.clone()),
            ("label_selector", format!("{TAG_CREATE_ID}={id}")),
        ];
        self.core.find_created(&SERVERS, &q, &spec.name)
    }

    /// Sets the `ipv4`/`ipv6`/`address_family` options (tests; the config sets them otherwise).
    pub fn with_ip_options(mut self, ip: crate::address::IpOptions) -> Self {
        self.ip = ip;
        self
    }

    /// The server as a node; its raw labels are remembered for [`Provider::update_tags`].
    fn node(&self, s: &Value) -> Result<Node> {
        let n = server_node(s, &self.ip).map_err(|m| self.core.client.malformed(m))?;
        if let Some(labels) = s.get("labels").filter(|l| l.is_object()) {
            self.core.remember_tags(&n.id, labels.clone());
        }
        Ok(self.core.pinned(n))
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

/// A server, the fields we read: any of them but id, name and status may be missing or null
/// (an IPv6-only server has `public_net.ipv4: null`; one on a private network only, no
/// public address at all).
#[derive(Deserialize)]
struct Server {
    id: u64,
    name: String,
    status: String,
    public_net: Option<PublicNet>,
    private_net: Option<Vec<PrivateNet>>,
    image: Option<Named>,
    server_type: Option<Named>,
    location: Option<Named>,
    datacenter: Option<Datacenter>,
    created: Option<String>,
    labels: Option<BTreeMap<String, Option<String>>>,
}

/// `public_net`: an IPv4 address, and the IPv6 /64 network.
#[derive(Deserialize)]
struct PublicNet {
    ipv4: Option<Ip>,
    ipv6: Option<Ip>,
}

/// `public_net.ipv4`/`ipv6`.
#[derive(Deserialize)]
struct Ip {
    ip: Option<String>,
}

/// One private network the server is attached to.
#[derive(Deserialize)]
struct PrivateNet {
    ip: Option<String>,
}

/// An image, server type or location as a server embeds it.
#[derive(Deserialize)]
struct Named {
    name: Option<String>,
    description: Option<String>,
}

/// `datacenter`, for its location (older answers lack the server's own `location`).
#[derive(Deserialize)]
struct Datacenter {
    location: Option<Named>,
}

/// A server object as a [`Node`] whose address is its IPv4 one, else the `::1` of its IPv6
/// network; `Err` names the missing field.
pub fn server_to_node(s: &Value) -> std::result::Result<Node, String> {
    server_node(s, &crate::address::IpOptions::defaults(true))
}

/// [`server_to_node`] choosing the address as `ip` says.
pub fn server_node(s: &Value, ip: &crate::address::IpOptions) -> std::result::Result<Node, String> {
    let s = Server::deserialize(s).map_err(|e| format!("server: {e}"))?;
    let tags = s
        .labels
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let v = super::tags::decode(&super::tags::HETZNER, v.as_deref().unwrap_or(""));
            (k, v)
        })
        .collect();
    let (v4, v6) = s.public_net.map_or((None, None), |p| (p.ipv4, p.ipv6));
    let name_of = |n: Option<Named>| n.and_then(|n| n.name);
    Ok(Node {
        id: s.id.to_string(),
        name: s.name,
        state: map_state(STATES, &s.status),
        public_ip: ip.choose(
            v4.and_then(|a| a.ip),
            v6.and_then(|a| a.ip)
                .and_then(|n| crate::address::host_in_network(&n)),
        ),
        private_ip: s
            .private_net
            .and_then(|nets| nets.into_iter().next())
            .and_then(|n| n.ip),
        image: s.image.and_then(|i| i.name.or(i.description)),
        size: name_of(s.server_type),
        location: name_of(s.location).or_else(|| name_of(s.datacenter.and_then(|d| d.location))),
        created: s.created,
        tags,
        ssh: SshEndpoint::default(),
    })
}

impl Provider for Hetzner {
    token_provider!(SERVERS);

    fn create(&self, spec: &NodeSpec) -> Result<Node> {
        let spec = &spec.identified();
        let boot = self.core.boot(&KEYS, &spec.public_keys)?;
        let mut body = json!({
            "name": spec.name,
            "server_type": spec.size,
            "image": spec.image,
            "ssh_keys": boot.keys,
            "labels": labels_for(spec, now_secs()),
            "user_data": boot.user_data,
            "start_after_create": true,
            "public_net": {"enable_ipv4": self.ip.ipv4, "enable_ipv6": self.ip.ipv6},
        });
        if !spec.location.is_empty() {
            body["location"] = json!(spec.location);
        }
        let lookup = || self.find_ours(spec);
        let node = |s: &Value| self.node(s);
        self.core
            .create_server(&SERVERS, &body, &lookup, &boot.host, node)
    }

    /// One `PUT /servers/{id}` with the server's labels and these, encoded. The PUT replaces
    /// all labels, so it sends back the ones the server carried when this instance last read
    /// it (its create, the pool's shared list, a get: as fresh as the caller's last poll, as
    /// on DigitalOcean), raw as Hetzner gave them: a label set by someone else is sent back
    /// unchanged. Only a server this instance never read is read first (issue 20: one
    /// request per node and update).
    fn update_tags(&self, node: &Node, tags: &BTreeMap<String, String>) -> Result<()> {
        let path = format!("{}/{}", SERVERS.path, node.id);
        let seen = match self.core.seen_tags(&node.id) {
            Some(labels) => labels,
            None => self
                .core
                .client
                .get(&path, &[])?
                .pointer("/server/labels")
                .cloned()
                .unwrap_or_default(),
        };
        let mut labels = seen.as_object().cloned().unwrap_or_default();
        for (k, v) in tags {
            labels.insert(
                k.clone(),
                json!(super::tags::encode(&super::tags::HETZNER, k, v)),
            );
        }
        let labels = Value::Object(labels);
        self.core
            .client
            .update(reqwest::Method::PUT, &path, &json!({ "labels": labels }))?;
        self.core.remember_tags(&node.id, labels);
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

    #[test]
    fn odd_servers_parse_or_name_what_is_missing() {
        // no public_net at all, a private network only: no public address, the private one
        let s = json!({
            "id": 7, "name": "p", "status": "running",
            "private_net": [{"ip": "10.0.1.5", "network": 1}, {"ip": "10.0.2.5"}]
        });
        let n = server_to_node(&s).unwrap();
        assert_eq!(n.public_ip, None);
        assert_eq!(n.private_ip.as_deref(), Some("10.0.1.5"));
        // null IPv4 and an IPv6 network that is no network: no address rather than garbage
        let s = server(Value::Null, json!({"ip": null}));
        assert_eq!(server_to_node(&s).unwrap().public_ip, None);
        // the location through the datacenter; a null label value; an unknown status
        let s = json!({
            "id": 8, "name": "q", "status": "unknown-new-state",
            "datacenter": {"location": {"name": "hel1"}},
            "image": {"name": null, "description": "my snapshot"},
            "labels": {"provision": "", "x": null}, "private_net": []
        });
        let n = server_to_node(&s).unwrap();
        assert_eq!(n.location.as_deref(), Some("hel1"));
        assert_eq!(n.image.as_deref(), Some("my snapshot"));
        assert_eq!(n.state, NodeState::Unknown);
        assert_eq!(n.tags.get("x").map(String::as_str), Some(""));
        assert!(n.is_managed());
        assert_eq!(n.private_ip, None);
        let e = server_to_node(&json!({"id": 9, "name": "r"})).unwrap_err();
        assert!(e.contains("`status`"), "{e}");
    }
}
