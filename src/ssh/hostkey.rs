//! Host-key checks: a pinned key must match (and not be `@revoked` in a known_hosts file
//! OpenSSH reads: a pin never overrides the user's revocation); otherwise the known_hosts files — the tool's own
//! and every one OpenSSH reads ([`super::known_hosts`]) — must agree, a key unknown to all is
//! recorded in the tool's own file on first use, and a changed or revoked one is refused;
//! insecure mode says so.

use super::known_hosts::{self, Verdict};
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
                // a pin never overrides the user's own revocation (OpenSSH's @revoked)
                let name = known_hosts::lookup_name(&target.host, target.port);
                if let Verdict::Revoked(at) =
                    known_hosts::check(&known_hosts::openssh_files(), &name, blob)
                {
                    return Err(format!(
                        "the host key of {addr} ({} {}) is REVOKED in {at}; refusing to connect",
                        key_type(blob).unwrap_or("?"),
                        fingerprint(blob)
                    ));
                }
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
        HostKeyCheck::KnownHosts(file) => {
            known_hosts(&target.node, file, &target.host, target.port, blob)
        }
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
    super::known_hosts::lookup_name(host, port)
}

fn known_hosts(node: &str, file: &Path, host: &str, port: u16, blob: &[u8]) -> Result<(), String> {
    let pattern = &host_pattern(host, port);
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
    // The tool's own file first, then every file OpenSSH itself would read.
    let mut files = vec![file.to_path_buf()];
    files.extend(known_hosts::openssh_files());
    let offered = format!("{} {}", key_type(blob).unwrap_or("?"), fingerprint(blob));
    match known_hosts::check(&files, &known_hosts::lookup_name(host, port), blob) {
        Verdict::Known(at) => {
            output::debug(&format!("{node}: host key {offered} of {pattern} is known ({at})"));
            return Ok(());
        }
        Verdict::Revoked(at) => {
            return Err(format!(
                "the host key of {pattern} ({offered}) is REVOKED in {at}; refusing to connect"
            ))
        }
        Verdict::Mismatch(recorded) => {
            return Err(format!(
                "the host key of {pattern} has CHANGED: the server offers {offered}, but known_hosts records {}. \
                 If the node was re-created, remove those lines; refusing to connect",
                recorded.join(", ")
            ))
        }
        Verdict::CertAuthorityOnly(at) => {
            return Err(format!(
                "{at} trusts a certificate authority for {pattern}, but host certificates cannot be \
                 checked by this SSH engine; pin the host's key ({offered}) or add it to known_hosts \
                 (ssh-keyscan); refusing to connect"
            ))
        }
        Verdict::Unknown => {}
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
