//! The JSON an exec provider's actions print, read strictly: a node object with known fields of
//! the right types (an unknown field is a typo, not something to ignore), its `state` mapped
//! through a table with an `unknown` fallback, and catalog entries. Errors name the field and
//! what was wrong with it; the caller adds the quote of the output.

use super::super::{map_state, Node, NodeState, SshEndpoint};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The documented states; anything else is `unknown`.
pub(crate) const STATES: &[(&str, NodeState)] = &[
    ("pending", NodeState::Pending),
    ("running", NodeState::Running),
    ("stopped", NodeState::Stopped),
    ("terminated", NodeState::Terminated),
    ("error", NodeState::Error),
    ("unknown", NodeState::Unknown),
];

/// The state names, for messages.
pub(crate) const STATE_NAMES: &[&str] = &[
    "pending",
    "running",
    "stopped",
    "terminated",
    "error",
    "unknown",
];

/// Fields a node object may have.
pub(crate) const FIELDS: &[&str] = &[
    "id",
    "name",
    "state",
    "public_ip",
    "private_ip",
    "ssh_port",
    "ssh_user",
    "host_key",
    "tags",
    "image",
    "size",
    "location",
    "created",
];

/// "a string", "an array", ... for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A node from one JSON object, or what is wrong with it ("a node whose ...").
pub(crate) fn parse(v: &Value) -> Result<Node, String> {
    let Value::Object(m) = v else {
        return Err(format!("{} where a node object was expected", kind(v)));
    };
    if let Some(k) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "a node with the unknown field \"{k}\" (fields: {})",
            FIELDS.join(", ")
        ));
    }
    let bad = |field: &str, why: String| format!("a node whose \"{field}\" {why}");
    let required = |field: &str| -> Result<String, String> {
        match m.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(bad(field, "is empty".into())),
            None => Err(format!("a node without \"{field}\"")),
            Some(other) => Err(bad(field, format!("is {}, not a string", kind(other)))),
        }
    };
    let optional = |field: &str| -> Result<Option<String>, String> {
        match m.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(
                field,
                format!("is {}, not a string or null", kind(other)),
            )),
        }
    };
    let id = required("id")?;
    let name = required("name")?;
    let state = map_state(STATES, &required("state")?);
    let ip = |field: &str| -> Result<Option<String>, String> {
        let v = optional(field)?;
        if let Some(s) = &v {
            s.parse::<IpAddr>()
                .map_err(|_| bad(field, format!("is '{s}', not an IP address")))?;
        }
        Ok(v)
    };
    let public_ip = ip("public_ip")?;
    let private_ip = ip("private_ip")?;
    let port = match m.get("ssh_port") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("ssh_port", format!("is {n}, not a port (1-65535)")))?,
        ),
        Some(other) => return Err(bad("ssh_port", format!("is {}, not a number", kind(other)))),
    };
    let host_key = optional("host_key")?;
    if let Some(k) = &host_key {
        if super::super::cloudinit::parse_public_key(k).is_none() {
            return Err(bad(
                "host_key",
                "is not an OpenSSH public key line (like 'ssh-ed25519 AAAA...')".into(),
            ));
        }
    }
    let tags = match m.get("tags") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(t)) => t
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(bad(
                    "tags",
                    format!("has \"{k}\": {}, not a string", kind(other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad("tags", format!("is {}, not an object", kind(other)))),
    };
    Ok(Node {
        id,
        name,
        state,
        public_ip,
        private_ip,
        image: optional("image")?,
        size: optional("size")?,
        location: optional("location")?,
        created: optional("created")?,
        tags,
        ssh: SshEndpoint {
            port,
            user: optional("ssh_user")?,
            host_key,
            identity: None,
        },
    })
}

/// What `destroy` printed, when it printed a JSON object: `{"gone": true}` says the node was
/// already gone. `gone` false or absent means destroyed; `gone` of another type is an error.
pub(crate) fn gone(v: &Map<String, Value>) -> Result<bool, String> {
    match v.get("gone") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!(
            "printed a \"gone\" that is {} (expected true or false)",
            kind(other)
        )),
    }
}

/// Catalog entries: an array of names, or of `{"name", "description"?}` objects.
pub(crate) fn catalog(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Array(items) = v else {
        return Err(format!("printed {} instead of a JSON array", kind(v)));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok((s.clone(), String::new())),
            Value::Object(o) => {
                let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                    format!("printed, as item {i}, an object without a string \"name\"")
                })?;
                let desc = match o.get("description") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => {
                        return Err(format!(
                            "printed, as item {i}, a \"description\" that is {}",
                            kind(other)
                        ))
                    }
                };
                Ok((name.to_string(), desc))
            }
            other => Err(format!(
                "printed, as item {i}, {} instead of a name or an object",
                kind(other)
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_node() {
        let n = parse(&json!({
            "id": "vm-1", "name": "web", "state": "running", "public_ip": "127.0.0.9",
            "private_ip": null, "ssh_port": 2222, "ssh_user": "admin",
            "tags": {"provision": "1"}
        }))
        .unwrap();
        assert_eq!(n.state, NodeState::Running);
        assert_eq!(n.ssh.port, Some(2222));
        assert_eq!(n.ssh.user.as_deref(), Some("admin"));
        assert!(n.is_managed());
    }

    #[test]
    fn states_map_through_the_table() {
        let s = |st: &str| {
            parse(&json!({"id": "a", "name": "b", "state": st}))
                .unwrap()
                .state
        };
        assert_eq!(s("pending"), NodeState::Pending);
        assert_eq!(s("error"), NodeState::Error);
        assert_eq!(s("booting"), NodeState::Unknown);
        assert_eq!(STATES.len(), STATE_NAMES.len());
    }

    #[test]
    fn wrong_fields_are_named() {
        let e = |v: Value| parse(&v).unwrap_err();
        assert!(e(json!({"id": 1, "name": "b", "state": "running"})).contains("\"id\" is a number"));
        assert!(e(json!({"name": "b", "state": "running"})).contains("without \"id\""));
        assert!(e(json!({"id": "a", "name": "b", "state": 3})).contains("\"state\""));
        assert!(
            e(json!({"id": "a", "name": "b", "state": "running", "public_ipv4": "1"}))
                .contains("unknown field \"public_ipv4\"")
        );
        assert!(
            e(json!({"id": "a", "name": "b", "state": "running", "public_ip": "localhost"}))
                .contains("not an IP address")
        );
        assert!(
            e(json!({"id": "a", "name": "b", "state": "running", "ssh_port": 70000}))
                .contains("\"ssh_port\"")
        );
        assert!(
            e(json!({"id": "a", "name": "b", "state": "running", "host_key": "nope"}))
                .contains("\"host_key\"")
        );
        assert!(e(json!([1])).contains("an array where a node"));
    }

    #[test]
    fn catalogs() {
        let c = catalog(&json!(["a", {"name": "b", "description": "B"}])).unwrap();
        assert_eq!(c, vec![("a".into(), "".into()), ("b".into(), "B".into())]);
        assert!(catalog(&json!({"a": 1})).is_err());
        assert!(catalog(&json!([1])).unwrap_err().contains("item 0"));
    }

    #[test]
    fn destroy_says_gone_only_with_gone_true() {
        let g = |v: Value| gone(v.as_object().unwrap());
        assert_eq!(g(json!({"gone": true})), Ok(true));
        assert_eq!(g(json!({"gone": false})), Ok(false));
        assert_eq!(g(json!({})), Ok(false));
        assert!(g(json!({"gone": "yes"})).unwrap_err().contains("a string"));
    }
}
