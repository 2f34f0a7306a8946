//! Which jump host (bastion) a run goes through, and how its host key is checked: `--ssh-jump`
//! over `[providers.NAME] ssh_jump` over the top-level `ssh_jump` (`none` turns a configured
//! one off), and `ssh_jump_host_key` likewise. Every value is checked here, before anything is
//! created, and a bad one is one line naming the flag or the file.

use crate::config::{Config, Sourced};
use crate::error::{Error, Result};
use crate::provider::Node;
use crate::ssh::{HostKeyCheck, Jump, JumpHost};
use crate::state;
use std::path::PathBuf;
use std::sync::Arc;

/// The jump host in effect and where it was set.
#[derive(Debug, Clone)]
pub struct JumpSettings {
    pub host: JumpHost,
    /// `ssh_jump_host_key`: an OpenSSH public key line to pin.
    pub host_key: Option<String>,
    /// `--ssh-jump` or the file that set it.
    pub source: String,
    /// The login user on the bastion: the one in the value, else `ssh_user`, else root.
    pub user: String,
}

impl JumpSettings {
    /// Logs in as `user` on the bastion unless the value names one.
    pub fn default_user(mut self, user: &str) -> Self {
        if self.host.user.is_none() {
            self.user = user.to_string();
        }
        self
    }

    /// OpenSSH's `ProxyJump` value (`ssh -J`): `user@host[:port]`.
    pub fn proxy_jump(&self) -> String {
        self.host.proxy_jump(&self.user)
    }

    /// The shared bastion connection of one run: its host key pinned or checked in the
    /// known_hosts files (or not at all with `insecure`), the same identity as the nodes'.
    pub fn connect_on_use(&self, insecure: bool, identity: Option<PathBuf>) -> Arc<Jump> {
        let check = if insecure {
            HostKeyCheck::Insecure
        } else if let Some(k) = &self.host_key {
            HostKeyCheck::Pinned(k.clone())
        } else {
            HostKeyCheck::KnownHosts(state::state_dir().join("known_hosts"))
        };
        Arc::new(Jump::new(
            self.host.clone(),
            &self.user,
            check,
            identity.into_iter().collect(),
        ))
    }
}

/// The jump host for `provider`'s nodes: `flag` (`--ssh-jump`), else the provider's table,
/// else the top-level setting; `none` at any level means none. `Err` (exit 2) names the flag
/// or file of a bad value.
pub fn resolve(cfg: &Config, provider: &str, flag: Option<&str>) -> Result<Option<JumpSettings>> {
    let table = cfg.provider_ssh.get(provider);
    let from_table = |key: &str| -> Result<Option<Sourced<String>>> {
        match table.and_then(|t| t.get(key)) {
            None => Ok(None),
            Some(Sourced {
                value: toml::Value::String(s),
                layer,
            }) => Ok(Some(Sourced {
                value: s.clone(),
                layer: format!("{layer}: [providers.{provider}] {key}"),
            })),
            Some(Sourced { value, layer }) => Err(Error::config(format!(
                "{layer}: [providers.{provider}] {key} must be a string, not {}",
                value.type_str()
            ))),
        }
    };
    let top = |v: &Option<Sourced<String>>, key: &str| {
        v.as_ref().map(|s| Sourced {
            value: s.value.clone(),
            layer: format!("{}: {key}", s.layer),
        })
    };
    let chosen = match flag {
        Some(f) => Some(Sourced {
            value: f.to_string(),
            layer: "--ssh-jump".to_string(),
        }),
        None => from_table("ssh_jump")?.or_else(|| top(&cfg.ssh_jump, "ssh_jump")),
    };
    let key = from_table("ssh_jump_host_key")?
        .or_else(|| top(&cfg.ssh_jump_host_key, "ssh_jump_host_key"));
    if let Some(k) = &key {
        if crate::ssh::openssh_blob(&k.value).is_none() {
            return Err(Error::config(format!(
                "{}: not an OpenSSH public key line (like \"ssh-ed25519 AAAA...\", as in the \
                 bastion's /etc/ssh/ssh_host_ed25519_key.pub)",
                k.layer
            )));
        }
    }
    let Some(chosen) = chosen.filter(|c| c.value.trim() != "none") else {
        return Ok(None);
    };
    let host = JumpHost::parse(&chosen.value).map_err(|e| {
        let msg = format!("{}: {e}", chosen.layer);
        if flag.is_some() {
            Error::usage(msg)
        } else {
            Error::config(msg)
        }
    })?;
    let user = host
        .user
        .clone()
        .or_else(|| cfg.ssh_user.as_ref().map(|u| u.value.clone()))
        .unwrap_or_else(|| "root".into());
    Ok(Some(JumpSettings {
        user,
        host,
        host_key: key.map(|k| k.value),
        source: chosen.layer,
    }))
}

