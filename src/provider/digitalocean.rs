//! DigitalOcean (API v2) driver: droplets created with cloud-init user-data that pins an ed25519
//! host key, the user's keys registered on the account, and tags marking them as ours
//! (`provision`, `provision-created:<unix secs>`).
//!
//! Addresses: `ipv6 = true` (the default) asks for a public IPv6 address besides the IPv4 one
//! DigitalOcean always gives; `ipv4 = false` is refused before anything is created, because a
//! droplet cannot be IPv6-only. `address_family = "ipv6"` connects over IPv6.
//!
//! Credentials: `-k`, `DIGITALOCEAN_TOKEN`, `DIGITALOCEAN_ACCESS_TOKEN` (as doctl), then
//! `token` in `[providers.digitalocean]`. Base URL: `PROVISION_DIGITALOCEAN_URL`, then config
//! `api_url`, then <https://api.digitalocean.com>.

use super::cloud::{cloud_builders, token_driver, CloudCore, DriverInfo};
use super::cloudinit::{self, HostKey};
use super::http::{self, Bearer, Candidate, ErrorFields, Hooks, Resolved};
use super::registry::Registration;
use super::{map_state, Destroyed, Node, NodeSpec, NodeState, Provider, SshEndpoint};
use super::{TAG_CREATED, TAG_CREATE_ID, TAG_MANAGED};
use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "digitalocean";
pub const DEFAULT_URL: &str = "https://api.digitalocean.com";
pub const URL_ENV: &str = "PROVISION_DIGITALOCEAN_URL";
pub const TOKEN_ENVS: &[&str] = &["DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN"];

/// Droplet `status` → [`NodeState`].
pub const STATES: &[(&str, NodeState)] = &[
    ("new", NodeState::Pending),
    ("active", NodeState::Running),
    ("off", NodeState::Stopped),
    ("archive", NodeState::Terminated),
];

pub struct DigitalOcean {
    core: CloudCore,
    ip: crate::address::IpOptions,
}

/// The `ipv4`/`ipv6`/`address_family` options of `[providers.digitalocean]`; `ipv4 = false`
/// is a config error: every droplet gets a public IPv4 address.
pub fn ip_options(table: &toml::Table) -> Result<crate::address::IpOptions> {
    let ip = crate::address::IpOptions::from_table(NAME, table, true)?;
    if !ip.ipv4 {
        return Err(Error::config(format!(
            "[providers.{NAME}] ipv4 = false: DigitalOcean always gives a droplet a public IPv4 \
             address and cannot make it IPv6-only; use address_family = \"ipv6\" to connect over IPv6"
        )));
    }
    Ok(ip)
}

impl std::fmt::Debug for DigitalOcean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigitalOcean")
            .field("core", &self.core)
            .finish()
    }
}

/// This driver's registry entry.
pub const DRIVER: Registration = Registration {
    name: NAME,
    help: "token: -k, DIGITALOCEAN_TOKEN or DIGITALOCEAN_ACCESS_TOKEN, or config `token`",
    env: &[URL_ENV],
    declarable: false,
    build: build_driver,
};

/// DigitalOcean's answers: errors `{"id","message","request_id"}`; pages
/// by `links.pages.next`.
struct Api;

/// An error body.
#[derive(Deserialize)]
struct ErrorBody {
    id: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
}

/// The part of a list answer that names the next page.
#[derive(Deserialize)]
struct Paged {
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    pages: Option<Pages>,
}

#[derive(Deserialize)]
struct Pages {
    next: Option<String>,
}

impl Hooks for Api {
    fn error_fields(&self, body: &[u8]) -> ErrorFields {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => ErrorFields {
                message: b.message,
                code: b.id,
                request_id: b.request_id,
            },
            Err(_) => ErrorFields::default(),
        }
    }

    fn per_page(&self) -> u32 {
        200
    }

    fn next_page(&self, body: &Value, _page: u64) -> std::result::Result<Option<u64>, String> {
        let paged = Paged::deserialize(body).map_err(|e| format!("page links: {e}"))?;
        match paged.links.and_then(|l| l.pages).and_then(|p| p.next) {
            None => Ok(None),
            Some(n) => http::page_of(&n)
                .map(Some)
                .ok_or_else(|| format!("next page link without page: {n}")),
        }
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
    default_poll: Duration::from_secs(3),
};

cloud_builders!(DigitalOcean);
token_driver!(DigitalOcean);

