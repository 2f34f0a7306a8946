//! known_hosts read the way OpenSSH reads it, so a user whose OpenSSH already knows a host's
//! key gets the same protection here: hashed names (`|1|salt|hash`, the default of
//! `HashKnownHosts yes`), comma-separated patterns with `*`/`?` wildcards and `!` negations,
//! `[host]:port` entries, `@revoked` keys and `@cert-authority` lines, across every file OpenSSH
//! consults (the user's and the global files, plus `UserKnownHostsFile`/`GlobalKnownHostsFile`
//! from `~/.ssh/config`) as well as the tool's own file.
//!
//! Lines are parsed by `ssh-key`'s known_hosts parser; matching (OpenSSH's `match_hostname`
//! and the HMAC-SHA1 of hashed names) is done here, because no crate does it.

use hmac::{Hmac, Mac};
use ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use std::path::{Path, PathBuf};

/// What the known_hosts files say about a host and the key it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A plain entry for the host carries this key (`file:line`).
    Known(String),
    /// No entry names the host: trust on first use may record it.
    Unknown,
    /// Entries name the host but none carries this key (each `file:line: type fingerprint`).
    Mismatch(Vec<String>),
    /// An `@revoked` entry for the host carries this key (`file:line`).
    Revoked(String),
    /// Only `@cert-authority` lines cover the host (`file:line`); host certificates cannot be
    /// checked by this SSH engine, so nothing vouches for the key.
    CertAuthorityOnly(String),
}

/// The name OpenSSH looks up: `host`, or `[host]:port` when the port is not 22.
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// The files OpenSSH reads for host keys: `UserKnownHostsFile` and `GlobalKnownHostsFile` from
/// `~/.ssh/config` (top level or `Host *`) when set, else `~/.ssh/known_hosts`,
/// `~/.ssh/known_hosts2`, `/etc/ssh/ssh_known_hosts` and `/etc/ssh/ssh_known_hosts2`.
pub fn openssh_files() -> Vec<PathBuf> {
    let home = dirs::home_dir();
    let (user, global) = home
        .as_ref()
        .map(|h| config_locations(&h.join(".ssh").join("config"), h))
        .unwrap_or_default();
    let mut files = user.unwrap_or_else(|| {
        home.iter()
            .flat_map(|h| {
                let ssh = h.join(".ssh");
                [ssh.join("known_hosts"), ssh.join("known_hosts2")]
            })
            .collect()
    });
    files.extend(global.unwrap_or_else(|| {
        vec![
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ]
    }));
    files
}

/// `UserKnownHostsFile` / `GlobalKnownHostsFile` of an ssh_config, from its top level or a
/// `Host *` block (the only blocks that apply to every host). `none` means no file.
fn config_locations(config: &Path, home: &Path) -> (Option<Vec<PathBuf>>, Option<Vec<PathBuf>>) {
    let Ok(text) = std::fs::read_to_string(config) else {
        return (None, None);
    };
    let (mut user, mut global) = (None, None);
    let mut applies = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = line
            .split_once(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or((line, ""));
        let rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=');
        let key = key.to_ascii_lowercase();
        match key.as_str() {
            "host" => applies = rest.split_whitespace().any(|p| p == "*"),
            "match" => applies = rest.trim() == "all",
            // The first value wins in ssh_config.
            "userknownhostsfile" if applies && user.is_none() => user = Some(paths(rest, home)),
            "globalknownhostsfile" if applies && global.is_none() => {
                global = Some(paths(rest, home))
            }
            _ => {}
        }
    }
    (user, global)
}

fn paths(value: &str, home: &Path) -> Vec<PathBuf> {
    value
        .split_whitespace()
        .filter(|v| !v.eq_ignore_ascii_case("none"))
        .map(|v| {
            let v = v.trim_matches('"');
            match v.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => PathBuf::from(v),
            }
        })
        .collect()
}

/// Looks `name` (see [`lookup_name`]) and the offered key `blob` up in `files`, in order.
/// Missing or unreadable files are skipped, and so are lines that do not parse (as OpenSSH).
pub fn check(files: &[PathBuf], name: &str, blob: &[u8]) -> Verdict {
    let mut recorded = Vec::new();
    let mut known = None;
    let mut ca = None;
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Ok(entry) = line.parse::<Entry>() else {
                continue;
            };
            if !host_matches(entry.host_patterns(), name) {
                continue;
            }
            let at = format!("{}:{}", file.display(), n + 1);
            let key = entry.public_key().to_bytes().unwrap_or_default();
            match entry.marker() {
                Some(Marker::Revoked) if key == blob => return Verdict::Revoked(at),
                Some(Marker::Revoked) => {}
                Some(Marker::CertAuthority) => {
                    ca.get_or_insert(at);
                }
                None if key == blob => {
                    known.get_or_insert(at);
                }
                None => recorded.push(format!(
                    "{at}: {} {}",
                    entry.public_key().algorithm(),
                    super::fingerprint(&key)
                )),
            }
        }
    }
    // Revocation was checked over every file before any key is accepted.
    if let Some(at) = known {
        return Verdict::Known(at);
    }
    if !recorded.is_empty() {
        return Verdict::Mismatch(recorded);
    }
    match ca {
        Some(at) => Verdict::CertAuthorityOnly(at),
        None => Verdict::Unknown,
    }
}

