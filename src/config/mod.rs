//! Configuration: the layers in precedence order and what they add up to. Later layers
//! override scalars, extend lists and replace same-named bundles (with a warning). Nothing here
//! knows about providers or SSH; `plan` turns a [`Config`] plus flags into a deployment.

pub mod convert;
pub mod layer;
pub mod original;
pub mod pyinit;
pub mod pytoken;
pub mod schema;

pub use layer::{Layer, LayerFile, LayerSource};
pub use schema::{BundleDef, FilesDef};

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A value and the label of the layer it came from, so a plan can say why it won.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub layer: String,
}

/// The value of an optional setting, or `""` when no layer and no flag set it.
pub fn value_of(v: &Option<Sourced<String>>) -> String {
    v.as_ref().map(|s| s.value.clone()).unwrap_or_default()
}

/// A bundle as the winning layer defined it.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub name: String,
    pub def: BundleDef,
    /// Index into [`Config::layers`]: where its scripts and files are looked up.
    pub layer: usize,
}

/// Every layer merged.
#[derive(Debug, Default)]
pub struct Config {
    pub layers: Vec<Layer>,
    pub provider: Option<Sourced<String>>,
    pub image: Option<Sourced<String>>,
    pub size: Option<Sourced<String>>,
    pub location: Option<Sourced<String>>,
    pub name_prefix: Option<Sourced<String>>,
    pub ssh_user: Option<Sourced<String>>,
    /// `ssh_jump`: the bastion nodes are reached through (layer: its `provision.toml`).
    pub ssh_jump: Option<Sourced<String>>,
    /// `ssh_jump_host_key`: the bastion's pinned host key.
    pub ssh_jump_host_key: Option<Sourced<String>>,
    /// The SSH keys of `[providers.NAME]` tables ([`PROVIDER_SSH_KEYS`]), kept apart from the
    /// driver tables (every driver accepts them; none reads them): provider → key → value.
    pub provider_ssh: BTreeMap<String, BTreeMap<String, Sourced<toml::Value>>>,
    /// `wait_for_cloud_init` (later layer wins); `None`: not set (wait).
    pub wait_for_cloud_init: Option<bool>,
    /// `keep_scripts` (later layer wins); `None`: not set (remove scripts that had secrets).
    pub keep_scripts: Option<bool>,
    /// `ttl` (later layer wins), as written: parsed by [`crate::expiry::parse_ttl`].
    pub ttl: Option<Sourced<String>>,
    pub default_bundles: Vec<String>,
    pub bootstrap_bundles: Vec<String>,
    pub bootstrapped_images: Vec<String>,
    pub vars: BTreeMap<String, Sourced<String>>,
    /// `[vars]` values that are not strings (numbers, booleans, arrays, tables), as TOML typed
    /// them, for tera; `vars` holds their string form.
    pub typed_vars: BTreeMap<String, toml::Value>,
    /// `[required_vars]`: name → description, and the layer that declared it.
    pub required_vars: BTreeMap<String, Sourced<String>>,
    /// The required variables declared `secret = true`: asked for without echo, never printed.
    pub secret_required: std::collections::BTreeSet<String>,
    /// `[secrets]`: name → raw value (`env:NAME`, `file:PATH` or literal) and its layer.
    pub secrets: BTreeMap<String, Sourced<String>>,
    pub bundles: BTreeMap<String, Bundle>,
    /// `[providers.NAME]` tables, merged key by key (later wins). May hold secrets: never print.
    pub providers: BTreeMap<String, toml::Table>,
    /// For each `[providers.NAME]` key, the index into [`Config::layers`] of the layer that set
    /// it last, so a relative path there (exec's `path`) resolves against that layer's directory.
    pub provider_origins: BTreeMap<String, BTreeMap<String, usize>>,
    /// Names destroy-node destroys without `--force` (empty: the name prefix in effect).
    pub destroyable_prefixes: Vec<String>,
    /// Inline public keys (`pubkeys = [...]`, the original's `config.PUBKEYS`) and their origin.
    pub pubkeys: Vec<Sourced<String>>,
    /// For each `[providers.NAME]` key, the layer that set it (for messages about a bad key).
    pub provider_layers: BTreeMap<String, BTreeMap<String, String>>,
    /// Things the user should hear about (bundle replaced, env path missing), for stderr.
    pub warnings: Vec<String>,
}

