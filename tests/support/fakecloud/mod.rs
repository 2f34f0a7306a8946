//! A stateful loopback fake of the DigitalOcean and Hetzner Cloud APIs, for the driver tests.
//!
//! Servers created by POST start `new`/`initializing` and turn `active`/`running` after
//! [`FakeCloud::set_polls_until_active`] reads, or, after [`FakeCloud::set_boot_time`], once
//! that long has passed since their create however often they are read (or report the status
//! set with [`FakeCloud::set_status`]); they get a loopback IP from the [`FakeCloud::on_create`]
//! hook (default 127.0.0.1; `::1` makes a Hetzner server IPv6-only, reported as `::/64`), which
//! also sees the request's user-data, and
//! [`FakeCloud::on_delete`] hears of every deleted server. Lists are paginated with a small page
//! size ([`FakeCloud::set_per_page_cap`] raises it to what the real API allows). Faults (status
//! codes, Retry-After, slow answers, malformed JSON, dropped connections) are injected per
//! method and path prefix. Responses follow the official specs, so the fake
//! can sit behind Prism's validating proxy.
//!
//! A minimal HTTP/1.1 server on `std::net` (one request per connection, `Connection: close`,
//! a thread per connection, hooks called without holding a lock, so concurrent creates start
//! their nodes concurrently) keeps full control over the wire: a dropped connection is really
//! dropped.

mod digitalocean;
mod hetzner;
pub mod openstack;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    DigitalOcean,
    Hetzner,
    /// Keystone v3 + Nova + Glance + Neutron on one port; the fake's token is the password.
    OpenStack,
}

/// What to do instead of (or besides) answering normally.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and the provider's error body, without processing.
    Status(u16),
    /// 429 with this `Retry-After` value, without processing.
    RetryAfter(String),
    /// Process, then wait this long before answering.
    Slow(Duration),
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Process the request (a create creates), then answer its success status with a body
    /// that is not JSON.
    MalformedAfterProcessing,
    /// Process the request, then close the connection without an answer.
    DropAfterProcessing,
    /// Answer with this status and this message in the provider's error body.
    Message(u16, String),
}

struct Rule {
    method: String,
    prefix: String,
    fault: Fault,
    remaining: u32,
}

/// A parsed request.
#[derive(Debug)]
pub struct Req {
    pub method: String,
    /// Path without the query, and without Hetzner's `/v1`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub struct Resp {
    pub status: u16,
    pub body: Option<Value>,
    pub raw: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn json(status: u16, body: Value) -> Resp {
        Resp {
            status,
            body: Some(body),
            raw: None,
            headers: vec![],
        }
    }

    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            body: None,
            raw: None,
            headers: vec![],
        }
    }
}

/// One server as the fake keeps it.
#[derive(Debug, Clone)]
pub struct Server {
    pub id: u64,
    pub name: String,
    pub reads: u32,
    /// DigitalOcean tags.
    pub tags: Vec<String>,
    /// Hetzner labels.
    pub labels: BTreeMap<String, String>,
    pub image: String,
    pub size: String,
    pub region: String,
    pub ip: String,
    pub user_data: String,
    pub ssh_keys: Vec<Value>,
    pub created: String,
    /// When the create was answered, for [`FakeCloud::set_boot_time`].
    pub born: Instant,
}

#[derive(Debug, Clone)]
pub struct Key {
    pub id: u64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
}

#[derive(Default)]
pub struct State {
    pub servers: BTreeMap<u64, Server>,
    pub keys: Vec<Key>,
    /// DigitalOcean tags that exist on the account (created, or given at a droplet's create):
    /// only those can be put on a resource.
    pub tag_names: std::collections::BTreeSet<String>,
}

type Canned = (String, String, String, u16, String);

/// `(name, user_data)` of a new server → where it lives: `(ip, ssh port)`.
pub type CreateHook = Box<dyn Fn(&str, &str) -> (String, Option<u16>) + Send + Sync>;
/// Told the name of every deleted server.
pub type DeleteHook = Box<dyn Fn(&str) + Send + Sync>;
type SharedCreateHook = Arc<dyn Fn(&str, &str) -> (String, Option<u16>) + Send + Sync>;
type SharedDeleteHook = Arc<dyn Fn(&str) + Send + Sync>;