impl DigitalOcean {
    fn image_candidates(&self) -> Result<Vec<(Candidate, String)>> {
        let list = self.core.client.get_all("/v2/images", "images", &[])?;
        Ok(list
            .iter()
            .filter_map(|i| {
                let id = i.get("id")?.as_u64()?.to_string();
                let slug = i.get("slug").and_then(Value::as_str);
                let name = i.get("name").and_then(Value::as_str).unwrap_or("");
                let dist = i.get("distribution").and_then(Value::as_str).unwrap_or("");
                let mut names = Vec::new();
                names.extend(slug.map(String::from));
                if !name.is_empty() {
                    names.push(name.to_string());
                }
                let desc = format!("{dist} {name}").trim().to_string();
                let send = slug.map(String::from).unwrap_or_else(|| id.clone());
                Some((Candidate { id: send, names }, desc))
            })
            .collect())
    }

    /// `(slug or id, "distribution name")` of every image, for `list-nodes --images`.
    pub fn images(&self) -> Result<Vec<(String, String)>> {
        let mut v: Vec<_> = self
            .image_candidates()?
            .into_iter()
            .map(|(c, d)| (c.id, d))
            .collect();
        v.sort_by(|a, b| http::natural_cmp(&a.0, &b.0));
        Ok(v)
    }

    /// `(slug, "1 vCPU, 1024 MB, 25 GB, $6/mo")` of every size.
    pub fn sizes(&self) -> Result<Vec<(String, String)>> {
        let list = self.core.client.get_all("/v2/sizes", "sizes", &[])?;
        Ok(list
            .iter()
            .filter_map(|s| {
                let slug = s.get("slug")?.as_str()?.to_string();
                let n = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                let desc = format!(
                    "{} vCPU, {} MB, {} GB, ${}/mo",
                    n("vcpus"),
                    n("memory"),
                    n("disk"),
                    n("price_monthly")
                );
                Some((slug, desc))
            })
            .collect())
    }

    /// `(slug, name)` of every region.
    pub fn locations(&self) -> Result<Vec<(String, String)>> {
        let list = self.core.client.get_all("/v2/regions", "regions", &[])?;
        Ok(list
            .iter()
            .filter_map(|r| {
                let slug = r.get("slug")?.as_str()?.to_string();
                let name = r
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let avail = r.get("available").and_then(Value::as_bool).unwrap_or(true);
                Some((
                    slug,
                    if avail {
                        name
                    } else {
                        format!("{name} (unavailable)")
                    },
                ))
            })
            .collect())
    }

    /// Checks image, size and region before anything is created; a wrong one is a config
    /// error with near matches. The image follows the prefix rule (see [`http::pick_image`]).
    pub fn resolve(&self, image: &str, size: &str, location: &str) -> Result<Resolved> {
        let images: Vec<Candidate> = self
            .image_candidates()?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        http::catalog::resolve(
            NAME,
            http::catalog::Labels {
                size: "size",
                location: "region",
            },
            &images,
            &self.sizes()?,
            &self.locations()?,
            (image, size, location),
        )
    }

    /// The account's key ids for `public_keys`, registering the missing ones.
    fn key_ids(&self, public_keys: &[String]) -> Result<Vec<Value>> {
        let mut ids = Vec::new();
        let mut registered = self
            .core
            .client
            .get_all("/v2/account/keys", "ssh_keys", &[])?;
        for line in public_keys {
            let Some(key) = cloudinit::parse_public_key(line) else {
                continue;
            };
            let find = |list: &[Value]| {
                list.iter().find_map(|k| {
                    let pk = k.get("public_key")?.as_str()?;
                    cloudinit::same_key(pk, line)
                        .then(|| k.get("id").cloned())
                        .flatten()
                })
            };
            if let Some(id) = find(&registered) {
                ids.push(id);
                continue;
            }
            let fp = cloudinit::fingerprint(&key);
            let name = match key.comment() {
                "" => format!("provision {fp}"),
                c => c.to_string(),
            };
            let body = json!({"name": name, "public_key": line.trim()});
            let lookup = || {
                let list = self
                    .core
                    .client
                    .get_all("/v2/account/keys", "ssh_keys", &[])?;
                Ok(find(&list).map(|id| json!({"ssh_key": {"id": id}})))
            };
            let made = match self.core.client.create("/v2/account/keys", &body, &lookup) {
                Ok(v) => v,
                // registered meanwhile (another node of this run): use that one
                Err(e) => match lookup()? {
                    Some(v) => v,
                    None => return Err(e),
                },
            };
            let id = made.pointer("/ssh_key/id").cloned().ok_or_else(|| {
                self.core
                    .client
                    .malformed("POST /v2/account/keys: no ssh_key.id")
            })?;
            crate::output::debug(&format!("{NAME}: registered key {fp}"));
            registered.push(json!({"id": id, "public_key": line.trim()}));
            ids.push(id);
        }
        Ok(ids)
    }

