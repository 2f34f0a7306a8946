//! How a cloud driver is configured: timeouts and retries, the base URL override, and the API
//! token with the source it came from (named in errors; its value never shown).

use crate::error::{Error, Result};
use std::fmt;
use std::time::Duration;

/// Timeouts and retry policy. Config keys in `[providers.NAME]`: `timeout`,
/// `connect_timeout` (seconds) and `retries`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub connect_timeout: Duration,
    /// Whole request, headers and body.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The longest server-requested wait (Retry-After, rate-limit reset) we sit out;
    /// anything longer fails at once as unavailable.
    pub max_wait: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            retries: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(20),
            max_wait: Duration::from_secs(120),
        }
    }
}

impl HttpConfig {
    /// Defaults overridden by `timeout`, `connect_timeout` and `retries` from a provider table.
    pub fn from_table(provider: &str, table: &toml::Table) -> Result<HttpConfig> {
        let mut cfg = HttpConfig::default();
        if let Some(d) = seconds(provider, table, "timeout")? {
            cfg.timeout = d;
        }
        if let Some(d) = seconds(provider, table, "connect_timeout")? {
            cfg.connect_timeout = d;
        }
        if let Some(v) = table.get("retries") {
            cfg.retries = v
                .as_integer()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    Error::config(format!(
                        "[providers.{provider}] retries: expected a whole number"
                    ))
                })?;
        }
        Ok(cfg)
    }
}

/// A duration in seconds (integer or float) from a provider table.
pub fn seconds(provider: &str, table: &toml::Table, key: &str) -> Result<Option<Duration>> {
    let Some(v) = table.get(key) else {
        return Ok(None);
    };
    let secs = v
        .as_float()
        .or_else(|| v.as_integer().map(|i| i as f64))
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| {
            Error::config(format!(
                "[providers.{provider}] {key}: expected a positive number of seconds"
            ))
        })?;
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// Where a credential came from: named in errors, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `-k` on the command line.
    Flag,
    /// An environment variable.
    Env(&'static str),
    /// `token` in `[providers.NAME]` of the config layers.
    Config(String),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Flag => f.write_str("flag -k"),
            CredentialSource::Env(var) => write!(f, "environment variable {var}"),
            CredentialSource::Config(p) => write!(f, "config file ([providers.{p}] token)"),
        }
    }
}

/// An API token and where it came from. `Debug` never shows the value.
#[derive(Clone)]
pub struct Credential {
    value: String,
    pub source: CredentialSource,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential(<redacted> from {})", self.source)
    }
}

impl Credential {
    /// The token itself: only for the Authorization header and for redaction.
    pub(in crate::provider) fn secret(&self) -> &str {
        &self.value
    }

    /// The token from, highest first: the flag, the environment variables in order, the
    /// config table's `token`. Missing → a config error naming the variable to set.
    pub fn find(
        provider: &str,
        flag: Option<&str>,
        envs: &[&'static str],
        table: &toml::Table,
    ) -> Result<Credential> {
        let found = |value: &str, source| {
            let value = value.trim();
            // no stderr line may show it, whichever crate (reqwest at -vv) writes the line
            crate::output::secret(value);
            (!value.is_empty()).then(|| Credential {
                value: value.to_string(),
                source,
            })
        };
        if let Some(c) = flag.and_then(|v| found(v, CredentialSource::Flag)) {
            return Ok(c);
        }
        for var in envs {
            if let Some(c) = std::env::var(var)
                .ok()
                .and_then(|v| found(&v, CredentialSource::Env(var)))
            {
                return Ok(c);
            }
        }
        if let Some(c) = table
            .get("token")
            .and_then(|v| v.as_str())
            .and_then(|v| found(v, CredentialSource::Config(provider.to_string())))
        {
            return Ok(c);
        }
        Err(Error::config(format!(
            "{provider}: no API token: set {} (or pass -k, or set token in [providers.{provider}])",
            envs.first()
                .copied()
                .unwrap_or("the provider's token variable")
        )))
    }
}

/// The base URL: env `var` wins over config `api_url`, then the provider's default.
pub fn base_url(table: &toml::Table, var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            table
                .get("api_url")
                .and_then(|v| v.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| default.to_string())
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_found_token_is_redacted_from_every_stderr_line() {
        let token = "hz-settings-test-0123456789abcdef";
        let table = toml::Table::new();
        let c = Credential::find(
            "hetzner",
            Some(token),
            &["NO_SUCH_VAR_FOR_THIS_TEST"],
            &table,
        )
        .unwrap();
        assert_eq!(c.secret(), token);
        assert_eq!(
            crate::output::redact(&format!("debug: reqwest::connect: http://x/{token}")),
            "debug: reqwest::connect: http://x/<redacted>"
        );
    }
}
