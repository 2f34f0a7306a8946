//! Checks every `[providers.NAME]` table of the config before anything is spent: a key a
//! driver does not read (a typo like `isolaton`) or a value it would refuse (`isolation =
//! "maybe"`) is a config error (exit 2) in the plan, `--dry-run` included, naming the layer
//! that set it, so it is never silently ignored nor found only after a billed create. The
//! values are checked by the drivers' own parsers, so the two cannot disagree.

use super::{digitalocean, hetzner, http, local, registry, static_hosts};
use crate::config::Config;
use crate::error::{Error, Result};

/// The keys each driver reads from its table.
fn keys_of(driver: &str) -> Option<&'static [&'static str]> {
    const CLOUD: &[&str] = &[
        "token",
        "api_url",
        "timeout",
        "connect_timeout",
        "retries",
        "poll_interval",
        "user_data",
        "ipv4",
        "ipv6",
        "address_family",
    ];
    match driver {
        "local" => Some(&["isolation", "ipv4", "ipv6", "address_family"]),
        "static" => Some(&["hosts", "user", "port"]),
        "digitalocean" | "hetzner" => Some(CLOUD),
        _ => None,
    }
}

/// Checks the tables of every known driver; a table for a provider this build does not have
/// is a warning (an older tool's secrets layer may hold one), with near matches for typos.
pub fn check(cfg: &Config) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (driver, table) in &cfg.providers {
        let layer_of = |key: &str| {
            cfg.provider_layers
                .get(driver)
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_else(|| "config".into())
        };
        if table.contains_key("type") {
            // a config-declared provider (exec): its driver checks its own table when built
            continue;
        }
        let Some(keys) = keys_of(driver) else {
            if registry::names().contains(&driver.as_str()) {
                // a driver whose keys are checked by its own constructor (ec2, openstack);
                // its address options already here, so --dry-run refuses what it cannot make
                if driver == super::ec2::NAME {
                    super::ec2::regions_option(table)
                        .map_err(|e| Error::config(format!("{}: {e}", layer_of("regions"))))?;
                }
                let ip = match driver.as_str() {
                    "ec2" => super::ec2::check_ip_options(table),
                    "openstack" => super::openstack::ip_options(table).map(drop),
                    _ => Ok(()),
                };
                ip.map_err(|e| Error::config(format!("{}: {e}", layers_of(cfg, driver))))?;
                continue;
            }
            let near = http::near_matches(driver, registry::names(), 2);
            let hint = if near.is_empty() {
                format!("known: {}", registry::names().join(", "))
            } else {
                format!("did you mean {}?", near.join(", "))
            };
            warnings.push(format!(
                "[providers.{driver}] ignored: no provider '{driver}' ({hint})"
            ));
            continue;
        };
        let keys: Vec<&str> = keys
            .iter()
            .chain(crate::config::PROVIDER_SSH_KEYS)
            .copied()
            .collect();
        for key in table.keys() {
            if !keys.contains(&key.as_str()) {
                let near = http::near_matches(key, keys.iter().copied(), 1);
                let hint = match near.first() {
                    Some(n) => format!("did you mean '{n}'? "),
                    None => String::new(),
                };
                return Err(Error::config(format!(
                    "{}: [providers.{driver}] unknown key '{key}' ({hint}known: {})",
                    layer_of(key),
                    keys.join(", ")
                )));
            }
        }
        let checked = match driver.as_str() {
            "local" => local::LocalProvider::from_table(table).map(drop),
            "static" => static_hosts::parse_hosts(table).map(drop),
            "hetzner" => check_cloud(driver, table).and(hetzner::ip_options(table).map(drop)),
            "digitalocean" => {
                check_cloud(driver, table).and(digitalocean::ip_options(table).map(drop))
            }
            _ => check_cloud(driver, table),
        };
        if let Err(e) = checked {
            let key = table.keys().next().map(String::as_str).unwrap_or("");
            let layer = if table.len() == 1 {
                layer_of(key)
            } else {
                layers_of(cfg, driver)
            };
            return Err(Error::config(format!("{layer}: {e}")));
        }
    }
    Ok(warnings)
}

/// The layers that set keys of `driver`'s table, for a message about the whole table.
fn layers_of(cfg: &Config, driver: &str) -> String {
    let mut layers: Vec<&str> = cfg
        .provider_layers
        .get(driver)
        .map(|m| m.values().map(String::as_str).collect())
        .unwrap_or_default();
    layers.sort_unstable();
    layers.dedup();
    layers.join(", ")
}

fn check_cloud(driver: &str, table: &toml::Table) -> Result<()> {
    for key in ["token", "api_url"] {
        if table.get(key).is_some_and(|v| !v.is_str()) {
            return Err(Error::config(format!(
                "[providers.{driver}] {key} must be a string"
            )));
        }
    }
    if let Some(url) = table.get("api_url").and_then(|v| v.as_str()) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::config(format!(
                "[providers.{driver}] api_url '{url}' must start with https:// (or http://)"
            )));
        }
    }
    http::HttpConfig::from_table(driver, table)?;
    http::seconds(driver, table, "poll_interval")?;
    super::cloudinit::user_config(driver, table)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("provision.toml"), text).unwrap();
        Config::from_layers(vec![crate::config::Layer::dir(dir.path())]).unwrap()
    }

    #[test]
    fn typos_and_bad_values_are_errors_naming_the_layer() {
        let e = check(&cfg("[providers.local]\nisolaton = \"required\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown key 'isolaton'") && e.contains("did you mean 'isolation'"),
            "{e}"
        );
        assert!(e.contains("provision.toml") || e.contains("/"), "{e}");
        let e = check(&cfg("[providers.local]\nisolation = \"maybe\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("maybe"), "{e}");
        let e = check(&cfg("[providers.hetzner]\nretries = \"x\"\n")).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        let e = check(&cfg("[providers.digitalocean]\ntoken = 5\n")).unwrap_err();
        assert!(e.to_string().contains("token must be a string"), "{e}");
        let e = check(&cfg("[providers.static]\nhosts = 3\n")).unwrap_err();
        assert!(e.to_string().contains("hosts must be a table"), "{e}");
    }

    #[test]
    fn good_tables_pass_and_unknown_providers_warn() {
        let w = check(&cfg(
            "[providers.local]\nisolation = \"off\"\n[providers.hetzner]\ntoken = \"t\"\ntimeout = 5\n[providers.digitalocaen]\ntoken = \"x\"\n",
        ))
        .unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("digitalocean"), "{w:?}");
    }
}
