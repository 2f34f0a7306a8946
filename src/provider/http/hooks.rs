//! What a driver tells the shared client about its API, so the client knows no provider:
//! how a request is authenticated ([`Auth`]: bearer token, SigV4, ...), and how its answers
//! read ([`Hooks`]: error bodies, which answers mean "slow down", page links, rate-limit
//! headers). libcloud splits a driver into `NodeDriver`, `Connection` (auth) and `Response`
//! (error parsing); these are the last two, one small object each per driver.

use super::settings::Credential;
use crate::error::Result;
use reqwest::blocking::Request;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;

/// What an error body said, as far as the driver can tell.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    /// The provider's human message.
    pub message: Option<String>,
    /// The provider's error code (`unprocessable_entity`, `InvalidAMIID.NotFound`, ...).
    pub code: Option<String>,
    pub request_id: Option<String>,
}

/// How a driver authenticates its requests.
pub trait Auth: Send + Sync {
    /// Adds authentication to a finished request (header, signature). Called once per attempt,
    /// so time-stamped signatures are fresh on every retry.
    fn authorize(&self, req: &mut Request) -> Result<()>;

    /// Secrets the client must redact from every line (the token, a secret key).
    fn secrets(&self) -> Vec<String>;

    /// Said after a 401 line: which credential was refused, from where.
    fn refused(&self) -> String;
}

/// How a driver's API answers. Every method has a default that fits a plain JSON API.
pub trait Hooks: Send + Sync {
    /// How a request is named in error lines, when `METHOD /path` says too little (a Query
    /// API's `Action`).
    fn operation(&self, _req: &Request) -> Option<String> {
        None
    }

    /// The message, code and request id of an error body.
    fn error_fields(&self, _body: &[u8]) -> ErrorFields {
        ErrorFields::default()
    }

    /// An answer that means "too many requests": retried like 429 (the request was not
    /// processed). EC2 answers throttling with a 503 and a code.
    fn throttled(&self, status: u16, _fields: &ErrorFields) -> bool {
        status == 429
    }

    /// Whether an error status is worth another try (default: 429 and 5xx).
    fn retryable(&self, status: u16, fields: &ErrorFields) -> bool {
        self.throttled(status, fields) || status >= 500
    }

    /// The page size asked for by [`super::Client::get_all`] (`per_page`).
    fn per_page(&self) -> u32 {
        50
    }

    /// The page after `page` named by a list answer, if any; `Err` explains a bad link.
    fn next_page(&self, _body: &Value, _page: u64) -> std::result::Result<Option<u64>, String> {
        Ok(None)
    }

    /// `(remaining, reset)` from the rate-limit headers, reset in Unix seconds or seconds.
    fn rate_limit(&self, headers: &HeaderMap) -> (Option<u64>, Option<u64>) {
        let num = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        (num("ratelimit-remaining"), num("ratelimit-reset"))
    }
}

/// A bearer token in the Authorization header: what DigitalOcean and Hetzner use.
#[derive(Debug, Clone)]
pub struct Bearer(pub Credential);

impl Auth for Bearer {
    fn authorize(&self, req: &mut Request) -> Result<()> {
        let v = HeaderValue::from_str(&format!("Bearer {}", self.0.secret())).map_err(|_| {
            crate::error::Error::config(format!(
                "the token from {} contains characters a header cannot carry",
                self.0.source
            ))
        })?;
        req.headers_mut().insert(AUTHORIZATION, v);
        Ok(())
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.0.secret().to_string()]
    }

    fn refused(&self) -> String {
        format!(
            "the token from {} was refused (wrong or expired?)",
            self.0.source
        )
    }
}
