//! A loopback proxy in front of moto that keeps every connection on loopback: moto hands out
//! public IPs, so for each instance RunInstances makes, the proxy starts a REAL local node (its
//! own 127.x.y.z port 22, keyed and host-keyed as the cloud-init user-data says) and rewrites
//! `<ipAddress>` in every answer to that node's address; instances it did not start lose
//! their address. A RunInstances asking for IPv6 (`Ipv6AddressCount`) gets a node on `::1`
//! alone, shown as the instance's `<ipv6Address>` instead of an `<ipAddress>`. TerminateInstances destroys the local node. Requests are forwarded as they
//! are (moto without signature checking); answers keep moto's status and body otherwise.
#![allow(dead_code)]

use super::cloudnodes;
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
    pub faults: Arc<Mutex<Faults>>,
}

/// What the proxy does wrong, per action.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// 503 RequestLimitExceeded, not forwarded.
    Throttle,
    /// This status with an EC2 error body, not forwarded.
    Status(u16),
    /// Forwarded, then the connection closes without an answer.
    LoseAnswer,
    /// Forwarded, then 200 with a body that is not XML.
    GarbleAfterProcessing,
}

#[derive(Default)]
pub struct Faults {
    /// (action, fault, times left)
    pub rules: Vec<(String, Fault, u32)>,
    /// Instances stay `pending` in every answer.
    pub stuck: bool,
    /// Instances report `terminated` with a state reason, as a failed launch.
    pub failed: bool,
    /// RunInstances calls that reached moto.
    pub creates: u32,
}

impl MotoProxy {
    pub fn fault(&self, action: &str, f: Fault, times: u32) {
        self.faults
            .lock()
            .unwrap()
            .rules
            .push((action.into(), f, times));
    }
}

fn take(faults: &Mutex<Faults>, action: &str) -> Option<Fault> {
    let mut f = faults.lock().unwrap();
    let rule = f.rules.iter_mut().find(|(a, _, n)| a == action && *n > 0)?;
    rule.2 -= 1;
    Some(rule.1)
}

fn answer(conn: &mut TcpStream, status: u16, text: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

use super::fakecloud::decode;

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

/// Each instance's `<ipAddress>` becomes its local node's address (`<ipv6Address>` for an IPv6
/// one), or goes.
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
            match nodes.get(id).filter(|_| n > 0) {
                Some((_, ip)) if ip.contains(':') => {
                    out.push_str(&format!("<ipv6Address>{ip}</ipv6Address>"));
                }
                Some((_, ip)) => out.push_str(&format!("<ipAddress>{ip}</ipAddress>")),
                None => {}
            }
            rest = &after[j..];
        }
        out.push_str(rest);
    }
    out
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    nodes: &Mutex<HashMap<String, (String, String)>>,
    faults: &Mutex<Faults>,
) {
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
    let fault = take(faults, &action);
    match fault {
        Some(Fault::Throttle) => {
            let body = "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>t-1</RequestID></Response>";
            return answer(&mut conn, 503, body);
        }
        Some(Fault::Status(code)) => {
            let body = "<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred</Message></Error></Errors><RequestID>t-2</RequestID></Response>";
            return answer(&mut conn, code, body);
        }
        _ => {}
    }
    if action == "RunInstances" {
        faults.lock().unwrap().creates += 1;
    }
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
        let v6 = get("Ipv6AddressCount").is_some();
        for id in between(&text.clone(), "<instanceId>", "</instanceId>") {
            let started = if v6 {
                cloudnodes::start_v6_node(&name, &ud)
            } else {
                cloudnodes::start_node(&name, &ud)
            };
            let ip = match started {
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
        let f = faults.lock().unwrap();
        for state in ["<name>running</name>", "<name>pending</name>"] {
            if f.stuck {
                text = text.replace(state, "<name>pending</name>");
            } else if f.failed {
                text = text.replace(state, "<name>terminated</name>");
            }
        }
    }
    match fault {
        Some(Fault::LoseAnswer) => drop(conn),
        Some(Fault::GarbleAfterProcessing) => answer(&mut conn, 200, "<html>oops"),
        _ => answer(&mut conn, status, &text),
    }
}

/// Starts the proxy in front of moto at `upstream`.
pub fn start(upstream: &str) -> MotoProxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let nodes: Arc<Mutex<HashMap<String, (String, String)>>> = Arc::default();
    let faults: Arc<Mutex<Faults>> = Arc::default();
    let (n, f, up) = (nodes.clone(), faults.clone(), upstream.to_string());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let (n, f, up) = (n.clone(), f.clone(), up.clone());
            std::thread::spawn(move || serve(conn, &up, &n, &f));
        }
    });
    MotoProxy { url, nodes, faults }
}
