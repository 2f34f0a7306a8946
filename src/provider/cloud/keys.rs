//! Registering the user's public keys on a token cloud's account, the part the drivers share:
//! list the account's keys, reuse one that holds the same key, register the others (a create
//! whose outcome is unknown looks again before it is re-sent, and a key another node of this
//! run registered meanwhile is taken), and answer the account's reference to each key. Where
//! the keys live, which field a server create takes and how a new key is named are the
//! driver's ([`KeyApi`]): this code knows no provider.

use super::CloudCore;
use crate::error::Result;
use crate::provider::cloudinit;
use serde_json::{json, Map, Value};

/// How one provider's API keeps SSH keys.
pub struct KeyApi {
    /// The keys' collection (`/v2/account/keys`, `/ssh_keys`).
    pub path: &'static str,
    /// The list's key in a list answer.
    pub list_key: &'static str,
    /// The key's key in a create answer.
    pub item_key: &'static str,
    /// The field of a key that a server create takes (`id`, `name`).
    pub reference: &'static str,
    /// The name a new key is registered under, from its comment and fingerprint.
    pub name: fn(comment: &str, fingerprint: &str) -> String,
    /// Further fields of a new key (Hetzner: our label).
    pub extra: fn() -> Map<String, Value>,
}

impl CloudCore {
    /// The account's references for `public_keys` (unparsable lines skipped), registering
    /// the missing ones.
    pub fn register_keys(&self, api: &KeyApi, public_keys: &[String]) -> Result<Vec<Value>> {
        let client = &self.client;
        let list = || client.get_all(api.path, api.list_key, &[]);
        let mut registered = list()?;
        let mut refs = Vec::new();
        for line in public_keys {
            let Some(key) = cloudinit::parse_public_key(line) else {
                continue;
            };
            let find = |list: &[Value]| {
                list.iter().find_map(|k| {
                    let pk = k.get("public_key")?.as_str()?;
                    let r = k.get(api.reference)?;
                    cloudinit::same_key(pk, line).then(|| r.clone())
                })
            };
            if let Some(r) = find(&registered) {
                refs.push(r);
                continue;
            }
            let fp = cloudinit::fingerprint(&key);
            let mut body = (api.extra)();
            body.insert("name".into(), json!((api.name)(key.comment(), &fp)));
            body.insert("public_key".into(), json!(line.trim()));
            let lookup =
                || Ok(find(&list()?).map(|r| json!({ api.item_key: { api.reference: r } })));
            let made = match client.create(api.path, &Value::Object(body), &lookup) {
                Ok(v) => v,
                // registered meanwhile (another node of this run): use that one
                Err(e) => match lookup()? {
                    Some(v) => v,
                    None => return Err(e),
                },
            };
            let r = made
                .get(api.item_key)
                .and_then(|k| k.get(api.reference))
                .filter(|r| !r.is_null())
                .cloned()
                .ok_or_else(|| {
                    client.malformed(format!(
                        "POST {}: no {}.{}",
                        api.path, api.item_key, api.reference
                    ))
                })?;
            crate::output::debug(&format!("{}: registered key {fp}", client.provider()));
            registered.push(json!({ api.reference: r, "public_key": line.trim() }));
            refs.push(r);
        }
        Ok(refs)
    }
}
