//! Hetzner Cloud API routes of the fake: servers, ssh_keys, images, server_types, locations.

use super::digitalocean::fake_md5;
use super::{error, now_rfc3339, page_of, Api, Inner, Key, Req, Resp, Server};
use serde_json::{json, Value};

/// (id, name, description, city, country, network zone)
const LOCATIONS: &[(u64, &str, &str, &str, &str)] = &[
    (1, "fsn1", "Falkenstein DC Park 1", "Falkenstein", "DE"),
    (2, "nbg1", "Nuremberg DC Park 1", "Nuremberg", "DE"),
    (3, "hel1", "Helsinki DC Park 1", "Helsinki", "FI"),
];
/// (id, name, cores, memory GB, disk GB)
const TYPES: &[(u64, &str, u64, f64, u64)] = &[
    (22, "cx22", 2, 4.0, 40),
    (23, "cx32", 4, 8.0, 80),
    (30, "cpx11", 2, 2.0, 40),
];
/// (id, name, description, os_flavor, os_version, architecture)
type Image = (
    u64,
    Option<&'static str>,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
);
const IMAGES: &[Image] = &[
    (
        161547269,
        Some("ubuntu-24.04"),
        "Ubuntu 24.04",
        "ubuntu",
        Some("24.04"),
        "x86",
    ),
    (
        161547270,
        Some("ubuntu-24.04"),
        "Ubuntu 24.04",
        "ubuntu",
        Some("24.04"),
        "arm",
    ),
    (
        67794396,
        Some("ubuntu-22.04"),
        "Ubuntu 22.04",
        "ubuntu",
        Some("22.04"),
        "x86",
    ),
    (
        1003,
        Some("ubuntu-9.04"),
        "Ubuntu 9.04",
        "ubuntu",
        Some("9.04"),
        "x86",
    ),
    (
        114690387,
        Some("debian-12"),
        "Debian 12",
        "debian",
        Some("12"),
        "x86",
    ),
    (5005, None, "my-snapshot", "unknown", None, "x86"),
];

fn location_json(name: &str) -> Value {
    let l = LOCATIONS
        .iter()
        .find(|l| l.1 == name)
        .copied()
        .unwrap_or(LOCATIONS[0]);
    json!({
        "id": l.0, "name": l.1, "description": l.2, "country": l.4, "city": l.3,
        "latitude": 50.47612, "longitude": 12.370071, "network_zone": "eu-central"
    })
}

fn type_json(name: &str) -> Value {
    let t = TYPES
        .iter()
        .find(|t| t.1 == name)
        .copied()
        .unwrap_or(TYPES[0]);
    json!({
        "id": t.0, "name": t.1, "description": t.1.to_uppercase(), "cores": t.2,
        "memory": t.3, "disk": t.4, "deprecated": false, "prices": [],
        "storage_type": "local", "cpu_type": "shared", "architecture": "x86",
        "deprecation": null,
        "locations": LOCATIONS.iter().map(|l| json!({
            "id": l.0, "name": l.1, "deprecation": null, "recommended": true, "available": true
        })).collect::<Vec<_>>()
    })
}

fn image_json(i: &Image) -> Value {
    json!({
        "id": i.0, "type": if i.1.is_some() { "system" } else { "snapshot" },
        "status": "available", "name": i.1, "description": i.2,
        "image_size": null, "disk_size": 5, "created": "2024-04-25T00:00:00Z",
        "created_from": null, "bound_to": null, "os_flavor": i.3, "os_version": i.4,
        "rapid_deploy": true, "protection": {"delete": false}, "deprecated": null,
        "deleted": null, "labels": {}, "architecture": i.5
    })
}

fn find_image(name: &str) -> Option<Image> {
    IMAGES
        .iter()
        .find(|i| i.1 == Some(name) || i.0.to_string() == name)
        .copied()
}

fn server_json(inner: &Inner, s: &Server) -> Value {
    let running = inner.active(s);
    let img = find_image(&s.image).unwrap_or(IMAGES[0]);
    let loc = location_json(&s.region);
    let private = inner
        .private_only
        .load(std::sync::atomic::Ordering::Relaxed);
    let (public_net, private_net) = if private {
        let net = json!([{"network": 4711, "ip": s.ip, "alias_ips": [], "mac_address": "86:00:00:2a:7d:e0"}]);
        let none = json!({"ipv4": null, "ipv6": null, "floating_ips": [], "firewalls": []});
        (none, net)
    } else {
        (public_net(s), json!([]))
    };
    json!({
        "id": s.id, "name": s.name,
        "status": inner.status_override().unwrap_or_else(|| (if running { "running" } else { "initializing" }).into()),
        "created": s.created,
        "public_net": public_net,
        "private_net": private_net,
        "server_type": type_json(&s.size),
        "datacenter": {
            "id": 4, "name": format!("{}-dc14", s.region), "description": "DC 14",
            "location": loc.clone(),
            "server_types": {"supported": [22, 23, 30], "available": [22, 23, 30], "available_for_migration": [22]}
        },
        "location": loc,
        "image": image_json(&img),
        "iso": null, "rescue_enabled": false, "locked": false, "backup_window": null,
        "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21990232555520u64,
        "protection": {"delete": false, "rebuild": false},
        "labels": s.labels, "volumes": [], "load_balancers": [],
        "primary_disk_size": 40, "placement_group": null
    })
}

