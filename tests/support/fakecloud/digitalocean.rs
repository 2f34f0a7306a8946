//! DigitalOcean API v2 routes of the fake: droplets, account keys, images, sizes, regions.

use super::{error, now_rfc3339, page_of, Api, Inner, Key, Req, Resp, Server};
use serde_json::{json, Value};

const REGIONS: &[(&str, &str)] = &[
    ("fra1", "Frankfurt 1"),
    ("nyc3", "New York 3"),
    ("ams3", "Amsterdam 3"),
];
const SIZES: &[(&str, u64, u64, u64, f64)] = &[
    ("s-1vcpu-1gb", 1, 1024, 25, 6.0),
    ("s-2vcpu-2gb", 2, 2048, 60, 18.0),
    ("s-4vcpu-8gb", 4, 8192, 160, 48.0),
];
/// (id, slug, name, distribution)
const IMAGES: &[(u64, Option<&str>, &str, &str)] = &[
    (1001, Some("ubuntu-24-04-x64"), "24.04 (LTS) x64", "Ubuntu"),
    (1002, Some("ubuntu-22-04-x64"), "22.04 (LTS) x64", "Ubuntu"),
    (1003, Some("ubuntu-9-04-x64"), "9.04 x64", "Ubuntu"),
    (1004, Some("debian-12-x64"), "12 x64", "Debian"),
    (1005, None, "my-snapshot", "Unknown"),
];

fn image_json(slug: &str) -> Value {
    let (id, slug, name, dist) = IMAGES
        .iter()
        .find(|i| i.1 == Some(slug) || i.0.to_string() == slug)
        .copied()
        .unwrap_or(IMAGES[0]);
    json!({
        "id": id, "name": name, "type": if slug.is_some() { "base" } else { "snapshot" },
        "distribution": dist, "slug": slug, "public": slug.is_some(),
        "regions": ["fra1", "nyc3", "ams3"], "created_at": "2024-04-25T00:00:00Z",
        "min_disk_size": 7, "size_gigabytes": 2.4, "description": format!("{dist} {name}"),
        "tags": [], "status": "available"
    })
}

fn size_json(slug: &str) -> Value {
    let s = SIZES
        .iter()
        .find(|s| s.0 == slug)
        .copied()
        .unwrap_or(SIZES[0]);
    json!({
        "slug": s.0, "memory": s.2, "vcpus": s.1, "disk": s.3, "transfer": 1.0,
        "price_monthly": s.4, "price_hourly": s.4 / 720.0,
        "regions": ["fra1", "nyc3", "ams3"], "available": true,
        "description": "Basic"
    })
}

fn region_json(slug: &str) -> Value {
    let r = REGIONS
        .iter()
        .find(|r| r.0 == slug)
        .copied()
        .unwrap_or(REGIONS[0]);
    json!({
        "name": r.1, "slug": r.0, "features": ["backups", "ipv6", "metadata"],
        "available": true, "sizes": SIZES.iter().map(|s| s.0).collect::<Vec<_>>()
    })
}

fn droplet_json(inner: &Inner, s: &Server) -> Value {
    let active = inner.active(s);
    // a droplet placed on an IPv6 address (it asked for `ipv6`) still has an IPv4 one, as on
    // DigitalOcean: 127.0.0.1, where no node of the fake listens
    let (v4_ip, v6) = match s.ip.contains(':') {
        true => (
            "127.0.0.1",
            json!([{"ip_address": s.ip, "netmask": 64, "gateway": "::", "type": "public"}]),
        ),
        false => (s.ip.as_str(), json!([])),
    };
    let (v4, v6) = if active {
        (
            json!([{"ip_address": v4_ip, "netmask": "255.0.0.0", "gateway": "127.0.0.1", "type": "public"}]),
            v6,
        )
    } else {
        (json!([]), json!([]))
    };
    let size = size_json(&s.size);
    json!({
        "id": s.id, "name": s.name,
        "memory": size["memory"], "vcpus": size["vcpus"], "disk": size["disk"],
        "locked": false, "status": inner.status_override().unwrap_or_else(|| (if active { "active" } else { "new" }).into()),
        "created_at": s.created, "features": ["ipv6"], "backup_ids": [],
        "next_backup_window": null, "snapshot_ids": [],
        "image": image_json(&s.image), "volume_ids": [], "size": size,
        "size_slug": s.size, "networks": {"v4": v4, "v6": v6},
        "region": region_json(&s.region), "tags": s.tags
    })
}

