//! The one table of drivers this build knows. Each driver file exports a [`Registration`]
//! (name, help line, environment variables, constructor); `-p` validation, [`super::build`],
//! the PROVIDERS/ENVIRONMENT part of `--help` and the man pages, and "unknown provider
//! (known: ...)" are all derived from [`DRIVERS`]. A new cloud adds one line here.
//!
//! Providers can also be declared in config: `[providers.NAME] type = "KIND"` names a
//! registration whose `declarable` is set (e.g. an exec provider), under a name of the user's.

use super::{Credentials, Provider};
use crate::error::{Error, Result};

/// A driver's entry in the registry.
pub struct Registration {
    /// The `-p` name (or, for a declarable kind, the `type` value).
    pub name: &'static str,
    /// One line for `--help`: what it is or where its credentials come from.
    pub help: &'static str,
    /// Environment variables it reads besides its credentials (API URL overrides).
    pub env: &'static [&'static str],
    /// Whether `[providers.X] type = "<name>"` may declare a provider of this kind.
    pub declarable: bool,
    /// Builds the driver from its `[providers.NAME]` table and `-u/-k`.
    pub build: fn(&toml::Table, &Credentials) -> Result<Box<dyn Provider>>,
}

/// Every driver of this build, in `--help` order.
pub static DRIVERS: &[&Registration] = &[
    &super::local::DRIVER,
    &super::static_hosts::DRIVER,
    &super::digitalocean::DRIVER,
    &super::hetzner::DRIVER,
    &super::ec2::DRIVER,
    &super::openstack::DRIVER,
];

/// The registration `name` refers to: a built-in driver, else the declarable kind named by
/// `type` in its config table.
pub fn find(name: &str, table: &toml::Table) -> Option<&'static Registration> {
    if let Some(r) = DRIVERS.iter().find(|r| r.name == name && !r.declarable) {
        return Some(r);
    }
    let kind = table.get("type")?.as_str()?;
    DRIVERS
        .iter()
        .copied()
        .find(|r| r.declarable && r.name == kind)
}

/// The `-p` names of the built-in drivers.
pub fn names() -> Vec<&'static str> {
    DRIVERS
        .iter()
        .filter(|r| !r.declarable)
        .map(|r| r.name)
        .collect()
}

/// The error for a provider name this build does not know.
pub fn unknown(name: &str) -> Error {
    if name == "rackspace" {
        return Error::config("provider 'rackspace' of the original tool is now 'openstack' (Rackspace's cloud speaks OpenStack): use -p openstack with your OS_* credentials or OS_CLOUD");
    }
    Error::config(format!(
        "unknown provider '{name}' (known: {})",
        names().join(", ")
    ))
}

/// The PROVIDERS and ENVIRONMENT sections of `--help` and the man pages.
pub fn help() -> String {
    let width = DRIVERS.iter().map(|r| r.name.len()).max().unwrap_or(0) + 2;
    let mut s = String::from("PROVIDERS:\n");
    for r in DRIVERS {
        for (i, line) in r.help.lines().enumerate() {
            let name = if i == 0 { r.name } else { "" };
            s.push_str(&format!("  {name:width$}{line}\n"));
        }
    }
    s.push_str(
        "  Valid -i/-s/-l values: list-nodes -p PROVIDER --images | --sizes | --locations\n\n",
    );
    s.push_str("ENVIRONMENT:\n");
    s.push_str("  PROVISION_CONFIG_PATH   extra config layer directories, colon-separated\n");
    s.push_str(
        "  PROVISION_STATE_DIR     local nodes, journal, node records, known_hosts (default\n",
    );
    s.push_str(
        "                          $XDG_STATE_HOME/provision, else ~/.local/state/provision)\n",
    );
    let urls: Vec<&str> = DRIVERS.iter().flat_map(|r| r.env.iter().copied()).collect();
    if !urls.is_empty() {
        s.push_str(&format!("  {}   API base-URL overrides\n", urls.join(", ")));
    }
    s.push_str("  NO_COLOR                no colour\n\n");
    s.push_str("See provision.toml(5) for config layers, bundles and templates.");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_help_names_each() {
        let n = names();
        let mut sorted = n.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), n.len());
        let h = help();
        for name in n {
            assert!(h.contains(&format!("\n  {name} ")), "{name} missing in {h}");
        }
    }

    #[test]
    fn unknown_lists_the_known() {
        let e = unknown("nope").to_string();
        assert!(e.contains("digitalocean, hetzner"), "{e}");
    }
}
