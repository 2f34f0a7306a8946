//! OpenStack routes of the fake, all on one loopback port: Keystone v3 (version discovery,
//! password and application-credential tokens with a service catalog), Nova v2.1 (servers,
//! flavors, key pairs, availability zones), Glance v2 (image list) and Neutron v2.0 (network
//! list). The shapes follow libcloud's recorded responses
//! (conformance/libcloud-fixtures/openstack) and the official client, python-openstackclient,
//! runs against it in tests/fake_openstack.rs.
//!
//! Catalog layout (URLs built from the request's `Host`, so always loopback):
//! `RegionOne` public `/compute/v2.1`, internal `/internal/compute/v2.1`, `RegionTwo` public
//! `/r2/compute/v2.1`; the same for `/image` and `/network`. The `/internal` and `/r2` prefixes
//! route to the same services, and the request log keeps them, so tests can tell which endpoint
//! a client chose.
//!
//! Tokens live [`FakeCloud::set_token_ttl`] (default an hour); an expired or unknown token gets
//! Keystone's 401. Servers are `BUILD` until active, then `ACTIVE` with the hook's loopback
//! address as their fixed address on the network they asked for; with
//! [`FakeCloud::set_floating`] the hook's address is a floating one and the fixed one is
//! 127.255.0.1, where nothing listens. [`FakeCloud::set_status`]`(Some("ERROR"))` makes every
//! server report ERROR with a Nova `fault`.

use super::digitalocean::fake_md5;
use super::{now_rfc3339, page_of_marker, FakeCloud, Inner, Key, Req, Resp, Server};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const USER: &str = "provision-user";
pub const PROJECT: &str = "provision-project";
pub const PROJECT_ID: &str = "9c4693dce56b493b9b83197d900f7fba";
pub const APP_CRED_ID: &str = "4bd4b1e1a4e54e5a9a87c1fbdc2b2a3f";
/// The fault message of a server in ERROR.
pub const FAULT: &str = "No valid host was found. There are not enough hosts available.";

/// (id, name, created_at)
const IMAGES: &[(&str, &str, &str)] = &[
    (
        "f24a3c1b-d52a-4116-91da-25b3eee8f55e",
        "ubuntu-24.04",
        "2024-04-25T10:00:00Z",
    ),
    (
        "4949f9ee-2421-4c81-8b49-13119446008b",
        "ubuntu-22.04",
        "2022-04-21T10:00:00Z",
    ),
    (
        "d9a9cd9a-278a-444c-90a6-d24b8c688a63",
        "ubuntu-9.04",
        "2009-04-23T10:00:00Z",
    ),
    (
        "8af1a54e-a1b2-4df8-b747-4bec97abc799",
        "debian-12",
        "2023-06-10T10:00:00Z",
    ),
    (
        "9af1a54e-a1b2-4df8-b747-4bec97abc799",
        "my-snapshot",
        "2025-01-02T10:00:00Z",
    ),
];
/// (id, name, vcpus, ram MB, disk GB)
const FLAVORS: &[(&str, &str, u64, u64, u64)] = &[
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
];
/// (id, name)
const NETWORKS: &[(&str, &str)] = &[
    ("a4c7a1a6-3d7a-4c58-9e2b-1b2d7f0c0b11", "private"),
    ("b5d8b2b7-4e8b-4d69-8f3c-2c3e8a1d1c22", "public"),
];
const ZONES: &[&str] = &["nova", "az2"];

/// What the fake keeps for OpenStack besides the shared [`Server`]s.
#[derive(Default)]
pub struct OsState {
    /// token → expiry
    pub tokens: BTreeMap<String, Instant>,
    /// server id → (key_name, network name, availability zone)
    pub extra: BTreeMap<u64, (Option<String>, String, String)>,
    pub floating: bool,
    /// Token lifetime in ms; 0: an hour.
    pub ttl_ms: u64,
}