/// A server placed on an IPv4 address has it as its `ipv4`; one placed on an IPv6 address
/// (an IPv6-only server) has no `ipv4` and, as the real API says it, the /64 network holding
/// that address as its `ipv6` (`::1` → `::/64`).
fn public_net(s: &Server) -> Value {
    match s.ip.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => {
            let net = std::net::Ipv6Addr::from(u128::from(v6) & !(u64::MAX as u128));
            json!({
                "ipv4": null,
                "ipv6": {"id": s.id + 8, "ip": format!("{net}/64"), "blocked": false, "dns_ptr": []},
                "floating_ips": [], "firewalls": []
            })
        }
        Err(_) => json!({
            "ipv4": {"id": s.id + 7, "ip": s.ip, "blocked": false, "dns_ptr": "localhost"},
            "ipv6": null, "floating_ips": [], "firewalls": []
        }),
    }
}

fn action(id: u64, command: &str, server: u64) -> Value {
    json!({
        "id": id, "command": command, "status": "running", "progress": 0,
        "started": now_rfc3339(), "finished": null,
        "resources": [{"id": server, "type": "server"}], "error": null
    })
}

fn paged(req: &Req, key: &str, all: Vec<Value>, cap: usize) -> Resp {
    let total = all.len() as u64;
    let (items, page, last, per) = page_of(&all, req, cap);
    let next = (page < last).then_some(page + 1);
    let prev = (page > 1).then(|| page - 1);
    Resp::json(
        200,
        json!({
            key: items,
            "meta": {"pagination": {
                "page": page, "per_page": per, "previous_page": prev, "next_page": next,
                "last_page": last, "total_entries": total
            }}
        }),
    )
}

fn not_found(what: &str) -> Resp {
    error(Api::Hetzner, 404, "not_found", &format!("{what} not found"))
}

fn invalid(msg: &str) -> Resp {
    error(Api::Hetzner, 422, "invalid_input", msg)
}

/// `label_selector`: comma-separated `key` or `key=value` terms, all of which must hold.
fn selected(sel: Option<&str>, labels: &std::collections::BTreeMap<String, String>) -> bool {
    sel.into_iter()
        .flat_map(|s| s.split(','))
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels.get(k.trim()).map(String::as_str) == Some(v.trim()),
            None => labels.contains_key(term.trim()),
        })
}

