//! cloud-init user-data for cloud drivers: the node's authorized keys for root and an ed25519
//! host key generated here, so the SSH engine can pin the host key from the first connection
//! instead of trusting whatever answers. The user's own cloud-config (config `user_data`, a TOML
//! table of cloud-config keys) is merged at the top level.
//!
//! The document is `#cloud-config` followed by JSON, which is valid YAML for cloud-init.
//! The private host key lives only in the user-data sent to the provider: it never appears in a
//! [`crate::provider::Node`], an error or a log line (drivers register it for redaction).

use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

/// A generated host key. `Debug` shows only the public half.
pub struct HostKey {
    /// `ssh-ed25519 AAAA...`, for `Node.ssh.host_key`.
    pub public: String,
    private: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKey({})", self.public)
    }
}

impl HostKey {
    pub fn generate() -> Result<HostKey> {
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
            .map_err(|e| Error::unexpected(format!("cannot generate a host key: {e}")))?;
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| Error::unexpected(format!("cannot encode a host key: {e}")))?
            .to_string();
        let mut public = key.public_key().clone();
        public.set_comment("");
        let public = public
            .to_openssh()
            .map_err(|e| Error::unexpected(format!("cannot encode a host key: {e}")))?;
        Ok(HostKey { public, private })
    }

    /// The OpenSSH private key; only for the user-data document.
    pub fn private_openssh(&self) -> &str {
        &self.private
    }
}

/// The user's `user_data` from `[providers.NAME]`: a table of cloud-config keys, or a
/// `#cloud-config` string whose body is JSON. YAML strings cannot be merged: a config error.
pub fn user_config(provider: &str, table: &toml::Table) -> Result<Option<Map<String, Value>>> {
    let Some(v) = table.get("user_data") else {
        return Ok(None);
    };
    let bad = |why: &str| {
        Error::config(format!(
            "[providers.{provider}] user_data: {why}; give cloud-config keys as a table, e.g. \
             [providers.{provider}.user_data] packages = [\"htop\"]"
        ))
    };
    match v {
        toml::Value::Table(t) => match serde_json::to_value(t) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            _ => Err(bad("cannot be converted to cloud-config")),
        },
        toml::Value::String(s) => {
            let body = s
                .strip_prefix("#cloud-config")
                .ok_or_else(|| bad("a string must start with #cloud-config"))?;
            match serde_json::from_str(body) {
                Ok(Value::Object(m)) => Ok(Some(m)),
                _ => Err(bad("a YAML string cannot be merged")),
            }
        }
        _ => Err(bad("expected a table")),
    }
}

/// The `#cloud-config` document: `ssh_authorized_keys` (the user's and `public_keys`),
/// `ssh_keys` carrying the host key (ours win over the user's ed25519 entries), and every other
/// top-level key of the user's config as given.
pub fn user_data(
    public_keys: &[String],
    host: &HostKey,
    user: Option<&Map<String, Value>>,
) -> String {
    let mut doc = user.cloned().unwrap_or_default();
    let mut keys: Vec<Value> = match doc.remove("ssh_authorized_keys") {
        Some(Value::Array(a)) => a,
        Some(v) => vec![v],
        None => Vec::new(),
    };
    for k in public_keys {
        let k = Value::String(k.trim().to_string());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    doc.insert("ssh_authorized_keys".into(), Value::Array(keys));
    let mut host_keys = match doc.remove("ssh_keys") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    host_keys.insert("ed25519_private".into(), json!(host.private));
    host_keys.insert("ed25519_public".into(), json!(host.public));
    doc.insert("ssh_keys".into(), Value::Object(host_keys));
    doc.entry("disable_root").or_insert(json!(false));
    let body = serde_json::to_string_pretty(&Value::Object(doc)).expect("JSON serializes");
    format!("#cloud-config\n{body}\n")
}

/// A public key line parsed, for matching against a provider's registered keys.
pub fn parse_public_key(line: &str) -> Option<PublicKey> {
    PublicKey::from_openssh(line.trim()).ok()
}

/// The key's SHA256 fingerprint (`SHA256:...`), for names and messages.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
}

/// True when two OpenSSH public key lines hold the same key (comments ignored).
pub fn same_key(a: &str, b: &str) -> bool {
    match (parse_public_key(a), parse_public_key(b)) {
        (Some(a), Some(b)) => a.key_data() == b.key_data(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_merges_and_pins() {
        let host = HostKey::generate().unwrap();
        assert!(host.public.starts_with("ssh-ed25519 "));
        assert!(!format!("{host:?}").contains("PRIVATE"));
        let t: toml::Table = toml::from_str(
            "[user_data]\npackages = [\"htop\"]\nssh_authorized_keys = [\"ssh-ed25519 AAAAuser u\"]\n",
        )
        .unwrap();
        let user = user_config("x", &t).unwrap().unwrap();
        let doc = user_data(&["ssh-ed25519 AAAAnode n".into()], &host, Some(&user));
        assert!(doc.starts_with("#cloud-config\n"));
        let v: Value = serde_json::from_str(doc.trim_start_matches("#cloud-config\n")).unwrap();
        assert_eq!(v["packages"][0], "htop");
        assert_eq!(v["ssh_authorized_keys"].as_array().unwrap().len(), 2);
        assert!(v["ssh_keys"]["ed25519_private"]
            .as_str()
            .unwrap()
            .contains("BEGIN OPENSSH PRIVATE KEY"));
        assert_eq!(v["ssh_keys"]["ed25519_public"], host.public.as_str());
    }

    #[test]
    fn yaml_strings_are_refused() {
        let t: toml::Table =
            toml::from_str("user_data = \"#cloud-config\\npackages: [htop]\"").unwrap();
        assert!(matches!(user_config("x", &t), Err(Error::Config(_))));
    }
}