/// Keys every `[providers.NAME]` table may hold besides the driver's own: how SSH reaches the
/// provider's nodes. They are taken out of the table the driver sees.
pub const PROVIDER_SSH_KEYS: &[&str] = &["ssh_jump", "ssh_jump_host_key"];

/// Where to look for layers; `Default` reads the real environment.
#[derive(Debug, Clone, Default)]
pub struct LayerPaths {
    /// `-c/--config-path` directories, in order.
    pub cli: Vec<PathBuf>,
}

/// The layer directories in precedence order (lowest first): built-in defaults,
/// `~/.provision/secrets`, `$VIRTUAL_ENV/provision_secrets` (the original's second default
/// location), `$XDG_CONFIG_HOME/provision`, `$PROVISION_CONFIG_PATH`, then `-c`.
pub fn discover(paths: &LayerPaths, warnings: &mut Vec<String>) -> Result<Vec<Layer>> {
    let mut layers = vec![Layer::builtin()];
    if let Some(home) = dirs::home_dir() {
        let secrets = home.join(".provision").join("secrets");
        if secrets.is_dir() {
            layers.push(Layer::dir(secrets));
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let secrets = PathBuf::from(venv).join("provision_secrets");
        if secrets.is_dir() {
            layers.push(Layer::dir(secrets));
        }
    }
    if let Some(cfg) = dirs::config_dir() {
        let dir = cfg.join("provision");
        if dir.is_dir() {
            layers.push(Layer::dir(dir));
        }
    }
    if let Some(env) = std::env::var_os("PROVISION_CONFIG_PATH") {
        for dir in std::env::split_paths(&env) {
            if dir.as_os_str().is_empty() {
                continue;
            }
            if dir.is_dir() {
                layers.push(Layer::dir(dir));
            } else {
                warnings.push(format!(
                    "PROVISION_CONFIG_PATH: {}: not a directory, skipped",
                    dir.display()
                ));
            }
        }
    }
    for dir in &paths.cli {
        check_cli_dir(dir)?;
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        layers.push(Layer::dir(abs));
    }
    Ok(layers)
}

fn check_cli_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::config(format!("config path {}: {e}", dir.display()))),
    }
}

impl Config {
    /// Discovers the layers and merges them.
    pub fn load(paths: &LayerPaths) -> Result<Config> {
        let mut warnings = Vec::new();
        let layers = discover(paths, &mut warnings)?;
        let mut cfg = Config::from_layers(layers)?;
        warnings.append(&mut cfg.warnings);
        cfg.warnings = warnings;
        Ok(cfg)
    }

    /// Merges the given layers, lowest precedence first.
    pub fn from_layers(layers: Vec<Layer>) -> Result<Config> {
        let mut cfg = Config {
            layers,
            ..Config::default()
        };
        for idx in 0..cfg.layers.len() {
            let Some(lc) = cfg.layers[idx].layer_config()? else {
                continue;
            };
            cfg.merge(idx, lc);
        }
        Ok(cfg)
    }

