//! The login credentials, checked while planning: a node is only worth creating when we hold
//! a key to log in with. `--identity` must name a private key file that exists and parses (an
//! encrypted one only with an agent to hold it), and without it an ssh-agent with at least one
//! key or an unencrypted `~/.ssh/id_ed25519`, `id_ecdsa` or `id_rsa` must exist. Found here, a
//! mistake is exit 2 and costs nothing; found by `connect`, it cost a create and a delete.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// What a key file holds, as far as logging in is concerned.
#[derive(Debug, PartialEq, Eq)]
enum KeyFile {
    Usable,
    Encrypted,
    Public,
    NotAKey,
}

fn classify(text: &str) -> KeyFile {
    if let Ok(key) = ssh_key::PrivateKey::from_openssh(text) {
        return if key.is_encrypted() {
            KeyFile::Encrypted
        } else {
            KeyFile::Usable
        };
    }
    let t = text.trim_start();
    // PEM keys (RSA/EC/PKCS#8) libssh2 reads too; "Proc-Type: 4,ENCRYPTED" or
    // "ENCRYPTED PRIVATE KEY" mark a passphrase.
    if t.starts_with("-----BEGIN ") && t.contains("PRIVATE KEY-----") {
        return if t.contains("ENCRYPTED") {
            KeyFile::Encrypted
        } else {
            KeyFile::Usable
        };
    }
    if ssh_key::PublicKey::from_openssh(t.lines().next().unwrap_or("")).is_ok() {
        return KeyFile::Public;
    }
    KeyFile::NotAKey
}

/// The number of keys the ssh-agent at `$SSH_AUTH_SOCK` holds; 0 without a usable agent.
fn agent_keys() -> usize {
    match std::env::var_os("SSH_AUTH_SOCK") {
        Some(s) if !s.is_empty() => {}
        _ => return 0,
    }
    let count = || -> std::result::Result<usize, ssh2::Error> {
        let session = ssh2::Session::new()?;
        let mut agent = session.agent()?;
        agent.connect()?;
        agent.list_identities()?;
        let n = agent.identities()?.len();
        let _ = agent.disconnect();
        Ok(n)
    };
    count().unwrap_or(0)
}

/// The user's default key files, in the order `connect` tries them.
fn default_keys() -> Vec<PathBuf> {
    let Some(home) = dirs::home_dir() else {
        return vec![];
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .filter(|p| p.is_file())
        .collect()
}

/// Checks that a login will be possible: see the module docs. Config error (exit 2) if not.
pub fn check(identity: Option<&Path>) -> Result<()> {
    let agent = agent_keys();
    if let Some(path) = identity {
        let text = std::fs::read(path)
            .map_err(|e| Error::config(format!("--identity {}: {e}", path.display())))?;
        let what = classify(&String::from_utf8_lossy(&text));
        let why = match what {
            KeyFile::Usable => return Ok(()),
            KeyFile::Encrypted if agent > 0 => return Ok(()),
            KeyFile::Encrypted => "is encrypted and no ssh-agent holds a key; add it with ssh-add",
            KeyFile::Public => "is a public key; give the private key file (without .pub)",
            KeyFile::NotAKey => "is not an SSH private key",
        };
        return Err(Error::config(format!(
            "--identity {}: {why}",
            path.display()
        )));
    }
    if agent > 0 {
        return Ok(());
    }
    let defaults = default_keys();
    if defaults.iter().any(|p| {
        std::fs::read(p).is_ok_and(|t| classify(&String::from_utf8_lossy(&t)) == KeyFile::Usable)
    }) {
        return Ok(());
    }
    let found = if defaults.is_empty() {
        "no ~/.ssh/id_ed25519, id_ecdsa or id_rsa".to_string()
    } else {
        let names: Vec<String> = defaults.iter().map(|p| p.display().to_string()).collect();
        format!("{} encrypted or unreadable", names.join(", "))
    };
    Err(Error::config(format!(
        "no private key to log in to the node with: no ssh-agent key, no --identity, {found} \
         (create one with ssh-keygen -t ed25519, or ssh-add it)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_told_apart() {
        let key = ssh_key::PrivateKey::random(&mut rand::rngs::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
        let private = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
        assert_eq!(classify(&private), KeyFile::Usable);
        let public = key.public_key().to_openssh().unwrap();
        assert_eq!(classify(&public), KeyFile::Public);
        assert_eq!(classify("hello"), KeyFile::NotAKey);
        assert_eq!(
            classify("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"),
            KeyFile::Encrypted
        );
    }

    #[test]
    fn a_missing_identity_is_a_config_error() {
        let e = check(Some(Path::new("/nonexistent/key"))).unwrap_err();
        assert!(matches!(e, Error::Config(_)));
        assert!(
            e.to_string().starts_with("--identity /nonexistent/key: "),
            "{e}"
        );
    }
}