pub struct Inner {
    pub api: Api,
    pub token: String,
    pub state: Mutex<State>,
    rules: Mutex<Vec<Rule>>,
    hook: Mutex<Option<SharedCreateHook>>,
    delete_hook: Mutex<Option<SharedDeleteHook>>,
    /// When set, every server reports this status (e.g. `off`), whatever its reads.
    status: Mutex<Option<String>>,
    pub polls_until_active: AtomicU32,
    /// Hetzner: servers are on a private network only (their address in `private_net`, no
    /// public IPv4), as nodes behind a jump host.
    pub private_only: std::sync::atomic::AtomicBool,
    /// Milliseconds from create to active; `u64::MAX`: count reads instead.
    boot_ms: AtomicU64,
    next_id: AtomicU64,
    served: AtomicU64,
    pub per_page_cap: AtomicUsize,
    /// Canned answers: (method, path, query term that must be present, status, body).
    canned: Mutex<Vec<Canned>>,
    /// `METHOD /path?query` of every request, in order.
    pub log: Mutex<Vec<String>>,
    /// OpenStack's tokens and per-server extras.
    pub os: Mutex<openstack::OsState>,
}

impl Inner {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The hook's answer for a new server named `name` made with `user_data`.
    pub fn place(&self, name: &str, user_data: &str) -> (String, Option<u16>) {
        // cloned out, so slow hooks (a node starting) of concurrent creates run concurrently
        let hook = self.hook.lock().unwrap().clone();
        match hook {
            Some(f) => f(name, user_data),
            None => ("127.0.0.1".into(), None),
        }
    }

    /// Tells the delete hook that server `name` is gone.
    pub fn deleted(&self, name: &str) {
        let hook = self.delete_hook.lock().unwrap().clone();
        if let Some(f) = hook {
            f(name);
        }
    }

    /// The status set with [`FakeCloud::set_status`], if any.
    pub fn status_override(&self) -> Option<String> {
        self.status.lock().unwrap().clone()
    }

    pub fn active(&self, s: &Server) -> bool {
        match self.boot_ms.load(Ordering::Relaxed) {
            u64::MAX => s.reads >= self.polls_until_active.load(Ordering::Relaxed),
            ms => s.born.elapsed() >= Duration::from_millis(ms),
        }
    }

    pub fn per_page_cap(&self) -> usize {
        self.per_page_cap.load(Ordering::Relaxed)
    }

