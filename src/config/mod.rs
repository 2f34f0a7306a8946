//! Configuration: the layers in precedence order and what they add up to. Later layers
//! override scalars, extend lists and replace same-named bundles (with a warning). Nothing here
//! knows about providers or SSH; `plan` turns a [`Config`] plus flags into a deployment.

pub mod layer;
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
    pub default_bundles: Vec<String>,
    pub bootstrap_bundles: Vec<String>,
    pub bootstrapped_images: Vec<String>,
    pub vars: BTreeMap<String, Sourced<String>>,
    pub bundles: BTreeMap<String, Bundle>,
    /// `[providers.NAME]` tables, merged key by key (later wins). May hold secrets: never print.
    pub providers: BTreeMap<String, toml::Table>,
    /// For each `[providers.NAME]` key, the layer that set it (for messages about a bad key).
    pub provider_layers: BTreeMap<String, BTreeMap<String, String>>,
    /// Things the user should hear about (bundle replaced, env path missing), for stderr.
    pub warnings: Vec<String>,
}

/// Where to look for layers; `Default` reads the real environment.
#[derive(Debug, Clone, Default)]
pub struct LayerPaths {
    /// `-c/--config-path` directories, in order.
    pub cli: Vec<PathBuf>,
}

/// The layer directories in precedence order (lowest first): built-in defaults,
/// `~/.provision/secrets`, `$XDG_CONFIG_HOME/provision`, `$PROVISION_CONFIG_PATH`, then `-c`.
pub fn discover(paths: &LayerPaths, warnings: &mut Vec<String>) -> Result<Vec<Layer>> {
    let mut layers = vec![Layer::builtin()];
    if let Some(home) = dirs::home_dir() {
        let secrets = home.join(".provision").join("secrets");
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
            let Some((display, text)) = cfg.layers[idx].provision_toml()? else {
                continue;
            };
            let lc = schema::parse(&display, &text)?;
            schema::check_vars(&display, &lc)?;
            cfg.merge(idx, lc);
        }
        Ok(cfg)
    }

    fn merge(&mut self, idx: usize, lc: schema::LayerConfig) {
        let label = self.layers[idx].label();
        let set = |slot: &mut Option<Sourced<String>>, v: Option<String>| {
            if let Some(value) = v {
                *slot = Some(Sourced {
                    value,
                    layer: label.clone(),
                });
            }
        };
        set(&mut self.provider, lc.provider);
        set(&mut self.image, lc.image);
        set(&mut self.size, lc.size);
        set(&mut self.location, lc.location);
        set(&mut self.name_prefix, lc.name_prefix);
        set(&mut self.ssh_user, lc.ssh_user);
        self.default_bundles.extend(lc.default_bundles);
        self.bootstrap_bundles.extend(lc.bootstrap_bundles);
        self.bootstrapped_images.extend(lc.bootstrapped_images);
        for (k, v) in lc.vars {
            let value = schema::value_to_string(&v);
            self.vars.insert(
                k,
                Sourced {
                    value,
                    layer: label.clone(),
                },
            );
        }
        for (name, def) in lc.bundles {
            if let Some(prev) = self.bundles.get(&name) {
                self.warnings.push(format!(
                    "bundle '{name}' from {} replaces the one from {}",
                    label,
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
            let layers = self.provider_layers.entry(name.clone()).or_default();
            let slot = self.providers.entry(name).or_default();
            for (k, v) in table {
                layers.insert(k.clone(), format!("{label}/provision.toml"));
                slot.insert(k, v);
            }
        }
    }

    /// The layer a bundle's files and scripts come from.
    pub fn layer_of(&self, bundle: &Bundle) -> &Layer {
        &self.layers[bundle.layer]
    }

    /// A provider's merged `[providers.NAME]` table (empty when absent).
    pub fn provider_table(&self, name: &str) -> toml::Table {
        self.providers.get(name).cloned().unwrap_or_default()
    }
}