/// The jump host to reach a node through (none: directly).
pub type JumpOf<'a> = &'a dyn Fn(&Node) -> Option<JumpSettings>;

/// The jump host of an existing node for `node` and `list-nodes`: `--ssh-jump` when given
/// (`configured` then holds its value), else the one deploy-node reached it through (its
/// record), else `configured` (the config's).
pub fn for_node(
    configured: Option<&JumpSettings>,
    flag_given: bool,
    provider: &str,
    node: &Node,
) -> Option<JumpSettings> {
    if flag_given {
        return configured.cloned();
    }
    let recorded = crate::known_nodes::load(provider, &node.name)
        .filter(|r| r.is_for(node))
        .and_then(|r| recorded(&r));
    recorded.or_else(|| configured.cloned())
}

/// The jump host a node's record says deploy-node reached it through, if any.
pub fn recorded(r: &crate::known_nodes::Record) -> Option<JumpSettings> {
    let host = JumpHost::parse(r.jump.as_deref()?).ok()?;
    Some(JumpSettings {
        user: host.user.clone().unwrap_or_else(|| r.user.clone()),
        host,
        host_key: r.jump_host_key.clone(),
        source: format!("the record of {}", r.name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("provision.toml"), toml_text).unwrap();
        let cfg = Config::from_layers(vec![crate::config::Layer::dir(dir.path())]).unwrap();
        std::mem::forget(dir);
        cfg
    }

    #[test]
    fn flag_over_provider_over_top_level_and_none_turns_off() {
        let c = cfg("ssh_jump = \"a@top:2\"\n[providers.hetzner]\nssh_jump = \"b@prov:3\"\n");
        let r = |p, f| resolve(&c, p, f).unwrap().map(|s| s.host.to_string());
        assert_eq!(r("hetzner", None).as_deref(), Some("b@prov:3"));
        assert_eq!(r("local", None).as_deref(), Some("a@top:2"));
        assert_eq!(r("local", Some("c@flag")).as_deref(), Some("c@flag:22"));
        assert_eq!(r("hetzner", Some("none")), None);
        // the driver never sees the key
        assert!(!c.provider_table("hetzner").contains_key("ssh_jump"));
    }

    #[test]
    fn bad_values_name_their_file_or_flag() {
        let c = cfg("[providers.static]\nssh_jump = \"u@h:99999\"\n");
        let e = resolve(&c, "static", None).unwrap_err().to_string();
        assert!(
            e.contains("provision.toml: [providers.static] ssh_jump") && e.contains("99999"),
            "{e}"
        );
        let e = resolve(&c, "static", Some("a,b")).unwrap_err();
        assert!(e.to_string().starts_with("--ssh-jump: "), "{e}");
        assert_eq!(e.code(), 2);
        let c = cfg("ssh_jump = \"h\"\nssh_jump_host_key = \"nope\"\n");
        let e = resolve(&c, "local", None).unwrap_err().to_string();
        assert!(
            e.contains("provision.toml: ssh_jump_host_key: not an OpenSSH"),
            "{e}"
        );
    }
}