    pub fn requests_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// A running fake. The server thread lives as long as the test process.
#[derive(Clone)]
pub struct FakeCloud {
    pub url: String,
    pub inner: Arc<Inner>,
}

impl FakeCloud {
    pub fn start(api: Api, token: &str) -> FakeCloud {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let inner = Arc::new(Inner {
            api,
            token: token.to_string(),
            state: Mutex::new(State::default()),
            rules: Mutex::new(Vec::new()),
            hook: Mutex::new(None),
            delete_hook: Mutex::new(None),
            status: Mutex::new(None),
            polls_until_active: AtomicU32::new(2),
            boot_ms: AtomicU64::new(u64::MAX),
            private_only: Default::default(),
            next_id: AtomicU64::new(3_000_001),
            served: AtomicU64::new(0),
            per_page_cap: AtomicUsize::new(2),
            canned: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            os: Mutex::new(Default::default()),
        });
        let i = inner.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let i = i.clone();
                std::thread::spawn(move || serve(&i, conn));
            }
        });
        FakeCloud { url, inner }
    }

    /// The next `times` requests `METHOD path-prefix...` get `fault`.
    pub fn fault(&self, method: &str, prefix: &str, fault: Fault, times: u32) {
        self.inner.rules.lock().unwrap().push(Rule {
            method: method.into(),
            prefix: prefix.into(),
            fault,
            remaining: times,
        });
    }

    /// Answers `METHOD path` (with `query_term` like `page=2` among its parameters, when not
    /// empty) with a recorded body, before any other route. The first match wins.
    pub fn serve(&self, method: &str, path: &str, query_term: &str, status: u16, body: &str) {
        self.inner.canned.lock().unwrap().push((
            method.into(),
            path.into(),
            query_term.into(),
            status,
            body.into(),
        ));
    }

    /// Where a created server lives: `(ip, ssh port)` from its name and user-data (e.g. a
    /// local sshd node keyed and host-keyed as the cloud-init user-data says).
    pub fn on_create(&self, f: CreateHook) {
        *self.inner.hook.lock().unwrap() = Some(Arc::from(f));
    }

    /// Called with the name of every server deleted through the API.
    pub fn on_delete(&self, f: DeleteHook) {
        *self.inner.delete_hook.lock().unwrap() = Some(Arc::from(f));
    }

    /// Hetzner: every server reports its address on a private network only (see
    /// [`Inner::private_only`]).
    pub fn set_private_only(&self, on: bool) {
        self.inner.private_only.store(on, Ordering::Relaxed);
    }

    /// Every server reports `status` (a status of the provider's spec, such as `off`) from
    /// now on; `None` restores new → active.
    pub fn set_status(&self, status: Option<&str>) {
        *self.inner.status.lock().unwrap() = status.map(String::from);
    }

    /// How many servers exist.
    pub fn count(&self) -> usize {
        self.inner.state.lock().unwrap().servers.len()
    }

    /// Servers turn active after `n` reads (the default mode, with n = 2).
    pub fn set_polls_until_active(&self, n: u32) {
        self.inner.boot_ms.store(u64::MAX, Ordering::Relaxed);
        self.inner.polls_until_active.store(n, Ordering::Relaxed);
    }

    /// Servers report `new`/`initializing` until `boot` has passed since their create, then
    /// `active`/`running`, however often they are read: a cloud whose machines take time to
    /// boot, so polling more often only costs requests.
    pub fn set_boot_time(&self, boot: Duration) {
        let ms = u64::try_from(boot.as_millis()).unwrap_or(u64::MAX - 1);
        self.inner
            .boot_ms
            .store(ms.min(u64::MAX - 1), Ordering::Relaxed);
    }

    /// At most `n` items per list page (default 2, to exercise pagination; DigitalOcean
    /// allows 200, Hetzner 50).
    pub fn set_per_page_cap(&self, n: usize) {
        self.inner.per_page_cap.store(n.max(1), Ordering::Relaxed);
    }

    /// How many servers named `name` exist.
    pub fn count_named(&self, name: &str) -> usize {
        let st = self.inner.state.lock().unwrap();
        st.servers.values().filter(|s| s.name == name).count()
    }

    pub fn server_named(&self, name: &str) -> Option<Server> {
        let st = self.inner.state.lock().unwrap();
        st.servers.values().find(|s| s.name == name).cloned()
    }

    /// Sets (`Some`) or removes (`None`) one tag of server `name` right in the fake's state, in
    /// the API's raw form (a DigitalOcean `key:value` tag, a Hetzner label, Nova metadata),
    /// as if written long ago or by someone else. `value` must need no encoding.
    pub fn set_tag(&self, name: &str, key: &str, value: Option<&str>) {
        let mut st = self.inner.state.lock().unwrap();
        let s = st
            .servers
            .values_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name}"));
        match self.inner.api {
            Api::DigitalOcean => {
                s.tags
                    .retain(|t| t.split_once(':').map_or(t.as_str(), |(k, _)| k) != key);
                if let Some(v) = value {
                    s.tags.push(format!("{key}:{v}"));
                }
            }
            // Hetzner labels and Nova metadata are both kept in `labels`
            Api::Hetzner | Api::OpenStack => {
                match value {
                    Some(v) => s.labels.insert(key.into(), v.into()),
                    None => s.labels.remove(key),
                };
            }
        }
    }

    /// A server someone else made (no provision tag/label).
    pub fn add_foreign(&self, name: &str) -> u64 {
        let id = self.inner.next_id();
        let s = Server {
            id,
            name: name.into(),
            reads: 99,
            tags: vec!["web".into()],
            labels: [("team".to_string(), "web".to_string())].into(),
            image: match self.inner.api {
                Api::DigitalOcean => "ubuntu-24-04-x64".into(),
                Api::Hetzner => "ubuntu-24.04".into(),
                Api::OpenStack => "f24a3c1b-d52a-4116-91da-25b3eee8f55e".into(),
            },
            size: match self.inner.api {
                Api::DigitalOcean => "s-1vcpu-1gb".into(),
                Api::Hetzner => "cx22".into(),
                Api::OpenStack => "1".into(),
            },
            region: match self.inner.api {
                Api::DigitalOcean => "fra1".into(),
                Api::Hetzner => "fsn1".into(),
                Api::OpenStack => "nova".into(),
            },
            ip: "127.0.0.9".into(),
            user_data: String::new(),
            ssh_keys: vec![],
            created: now_rfc3339(),
            born: Instant::now(),
        };
        self.inner.state.lock().unwrap().servers.insert(id, s);
        id
    }

    pub fn log(&self) -> Vec<String> {
        self.inner.log.lock().unwrap().clone()
    }

    pub fn count_requests(&self, method: &str, path_prefix: &str) -> usize {
        let want = format!("{method} {path_prefix}");
        self.log().iter().filter(|l| l.starts_with(&want)).count()
    }

    pub fn keys(&self) -> Vec<Key> {
        self.inner.state.lock().unwrap().keys.clone()
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn take_fault(inner: &Inner, req: &Req) -> Option<Fault> {
    let mut rules = inner.rules.lock().unwrap();
    let r = rules
        .iter_mut()
        .find(|r| r.remaining > 0 && r.method == req.method && req.path.starts_with(&r.prefix))?;
    r.remaining -= 1;
    Some(r.fault.clone())
}

fn serve(inner: &Inner, mut conn: TcpStream) {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let Some(req) = read_request(&conn, inner.api) else {
        return;
    };
    inner.served.fetch_add(1, Ordering::Relaxed);
    let q: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    inner
        .log
        .lock()
        .unwrap()
        .push(format!("{} {}?{}", req.method, req.path, q.join("&")));
    let fault = take_fault(inner, &req);
    let resp = match &fault {
        Some(Fault::Status(code)) => error(inner.api, *code, "server_error", "injected failure"),
        Some(Fault::RetryAfter(v)) => {
            let mut r = error(inner.api, 429, "rate_limit_exceeded", "Too many requests");
            r.headers.push(("Retry-After".into(), v.clone()));
            r
        }
        Some(Fault::Message(code, msg)) => error(inner.api, *code, "fault", msg),
        Some(Fault::Malformed) => Resp {
            status: 200,
            body: None,
            raw: Some(b"{\"droplets\": [ this is not json".to_vec()),
            headers: vec![],
        },
        Some(Fault::MalformedAfterProcessing) => {
            let mut r = route(inner, &req);
            r.body = None;
            r.raw = Some(b"{\"droplet\": {\"id\": 1, this is not json".to_vec());
            r
        }
        _ => route(inner, &req),
    };
    match fault {
        Some(Fault::DropAfterProcessing) => {
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        }
        Some(Fault::Slow(d)) => std::thread::sleep(d),
        _ => {}
    }
    write_response(inner, &mut conn, resp);
}

fn route(inner: &Inner, req: &Req) -> Resp {
    for (m, p, term, status, body) in inner.canned.lock().unwrap().iter() {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        if *m == req.method && *p == req.path && (term.is_empty() || req.q(k) == Some(v)) {
            return Resp {
                status: *status,
                body: None,
                raw: Some(body.as_bytes().to_vec()),
                headers: vec![],
            };
        }
    }
    if inner.api == Api::OpenStack {
        return openstack::route(inner, req);
    }
    let auth = req.header("authorization").unwrap_or("");
    if auth != format!("Bearer {}", inner.token) {
        return match inner.api {
            Api::DigitalOcean => {
                error(inner.api, 401, "Unauthorized", "Unable to authenticate you")
            }
            Api::Hetzner | Api::OpenStack => {
                error(inner.api, 401, "unauthorized", "unable to authenticate")
            }
        };
    }
    match inner.api {
        Api::DigitalOcean => digitalocean::route(inner, req),
        Api::Hetzner => hetzner::route(inner, req),
        Api::OpenStack => openstack::route(inner, req),
    }
}

/// The provider's error body for `status`.
pub fn error(api: Api, status: u16, code: &str, message: &str) -> Resp {
    match api {
        Api::DigitalOcean => Resp::json(
            status,
            serde_json::json!({"id": code, "message": message, "request_id": uuid()}),
        ),
        Api::Hetzner => Resp::json(
            status,
            serde_json::json!({"error": {"code": code, "message": message, "details": null}}),
        ),
        Api::OpenStack => openstack::nova_error(status, message),
    }
}

pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn read_request(conn: &TcpStream, api: Api) -> Option<Req> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let hv = |k: &str| {
        headers
            .iter()
            .find(|(a, _): &&(String, String)| a.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(n) = hv("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    } else if hv("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut path = path.to_string();
    if api == Api::Hetzner {
        if let Some(p) = path.strip_prefix("/v1") {
            path = p.to_string();
        }
    }
    let query = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    Some(Req {
        method,
        path,
        query,
        headers,
        body,
    })
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        300 => "Multiple Choices",
        400 => "Bad Request",
        _ => "Status",
    }
}

fn write_response(inner: &Inner, conn: &mut TcpStream, resp: Resp) {
    let body = match (&resp.raw, &resp.body) {
        (Some(raw), _) => raw.clone(),
        (None, Some(v)) => serde_json::to_vec(v).unwrap(),
        (None, None) => Vec::new(),
    };
    let reset = time::OffsetDateTime::now_utc().unix_timestamp() + 60;
    let remaining = 4999u64.saturating_sub(inner.requests_served());
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    if !body.is_empty() {
        head.push_str("Content-Type: application/json; charset=utf-8\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\nRateLimit-Limit: 5000\r\nRateLimit-Remaining: {remaining}\r\nRateLimit-Reset: {reset}\r\n",
        body.len()
    ));
    if inner.api == Api::DigitalOcean {
        head.push_str(&format!("X-Request-Id: {}\r\n", uuid()));
    }
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
    let _ = conn.flush();
}

/// Items of page `page` (1-based) with at most `cap` per page, and the last page number.
pub fn page_of<T: Clone>(items: &[T], req: &Req, cap: usize) -> (Vec<T>, u64, u64, u64) {
    let per = req
        .q("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, cap);
    let page = req
        .q("page")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    let last = (items.len().max(1) as u64).div_ceil(per as u64);
    let start = ((page - 1) as usize * per).min(items.len());
    let end = (start + per).min(items.len());
    (items[start..end].to_vec(), page, last, per as u64)
}

/// Items after `marker` (by `id_of`), at most `limit` (capped at `cap`), and the marker of the
/// next page when there is one: OpenStack's paging.
pub fn page_of_marker<T: Clone>(
    items: &[T],
    req: &Req,
    cap: usize,
    id_of: impl Fn(&T) -> Option<String>,
) -> (Vec<T>, Option<String>) {
    let limit = req
        .q("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(cap)
        .clamp(1, cap);
    let start = match req.q("marker") {
        Some(m) => items
            .iter()
            .position(|i| id_of(i).as_deref() == Some(m))
            .map_or(items.len(), |p| p + 1),
        None => 0,
    };
    let end = (start + limit).min(items.len());
    let page = items[start..end].to_vec();
    let next = (end < items.len())
        .then(|| page.last().and_then(&id_of))
        .flatten();
    (page, next)
}