impl FakeCloud {
    /// An openrc's worth of `OS_*` variables for this fake, with `password`.
    pub fn os_env(&self, password: &str) -> Vec<(&'static str, String)> {
        vec![
            ("OS_AUTH_URL", format!("{}/v3", self.url)),
            ("OS_USERNAME", USER.into()),
            ("OS_PASSWORD", password.into()),
            ("OS_PROJECT_NAME", PROJECT.into()),
            ("OS_USER_DOMAIN_NAME", "Default".into()),
            ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
            ("OS_REGION_NAME", "RegionOne".into()),
            ("OS_INTERFACE", "public".into()),
        ]
    }

    /// Tokens issued from now on expire after `ttl`.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.inner.os.lock().unwrap().ttl_ms = ttl.as_millis().max(1) as u64;
    }

    /// Servers get their node's address as a floating IP (the fixed one leads nowhere).
    pub fn set_floating(&self, on: bool) {
        self.inner.os.lock().unwrap().floating = on;
    }

    /// How many tokens Keystone issued.
    pub fn tokens_issued(&self) -> usize {
        self.count_requests("POST", "/v3/auth/tokens")
    }

    /// A server's Nova metadata.
    pub fn metadata(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.server_named(name).map(|s| s.labels)
    }
}

/// The server's UUID-shaped id.
pub fn uuid_of(id: u64) -> String {
    format!("{:08x}-4f2e-4c1a-9b3d-{:012x}", id >> 16, id)
}

fn id_of(uuid: &str) -> Option<u64> {
    let tail = uuid.rsplit('-').next()?;
    let id = u64::from_str_radix(tail, 16).ok()?;
    (uuid_of(id) == uuid).then_some(id)
}

fn base(req: &Req) -> String {
    format!("http://{}", req.header("host").unwrap_or("127.0.0.1"))
}

/// Keystone's 401, as keystonemiddleware sends it.
fn unauthorized() -> Resp {
    Resp::json(
        401,
        json!({"error": {"code": 401, "title": "Unauthorized",
            "message": "The request you have made requires authentication."}}),
    )
}

/// Nova's error body: `{"<kind>": {"code", "message"}}`.
pub fn nova_error(status: u16, message: &str) -> Resp {
    let kind = match status {
        400 => "badRequest",
        401 => return unauthorized(),
        403 => "forbidden",
        404 => "itemNotFound",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        503 => "serviceUnavailable",
        _ => "computeFault",
    };
    Resp::json(status, json!({kind: {"code": status, "message": message}}))
}

pub fn route(inner: &Inner, req: &Req) -> Resp {
    let mut path = req.path.as_str();
    for p in ["/internal", "/r2"] {
        if let Some(rest) = path.strip_prefix(p) {
            path = rest;
        }
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", [""]) => Resp::json(
            300,
            json!({"versions": {"values": [identity_version(req)]}}),
        ),
        ("GET", ["v3"]) => Resp::json(200, json!({"version": identity_version(req)})),
        ("POST", ["v3", "auth", "tokens"]) => issue_token(inner, req),
        (_, [svc, rest @ ..]) if ["compute", "image", "network"].contains(svc) => {
            if rest.is_empty() || (rest.len() == 1 && rest[0].is_empty()) {
                return versions(req, svc);
            }
            if !authorized(inner, req) {
                return unauthorized();
            }
            match *svc {
                "compute" if rest[0] == "v2.1" => nova(inner, req, &rest[1..]),
                "image" if rest[0] == "v2" => glance(req, &rest[1..]),
                "network" if rest[0] == "v2.0" => neutron(req, &rest[1..]),
                _ => nova_error(404, "Not found"),
            }
        }
        _ => nova_error(404, "The resource could not be found."),
    }
}

fn identity_version(req: &Req) -> Value {
    json!({
        "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/v3/", base(req))}],
        "media-types": [{"base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"}]
    })
}

