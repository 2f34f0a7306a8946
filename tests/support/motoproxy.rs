//! A loopback proxy in front of moto that keeps every connection on loopback: moto hands out
//! public IPs, so for each instance RunInstances makes, the proxy starts a REAL local node (its
//! own 127.x.y.z port 22, keyed and host-keyed as the cloud-init user-data says) and rewrites
//! `<ipAddress>` in every answer to that node's address; instances it did not start lose
//! their address. TerminateInstances destroys the local node. Requests are forwarded as they
//! are (moto without signature checking); answers keep moto's status and body otherwise.
#![allow(dead_code)]

use crate::cloudnodes;
use base64::Engine;
use provision::provider::Provider;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct MotoProxy {
    pub url: String,
    /// instance id → (node name, loopback address)
    pub nodes: Arc<Mutex<HashMap<String, (String, String)>>>,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn params(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    s.match_indices(open)
        .filter_map(|(i, _)| {
            let rest = &s[i + open.len()..];
            rest.find(close).map(|j| &rest[..j])
        })
        .collect()
}

/// Each instance's `<ipAddress>` becomes its local node's address, or goes.
fn rewrite(xml: &str, nodes: &HashMap<String, (String, String)>) -> String {
    let mut out = String::new();
    for (n, seg) in xml.split("<instanceId>").enumerate() {
        if n > 0 {
            out.push_str("<instanceId>");
        }
        let id = seg.split('<').next().unwrap_or("");
        let mut rest = seg;
        while let Some(i) = rest.find("<ipAddress>") {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            let j = after.find("</ipAddress>").map_or(after.len(), |j| j + 12);
            if let Some((_, ip)) = nodes.get(id).filter(|_| n > 0) {
                out.push_str(&format!("<ipAddress>{ip}</ipAddress>"));
            }
            rest = &after[j..];
        }
        out.push_str(rest);
    }
    out
}

fn serve(mut conn: TcpStream, upstream: &str, nodes: &Mutex<HashMap<String, (String, String)>>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    let p = params(&body);
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let action = get("Action").unwrap_or_default();
    if action == "TerminateInstances" {
        for (k, id) in &p {
            if k.starts_with("InstanceId.") {
                if let Some((name, _)) = nodes.lock().unwrap().remove(id) {
                    let _ = cloudnodes::local().destroy(&name);
                }
            }
        }
    }
    let mut req = reqwest::blocking::Client::new().post(format!("{upstream}/"));
    for (k, v) in &headers {
        if !["host", "content-length", "connection"].contains(&k.to_ascii_lowercase().as_str()) {
            req = req.header(k, v);
        }
    }
    let resp = req.body(body.clone()).send().unwrap();
    let status = resp.status().as_u16();
    let mut text = resp.text().unwrap();
    if action == "RunInstances" && status == 200 {
        let ud = get("UserData").unwrap_or_default();
        let ud = base64::engine::general_purpose::STANDARD
            .decode(ud)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let name = (1..)
            .map_while(|i| {
                let k = get(&format!("TagSpecification.1.Tag.{i}.Key"))?;
                Some((k, get(&format!("TagSpecification.1.Tag.{i}.Value"))))
            })
            .find(|(k, _)| k == "Name")
            .and_then(|(_, v)| v)
            .unwrap_or_default();
        for id in between(&text.clone(), "<instanceId>", "</instanceId>") {
            let ip = match cloudnodes::start_node(&name, &ud) {
                Ok((ip, _)) => ip,
                Err(e) => {
                    cloudnodes::hook_errors()
                        .lock()
                        .unwrap()
                        .insert(name.clone(), e);
                    "127.0.0.1".into()
                }
            };
            nodes
                .lock()
                .unwrap()
                .insert(id.to_string(), (name.clone(), ip));
        }
    }
    if action.starts_with("RunInstances") || action.starts_with("DescribeInstances") {
        text = rewrite(&text, &nodes.lock().unwrap());
    }
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Starts the proxy in front of moto at `upstream`.
pub fn start(upstream: &str) -> MotoProxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let nodes: Arc<Mutex<HashMap<String, (String, String)>>> = Arc::default();
    let (n, up) = (nodes.clone(), upstream.to_string());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let (n, up) = (n.clone(), up.clone());
            std::thread::spawn(move || serve(conn, &up, &n));
        }
    });
    MotoProxy { url, nodes }
}