pub fn route(inner: &Inner, req: &Req) -> Resp {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["servers"]) => {
            let mut st = inner.state.lock().unwrap();
            let mut all = Vec::new();
            for s in st.servers.values_mut() {
                if req.q("name").is_some_and(|n| n != s.name)
                    || !selected(req.q("label_selector"), &s.labels)
                {
                    continue;
                }
                s.reads += 1;
                all.push(server_json(inner, s));
            }
            paged(req, "servers", all, inner.per_page_cap())
        }
        ("POST", ["servers"]) => {
            let Some(b) = req.json() else {
                return invalid("body is not JSON");
            };
            let s = |k: &str| b.get(k).and_then(Value::as_str).map(String::from);
            let (Some(name), Some(size), Some(image)) = (s("name"), s("server_type"), s("image"))
            else {
                return invalid("name, server_type and image are required");
            };
            if find_image(&image).is_none() {
                return error(Api::Hetzner, 404, "not_found", "image not found");
            }
            if !TYPES.iter().any(|t| t.1 == size) {
                return error(Api::Hetzner, 404, "not_found", "server type not found");
            }
            let region = s("location").unwrap_or_else(|| "fsn1".into());
            if !LOCATIONS.iter().any(|l| l.1 == region) {
                return error(Api::Hetzner, 404, "not_found", "location not found");
            }
            {
                let st = inner.state.lock().unwrap();
                if st.servers.values().any(|x| x.name == name) {
                    return error(
                        Api::Hetzner,
                        409,
                        "uniqueness_error",
                        "server name is already used",
                    );
                }
            }
            let labels = b["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            let (ip, _port) = inner.place(&name, &s("user_data").unwrap_or_default());
            // an IPv6-only server exactly when the create asked for one
            let v4_off = b.pointer("/public_net/enable_ipv4") == Some(&Value::Bool(false));
            if v4_off != ip.contains(':') {
                return invalid(&format!(
                    "fake: enable_ipv4 = {} but the node was placed on {ip}",
                    !v4_off
                ));
            }
            let server = Server {
                id: inner.next_id(),
                name,
                reads: 0,
                tags: vec![],
                labels,
                image,
                size,
                region,
                ip,
                user_data: s("user_data").unwrap_or_default(),
                ssh_keys: b["ssh_keys"].as_array().cloned().unwrap_or_default(),
                created: now_rfc3339(),
                born: std::time::Instant::now(),
            };
            let body = json!({
                "server": server_json(inner, &server),
                "action": action(server.id + 1, "create_server", server.id),
                "next_actions": [action(server.id + 2, "start_server", server.id)],
                "root_password": null
            });
            inner
                .state
                .lock()
                .unwrap()
                .servers
                .insert(server.id, server);
            Resp::json(201, body)
        }
        ("GET", ["servers", id]) => {
            let mut st = inner.state.lock().unwrap();
            match id.parse().ok().and_then(|id: u64| st.servers.get_mut(&id)) {
                Some(s) => {
                    s.reads += 1;
                    Resp::json(200, json!({"server": server_json(inner, s)}))
                }
                None => not_found("server"),
            }
        }
        ("PUT", ["servers", id]) => {
            let Some(b) = req.json() else {
                return invalid("body is not JSON");
            };
            let mut st = inner.state.lock().unwrap();
            match id.parse().ok().and_then(|id: u64| st.servers.get_mut(&id)) {
                Some(s) => {
                    if let Some(l) = b["labels"].as_object() {
                        s.labels = l
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect();
                    }
                    if let Some(n) = b["name"].as_str() {
                        s.name = n.to_string();
                    }
                    Resp::json(200, json!({"server": server_json(inner, s)}))
                }
                None => not_found("server"),
            }
        }
        ("DELETE", ["servers", id]) => {
            let gone = id
                .parse()
                .ok()
                .and_then(|id: u64| inner.state.lock().unwrap().servers.remove(&id));
            if let Some(s) = &gone {
                inner.deleted(&s.name);
            }
            match gone {
                Some(s) => Resp::json(
                    200,
                    json!({"action": action(s.id + 3, "delete_server", s.id)}),
                ),
                None => not_found("server"),
            }
        }
        ("GET", ["ssh_keys"]) => {
            let st = inner.state.lock().unwrap();
            let all = st.keys.iter().map(key_json).collect();
            paged(req, "ssh_keys", all, inner.per_page_cap())
        }
        ("POST", ["ssh_keys"]) => {
            let Some(b) = req.json() else {
                return invalid("body is not JSON");
            };
            let (Some(name), Some(pk)) = (b["name"].as_str(), b["public_key"].as_str()) else {
                return invalid("name and public_key are required");
            };
            let mut st = inner.state.lock().unwrap();
            let blob = pk.split_whitespace().nth(1).unwrap_or("");
            if st
                .keys
                .iter()
                .any(|k| k.name == name || k.public_key.split_whitespace().nth(1) == Some(blob))
            {
                return error(
                    Api::Hetzner,
                    409,
                    "uniqueness_error",
                    "SSH key with the same fingerprint already exists",
                );
            }
            let key = Key {
                id: inner.next_id(),
                name: name.into(),
                public_key: pk.into(),
                fingerprint: fake_md5(blob),
            };
            let body = json!({"ssh_key": key_json(&key)});
            st.keys.push(key);
            Resp::json(201, body)
        }
        ("GET", ["images"]) => {
            let all = IMAGES.iter().map(image_json).collect();
            paged(req, "images", all, inner.per_page_cap())
        }
        ("GET", ["server_types"]) => {
            let all = TYPES.iter().map(|t| type_json(t.1)).collect();
            paged(req, "server_types", all, inner.per_page_cap())
        }
        ("GET", ["locations"]) => {
            let all = LOCATIONS.iter().map(|l| location_json(l.1)).collect();
            paged(req, "locations", all, inner.per_page_cap())
        }
        _ => not_found("resource"),
    }
}

fn key_json(k: &Key) -> Value {
    json!({
        "id": k.id, "name": k.name, "fingerprint": k.fingerprint,
        "public_key": k.public_key, "labels": {}, "created": "2024-04-25T00:00:00Z"
    })
}