/// The version document of a service's root.
fn versions(req: &Req, svc: &str) -> Resp {
    let b = base(req);
    let prefix = if req.path.starts_with("/internal") {
        "/internal"
    } else if req.path.starts_with("/r2") {
        "/r2"
    } else {
        ""
    };
    let (id, path, extra) = match svc {
        "compute" => (
            "v2.1",
            "v2.1",
            json!({"version": "2.1", "min_version": "2.1"}),
        ),
        "image" => ("v2.9", "v2", json!({})),
        _ => ("v2.0", "v2.0", json!({})),
    };
    let mut v = json!({
        "id": id, "status": "CURRENT", "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{b}{prefix}/{svc}/{path}/")}]
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    if svc == "compute" {
        Resp::json(200, json!({"versions": [v]}))
    } else {
        Resp::json(300, json!({"versions": [v]}))
    }
}

fn authorized(inner: &Inner, req: &Req) -> bool {
    let Some(t) = req.header("x-auth-token") else {
        return false;
    };
    let os = inner.os.lock().unwrap();
    os.tokens.get(t).is_some_and(|exp| Instant::now() < *exp)
}

/// POST /v3/auth/tokens: password (user name + domain, project by name + domain or id) or
/// application credential (id + secret); the secret is the fake's token.
fn issue_token(inner: &Inner, req: &Req) -> Resp {
    let Some(b) = req.json() else {
        return Resp::json(
            400,
            json!({"error": {"code": 400, "title": "Bad Request", "message": "Malformed request body"}}),
        );
    };
    let id = &b["auth"]["identity"];
    let methods: Vec<&str> = id["methods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let bad = || {
        Resp::json(
            401,
            json!({"error": {"code": 401, "title": "Unauthorized",
            "message": "The request you have made requires authentication."}}),
        )
    };
    let method = if methods.contains(&"password") {
        let u = &id["password"]["user"];
        let domain_ok = u["domain"]["name"].as_str() == Some("Default")
            || u["domain"]["id"].as_str() == Some("default");
        if u["name"].as_str() != Some(USER) || !domain_ok {
            return bad();
        }
        if u["password"].as_str() != Some(inner.token.as_str()) {
            return bad();
        }
        let p = &b["auth"]["scope"]["project"];
        let by_name = p["name"].as_str() == Some(PROJECT)
            && (p["domain"]["name"].as_str() == Some("Default")
                || p["domain"]["id"].as_str() == Some("default"));
        if !(by_name || p["id"].as_str() == Some(PROJECT_ID)) {
            return Resp::json(
                401,
                json!({"error": {"code": 401, "title": "Unauthorized",
                "message": "User has no access to project"}}),
            );
        }
        "password"
    } else if methods.contains(&"application_credential") {
        let a = &id["application_credential"];
        if a["id"].as_str() != Some(APP_CRED_ID)
            || a["secret"].as_str() != Some(inner.token.as_str())
        {
            return bad();
        }
        "application_credential"
    } else {
        return bad();
    };
    let token = format!("gAAAAA{}", super::uuid().replace('-', ""));
    let ttl = {
        let mut os = inner.os.lock().unwrap();
        let ttl = match os.ttl_ms {
            0 => Duration::from_secs(3600),
            ms => Duration::from_millis(ms),
        };
        os.tokens.insert(token.clone(), Instant::now() + ttl);
        ttl
    };
    let expires = time::OffsetDateTime::now_utc() + ttl;
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let b = base(req);
    let endpoints = |svc: &str, path: &str| {
        json!([
            {"id": super::uuid(), "interface": "public", "region": "RegionOne", "region_id": "RegionOne",
             "url": format!("{b}/{svc}{path}")},
            {"id": super::uuid(), "interface": "internal", "region": "RegionOne", "region_id": "RegionOne",
             "url": format!("{b}/internal/{svc}{path}")},
            {"id": super::uuid(), "interface": "public", "region": "RegionTwo", "region_id": "RegionTwo",
             "url": format!("{b}/r2/{svc}{path}")}
        ])
    };
    let body = json!({"token": {
        "methods": [method],
        "roles": [{"id": "9fe2ff9ee4384b1894a90878d3e92bab", "name": "member"}],
        "expires_at": expires,
        "issued_at": now_rfc3339(),
        "audit_ids": ["3T2dc1CGQxyJsHdDu1xkcw"],
        "project": {"domain": {"id": "default", "name": "Default"}, "id": PROJECT_ID, "name": PROJECT},
        "user": {"domain": {"id": "default", "name": "Default"}, "id": "a75c583fa46148eaa020d3e88ab53802",
            "name": USER, "password_expires_at": null},
        "catalog": [
            {"type": "compute", "name": "nova", "id": "03f123b2253e4852a86b994f86489c0a",
             "endpoints": endpoints("compute", "/v2.1")},
            {"type": "image", "name": "glance", "id": "c0be10ea61e240f99567f328b9adf3d6",
             "endpoints": endpoints("image", "")},
            {"type": "network", "name": "neutron", "id": "9bd61e09d372427f81eca9328f33c510",
             "endpoints": endpoints("network", "")},
            {"type": "identity", "name": "keystone", "id": "aef833a14f4240d0bbb699f0154add8e",
             "endpoints": [{"id": super::uuid(), "interface": "public", "region": "RegionOne",
                "region_id": "RegionOne", "url": format!("{b}/v3")}]}
        ]
    }});
    let mut r = Resp::json(201, body);
    r.headers.push(("X-Subject-Token".into(), token));
    r
}

