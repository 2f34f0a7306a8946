//! list-nodes' stdout: nodes as `NAME PUBLIC_IP` lines, JSON or `ssh -F` Host blocks, and the
//! provider's catalog (`--images/--sizes/--locations`). It reads provider types, so it sits
//! above `provider` (and `output`, whose stderr sink every layer uses, stays below both).

use crate::bastion::{JumpOf, JumpSettings};
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
    /// Aligned columns with a header: NAME STATE AGE IP PROVIDER EXPIRES OWNER.
    Table,
}

/// list-nodes output in the chosen format.
pub(crate) fn print_nodes(nodes: &[Node], format: ListFormat, jump_of: JumpOf<'_>) -> Result<()> {
    match format {
        ListFormat::Json => print_json(&crate::expiry::with_records(nodes)),
        ListFormat::Text => {
            let mut s = String::new();
            for n in nodes {
                let _ = writeln!(s, "{} {}", n.name, n.public_ip.as_deref().unwrap_or(""));
            }
            print_stdout(&s)
        }
        ListFormat::SshConfig => print_stdout(&ssh_config(nodes, jump_of)?),
        ListFormat::Table => print_stdout(&table(nodes, "")),
    }
}

/// `--format table`: a header and aligned columns (name, state with the deploy's when it did
/// not finish, age, public ip, provider, expiry, owner).
pub(crate) fn table(nodes: &[Node], provider: &str) -> String {
    table_with(nodes, provider, false)
}

/// [`table`], with a LOCATION column after PROVIDER when `location` (a listing that covers
/// several scopes: EC2 `regions`, where it shows each node's zone).
pub(crate) fn table_with(nodes: &[Node], provider: &str, location: bool) -> String {
    let secs = crate::expiry::now_secs();
    let mut header: Vec<String> = ["NAME", "STATE", "AGE", "IP", "PROVIDER"]
        .map(String::from)
        .to_vec();
    if location {
        header.push("LOCATION".into());
    }
    header.extend(["EXPIRES", "OWNER"].map(String::from));
    let mut rows = vec![header];
    for n in nodes {
        let mut row = vec![
            n.name.clone(),
            crate::expiry::state_cell(n),
            crate::expiry::created_at(n).map_or("-".into(), |c| age(secs.saturating_sub(c))),
            n.public_ip.clone().unwrap_or_else(|| "-".into()),
            provider.to_string(),
        ];
        if location {
            row.push(n.location.clone().unwrap_or_else(|| "-".into()));
        }
        row.push(crate::expiry::expires_cell(n, secs));
        row.push(crate::expiry::owner_cell(n));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(s, "{}", line.join("  ").trim_end());
    }
    s
}

/// An age in the largest whole unit (`42s`, `5m`, `3h`, `2d`). The creation time is ours
/// (`provision-created`, as the reaper reads it) when the node carries it, else the provider's.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `Host` blocks for `ssh -F`: HostName, Port, User, IdentityFile, and a known_hosts file
/// holding the node's pinned host key (written under the state directory). Behind a jump host:
/// `ProxyJump` and the node's private address as HostName, plus a `Host` block for the bastion
/// itself (OpenSSH reads the same file for the jump) with its identity and known_hosts files.
pub(crate) fn ssh_config(nodes: &[Node], jump_of: JumpOf<'_>) -> Result<String> {
    let mut s = String::new();
    let keydir = crate::state::state_dir().join("known_hosts.d");
    let write_key = |file: &std::path::Path, line: String| -> Result<()> {
        std::fs::create_dir_all(&keydir).map_err(|e| crate::Error::io(keydir.display(), e))?;
        crate::state::write_atomic(file, line.as_bytes(), 0o644)
    };
    let identity = crate::plan::own_public_key().map(|p| p.with_extension(""));
    let mut bastions: Vec<JumpSettings> = Vec::new();
    for n in nodes {
        let jump = jump_of(n);
        let Some(ip) = crate::deploy::address(n, jump.is_some()) else {
            continue;
        };
        let port = n.ssh.port.unwrap_or(22);
        let _ = writeln!(s, "Host {}", n.name);
        let _ = writeln!(s, "    HostName {ip}");
        let _ = writeln!(s, "    Port {port}");
        if let Some(j) = jump {
            let _ = writeln!(s, "    ProxyJump {}", j.proxy_jump());
            if !bastions.iter().any(|b| b.host.host == j.host.host) {
                bastions.push(j);
            }
        }
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
            // as OpenSSH looks it up: `::1`, or `[::1]:2222` with a port
            let host = crate::ssh::known_hosts::lookup_name(&ip, port);
            let file = keydir.join(&n.name);
            write_key(&file, format!("{host} {}\n", key.trim()))?;
            let _ = writeln!(s, "    UserKnownHostsFile {}", file.display());
            let _ = writeln!(s, "    StrictHostKeyChecking yes");
        }
        s.push('\n');
    }
    for j in &bastions {
        // ProxyJump runs `ssh -F THIS_FILE -W ... HOST`: this block applies to the bastion
        let _ = writeln!(s, "Host {}", j.host.host);
        if let Some(id) = &identity {
            let _ = writeln!(s, "    IdentityFile {}", id.display());
        }
        match &j.host_key {
            Some(key) => {
                let file = keydir.join(format!("jump-{}-{}", j.host.host, j.host.port));
                write_key(
                    &file,
                    format!(
                        "{} {}\n",
                        crate::ssh::known_hosts::lookup_name(&j.host.host, j.host.port),
                        key.trim()
                    ),
                )?;
                let _ = writeln!(s, "    UserKnownHostsFile {}", file.display());
                let _ = writeln!(s, "    StrictHostKeyChecking yes");
            }
            None => {
                // where deploy-node recorded it on first use, and the user's own file
                let own = crate::state::state_dir().join("known_hosts");
                let _ = writeln!(
                    s,
                    "    UserKnownHostsFile ~/.ssh/known_hosts {}",
                    own.display()
                );
            }
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

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn table_columns_align_and_age_is_in_the_largest_unit() {
        let now = time::OffsetDateTime::now_utc();
        let two_hours_ago = (now - time::Duration::hours(2))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut a = crate::provider::test_node("1", "web-long-name");
        a.created = Some(two_hours_ago);
        a.public_ip = Some("127.0.0.5".into());
        let b = crate::provider::test_node("2", "db");
        let t = table(&[a, b], "local");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME           STATE"), "{t}");
        assert!(
            lines[1].starts_with("web-long-name  running  2h   127.0.0.5  local"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("db             running  -    -"),
            "{t}"
        );
        let mut c = crate::provider::test_node("3", "c");
        c.created = Some("nonsense".into());
        let t = table(&[c], "local");
        let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[..3], ["c", "running", "-"], "{t}");
    }
}