    /// The droplet `spec`'s create attempt made, by its create-id tag (never by name alone).
    fn find_ours(&self, spec: &NodeSpec) -> Result<Option<Value>> {
        let Some(id) = spec.create_id() else {
            return Ok(None);
        };
        let list = self.core.client.get_all(
            "/v2/droplets",
            "droplets",
            &[("tag_name", format!("{TAG_CREATE_ID}:{id}"))],
        )?;
        Ok(list
            .into_iter()
            .find(|d| d.get("name").and_then(Value::as_str) == Some(spec.name.as_str()))
            .map(|d| json!({ "droplet": d })))
    }

    fn node(&self, d: &Value) -> Result<Node> {
        let mut n = droplet_node(d, &self.ip).map_err(|m| self.core.client.malformed(m))?;
        if let Some(k) = self.core.host_key(&n.id) {
            n.ssh.host_key = Some(k.clone());
        }
        Ok(n)
    }
}

/// Tags this process made sure exist (`POST /v2/tags`), by base URL and name.
fn tags_created() -> &'static std::sync::Mutex<std::collections::BTreeSet<String>> {
    static T: std::sync::OnceLock<std::sync::Mutex<std::collections::BTreeSet<String>>> =
        std::sync::OnceLock::new();
    T.get_or_init(Default::default)
}

/// DigitalOcean tags for a node: ours, then the spec's `key:value` pairs the charset allows.
fn tags_for(spec: &NodeSpec, now: u64) -> Vec<String> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 255
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c))
    };
    let mut tags = vec![TAG_MANAGED.to_string(), format!("{TAG_CREATED}:{now}")];
    for (k, v) in &spec.tags {
        if k == TAG_MANAGED || k == TAG_CREATED {
            continue; // ours, written above in this driver's form
        }
        let v = super::tags::encode(&super::tags::DIGITALOCEAN, k, v);
        let t = if v.is_empty() {
            k.clone()
        } else {
            format!("{k}:{v}")
        };
        if ok(&t) && !tags.contains(&t) {
            tags.push(t);
        } else if !ok(&t) {
            crate::output::warn(&format!(
                "{NAME}: tag '{t}' skipped (allowed: letters, digits, _ - :)"
            ));
        }
    }
    tags
}

/// A droplet object as a [`Node`] (its public IPv4 address); `Err` names the missing field.
pub fn droplet_to_node(d: &Value) -> std::result::Result<Node, String> {
    droplet_node(d, &crate::address::IpOptions::defaults(true))
}

/// [`droplet_to_node`] choosing the public address as `ip` says.
pub fn droplet_node(
    d: &Value,
    opts: &crate::address::IpOptions,
) -> std::result::Result<Node, String> {
    let id = d
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("droplet without a numeric id")?;
    let name = d
        .get("name")
        .and_then(Value::as_str)
        .ok_or("droplet without a name")?;
    let status = d
        .get("status")
        .and_then(Value::as_str)
        .ok_or("droplet without a status")?;
    let ip_in = |version: &str, kind: &str| {
        d.pointer(&format!("/networks/{version}"))
            .and_then(Value::as_array)?
            .iter()
            .find(|n| n.get("type").and_then(Value::as_str) == Some(kind))?
            .get("ip_address")?
            .as_str()
            .map(String::from)
    };
    let ip = |kind: &str| ip_in("v4", kind);
    let s = |p: &str| d.pointer(p).and_then(Value::as_str).map(String::from);
    let mut tags = BTreeMap::new();
    for t in d
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = t.as_str() {
            let (k, v) = t.split_once(':').unwrap_or((t, ""));
            tags.insert(
                k.to_string(),
                super::tags::decode(&super::tags::DIGITALOCEAN, v),
            );
        }
    }
    Ok(Node {
        id: id.to_string(),
        name: name.to_string(),
        state: map_state(STATES, status),
        public_ip: opts.choose(ip("public"), ip_in("v6", "public")),
        private_ip: ip("private"),
        image: s("/image/slug").or_else(|| s("/image/name")),
        size: s("/size_slug").or_else(|| s("/size/slug")),
        location: s("/region/slug"),
        created: s("/created_at"),
        tags,
        ssh: SshEndpoint::default(),
    })
}

