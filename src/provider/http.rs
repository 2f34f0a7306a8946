//! The HTTP client every cloud driver shares, so that timeouts, retries, rate limits,
//! pagination, error lines and secret redaction behave the same for every provider.
//!
//! - Every call has a connect and a total timeout ([`HttpConfig`]).
//! - Idempotent calls (GET, DELETE) are retried with exponential backoff and jitter on 429,
//!   5xx and connection errors, honouring `Retry-After` (seconds or HTTP date) and the
//!   `ratelimit-remaining`/`ratelimit-reset` headers through one [`RateBudget`] per account.
//! - A create (POST) whose outcome is unknown is never simply re-sent: [`Client::create`]
//!   first asks the driver's lookup whether the resource exists.
//! - Provider error bodies become one line: provider, HTTP status, the provider's message,
//!   request id. Tokens and registered secrets are redacted from every error and log line.
//!
//! The client knows no provider: authentication, error-body fields, throttling codes, page
//! links and rate-limit headers come from the driver's [`Hooks`].

use crate::error::{Error, Result};
use crate::output;
use rand::Rng;
use reqwest::blocking::Client as Reqwest;
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod catalog;
pub mod hooks;
mod ratelimit;
mod settings;
pub use catalog::{natural_cmp, near_matches, not_found, pick_image, Candidate, Resolved};
pub use hooks::{Auth, Bearer, ErrorFields, Hooks};
pub use ratelimit::{retry_after, RateBudget};
pub use settings::{base_url, seconds, Credential, CredentialSource, HttpConfig};

/// Sent with every request.
pub const USER_AGENT: &str = concat!("provision/", env!("CARGO_PKG_VERSION"));

/// What every response looked like, for tests that check a validating proxy's verdict.
pub struct ResponseInfo<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub headers: &'a HeaderMap,
}