    fn merge(&mut self, idx: usize, mut lc: schema::LayerConfig) {
        let label = self.layers[idx].label();
        let origins = std::mem::take(&mut lc.origins);
        let origin = |key: &str| origins.get(key).cloned().unwrap_or_else(|| label.clone());
        let set = |slot: &mut Option<Sourced<String>>, v: Option<String>, key: &str| {
            if let Some(value) = v {
                *slot = Some(Sourced {
                    value,
                    layer: origin(key),
                });
            }
        };
        set(&mut self.provider, lc.provider, "provider");
        set(&mut self.image, lc.image, "image");
        set(&mut self.size, lc.size, "size");
        set(&mut self.location, lc.location, "location");
        set(&mut self.name_prefix, lc.name_prefix, "name_prefix");
        set(&mut self.ssh_user, lc.ssh_user, "ssh_user");
        set(&mut self.ttl, lc.ttl, "ttl");
        let file = format!("{label}/provision.toml");
        for (slot, v) in [
            (&mut self.ssh_jump, lc.ssh_jump),
            (&mut self.ssh_jump_host_key, lc.ssh_jump_host_key),
        ] {
            if let Some(value) = v {
                *slot = Some(Sourced {
                    value,
                    layer: file.clone(),
                });
            }
        }
        for key in &lc.replaces {
            let slot = match *key {
                "default_bundles" => &mut self.default_bundles,
                "bootstrap_bundles" => &mut self.bootstrap_bundles,
                "bootstrapped_images" => &mut self.bootstrapped_images,
                "destroyable_prefixes" => &mut self.destroyable_prefixes,
                _ => continue,
            };
            if !slot.is_empty() {
                self.warnings.push(format!(
                    "{label}: assigning {key} drops {:?} from lower layers",
                    slot
                ));
                slot.clear();
            }
        }
        if lc.replaces.contains(&"pubkeys") {
            self.pubkeys.clear();
        }
        if lc.keep_scripts.is_some() {
            self.keep_scripts = lc.keep_scripts;
        }
        if lc.wait_for_cloud_init.is_some() {
            self.wait_for_cloud_init = lc.wait_for_cloud_init;
        }
        self.default_bundles.extend(lc.default_bundles);
        self.bootstrap_bundles.extend(lc.bootstrap_bundles);
        self.bootstrapped_images.extend(lc.bootstrapped_images);
        self.destroyable_prefixes.extend(lc.destroyable_prefixes);
        self.warnings.append(&mut lc.warnings);
        let keys_from = origin("pubkeys");
        self.pubkeys
            .extend(lc.pubkeys.into_iter().map(|value| Sourced {
                value,
                layer: keys_from.clone(),
            }));
        for (k, v) in lc.vars {
            let value = schema::value_to_string(&v);
            let layer = origin(&format!("vars.{k}"));
            if v.is_str() || v.is_datetime() {
                self.typed_vars.remove(&k);
            } else {
                self.typed_vars.insert(k.clone(), v);
            }
            self.vars.insert(k, Sourced { value, layer });
        }
        for (k, required) in lc.required_vars {
            let layer = origin(&format!("required_vars.{k}"));
            if required.secret() {
                self.secret_required.insert(k.clone());
            } else {
                self.secret_required.remove(&k);
            }
            self.required_vars.insert(
                k,
                Sourced {
                    value: required.description().to_string(),
                    layer,
                },
            );
        }
        for (k, value) in lc.secrets {
            let layer = origin(&format!("secrets.{k}"));
            self.secrets.insert(k, Sourced { value, layer });
        }
        for (name, def) in lc.bundles {
            if let Some(prev) = self.bundles.get(&name) {
                self.warnings.push(format!(
                    "bundle '{name}' from {} replaces the one from {}",
                    origin(&format!("bundles.{name}")),
                    self.layers[prev.layer].label()
                ));
            }
            self.bundles.insert(
                name.clone(),
                Bundle {
                    name,
                    def,
                    layer: idx,
                },
            );
        }
        for (name, table) in lc.providers {
            let origins = self.provider_origins.entry(name.clone()).or_default();
            let layers = self.provider_layers.entry(name.clone()).or_default();
            let ssh = self.provider_ssh.entry(name.clone()).or_default();
            let slot = self.providers.entry(name).or_default();
            for (k, v) in table {
                if PROVIDER_SSH_KEYS.contains(&k.as_str()) {
                    ssh.insert(
                        k,
                        Sourced {
                            value: v,
                            layer: file.clone(),
                        },
                    );
                    continue;
                }
                origins.insert(k.clone(), idx);
                layers.insert(k.clone(), format!("{label}/provision.toml"));
                slot.insert(k, v);
            }
        }
    }

    /// The name prefixes destroy-node destroys without `--force`: `destroyable_prefixes` of
    /// the layers, else the name prefix in effect (the original's default, `deploy-test-`).
    pub fn destroyable_prefixes(&self) -> Vec<String> {
        if !self.destroyable_prefixes.is_empty() {
            return self.destroyable_prefixes.clone();
        }
        vec![self
            .name_prefix
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| crate::plan::DEFAULT_PREFIX.to_string())]
    }

    /// The layer a bundle's files and scripts come from.
    pub fn layer_of(&self, bundle: &Bundle) -> &Layer {
        &self.layers[bundle.layer]
    }

    /// The layer that set `key` of `[providers.NAME]` (the last one to set it).
    pub fn provider_key_layer(&self, name: &str, key: &str) -> Option<&Layer> {
        let idx = *self.provider_origins.get(name)?.get(key)?;
        self.layers.get(idx)
    }

    /// A provider's merged `[providers.NAME]` table (empty when absent).
    pub fn provider_table(&self, name: &str) -> toml::Table {
        self.providers.get(name).cloned().unwrap_or_default()
    }
}
