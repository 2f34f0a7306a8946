//! The `provision.toml` schema of one layer, as written by users. Unknown keys are errors so a
//! typo (`bundle` for `bundles`) is caught with its file, line and column.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    pub provider: Option<String>,
    pub image: Option<String>,
    pub size: Option<String>,
    pub location: Option<String>,
    pub name_prefix: Option<String>,
    pub ssh_user: Option<String>,
    /// Reach nodes through this bastion, `[user@]host[:port]` (also per provider).
    pub ssh_jump: Option<String>,
    /// The bastion's host key (an OpenSSH public key line), pinned (also per provider).
    pub ssh_jump_host_key: Option<String>,
    /// Wait for cloud-init before the first script (default true).
    pub wait_for_cloud_init: Option<bool>,
    /// Keep the rendered scripts on the node after a run that had secret variables (default
    /// false: such scripts are removed).
    pub keep_scripts: Option<bool>,
    /// How long deployed nodes live before a reaper may destroy them (`4h`, `never`).
    pub ttl: Option<String>,
    /// Bundles for images listed in `bootstrapped_images` (lists extend across layers).
    #[serde(default)]
    pub default_bundles: Vec<String>,
    /// Bundles for every other image: they bring a bare image up to the bootstrapped state.
    #[serde(default)]
    pub bootstrap_bundles: Vec<String>,
    #[serde(default)]
    pub bootstrapped_images: Vec<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// Variables a deployment must set (name → description), by any layer, `-t` or
    /// `PROVISION_VAR_<NAME>`; a `[vars]` value of the same name counts as set.
    /// A value is the description, or `{ description = "...", secret = true }` for a variable
    /// `deploy-node --interactive` asks for without echoing it, and that is never printed.
    #[serde(default)]
    pub required_vars: BTreeMap<String, RequiredVar>,
    /// Secret variables: like `[vars]` but never printed; a value is `env:NAME`, `file:PATH`
    /// (read when the plan is built) or the secret itself.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub bundles: BTreeMap<String, BundleDef>,
    #[serde(default)]
    pub providers: BTreeMap<String, toml::Table>,
    /// Name prefixes destroy-node may destroy without `--force` (lists extend across layers;
    /// when no layer sets any, the name prefix in effect).
    #[serde(default)]
    pub destroyable_prefixes: Vec<String>,
    /// Public keys given inline (one authorized_keys line each), besides `pubkeys/`.
    #[serde(default)]
    pub pubkeys: Vec<String>,
    /// Where each value came from when finer than the layer (`__init__.py:LINE`), by key
    /// (`provider`, `vars.NAME`, ...). Filled by the reader of the original's `__init__.py`.
    #[serde(skip)]
    pub origins: BTreeMap<String, String>,
    /// List settings this layer assigned (`config.DEFAULT_BUNDLES = [...]` in the original),
    /// replacing what lower layers gave instead of extending it.
    #[serde(skip)]
    pub replaces: Vec<&'static str>,
    /// Things the user should hear about while this layer was read.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// One `[required_vars]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RequiredVar {
    Description(String),
    Spec(RequiredSpec),
}

/// `{ description = "...", secret = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredSpec {
    pub description: String,
    #[serde(default)]
    pub secret: bool,
}

impl RequiredVar {
    pub fn description(&self) -> &str {
        match self {
            RequiredVar::Description(d) => d,
            RequiredVar::Spec(s) => &s.description,
        }
    }

    pub fn secret(&self) -> bool {
        matches!(self, RequiredVar::Spec(s) if s.secret)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleDef {
    #[serde(default)]
    pub description: Option<String>,
    /// Scripts from the layer's `scripts/`, run in this order.
    #[serde(default)]
    pub scripts: Vec<String>,
    #[serde(default)]
    pub files: FilesDef,
}

/// `files = ["/abs/target", ...]` (source: `files/<basename>`) or `{ "/abs/target" = "source" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FilesDef {
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

impl Default for FilesDef {
    fn default() -> Self {
        FilesDef::List(Vec::new())
    }
}

impl FilesDef {
    /// (target, source name in `files/`) pairs in declared order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        match self {
            FilesDef::List(targets) => targets
                .iter()
                .map(|t| {
                    let base = t.rsplit('/').next().unwrap_or(t).to_string();
                    (t.clone(), base)
                })
                .collect(),
            FilesDef::Map(m) => m.iter().map(|(t, s)| (t.clone(), s.clone())).collect(),
        }
    }
}

/// Parses one layer's `provision.toml`; a syntax or schema error names `file:line:column`.
pub fn parse(display: &str, text: &str) -> Result<LayerConfig> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                Error::config(format!("{display}:{line}:{col}: {msg}"))
            }
            None => Error::config(format!("{display}: {msg}")),
        }
    })
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// A TOML value as the string format-string and template-string see (and the plan shows):
/// strings unquoted, an array as its elements' string forms joined by spaces (so
/// `for p in $packages` works in a shell), others (numbers, booleans, dates, tables) as TOML
/// writes them inline.
pub fn value_to_string(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(value_to_string).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}