fn link(req: &Req, path: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}/compute/v2.1/{PROJECT_ID}/{path}", base(req))},
        {"rel": "bookmark", "href": format!("{}/compute/{PROJECT_ID}/{path}", base(req))}
    ])
}

fn flavor_json(req: &Req, f: &(&str, &str, u64, u64, u64)) -> Value {
    json!({
        "id": f.0, "name": f.1, "vcpus": f.2, "ram": f.3, "disk": f.4, "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": false,
        "os-flavor-access:is_public": true, "rxtx_factor": 1.0,
        "links": link(req, &format!("flavors/{}", f.0))
    })
}

fn server_json(inner: &Inner, req: &Req, s: &Server, detail: bool) -> Value {
    let id = uuid_of(s.id);
    if !detail {
        return json!({"id": id, "name": s.name, "links": link(req, &format!("servers/{id}"))});
    }
    let os = inner.os.lock().unwrap();
    let (key_name, network, zone) = os.extra.get(&s.id).cloned().unwrap_or_default();
    let status = inner
        .status_override()
        .unwrap_or_else(|| (if inner.active(s) { "ACTIVE" } else { "BUILD" }).into());
    let mut addresses = serde_json::Map::new();
    if status == "ACTIVE" {
        let mac = "fa:16:3e:79:90:aa";
        let mut list = vec![];
        if os.floating {
            list.push(json!({"version": 4, "addr": "127.255.0.1", "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac}));
            list.push(json!({"version": 4, "addr": s.ip, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": mac}));
        } else {
            list.push(json!({"version": 4, "addr": s.ip, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": mac}));
        }
        addresses.insert(network.clone(), json!(list));
    }
    let (vm, task, power) = match status.as_str() {
        "ACTIVE" => ("active", Value::Null, 1),
        "ERROR" => ("error", Value::Null, 0),
        "SHUTOFF" => ("stopped", Value::Null, 4),
        _ => ("building", json!("spawning"), 0),
    };
    let mut v = json!({
        "id": id, "name": s.name, "status": status,
        "tenant_id": PROJECT_ID, "user_id": "a75c583fa46148eaa020d3e88ab53802",
        "metadata": s.labels,
        "hostId": if status == "ACTIVE" { "912566d83a13fbb357ea3f13c629363d9f7e1ba3f925b49f3d2ab725" } else { "" },
        "image": {"id": s.image, "links": [{"rel": "bookmark", "href": format!("{}/compute/{PROJECT_ID}/images/{}", base(req), s.image)}]},
        "flavor": {"id": s.size, "links": [{"rel": "bookmark", "href": format!("{}/compute/{PROJECT_ID}/flavors/{}", base(req), s.size)}]},
        "created": s.created, "updated": now_rfc3339(),
        "addresses": addresses,
        "accessIPv4": "", "accessIPv6": "",
        "links": link(req, &format!("servers/{id}")),
        "OS-DCF:diskConfig": "MANUAL",
        "progress": if status == "ACTIVE" { 100 } else { 0 },
        "OS-EXT-AZ:availability_zone": zone,
        "config_drive": "",
        "key_name": key_name,
        "OS-SRV-USG:launched_at": if status == "ACTIVE" { json!(s.created.trim_end_matches('Z').to_string() + ".000000") } else { Value::Null },
        "OS-SRV-USG:terminated_at": null,
        "OS-EXT-STS:task_state": task, "OS-EXT-STS:vm_state": vm, "OS-EXT-STS:power_state": power,
        "os-extended-volumes:volumes_attached": [],
        "security_groups": [{"name": "default"}]
    });
    if status == "ERROR" {
        v["fault"] = json!({"code": 500, "created": s.created, "message": FAULT});
    }
    v
}

/// Nova lists: `limit` + `marker` paging with a `servers_links` next link.
fn paged(req: &Req, key: &str, all: Vec<Value>, cap: usize, path: &str) -> Resp {
    let (items, next) = page_of_marker(&all, req, cap, |v| v["id"].as_str().map(String::from));
    let mut body = json!({ key: items });
    if let Some(marker) = next {
        let limit = items_limit(req, cap);
        body[format!("{key}_links")] = json!([{"rel": "next",
            "href": format!("{}/compute/v2.1/{PROJECT_ID}/{path}?limit={limit}&marker={marker}", base(req))}]);
    }
    Resp::json(200, body)
}

fn items_limit(req: &Req, cap: usize) -> usize {
    req.q("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(cap)
        .clamp(1, cap)
}

fn nova(inner: &Inner, req: &Req, segs: &[&str]) -> Resp {
    // the project id may be in the path (older endpoints)
    let segs = match segs {
        [p, rest @ ..] if *p == PROJECT_ID => rest,
        s => s,
    };
    match (req.method.as_str(), segs) {
        ("GET", [] | [""]) => Resp::json(
            200,
            json!({"version": {"id": "v2.1", "status": "CURRENT", "version": "2.1", "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": format!("{}/compute/v2.1/", base(req))}]}}),
        ),
        ("GET", ["servers"]) | ("GET", ["servers", "detail"]) => {
            let detail = segs.len() == 2;
            let name = req.q("name").map(String::from);
            let mut st = inner.state.lock().unwrap();
            let mut all = vec![];
            for s in st.servers.values_mut() {
                // Nova's name filter is an unanchored regular expression; a substring does here
                let n = name
                    .as_deref()
                    .map(|n| n.trim_start_matches('^').trim_end_matches('$'));
                if n.is_some_and(|n| !s.name.contains(n)) {
                    continue;
                }
                s.reads += 1;
                all.push(s.clone());
            }
            drop(st);
            let all = all
                .iter()
                .map(|s| server_json(inner, req, s, detail))
                .collect();
            let path = if detail { "servers/detail" } else { "servers" };
            paged(req, "servers", all, inner.per_page_cap(), path)
        }
        ("POST", ["servers"]) => create_server(inner, req),
        ("GET", ["servers", id]) => {
            let mut st = inner.state.lock().unwrap();
            match id_of(id).and_then(|id| st.servers.get_mut(&id)) {
                Some(s) => {
                    s.reads += 1;
                    let s = s.clone();
                    drop(st);
                    Resp::json(200, json!({"server": server_json(inner, req, &s, true)}))
                }
                None => nova_error(404, &format!("Instance {id} could not be found.")),
            }
        }
        ("PUT", ["servers", id, "metadata", key]) => {
            let value = req
                .json()
                .and_then(|b| b["meta"][*key].as_str().map(String::from));
            let Some(value) = value.filter(|v| v.chars().count() <= 255) else {
                return nova_error(
                    400,
                    "Malformed request body: meta must hold the key of the URL",
                );
            };
            let mut st = inner.state.lock().unwrap();
            match id_of(id).and_then(|id| st.servers.get_mut(&id)) {
                Some(s) => {
                    s.labels.insert(key.to_string(), value.clone());
                    Resp::json(200, json!({"meta": { *key: value }}))
                }
                None => nova_error(404, &format!("Instance {id} could not be found.")),
            }
        }
        ("DELETE", ["servers", id]) => {
            let gone = id_of(id).and_then(|i| inner.state.lock().unwrap().servers.remove(&i));
            match gone {
                Some(s) => {
                    inner.os.lock().unwrap().extra.remove(&s.id);
                    inner.deleted(&s.name);
                    Resp::empty(204)
                }
                None => nova_error(404, &format!("Instance {id} could not be found.")),
            }
        }
        ("GET", ["flavors"]) | ("GET", ["flavors", "detail"]) => {
            let all = FLAVORS
                .iter()
                .map(|f| {
                    if segs.len() == 2 {
                        flavor_json(req, f)
                    } else {
                        json!({"id": f.0, "name": f.1, "links": link(req, &format!("flavors/{}", f.0))})
                    }
                })
                .collect();
            paged(req, "flavors", all, inner.per_page_cap(), "flavors/detail")
        }
        ("GET", ["flavors", id]) => match FLAVORS.iter().find(|f| f.0 == *id) {
            Some(f) => Resp::json(200, json!({"flavor": flavor_json(req, f)})),
            None => nova_error(404, &format!("Flavor {id} could not be found.")),
        },
        ("GET", ["os-availability-zone"]) => Resp::json(
            200,
            json!({"availabilityZoneInfo": ZONES.iter().map(|z| json!({
                "zoneName": z, "zoneState": {"available": true}, "hosts": null
            })).collect::<Vec<_>>()}),
        ),
        ("GET", ["os-keypairs"]) => {
            let st = inner.state.lock().unwrap();
            let all: Vec<Value> = st
                .keys
                .iter()
                .map(|k| json!({"keypair": {"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint}}))
                .collect();
            Resp::json(200, json!({ "keypairs": all }))
        }
        ("GET", ["os-keypairs", name]) => {
            let st = inner.state.lock().unwrap();
            match st.keys.iter().find(|k| k.name == *name) {
                Some(k) => Resp::json(200, json!({"keypair": keypair_json(k)})),
                None => nova_error(
                    404,
                    &format!("Keypair {name} not found for user a75c583fa46148eaa020d3e88ab53802"),
                ),
            }
        }
        ("POST", ["os-keypairs"]) => create_keypair(inner, req),
        ("DELETE", ["os-keypairs", name]) => {
            let mut st = inner.state.lock().unwrap();
            let before = st.keys.len();
            st.keys.retain(|k| k.name != *name);
            if st.keys.len() == before {
                nova_error(404, &format!("Keypair {name} not found"))
            } else {
                Resp::empty(202)
            }
        }
        _ => nova_error(404, "The resource could not be found."),
    }
}

fn keypair_json(k: &Key) -> Value {
    json!({
        "name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint,
        "user_id": "a75c583fa46148eaa020d3e88ab53802", "deleted": false,
        "created_at": "2024-01-01T00:00:00.000000", "updated_at": null, "deleted_at": null, "id": k.id
    })
}

fn create_keypair(inner: &Inner, req: &Req) -> Resp {
    let Some(b) = req.json() else {
        return nova_error(400, "Malformed request body");
    };
    let Some(name) = b["keypair"]["name"].as_str() else {
        return nova_error(
            400,
            "Invalid input for field/attribute keypair. 'name' is a required property",
        );
    };
    let mut private = None;
    let public = match b["keypair"]["public_key"].as_str() {
        Some(p) => {
            if ssh_key::PublicKey::from_openssh(p.trim()).is_err() {
                return nova_error(
                    400,
                    "Keypair data is invalid: failed to generate fingerprint",
                );
            }
            p.trim().to_string()
        }
        None => {
            let k =
                ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
                    .unwrap();
            private = Some(k.to_openssh(ssh_key::LineEnding::LF).unwrap().to_string());
            k.public_key().to_openssh().unwrap() + " Generated-by-Nova"
        }
    };
    let mut st = inner.state.lock().unwrap();
    if st.keys.iter().any(|k| k.name == name) {
        return nova_error(409, &format!("Key pair '{name}' already exists."));
    }
    let k = Key {
        id: inner.next_id(),
        name: name.into(),
        fingerprint: fake_md5(&public),
        public_key: public,
    };
    let mut v = json!({"keypair": keypair_json(&k)});
    if let Some(p) = private {
        v["keypair"]["private_key"] = json!(p);
    }
    st.keys.push(k);
    Resp::json(200, v)
}

fn create_server(inner: &Inner, req: &Req) -> Resp {
    let Some(b) = req.json() else {
        return nova_error(400, "Malformed request body");
    };
    let s = &b["server"];
    let str_of = |k: &str| s[k].as_str().map(String::from);
    let Some(name) = str_of("name").filter(|n| !n.is_empty() && n.len() <= 255) else {
        return nova_error(400, "Invalid input for field/attribute name.");
    };
    let Some(image) = str_of("imageRef") else {
        return nova_error(
            400,
            "Block Device Mapping is Invalid: You specified more than one image or none.",
        );
    };
    if !IMAGES.iter().any(|i| i.0 == image) {
        return nova_error(400, &format!("Image {image} could not be found."));
    }
    let flavor = str_of("flavorRef").unwrap_or_default();
    let flavor = flavor.rsplit('/').next().unwrap_or("").to_string();
    if !FLAVORS.iter().any(|f| f.0 == flavor) {
        return nova_error(400, &format!("Flavor {flavor} could not be found."));
    }
    let zone = str_of("availability_zone").unwrap_or_else(|| "nova".into());
    if !ZONES.contains(&zone.as_str()) {
        return nova_error(400, "The requested availability zone is not available");
    }
    let network = match &s["networks"] {
        Value::Array(list) if !list.is_empty() => {
            let uuid = list[0]["uuid"].as_str().unwrap_or("");
            match NETWORKS.iter().find(|n| n.0 == uuid) {
                Some(n) => n.1.to_string(),
                None => return nova_error(400, &format!("Network {uuid} could not be found.")),
            }
        }
        _ => "private".to_string(),
    };
    let mut metadata = BTreeMap::new();
    if let Some(m) = s["metadata"].as_object() {
        for (k, v) in m {
            let Some(v) = v.as_str() else {
                return nova_error(
                    400,
                    "Invalid input for field/attribute metadata. Value: not a string",
                );
            };
            if k.is_empty() || k.len() > 255 || v.len() > 255 {
                return nova_error(
                    400,
                    &format!("Invalid input for field/attribute metadata. Value: {k}: too long"),
                );
            }
            metadata.insert(k.clone(), v.to_string());
        }
    }
    let key_name = str_of("key_name");
    if let Some(k) = &key_name {
        if !inner
            .state
            .lock()
            .unwrap()
            .keys
            .iter()
            .any(|x| x.name == *k)
        {
            return nova_error(400, "Invalid key_name provided.");
        }
    }
    let user_data = match str_of("user_data") {
        Some(u) => match base64::engine::general_purpose::STANDARD.decode(u.as_bytes()) {
            Ok(d) => String::from_utf8_lossy(&d).into_owned(),
            Err(_) => return nova_error(400, "User data needs to be valid base 64."),
        },
        None => String::new(),
    };
    let (ip, _) = inner.place(&name, &user_data);
    let id = inner.next_id();
    let server = Server {
        id,
        name,
        reads: 0,
        tags: vec![],
        labels: metadata,
        image,
        size: flavor,
        region: zone.clone(),
        ip,
        user_data,
        ssh_keys: vec![],
        created: now_rfc3339(),
        born: Instant::now(),
    };
    inner
        .os
        .lock()
        .unwrap()
        .extra
        .insert(id, (key_name, network, zone));
    inner.state.lock().unwrap().servers.insert(id, server);
    let uuid = uuid_of(id);
    Resp::json(
        202,
        json!({"server": {
            "id": uuid, "links": link(req, &format!("servers/{uuid}")),
            "OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": "default"}],
            "adminPass": "racktestvJq7d3"
        }}),
    )
}

fn glance(req: &Req, segs: &[&str]) -> Resp {
    match (req.method.as_str(), segs) {
        ("GET", ["images"]) => {
            let name = req.q("name");
            let all: Vec<Value> = IMAGES
                .iter()
                .filter(|i| name.map_or(true, |n| n == i.1))
                .map(image_json)
                .collect();
            let cap = 2;
            let (items, next) =
                page_of_marker(&all, req, cap, |v| v["id"].as_str().map(String::from));
            let mut body =
                json!({"images": items, "schema": "/v2/schemas/images", "first": "/v2/images"});
            if let Some(m) = next {
                let mut q: Vec<String> = req
                    .query
                    .iter()
                    .filter(|(k, _)| k != "marker")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                q.push(format!("marker={m}"));
                body["next"] = json!(format!("/v2/images?{}", q.join("&")));
            }
            Resp::json(200, body)
        }
        ("GET", ["images", id]) => match IMAGES.iter().find(|i| i.0 == *id) {
            Some(i) => Resp::json(200, image_json(i)),
            None => Resp::json(
                404,
                json!({"code": 404, "title": "Not Found", "message": format!("No image found with ID {id}")}),
            ),
        },
        _ => Resp::json(
            404,
            json!({"code": 404, "title": "Not Found", "message": "Not found"}),
        ),
    }
}

fn image_json(i: &(&str, &str, &str)) -> Value {
    json!({
        "id": i.0, "name": i.1, "status": "active", "visibility": "public",
        "created_at": i.2, "updated_at": i.2, "min_disk": 0, "min_ram": 0,
        "disk_format": "qcow2", "container_format": "bare", "size": 1256259584,
        "virtual_size": null, "checksum": "3530464d095c9d62771b99ebecd2d70b",
        "os_hash_algo": "sha512", "os_hash_value": null,
        "tags": [], "owner": PROJECT_ID, "protected": false, "os_hidden": false,
        "self": format!("/v2/images/{}", i.0), "file": format!("/v2/images/{}/file", i.0),
        "schema": "/v2/schemas/image"
    })
}

fn neutron(req: &Req, segs: &[&str]) -> Resp {
    match (req.method.as_str(), segs) {
        ("GET", ["networks"]) => {
            let name = req.q("name");
            let nets: Vec<Value> = NETWORKS
                .iter()
                .filter(|n| name.map_or(true, |x| x == n.1))
                .map(|n| json!({
                    "id": n.0, "name": n.1, "status": "ACTIVE", "admin_state_up": true,
                    "shared": n.1 == "public", "router:external": n.1 == "public",
                    "subnets": [], "tenant_id": PROJECT_ID, "project_id": PROJECT_ID,
                    "mtu": 1450, "availability_zones": ["nova"], "tags": [],
                    "description": "", "port_security_enabled": true,
                    "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
                    "revision_number": 1, "ipv4_address_scope": null, "ipv6_address_scope": null,
                    "is_default": false, "availability_zone_hints": []
                }))
                .collect();
            Resp::json(200, json!({ "networks": nets }))
        }
        _ => Resp::json(
            404,
            json!({"NeutronError": {"type": "HTTPNotFound", "message": "The resource could not be found.", "detail": ""}}),
        ),
    }
}
