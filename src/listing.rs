//! list-nodes' stdout: nodes as `NAME PUBLIC_IP` lines, JSON or `ssh -F` Host blocks, and the
//! provider's catalog (`--images/--sizes/--locations`). It reads provider types, so it sits
//! above `provider` (and `output`, whose stderr sink every layer uses, stays below both).

use crate::error::Result;
use crate::exit::print_stdout;
use crate::output::print_json;
use crate::provider::Node;
use std::fmt::Write as _;

/// The formats of list-nodes' stdout (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
    SshConfig,
    /// Aligned columns: name, address, age, expiry, owner.
    Table,
}

/// list-nodes output in the chosen format.
pub(crate) fn print_nodes(nodes: &[Node], format: ListFormat) -> Result<()> {
    match format {
        ListFormat::Json => print_json(&crate::expiry::with_records(nodes)),
        ListFormat::Table => print_stdout(&crate::expiry::table(nodes)),
        ListFormat::Text => {
            let mut s = String::new();
            for n in nodes {
                let _ = writeln!(s, "{} {}", n.name, n.public_ip.as_deref().unwrap_or(""));
            }
            print_stdout(&s)
        }
        ListFormat::SshConfig => print_stdout(&ssh_config(nodes)?),
    }
}

/// `Host` blocks for `ssh -F`: HostName, Port, User, IdentityFile, and a known_hosts file
/// holding the node's pinned host key (written under the state directory).
pub(crate) fn ssh_config(nodes: &[Node]) -> Result<String> {
    let mut s = String::new();
    let keydir = crate::state::state_dir().join("known_hosts.d");
    let identity = crate::plan::own_public_key().map(|p| p.with_extension(""));
    for n in nodes {
        let Some(ip) = &n.public_ip else { continue };
        let port = n.ssh.port.unwrap_or(22);
        let _ = writeln!(s, "Host {}", n.name);
        let _ = writeln!(s, "    HostName {ip}");
        let _ = writeln!(s, "    Port {port}");
        if let Some(user) = &n.ssh.user {
            let _ = writeln!(s, "    User {user}");
        }
        if let Some(id) = n
            .ssh
            .identity
            .as_ref()
            .map(std::path::PathBuf::from)
            .or(identity.clone())
        {
            let _ = writeln!(s, "    IdentityFile {}", id.display());
        }
        if let Some(key) = &n.ssh.host_key {
            let host = if port == 22 {
                ip.clone()
            } else {
                format!("[{ip}]:{port}")
            };
            let file = keydir.join(&n.name);
            std::fs::create_dir_all(&keydir).map_err(|e| crate::Error::io(keydir.display(), e))?;
            crate::state::write_atomic(
                &file,
                format!("{host} {}\n", key.trim()).as_bytes(),
                0o644,
            )?;
            let _ = writeln!(s, "    UserKnownHostsFile {}", file.display());
            let _ = writeln!(s, "    StrictHostKeyChecking yes");
        }
        s.push('\n');
    }
    Ok(s)
}

/// `list-nodes --images/--sizes/--locations`: `NAME  DESCRIPTION` lines (or JSON).
pub(crate) fn print_catalog(items: &[(String, String)], format: ListFormat) -> Result<()> {
    if format == ListFormat::Json {
        let v: Vec<serde_json::Value> = items
            .iter()
            .map(|(n, d)| serde_json::json!({"name": n, "description": d}))
            .collect();
        return print_json(&v);
    }
    let width = items.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (name, desc) in items {
        let _ = writeln!(s, "{name:<width$}  {desc}");
    }
    print_stdout(&s)
}
