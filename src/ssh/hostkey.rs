//! Host-key checks: a pinned key must match; a known_hosts file (the tool's own, OpenSSH
//! format) records a key on first use and refuses a changed one; insecure mode says so.

use super::{b64, fingerprint, key_type, HostKeyCheck, Target};
use crate::output;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Checks the server's host key `blob`. `Err` is the message of a hard refusal.
pub(super) fn check(target: &Target, blob: &[u8], warned: &mut bool) -> Result<(), String> {
    let addr = host_pattern(&target.host, target.port);
    match &target.host_key {
        HostKeyCheck::Pinned(line) => {
            let pinned = super::openssh_blob(line).ok_or_else(|| {
                format!("the pinned host key is not an OpenSSH public key: {line:?}")
            })?;
            if pinned == blob {
                output::debug(&format!(
                    "{}: host key {} matches the pinned key",
                    target.node,
                    fingerprint(blob)
                ));
                Ok(())
            } else {
                Err(format!(
                    "host key mismatch for {addr}: the server offers {} {} but {} {} is pinned; refusing to connect",
                    key_type(blob).unwrap_or("?"),
                    fingerprint(blob),
                    key_type(&pinned).unwrap_or("?"),
                    fingerprint(&pinned),
                ))
            }
        }
        HostKeyCheck::KnownHosts(file) => known_hosts(&target.node, file, &addr, blob),
        HostKeyCheck::Insecure => {
            if !*warned {
                *warned = true;
                output::warn(&format!(
                    "{}: the host key of {addr} is NOT checked (insecure): accepting {} {}",
                    target.node,
                    key_type(blob).unwrap_or("?"),
                    fingerprint(blob)
                ));
            }
            Ok(())
        }
    }
}

/// `host`, or `[host]:port` when the port is not 22 (OpenSSH's known_hosts convention).
pub(super) fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

fn known_hosts(node: &str, file: &Path, pattern: &str, blob: &[u8]) -> Result<(), String> {
    let io = |e: std::io::Error| format!("known_hosts file {}: {e}", file.display());
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .map_err(io)?;
    // Deploying many nodes at once: one reader-writer at a time.
    // Released when `f` is dropped.
    let mut f = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| io(errno.into()))?;
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(io)?;
    let mut recorded = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(hosts) = fields.next() else { continue };
        if hosts.starts_with('#') || hosts.starts_with('@') {
            continue;
        }
        let matches = hosts
            .split(',')
            .any(|h| h == pattern || (!pattern.starts_with('[') && h == format!("[{pattern}]:22")));
        if !matches {
            continue;
        }
        let rest: Vec<&str> = fields.collect();
        let Some(known) = super::openssh_blob(&rest.join(" ")) else {
            continue;
        };
        if known == blob {
            return Ok(());
        }
        recorded.push(format!(
            "line {}: {} {}",
            n + 1,
            key_type(&known).unwrap_or("?"),
            fingerprint(&known)
        ));
    }
    if !recorded.is_empty() {
        return Err(format!(
            "the host key of {pattern} has CHANGED: the server offers {} {}, but {} records {}. \
             If the node was re-created, remove that line; refusing to connect",
            key_type(blob).unwrap_or("?"),
            fingerprint(blob),
            file.display(),
            recorded.join(", ")
        ));
    }
    let Some(kt) = key_type(blob) else {
        return Err(format!("the server's host key for {pattern} is malformed"));
    };
    let mut entry = format!("{pattern} {kt} {}\n", b64(blob));
    f.seek(SeekFrom::End(0)).map_err(io)?;
    if !text.is_empty() && !text.ends_with('\n') {
        entry.insert(0, '\n');
    }
    f.write_all(entry.as_bytes()).map_err(io)?;
    output::status(
        node,
        &format!(
            "recorded host key {} {} for {pattern} in {}",
            kt,
            fingerprint(blob),
            file.display()
        ),
    );
    Ok(())
}
