//! `node`: the everyday loop on a node this suite keeps — find it by name, show everything
//! known about it, run one command on it (exit status passed through), or open an interactive
//! shell — with no hand-written ssh configuration: the host key, login user, port and identity
//! come from the provider and the node's record ([`crate::known_nodes`]).
//!
//! `exec` goes through the built-in engine ([`crate::ssh`]): one checked connection, stdout and
//! stderr kept apart, stdin forwarded. `ssh` runs the system OpenSSH client with a generated
//! config (the same `Host` block as `list-nodes --format ssh-config`): an interactive shell
//! needs a real terminal (pty, window resizes, escape sequences, agent forwarding with `-A`),
//! which OpenSSH does well and the engine does not attempt.

pub mod cp;

use crate::bastion::JumpSettings;
use crate::error::{Error, Result};
use crate::exit::print_stdout;
use crate::provider::{Node, Provider};
use crate::ssh::{self, HostKeyCheck, Target};
use crate::{known_nodes, output, state};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long `exec` waits for the node's SSH to accept a login.
pub(crate) const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// The one node named `name` among the provider's nodes (every node of the account, so a
/// node made by hand is found too), annotated with its record. No node, or several of that
/// name, is a usage error naming the provider.
pub fn find(provider: &dyn Provider, name: &str) -> Result<Node> {
    let mut found: Vec<Node> = provider
        .list(true)?
        .into_iter()
        .filter(|n| n.name == name)
        .collect();
    known_nodes::annotate(provider.name(), &mut found);
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::usage(format!(
            "{name}: no such node on provider {} (see list-nodes -p {})",
            provider.name(),
            provider.name()
        ))),
        n => Err(Error::usage(format!(
            "{name}: {n} nodes of that name on provider {} (ids {}); name one node per name",
            provider.name(),
            found
                .iter()
                .map(|n| n.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The SSH target of a found node: its address and port, the remembered login user (else
/// root), the pinned or remembered host key (else our known_hosts, trust on first use), and the
/// remembered or driver-made identity.
pub fn target(node: &Node, jump: Option<&JumpSettings>) -> Result<Target> {
    let host = crate::deploy::address(node, jump.is_some()).ok_or_else(|| {
        Error::usage(format!(
            "{}: has no public address (state {})",
            node.name, node.state
        ))
    })?;
    let identities: Vec<PathBuf> = node.ssh.identity.iter().map(PathBuf::from).collect();
    Ok(Target {
        node: node.name.clone(),
        host,
        port: node.ssh.port.unwrap_or(22),
        user: node.ssh.user.clone().unwrap_or_else(|| "root".into()),
        host_key: match &node.ssh.host_key {
            Some(k) => HostKeyCheck::Pinned(k.clone()),
            None => HostKeyCheck::KnownHosts(state::state_dir().join("known_hosts")),
        },
        jump: jump.map(|j| j.connect_on_use(false, identities.first().cloned())),
        identities,
        use_agent: true,
    })
}

/// Runs `argv` (joined with shell quoting) on the node; its stdout and stderr go to ours,
/// apart, as they arrive; `stdin` is sent first. Returns the remote exit status.
pub fn exec(
    node: &Node,
    argv: &[String],
    stdin: &[u8],
    jump: Option<&JumpSettings>,
) -> Result<i32> {
    let command = shlex::try_join(argv.iter().map(String::as_str))
        .map_err(|e| Error::usage(format!("{}: command cannot be quoted: {e}", node.name)))?;
    let target = target(node, jump)?;
    let mut conn = ssh::connect(&target, Instant::now() + CONNECT_WAIT, &mut || Ok(true))?;
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let status = conn.exec_streamed(&command, stdin, &mut |is_err, data| {
        let _ = if is_err {
            err.write_all(data).and_then(|_| err.flush())
        } else {
            out.write_all(data).and_then(|_| out.flush())
        };
    })?;
    output::debug(&format!("{}: {command:?} exited {status}", node.name));
    Ok(status)
}

/// The ssh config file (`Host NAME` block) for the node, written under the state directory.
pub fn ssh_config_file(node: &Node, jump: Option<&JumpSettings>) -> Result<PathBuf> {
    target(node, None)?;
    let text = crate::listing::ssh_config(std::slice::from_ref(node), &|_| jump.cloned())?;
    let dir = state::state_dir().join("ssh_config.d");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    let file = dir.join(&node.name);
    state::write_atomic(&file, text.as_bytes(), 0o600)?;
    Ok(file)
}

/// The system `ssh` command line that reaches the node (`-J` through a jump host).
pub fn ssh_command(node: &Node, jump: Option<&JumpSettings>) -> Result<Vec<String>> {
    let file = ssh_config_file(node, jump)?;
    let mut argv = vec!["ssh".into(), "-F".into(), file.display().to_string()];
    if let Some(j) = jump {
        argv.extend(["-J".into(), j.proxy_jump()]);
    }
    argv.push(node.name.clone());
    Ok(argv)
}

/// Runs the system `ssh` to the node (with `extra` arguments: options, or a command) and
/// returns its exit status.
pub fn interactive(node: &Node, extra: &[String], jump: Option<&JumpSettings>) -> Result<i32> {
    let argv = ssh_command(node, jump)?;
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .args(extra)
        .status()
        .map_err(|e| Error::io("ssh (the OpenSSH client)", e))?;
    Ok(status.code().unwrap_or(255))
}

/// `node show`: everything known about the node, as text or JSON.
pub fn show(provider: &str, node: &Node, json: bool, jump: Option<&JumpSettings>) -> Result<()> {
    let rec = known_nodes::load(provider, &node.name).filter(|r| r.is_for(node));
    let ssh = ssh_command(node, jump)
        .ok()
        .map(|a| shlex::try_join(a.iter().map(String::as_str)).unwrap_or_default());
    if json {
        let v = serde_json::json!({
            "provider": provider,
            "node": node,
            "deployed": rec.as_ref().and_then(|r| r.applied.as_ref()),
            "record": rec,
            "ssh_command": ssh,
        });
        return crate::output::print_json(&v);
    }
    let mut s = String::new();
    let mut line = |k: &str, v: Option<&str>| {
        let _ = writeln!(s, "{k:<12}{}", v.unwrap_or("-"));
    };
    line("name", Some(&node.name));
    line("provider", Some(provider));
    line("id", Some(&node.id));
    line("state", Some(&node.state.to_string()));
    line("public ip", node.public_ip.as_deref());
    line("private ip", node.private_ip.as_deref());
    line("size", node.size.as_deref());
    line("image", node.image.as_deref());
    line("location", node.location.as_deref());
    line("created", node.created.as_deref());
    let tags: Vec<String> = node.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    line(
        "tags",
        (!tags.is_empty()).then(|| tags.join(" ")).as_deref(),
    );
    line("user", node.ssh.user.as_deref());
    line(
        "host key",
        node.ssh.host_key.as_ref().map(ssh::fingerprint).as_deref(),
    );
    line("ssh", ssh.as_deref());
    deployed(&mut s, rec.as_ref().and_then(|r| r.applied.as_ref()));
    print_stdout(&s)
}

/// How the node was deployed (bundles, the user's variables without secrets, the built-in
/// ones apart, run, last result), from its record; `-` for a node not deployed from this
/// machine.
fn deployed(s: &mut String, applied: Option<&crate::applied::Applied>) {
    let Some(a) = applied else {
        let _ = writeln!(s, "{:<12}-", "deployed");
        return;
    };
    let _ = writeln!(s, "{:<12}{}", "bundles", a.bundles.join(" "));
    let builtin = |k: &str| crate::plan::BUILTIN_VARS.contains(&k);
    let list = |user: bool| {
        a.vars
            .iter()
            // provision_run has its own line ("run")
            .filter(|(k, _)| builtin(k) != user && k.as_str() != "provision_run")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
    };
    let vars = list(true);
    let _ = writeln!(
        s,
        "{:<12}{}",
        "vars",
        if vars.is_empty() {
            "-".to_string()
        } else {
            vars.join(" ")
        }
    );
    let _ = writeln!(s, "{:<12}{}", "built-in", list(false).join(" "));
    if !a.secrets.is_empty() {
        let names: Vec<&str> = a.secrets.iter().map(|x| x.name.as_str()).collect();
        let _ = writeln!(s, "{:<12}{} (not kept)", "secrets", names.join(" "));
    }
    let _ = writeln!(s, "{:<12}{}", "run", a.provision_run);
    let _ = writeln!(
        s,
        "{:<12}{} at {}{}",
        "last run",
        a.last.result,
        a.last.at,
        a.last
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_lists_the_user_s_variables_apart_from_the_built_in_ones() {
        let a = crate::applied::Applied {
            bundles: vec!["app".into()],
            vars: [
                ("color", "blue"),
                ("node_name", "web"),
                ("provider", "local"),
                ("image", "debian-12"),
                ("bundles", "app"),
                ("provision_run", "2"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            provision_run: 2,
            ..Default::default()
        };
        let mut s = String::new();
        deployed(&mut s, Some(&a));
        assert!(s.contains("\nvars        color=blue\n"), "{s}");
        assert!(
            s.contains("\nbuilt-in    bundles=app image=debian-12 node_name=web provider=local\n"),
            "{s}"
        );
        assert!(s.contains("\nrun         2\n"), "{s}");
        assert!(!s.contains("provision_run"), "{s}");

        let only_builtins = crate::applied::Applied {
            vars: a.vars.into_iter().filter(|(k, _)| k != "color").collect(),
            ..Default::default()
        };
        let mut s = String::new();
        deployed(&mut s, Some(&only_builtins));
        assert!(s.contains("\nvars        -\n"), "{s}");
    }
}
