//! Node addresses, IPv4 and IPv6 alike: how an address with a port is written (`[::1]:2222`,
//! as OpenSSH and URLs write it), which of a node's addresses deploy-node connects to, the
//! `ipv4`/`ipv6`/`address_family` provider options that choose them, and the host address
//! inside a /64 a cloud hands out instead of an address (Hetzner). One place, so every output
//! and every parser agrees.

use crate::error::{Error, Result};
use std::net::Ipv6Addr;

/// `host:port`, or `[host]:port` when `host` is an IPv6 address (it holds a `:`).
pub fn with_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Which of a node's addresses to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// IPv4 when the node has one, else IPv6.
    #[default]
    Auto,
    Ipv4,
    Ipv6,
}

/// A provider's `ipv4`, `ipv6` and `address_family` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpOptions {
    /// The node gets a public IPv4 address (`ipv4 = false`: IPv6 only).
    pub ipv4: bool,
    /// The node gets a public IPv6 address.
    pub ipv6: bool,
    /// Which one deploy-node connects to.
    pub family: Family,
    /// Whether `ipv6` was set in the config (not the driver's default).
    pub ipv6_given: bool,
}

/// IPv4 only, IPv4 first.
impl Default for IpOptions {
    fn default() -> Self {
        IpOptions::defaults(false)
    }
}

impl IpOptions {
    /// From `[providers.NAME]`: `ipv4` (default true), `ipv6` (default `ipv6_default`),
    /// `address_family = "auto" | "ipv4" | "ipv6"`. A wrong type, no address at all, or a
    /// family the node will not have is a config error naming the table.
    pub fn from_table(provider: &str, table: &toml::Table, ipv6_default: bool) -> Result<Self> {
        let flag = |key: &str, default: bool| -> Result<(bool, bool)> {
            match table.get(key) {
                None => Ok((default, false)),
                Some(toml::Value::Boolean(b)) => Ok((*b, true)),
                Some(_) => Err(Error::config(format!(
                    "[providers.{provider}] {key} must be true or false"
                ))),
            }
        };
        let (ipv4, _) = flag("ipv4", true)?;
        let (ipv6, ipv6_given) = flag("ipv6", ipv6_default || !ipv4)?;
        let family = match table.get("address_family") {
            None => Family::Auto,
            Some(toml::Value::String(s)) => match s.as_str() {
                "auto" => Family::Auto,
                "ipv4" => Family::Ipv4,
                "ipv6" => Family::Ipv6,
                other => {
                    return Err(Error::config(format!(
                    "[providers.{provider}] address_family = \"{other}\": use auto, ipv4 or ipv6"
                )))
                }
            },
            Some(_) => {
                return Err(Error::config(format!(
                    "[providers.{provider}] address_family must be a string: auto, ipv4 or ipv6"
                )))
            }
        };
        let o = IpOptions {
            ipv4,
            ipv6: ipv6 || family == Family::Ipv6,
            family,
            ipv6_given: ipv6_given || family == Family::Ipv6,
        };
        if !o.ipv4 && !o.ipv6 {
            return Err(Error::config(format!(
                "[providers.{provider}] ipv4 = false and ipv6 = false: a node needs an address"
            )));
        }
        if !o.ipv4 && family == Family::Ipv4 {
            return Err(Error::config(format!(
                "[providers.{provider}] address_family = \"ipv4\" with ipv4 = false"
            )));
        }
        Ok(o)
    }

    /// The driver's defaults: IPv4 only unless `ipv6`.
    pub fn defaults(ipv6: bool) -> Self {
        IpOptions {
            ipv4: true,
            ipv6,
            family: Family::Auto,
            ipv6_given: false,
        }
    }

    /// The address to connect to among the node's `v4` and `v6` ones: the family asked for,
    /// else IPv4 when present, else IPv6. `None` until the asked-for one is known.
    pub fn choose<A>(&self, v4: Option<A>, v6: Option<A>) -> Option<A> {
        match self.family {
            Family::Ipv4 => v4,
            Family::Ipv6 => v6,
            Family::Auto => v4.or(v6),
        }
    }
}

/// The address a node really has in an IPv6 network a cloud assigns it (`2001:db8::/64`, as
/// Hetzner's `public_net.ipv6.ip`): the prefix's `::1` (hcloud-cli #395). A plain address
/// (no `/`) is itself. `None` when it is not an IPv6 address or network.
pub fn host_in_network(net: &str) -> Option<String> {
    let (addr, len) = match net.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().ok().filter(|l| *l <= 127)?)),
        None => (net, None),
    };
    let ip: Ipv6Addr = addr.parse().ok()?;
    let Some(len) = len else {
        return Some(ip.to_string());
    };
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    Some(Ipv6Addr::from((u128::from(ip) & mask) | 1).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(t: &str) -> toml::Table {
        t.parse().unwrap()
    }

    #[test]
    fn ipv6_with_port_goes_in_brackets() {
        assert_eq!(with_port("::1", 2222), "[::1]:2222");
        assert_eq!(with_port("2001:db8::5", 22), "[2001:db8::5]:22");
        assert_eq!(with_port("[::1]", 22), "[::1]:22");
        assert_eq!(with_port("192.0.2.1", 22), "192.0.2.1:22");
        assert_eq!(with_port("host.example", 2200), "host.example:2200");
    }

    #[test]
    fn the_host_of_a_64_is_its_1() {
        assert_eq!(
            host_in_network("2001:db8:1:2::/64").as_deref(),
            Some("2001:db8:1:2::1")
        );
        // host bits given are cleared first
        assert_eq!(
            host_in_network("2001:db8:1:2:ab::7/64").as_deref(),
            Some("2001:db8:1:2::1")
        );
        assert_eq!(host_in_network("::/64").as_deref(), Some("::1"));
        assert_eq!(
            host_in_network("2001:db8::9").as_deref(),
            Some("2001:db8::9")
        );
        assert_eq!(host_in_network("192.0.2.0/24"), None);
        assert_eq!(host_in_network("2001:db8::/x"), None);
    }

    #[test]
    fn options_default_and_choose() {
        let o = IpOptions::from_table("hetzner", &table(""), true).unwrap();
        assert!(o.ipv4 && o.ipv6);
        assert_eq!(
            o.choose(Some("192.0.2.1"), Some("2001:db8::1")),
            Some("192.0.2.1")
        );
        assert_eq!(o.choose(None, Some("2001:db8::1")), Some("2001:db8::1"));
        let o = IpOptions::from_table("x", &table("ipv4 = false"), false).unwrap();
        assert!(!o.ipv4 && o.ipv6);
        let o = IpOptions::from_table("x", &table("address_family = \"ipv6\""), false).unwrap();
        assert!(o.ipv4 && o.ipv6);
        assert_eq!(
            o.choose(Some("192.0.2.1"), Some("2001:db8::1")),
            Some("2001:db8::1")
        );
        assert_eq!(o.choose(Some("192.0.2.1"), None), None);
    }

    #[test]
    fn impossible_options_are_config_errors() {
        for (t, needle) in [
            ("ipv4 = false\nipv6 = false", "needs an address"),
            ("ipv4 = false\naddress_family = \"ipv4\"", "address_family"),
            ("ipv6 = \"yes\"", "ipv6 must be true or false"),
            ("address_family = \"v6\"", "auto, ipv4 or ipv6"),
        ] {
            let e = IpOptions::from_table("hetzner", &table(t), true).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{t}: {e:?}");
            let m = e.to_string();
            assert!(
                m.contains("[providers.hetzner]") && m.contains(needle),
                "{t}: {m}"
            );
        }
    }
}