impl Provider for DigitalOcean {
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
        let keys = self
            .core
            .account_keys(&spec.public_keys, || self.key_ids(&spec.public_keys))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let image = match spec.image.parse::<u64>() {
            Ok(id) => json!(id),
            Err(_) => json!(spec.image),
        };
        let body = json!({
            "name": spec.name,
            "region": spec.location,
            "size": spec.size,
            "image": image,
            "ssh_keys": keys,
            "tags": tags_for(spec, now),
            "user_data": user_data,
            "ipv6": self.ip.ipv6,
        });
        let lookup = || self.find_ours(spec);
        let v = self.core.client.create("/v2/droplets", &body, &lookup)?;
        let d = v.get("droplet").ok_or_else(|| {
            self.core
                .client
                .malformed("POST /v2/droplets: no 'droplet' in the response")
        })?;
        let mut node = self.node(d)?;
        node.ssh.host_key = Some(host.public.clone());
        node.ssh.user = Some("root".into());
        self.core.remember_host_key(&node.id, &host.public);
        Ok(node)
    }

    fn list(&self, all: bool) -> Result<Vec<Node>> {
        let q = if all {
            vec![]
        } else {
            vec![("tag_name", TAG_MANAGED.to_string())]
        };
        let list = self.core.client.get_all("/v2/droplets", "droplets", &q)?;
        list.iter().map(|d| self.node(d)).collect()
    }

    fn get(&self, id: &str) -> Result<Option<Node>> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(None);
        };
        match self
            .core
            .client
            .get_opt(&format!("/v2/droplets/{id}"), &[])?
        {
            None => Ok(None),
            Some(v) => {
                let d = v.get("droplet").ok_or_else(|| {
                    self.core
                        .client
                        .malformed("GET droplet: no 'droplet' in the response")
                })?;
                self.node(d).map(Some)
            }
        }
    }

    fn destroy(&self, id: &str) -> Result<Destroyed> {
        let id: u64 = id
            .parse()
            .map_err(|_| Error::usage(format!("{NAME}: '{id}' is not a droplet id (a number)")))?;
        Ok(if self.core.client.delete(&format!("/v2/droplets/{id}"))? {
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

    /// Per tag: the new `key:value` tag is created (`POST /v2/tags`: a tag must exist before
    /// it is put on anything), put on the droplet (`POST /v2/tags/{tag}/resources`), then the
    /// droplet's old tag of that key, as `node` carries it, is taken off (`DELETE
    /// /v2/tags/{old}/resources`), so the key is never missing in between. No read first:
    /// `node` is as fresh as the caller's last poll (a pool's deploys stay within the list
    /// calls they share).
    fn update_tags(&self, node: &Node, tags: &BTreeMap<String, String>) -> Result<()> {
        let raw = |k: &str, v: &str| match super::tags::encode(&super::tags::DIGITALOCEAN, k, v) {
            e if e.is_empty() => k.to_string(),
            e => format!("{k}:{e}"),
        };
        let resources =
            json!({"resources": [{"resource_id": node.id, "resource_type": "droplet"}]});
        let client = &self.core.client;
        for (k, v) in tags {
            let (tag, old) = (raw(k, v), node.tags.get(k).map(|o| raw(k, o)));
            if old.as_ref() == Some(&tag) {
                continue;
            }
            // once per tag and account in this process (a pool's nodes share their tags)
            let key = format!("{}\n{tag}", client.base_url());
            if !tags_created()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key)
            {
                client.update(reqwest::Method::POST, "/v2/tags", &json!({ "name": tag }))?;
                tags_created()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key);
            }
            client.update(
                reqwest::Method::POST,
                &format!("/v2/tags/{tag}/resources"),
                &resources,
            )?;
            if let Some(old) = old {
                client.update(
                    reqwest::Method::DELETE,
                    &format!("/v2/tags/{old}/resources"),
                    &resources,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_droplet_cannot_be_ipv6_only() {
        let e = ip_options(&"ipv4 = false".parse().unwrap()).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(e.to_string().contains("cannot make it IPv6-only"), "{e}");
        let o = ip_options(&toml::Table::new()).unwrap();
        assert!(o.ipv4 && o.ipv6, "IPv6 on by default, as before");
    }

    #[test]
    fn the_ipv6_family_connects_to_the_public_v6_address() {
        let d = json!({
            "id": 5, "name": "d", "status": "active",
            "networks": {
                "v4": [{"ip_address": "192.0.2.9", "type": "public"}],
                "v6": [{"ip_address": "2001:db8::9", "type": "public"}]
            }
        });
        assert_eq!(
            droplet_to_node(&d).unwrap().public_ip.as_deref(),
            Some("192.0.2.9")
        );
        let o = ip_options(&"address_family = \"ipv6\"".parse().unwrap()).unwrap();
        assert_eq!(
            droplet_node(&d, &o).unwrap().public_ip.as_deref(),
            Some("2001:db8::9")
        );
    }
}