/// `links` and `meta` of a list answer.
fn paged(req: &Req, key: &str, all: Vec<Value>, cap: usize) -> Resp {
    let total = all.len();
    let (items, page, last, per) = page_of(&all, req, cap);
    let mut pages = serde_json::Map::new();
    let link = |p: u64| {
        let mut q: Vec<String> = req
            .query
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        q.push(format!("page={p}"));
        q.push(format!("per_page={per}"));
        format!("https://api.digitalocean.com{}?{}", req.path, q.join("&"))
    };
    if page < last {
        pages.insert("next".into(), json!(link(page + 1)));
        pages.insert("last".into(), json!(link(last)));
    }
    if page > 1 {
        pages.insert("first".into(), json!(link(1)));
        pages.insert("prev".into(), json!(link(page - 1)));
    }
    Resp::json(
        200,
        json!({key: items, "links": {"pages": pages}, "meta": {"total": total}}),
    )
}

fn not_found() -> Resp {
    error(
        Api::DigitalOcean,
        404,
        "not_found",
        "The resource you were accessing could not be found.",
    )
}

fn invalid(msg: &str) -> Resp {
    error(Api::DigitalOcean, 422, "unprocessable_entity", msg)
}

pub fn route(inner: &Inner, req: &Req) -> Resp {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["v2", "droplets"]) => {
            let mut st = inner.state.lock().unwrap();
            let tag = req.q("tag_name").map(String::from);
            let name = req.q("name").map(String::from);
            let mut all = Vec::new();
            for s in st.servers.values_mut() {
                if tag.as_ref().is_some_and(|t| !s.tags.contains(t))
                    || name.as_ref().is_some_and(|n| *n != s.name)
                {
                    continue;
                }
                s.reads += 1;
                all.push(droplet_json(inner, s));
            }
            paged(req, "droplets", all, inner.per_page_cap())
        }
        ("POST", ["v2", "droplets"]) => {
            let Some(b) = req.json() else {
                return invalid("body is not JSON");
            };
            let s = |k: &str| b.get(k).and_then(Value::as_str).map(String::from);
            let (Some(name), Some(size)) = (s("name"), s("size")) else {
                return invalid("name and size are required");
            };
            let image = match &b["image"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return invalid("image is required"),
            };
            if !IMAGES
                .iter()
                .any(|i| i.1 == Some(image.as_str()) || i.0.to_string() == image)
            {
                return invalid("You specified an invalid image for Droplet creation.");
            }
            if !SIZES.iter().any(|x| x.0 == size) {
                return invalid("You specified an invalid size for Droplet creation.");
            }
            let region = s("region").unwrap_or_else(|| "fra1".into());
            if !REGIONS.iter().any(|r| r.0 == region) {
                return invalid("You specified an invalid region for Droplet creation.");
            }
            let (ip, _port) = inner.place(&name, &s("user_data").unwrap_or_default());
            if ip.contains(':') && b["ipv6"] != Value::Bool(true) {
                return invalid("fake: placed on IPv6 but the create did not ask for ipv6");
            }
            let server = Server {
                id: inner.next_id(),
                name,
                reads: 0,
                tags: b["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect(),
                labels: Default::default(),
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
                "droplet": droplet_json(inner, &server),
                "links": {"actions": [{"id": server.id + 1, "rel": "create", "href": format!("https://api.digitalocean.com/v2/actions/{}", server.id + 1)}]}
            });
            let mut st = inner.state.lock().unwrap();
            // tags given at create are created with the droplet
            st.tag_names.extend(server.tags.iter().cloned());
            st.servers.insert(server.id, server);
            Resp::json(202, body)
        }
        ("GET", ["v2", "droplets", id]) => {
            let mut st = inner.state.lock().unwrap();
            match id.parse().ok().and_then(|id: u64| st.servers.get_mut(&id)) {
                Some(s) => {
                    s.reads += 1;
                    Resp::json(200, json!({"droplet": droplet_json(inner, s)}))
                }
                None => not_found(),
            }
        }
        ("DELETE", ["v2", "droplets", id]) => {
            let gone = id
                .parse()
                .ok()
                .and_then(|id: u64| inner.state.lock().unwrap().servers.remove(&id));
            match gone {
                Some(s) => {
                    inner.deleted(&s.name);
                    Resp::empty(204)
                }
                None => not_found(),
            }
        }
        ("POST", ["v2", "tags"]) => match req.json().as_ref().and_then(|b| b["name"].as_str()) {
            Some(name) => {
                let mut st = inner.state.lock().unwrap();
                st.tag_names.insert(name.to_string());
                Resp::json(
                    201,
                    json!({"tag": {"name": name, "resources": {"count": 0, "droplets": {"count": 0}}}}),
                )
            }
            None => invalid("name is required"),
        },
        (m @ ("POST" | "DELETE"), ["v2", "tags", tag, "resources"]) => {
            let Some(b) = req.json() else {
                return invalid("body is not JSON");
            };
            let mut st = inner.state.lock().unwrap();
            // the real API: a tag must exist before it is put on anything
            if m == "POST" && !st.tag_names.contains(*tag) {
                return not_found();
            }
            for r in b["resources"].as_array().into_iter().flatten() {
                let id = r["resource_id"]
                    .as_str()
                    .and_then(|i| i.parse::<u64>().ok());
                let Some(s) = id.and_then(|id| st.servers.get_mut(&id)) else {
                    return not_found();
                };
                s.tags.retain(|t| t != tag);
                if m == "POST" {
                    s.tags.push(tag.to_string());
                }
            }
            Resp::empty(204)
        }
        ("GET", ["v2", "account", "keys"]) => {
            let st = inner.state.lock().unwrap();
            let all = st.keys.iter().map(key_json).collect();
            paged(req, "ssh_keys", all, inner.per_page_cap())
        }
        ("POST", ["v2", "account", "keys"]) => {
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
                .any(|k| k.public_key.split_whitespace().nth(1) == Some(blob))
            {
                return invalid("SSH Key is already in use on your account");
            }
            let id = inner.next_id();
            let key = Key {
                id,
                name: name.into(),
                public_key: pk.into(),
                fingerprint: fake_md5(blob),
            };
            let body = json!({"ssh_key": key_json(&key)});
            st.keys.push(key);
            Resp::json(201, body)
        }
        ("GET", ["v2", "images"]) => {
            let all = IMAGES
                .iter()
                .map(|i| image_json(&i.0.to_string()))
                .collect();
            paged(req, "images", all, inner.per_page_cap())
        }
        ("GET", ["v2", "sizes"]) => {
            let all = SIZES.iter().map(|s| size_json(s.0)).collect();
            paged(req, "sizes", all, inner.per_page_cap())
        }
        ("GET", ["v2", "regions"]) => {
            let all = REGIONS.iter().map(|r| region_json(r.0)).collect();
            paged(req, "regions", all, inner.per_page_cap())
        }
        _ => not_found(),
    }
}

fn key_json(k: &Key) -> Value {
    json!({"id": k.id, "fingerprint": k.fingerprint, "public_key": k.public_key, "name": k.name})
}

/// A colon-hex string shaped like an MD5 fingerprint (the fake does not need the real one).
pub fn fake_md5(s: &str) -> String {
    let mut h: u128 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h = (h ^ b as u128).wrapping_mul(0x100000001b3);
    }
    (0..16)
        .map(|i| format!("{:02x}", (h >> (i * 8)) as u8))
        .collect::<Vec<_>>()
        .join(":")
}