/// Called with every response the client receives.
pub type Inspector = Arc<dyn Fn(&ResponseInfo<'_>) + Send + Sync>;

/// A response with a 2xx or 404 status.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A request body: JSON, or a form (the EC2 Query API).
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Json(&'a Value),
    Form(&'a [(String, String)]),
}

/// Why one attempt did not produce a [`Reply`].
enum Failure {
    /// Worth another try. `sent`: the request may have been processed.
    Retry {
        why: String,
        wait: Option<Duration>,
        sent: bool,
    },
    Fatal(Error),
}

/// The shared client: one per driver instance (and so per account).
pub struct Client {
    provider: &'static str,
    auth: Arc<dyn Auth>,
    hooks: Arc<dyn Hooks>,
    base: String,
    cfg: HttpConfig,
    http: Reqwest,
    budget: Arc<RateBudget>,
    secrets: Mutex<Vec<String>>,
    inspector: Option<Inspector>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("provider", &self.provider)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn build_http(cfg: &HttpConfig) -> Result<Reqwest> {
    Reqwest::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.timeout)
        .build()
        .map_err(|e| Error::http("cannot build the HTTP client", e))
}

impl Client {
    pub fn new(
        provider: &'static str,
        auth: Arc<dyn Auth>,
        hooks: Arc<dyn Hooks>,
        base: String,
        cfg: HttpConfig,
    ) -> Result<Client> {
        let http = build_http(&cfg)?;
        Ok(Client {
            provider,
            auth,
            hooks,
            base: base.trim_end_matches('/').to_string(),
            cfg,
            http,
            budget: RateBudget::new(),
            secrets: Mutex::new(Vec::new()),
            inspector: None,
        })
    }

    pub fn set_base_url(&mut self, url: &str) {
        self.base = url.trim_end_matches('/').to_string();
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn set_config(&mut self, cfg: HttpConfig) -> Result<()> {
        self.http = build_http(&cfg)?;
        self.cfg = cfg;
        Ok(())
    }

    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    pub fn set_budget(&mut self, budget: Arc<RateBudget>) {
        self.budget = budget;
    }

    pub fn budget(&self) -> Arc<RateBudget> {
        self.budget.clone()
    }

    pub fn set_inspector(&mut self, f: Inspector) {
        self.inspector = Some(f);
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// Something that must never appear in an error or log line (user-data, private keys):
    /// the whole text, its JSON-escaped form, and (with `lines`) each of its lines.
    pub fn add_secret(&self, s: &str, lines: bool) {
        let mut v = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        let escaped = serde_json::to_string(s).unwrap_or_default();
        let escaped = escaped.trim_matches('"').to_string();
        let parts: Vec<&str> = if lines {
            s.lines().collect()
        } else {
            Vec::new()
        };
        for part in [s, escaped.as_str()].into_iter().chain(parts) {
            let part = part.trim();
            if part.len() >= 8 && !v.iter().any(|x| x == part) {
                v.push(part.to_string());
            }
        }
    }

    /// `s` with the token and every registered secret replaced by `<redacted>`.
    pub fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        let own = self.auth.secrets();
        // longest first, so a whole secret is replaced before any of its lines
        let mut sorted: Vec<&String> = secrets
            .iter()
            .chain(own.iter().filter(|s| !s.is_empty()))
            .collect();
        sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in sorted {
            out = out.replace(secret.as_str(), "<redacted>");
        }
        out
    }

    pub fn api_error(&self, msg: impl fmt::Display) -> Error {
        Error::Api {
            provider: self.provider.to_string(),
            message: self.redact(&msg.to_string()),
        }
    }

    pub fn malformed(&self, msg: impl fmt::Display) -> Error {
        Error::Malformed {
            provider: self.provider.to_string(),
            message: self.redact(&msg.to_string()),
        }
    }

    pub fn unavailable(&self, msg: impl fmt::Display) -> Error {
        Error::Unavailable {
            provider: self.provider.to_string(),
            message: self.redact(&msg.to_string()),
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url> {
        let mut url = Url::parse(&format!("{}{path}", self.base)).map_err(|e| {
            Error::config(format!("{}: bad API URL {}: {e}", self.provider, self.base))
        })?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cfg.backoff_max);
        let ms = exp.as_millis().max(1) as u64;
        Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
    }

    /// One attempt; 2xx and 404 are replies, everything else a failure.
    fn once(&self, method: &Method, url: &Url, body: Option<Body<'_>>) -> Result<Reply, Failure> {
        let wait = self.budget.delay();
        if wait > self.cfg.max_wait {
            return Err(Failure::Fatal(self.unavailable(format!(
                "rate limit spent; it resets in {}s",
                wait.as_secs()
            ))));
        }
        if !wait.is_zero() {
            output::debug(&format!("{}: rate limit: waiting {wait:?}", self.provider));
            std::thread::sleep(wait);
        }
        let path = url.path();
        let mut req = self.http.request(method.clone(), url.clone());
        req = match body {
            Some(Body::Json(b)) => req.header("Accept", "application/json").json(b),
            Some(Body::Form(f)) => req.form(f),
            None => req.header("Accept", "application/json"),
        };
        let mut req = req
            .build()
            .map_err(|e| Failure::Fatal(Error::unexpected(format!("{method} {path}: {e}"))))?;
        self.auth.authorize(&mut req).map_err(Failure::Fatal)?;
        let what = self
            .hooks
            .operation(&req)
            .unwrap_or_else(|| format!("{method} {path}"));
        let started = Instant::now();
        let transport = |e: reqwest::Error| {
            let why = if e.is_timeout() {
                format!("{what}: no answer within {:?}", self.cfg.timeout)
            } else {
                format!("{what}: {}", crate::error::chain(&e))
            };
            Failure::Retry {
                why: self.redact(&why),
                wait: None,
                sent: !e.is_connect(),
            }
        };
        let resp = self.http.execute(req).map_err(transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().map_err(transport)?.to_vec();
        output::debug(&format!(
            "{}: {what} -> {status} ({} ms)",
            self.provider,
            started.elapsed().as_millis()
        ));
        let (remaining, reset) = self.hooks.rate_limit(&headers);
        self.budget.record(remaining, reset);
        if let Some(f) = &self.inspector {
            f(&ResponseInfo {
                method: method.as_str(),
                path,
                status,
                headers: &headers,
            });
        }
        if (200..300).contains(&status) || status == 404 {
            return Ok(Reply {
                status,
                headers,
                body,
            });
        }
        let fields = self.hooks.error_fields(&body);
        let line = self.error_line(&what, status, &headers, &body, &fields);
        let throttled = self.hooks.throttled(status, &fields);
        if self.hooks.retryable(status, &fields) {
            let wait = retry_after(&headers).or_else(|| throttled.then(|| self.budget.delay()));
            if let Some(w) = wait.filter(|w| !w.is_zero()) {
                self.budget.pause(w.min(self.cfg.max_wait));
            }
            return Err(Failure::Retry {
                why: line,
                wait,
                sent: !throttled,
            });
        }
        if status == 401 || status == 403 {
            // a configuration problem, like a missing token: exit 2, nothing created
            return Err(Failure::Fatal(Error::config(self.redact(&format!(
                "{}: credential refused: {line}; {}",
                self.provider,
                self.auth.refused()
            )))));
        }
        Err(Failure::Fatal(self.api_error(line)))
    }

    /// `HTTP 422 Unprocessable Entity: <provider's message> (request id X)`, one line.
    fn error_line(
        &self,
        what: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        fields: &ErrorFields,
    ) -> String {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let s = |v: Option<&Value>| v.and_then(|v| v.as_str()).map(String::from);
        let (msg, code, mut rid) = (
            fields.message.clone(),
            fields.code.clone(),
            fields.request_id.clone(),
        );
        // anything else that explains itself (e.g. problem+json from a proxy)
        let msg = msg
            .or_else(|| {
                json.as_ref()
                    .and_then(|j| s(j.get("detail")).or(s(j.get("title"))))
            })
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                text.chars().take(200).collect()
            });
        for h in ["x-request-id", "x-correlation-id"] {
            if rid.is_none() {
                rid = headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
            }
        }
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut line = format!("{what}: HTTP {status} {reason}");
        if !msg.is_empty() {
            line.push_str(&format!(": {msg}"));
        }
        if let Some(c) = code {
            line.push_str(&format!(" [{c}]"));
        }
        if let Some(r) = rid {
            line.push_str(&format!(" (request id {r})"));
        }
        // a validating proxy (Prism) explains spec violations in this header
        if let Some(v) = headers.get("sl-violations").and_then(|v| v.to_str().ok()) {
            line.push_str(&format!("; spec violations: {v}"));
        }
        self.redact(&line).replace(['\n', '\r'], " ")
    }

    /// An idempotent call, retried on 429/5xx/connection errors.
    fn idempotent(&self, method: Method, path: &str, query: &[(&str, String)]) -> Result<Reply> {
        self.send_idempotent(method, path, query, None)
    }

    /// An idempotent call with an optional body (a Query-API read, or a create carrying an
    /// idempotency token), retried on throttling, 5xx and connection errors. 2xx and 404 are
    /// replies; the caller reads [`Reply::body`].
    pub fn send_idempotent(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body<'_>>,
    ) -> Result<Reply> {
        let url = self.url(path, query)?;
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            match self.once(&method, &url, body) {
                Ok(r) => return Ok(r),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry { why, wait, .. }) => {
                    last = why;
                    if attempt == self.cfg.retries {
                        break;
                    }
                    self.sleep_before_retry(attempt, wait, &last)?;
                }
            }
        }
        Err(self.unavailable(format!(
            "{last} (gave up after {} attempts)",
            self.cfg.retries + 1
        )))
    }

    fn sleep_before_retry(&self, attempt: u32, wait: Option<Duration>, why: &str) -> Result<()> {
        let d = match wait {
            Some(w) if w > self.cfg.max_wait => {
                return Err(self.unavailable(format!(
                    "{why} (asked to wait {}s, longer than the {}s we wait)",
                    w.as_secs(),
                    self.cfg.max_wait.as_secs()
                )))
            }
            Some(w) => w,
            None => self.backoff(attempt),
        };
        output::debug(&format!("{}: {why}; retrying in {d:?}", self.provider));
        std::thread::sleep(d);
        Ok(())
    }

    fn json(&self, what: &str, r: &Reply) -> Result<Value> {
        if r.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&r.body)
            .map_err(|e| self.malformed(format!("{what}: not JSON: {e}")))
    }

    /// GET a JSON document; 404 is an API error.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        match self.get_opt(path, query)? {
            Some(v) => Ok(v),
            None => Err(self.api_error(format!("GET {path}: HTTP 404 Not Found"))),
        }
    }

    /// GET a JSON document; 404 is `None`.
    pub fn get_opt(&self, path: &str, query: &[(&str, String)]) -> Result<Option<Value>> {
        let r = self.idempotent(Method::GET, path, query)?;
        if r.status == 404 {
            return Ok(None);
        }
        self.json(&format!("GET {path}"), &r).map(Some)
    }

    /// DELETE; `false` when it was already gone (404).
    pub fn delete(&self, path: &str) -> Result<bool> {
        let r = self.idempotent(Method::DELETE, path, &[])?;
        Ok(r.status != 404)
    }

    /// An idempotent update (PUT, a tag added or removed) with a JSON body, retried like a
    /// read; 404 is an API error. Returns the answer's JSON (`Null` when empty).
    pub fn update(&self, method: Method, path: &str, body: &Value) -> Result<Value> {
        let r = self.send_idempotent(method.clone(), path, &[], Some(Body::Json(body)))?;
        if r.status == 404 {
            return Err(self.api_error(format!("{method} {path}: HTTP 404 Not Found")));
        }
        self.json(&format!("{method} {path}"), &r)
    }

    /// Every item under `key` across all pages of a list call.
    pub fn get_all(&self, path: &str, key: &str, query: &[(&str, String)]) -> Result<Vec<Value>> {
        let per_page = self.hooks.per_page().to_string();
        let mut items = Vec::new();
        let mut page: u64 = 1;
        loop {
            let mut q = query.to_vec();
            q.push(("per_page", per_page.clone()));
            if page > 1 {
                q.push(("page", page.to_string()));
            }
            let v = self.get(path, &q)?;
            let list = v.get(key).and_then(|l| l.as_array()).ok_or_else(|| {
                self.malformed(format!("GET {path}: no '{key}' list in the response"))
            })?;
            // offset pages shift when others create or delete meanwhile: keep one of each
            for item in list {
                let id = item.get("id");
                if id.is_none() || !items.iter().any(|i: &Value| i.get("id") == id) {
                    items.push(item.clone());
                }
            }
            let next = self
                .hooks
                .next_page(&v, page)
                .map_err(|m| self.malformed(format!("GET {path}: {m}")))?;
            match next {
                Some(n) if n > page && n < 100_000 => page = n,
                Some(n) => {
                    return Err(self.malformed(format!(
                        "GET {path}: page {page} points to page {n} as the next"
                    )))
                }
                None => return Ok(items),
            }
        }
    }

    /// A POST; retried only when the request surely was not processed (connection refused,
    /// 429). When the outcome is unknown (timeout, reset, 5xx), `lookup` says whether the
    /// resource exists: if so it is the result, otherwise the request is sent again.
    pub fn create(
        &self,
        path: &str,
        body: &Value,
        lookup: &dyn Fn() -> Result<Option<Value>>,
    ) -> Result<Value> {
        self.create_with(path, Body::Json(body), lookup, &|r| {
            self.json(&format!("POST {path}"), r)
        })
    }

    /// [`Client::create`] for any body and answer: `read` turns the reply into the result.
    pub fn create_with<T>(
        &self,
        path: &str,
        body: Body<'_>,
        lookup: &dyn Fn() -> Result<Option<T>>,
        read: &dyn Fn(&Reply) -> Result<T>,
    ) -> Result<T> {
        let url = self.url(path, &[])?;
        let mut last = String::new();
        let mut unknown = false;
        for attempt in 0..=self.cfg.retries {
            match self.once(&Method::POST, &url, Some(body)) {
                Ok(r) if r.status == 404 => {
                    return Err(self.api_error(format!("POST {path}: HTTP 404 Not Found")))
                }
                Ok(r) => return read(&r),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry { why, wait, sent }) => {
                    last = why;
                    unknown = sent;
                    if attempt == self.cfg.retries {
                        break;
                    }
                    self.sleep_before_retry(attempt, wait, &last)?;
                    if sent {
                        output::debug(&format!(
                            "{}: POST {path}: outcome unknown ({last}); looking before re-sending",
                            self.provider
                        ));
                        if let Some(found) = lookup()? {
                            return Ok(found);
                        }
                    }
                }
            }
        }
        if unknown {
            if let Some(found) = lookup()? {
                return Ok(found);
            }
        }
        Err(self.unavailable(format!(
            "{last} (gave up after {} attempts)",
            self.cfg.retries + 1
        )))
    }
}

/// The `page` query parameter of a next-page link.
pub fn page_of(link: &str) -> Option<u64> {
    let url = Url::parse(link)
        .or_else(|_| Url::parse("http://x/").and_then(|b| b.join(link)))
        .ok()?;
    let page = url.query_pairs().find(|(k, _)| k == "page")?.1.parse().ok();
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_links() {
        assert_eq!(
            page_of("https://api.digitalocean.com/v2/droplets?page=3&per_page=2"),
            Some(3)
        );
        assert_eq!(page_of("/v2/droplets?per_page=2&page=2"), Some(2));
        assert_eq!(page_of("https://x/v2/droplets"), None);
    }
}