/// OpenSSH's rule for one entry's host field: a hashed name matches when HMAC-SHA1(salt, name)
/// is its hash; a pattern list matches when some pattern matches and no negated one does.
pub fn host_matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut hit = false;
            for p in list {
                let p = p.to_ascii_lowercase();
                match p.strip_prefix('!') {
                    Some(neg) if glob(neg.as_bytes(), name.as_bytes()) => return false,
                    Some(_) => {}
                    None => hit |= glob(p.as_bytes(), name.as_bytes()),
                }
            }
            hit
        }
    }
}

/// OpenSSH's `match_pattern`: `*` is any run of characters, `?` one character.
fn glob(pattern: &[u8], s: &[u8]) -> bool {
    match (pattern.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pattern[1..], s) || (!s.is_empty() && glob(pattern, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&pattern[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPB7Q9QmBx/M4z7mBdMIvUrDkjVGVb4ILLGkugVD0bLJ";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn blob(line: &str) -> Vec<u8> {
        super::super::openssh_blob(line).unwrap()
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        let b = base64::engine::general_purpose::STANDARD;
        format!(
            "|1|{}|{}",
            b.encode(salt),
            b.encode(mac.finalize().into_bytes())
        )
    }

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn hashed_names_match_only_their_host() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            &dir,
            "kh",
            &format!(
                "{} {KEY}\n",
                hashed("[10.0.0.5]:2222", b"salt-salt-salt-salt!")
            ),
        );
        let name = lookup_name("10.0.0.5", 2222);
        assert!(matches!(
            check(std::slice::from_ref(&f), &name, &blob(KEY)),
            Verdict::Known(_)
        ));
        assert!(matches!(
            check(std::slice::from_ref(&f), &name, &blob(OTHER)),
            Verdict::Mismatch(_)
        ));
        assert_eq!(
            check(&[f], &lookup_name("10.0.0.5", 22), &blob(KEY)),
            Verdict::Unknown
        );
    }

    #[test]
    fn patterns_wildcards_ports_and_negations() {
        let p = |s: &str| s.parse::<HostPatterns>().unwrap();
        assert!(host_matches(&p("[10.0.0.*]:*"), "[10.0.0.7]:2222"));
        assert!(!host_matches(&p("[10.0.0.*]:*"), "10.0.0.7"));
        assert!(host_matches(&p("web?.example.net"), "web1.example.net"));
        assert!(!host_matches(&p("web?.example.net"), "web12.example.net"));
        assert!(host_matches(
            &p("*.example.net,!db.example.net"),
            "web.example.net"
        ));
        assert!(!host_matches(
            &p("*.example.net,!db.example.net"),
            "db.example.net"
        ));
        assert!(!host_matches(&p("!db.example.net"), "web.example.net"));
        assert!(host_matches(
            &p("WEB.Example.NET"),
            &lookup_name("web.EXAMPLE.net", 22)
        ));
    }

    #[test]
    fn revoked_wins_over_a_known_entry_in_any_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(&dir, "a", &format!("h1 {KEY}\n"));
        let b = file(&dir, "b", &format!("# comment\n@revoked * {KEY}\n"));
        match check(&[a, b], "h1", &blob(KEY)) {
            Verdict::Revoked(at) => assert!(at.ends_with("b:2"), "{at}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_key_matching_none_of_several_is_a_mismatch_naming_each() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(
            &dir,
            "a",
            &format!("h1,h2 {OTHER}\ngarbage line\nh1 {OTHER} second\n"),
        );
        match check(&[a], "h1", &blob(KEY)) {
            Verdict::Mismatch(v) => {
                assert_eq!(v.len(), 2, "{v:?}");
                assert!(v[0].contains("a:1: ssh-ed25519 SHA256:"), "{v:?}");
                assert!(v[1].contains("a:3:"), "{v:?}");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn cert_authority_alone_vouches_for_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(
            &dir,
            "a",
            &format!("@cert-authority *.example.net {OTHER}\n"),
        );
        assert!(matches!(
            check(std::slice::from_ref(&a), "web.example.net", &blob(KEY)),
            Verdict::CertAuthorityOnly(_)
        ));
        assert_eq!(check(&[a], "elsewhere", &blob(KEY)), Verdict::Unknown);
    }

    #[test]
    fn ssh_config_locations_from_top_level_and_host_star() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let cfg = file(
            &dir,
            "config",
            "Host other\n  UserKnownHostsFile /nope\nHost *\n  UserKnownHostsFile ~/kh1 /abs/kh2\n  GlobalKnownHostsFile none\n",
        );
        let (user, global) = config_locations(&cfg, home);
        assert_eq!(
            user,
            Some(vec![home.join("kh1"), PathBuf::from("/abs/kh2")])
        );
        assert_eq!(global, Some(vec![]));
    }
}
