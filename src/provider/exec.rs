//! The `exec` driver: any cloud or hypervisor through a directory of small programs, one per
//! action (`create`, `list`, `destroy`, optional `get`, `catalog` and `tag`), as OpenNebula's
//! provision drivers do. Each action gets one JSON object on stdin and the same values as
//! `PROVISION_*` environment variables, and prints JSON on stdout; exit 0 is success.
//! Everything here is about holding users' programs to that contract: the directory checked
//! before anything is created, a deadline per action that kills the action's whole process
//! group, and output parsed strictly with errors that quote what came. The contract itself is
//! documented in provision.toml(5).

mod node;
mod run;

use super::cloudinit::{self, HostKey};
use super::{Catalog, Destroyed, Node, NodeSpec, Provider};
use crate::config::{Config, LayerSource};
use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The `type` that makes a `[providers.NAME]` table an exec provider.
pub const TYPE: &str = "exec";
/// Actions every exec provider must have.
pub const REQUIRED: &[&str] = &["create", "list", "destroy"];
/// Actions it may have.
pub const OPTIONAL: &[&str] = &["get", "catalog", "tag"];
/// Keys of `[providers.NAME]` for an exec provider.
const KEYS: &[&str] = &[
    "type",
    "path",
    "timeout",
    "env",
    "user_data",
    "poll_interval",
];
/// Default deadlines: creating a machine may take minutes; everything else should not.
const CREATE_TIMEOUT: Duration = Duration::from_secs(600);
const OTHER_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of an action's stderr quoted in an error.
const STDERR_LINES: usize = 5;
/// Characters of unusable output quoted in an error.
const QUOTE_CHARS: usize = 120;

/// True when `[providers.NAME]` declares `type = "exec"`.
pub fn declared(cfg: &Config, name: &str) -> bool {
    cfg.providers
        .get(name)
        .and_then(|t| t.get("type"))
        .and_then(|v| v.as_str())
        == Some(TYPE)
}

/// Whether `-p NAME` means a config-declared exec provider: true when `[providers.NAME]` says
/// `type = "exec"`. A built-in name declared as exec, or another `type`, is a config error
/// rather than a silent surprise.
pub fn check_declared(cfg: &Config, name: &str) -> Result<bool> {
    let Some(ty) = cfg.providers.get(name).and_then(|t| t.get("type")) else {
        return Ok(false);
    };
    if ty.as_str() != Some(TYPE) {
        return Err(Error::config(format!(
            "[providers.{name}] type = {ty}: the only provider type is \"exec\""
        )));
    }
    if super::registry::names().contains(&name) {
        return Err(Error::config(format!(
            "[providers.{name}] type = \"exec\": '{name}' is a built-in provider; give the exec provider another name"
        )));
    }
    Ok(true)
}

pub struct ExecProvider {
    name: String,
    dir: PathBuf,
    has_get: bool,
    has_catalog: bool,
    /// A `tag` action: the deploy state is recorded on the node ([`super::TAG_STATE`]).
    has_tag: bool,
    timeouts: HashMap<&'static str, Duration>,
    env: Vec<(String, String)>,
    /// Values never shown in an error: secret-looking variables, generated private host keys.
    secrets: Mutex<Vec<String>>,
    user: Option<Map<String, Value>>,
    poll: Duration,
    /// Host keys reported by create, for gets that do not repeat them.
    host_keys: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for ExecProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProvider")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ExecProvider {
    /// From the merged `[providers.NAME]`; `path` resolves against the layer that set it.
    /// Every mistake (unknown key, bad timeout, a missing or non-executable action, a path that
    /// is not a directory) is a config error, found before anything is created.
    pub fn from_config(name: &str, cfg: &Config) -> Result<Self> {
        let table = cfg.provider_table(name);
        let what = format!("[providers.{name}]");
        if let Some(k) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::config(format!(
                "{what}: unknown key '{k}' for an exec provider (known: {})",
                KEYS.join(", ")
            )));
        }
        let layer = cfg.provider_key_layer(name, "path");
        let from = layer.map(|l| l.label()).unwrap_or_default();
        let path = match table.get("path") {
            Some(toml::Value::String(p)) if !p.is_empty() => p.clone(),
            Some(_) => {
                return Err(Error::config(format!(
                    "{what} path (in {from}): expected the directory of the actions, as a string"
                )))
            }
            None => {
                return Err(Error::config(format!(
                    "{what}: type = \"exec\" needs path = \"DIR\", the directory holding create, list and destroy"
                )))
            }
        };
        let base = match layer.map(|l| &l.source) {
            Some(LayerSource::Dir(d)) => d.clone(),
            _ => std::env::current_dir().map_err(|e| Error::io("current directory", e))?,
        };
        let dir = std::path::absolute(base.join(&path)).unwrap_or_else(|_| base.join(&path));
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::config(format!(
                    "{what} path = \"{path}\" (in {from}): {} is not a directory",
                    dir.display()
                )))
            }
            Err(e) => {
                return Err(Error::config(format!(
                    "{what} path = \"{path}\" (in {from}): {}: {e}",
                    dir.display()
                )))
            }
        }
        for action in REQUIRED {
            check_action(name, &dir, action, true)?;
        }
        let has_get = check_action(name, &dir, "get", false)?;
        let has_catalog = check_action(name, &dir, "catalog", false)?;
        let has_tag = check_action(name, &dir, "tag", false)?;
        let env = env_table(&what, &table)?;
        let mut secrets: Vec<String> = env
            .iter()
            .filter(|(k, v)| secret_name(k) && v.len() >= 4)
            .map(|(_, v)| v.clone())
            .collect();
        secrets.extend(
            std::env::vars()
                .filter(|(k, v)| secret_name(k) && v.len() >= 8)
                .map(|(_, v)| v),
        );
        Ok(ExecProvider {
            name: name.to_string(),
            dir,
            has_get,
            has_catalog,
            has_tag,
            timeouts: timeouts(&what, &table)?,
            env,
            secrets: Mutex::new(secrets),
            user: cloudinit::user_config(name, &table)?,
            poll: super::http::seconds(name, &table, "poll_interval")?
                .unwrap_or(Duration::from_secs(2)),
            host_keys: Mutex::new(HashMap::new()),
        })
    }

    fn exe(&self, action: &str) -> PathBuf {
        self.dir.join(action)
    }

    fn timeout(&self, action: &str) -> Duration {
        self.timeouts
            .get(action)
            .copied()
            .unwrap_or(if action == "create" {
                CREATE_TIMEOUT
            } else {
                OTHER_TIMEOUT
            })
    }

    fn redact(&self, s: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = s.to_string();
        for secret in secrets.iter() {
            out = out.replace(secret.as_str(), "<redacted>");
        }
        out
    }

    /// "exec provider 'lab'", the provider part of every error.
    fn who(&self) -> String {
        format!("exec provider '{}'", self.name)
    }

    /// "create (/dir/create)", the action part of every error.
    fn action_label(&self, action: &str) -> String {
        format!("{action} ({})", self.exe(action).display())
    }

    /// Runs `action` with `input` as stdin JSON and, in its environment, `PROVISION_ACTION`,
    /// `PROVISION_PROVIDER`, the config's `env` and `extra_env`; its stdout when it exits 0.
    fn call(&self, action: &str, input: &Value, extra_env: &[(String, String)]) -> Result<String> {
        let mut env = vec![
            ("PROVISION_ACTION".to_string(), action.to_string()),
            ("PROVISION_PROVIDER".to_string(), self.name.clone()),
        ];
        env.extend(self.env.iter().cloned());
        env.extend(extra_env.iter().cloned());
        let stdin = serde_json::to_vec(input).expect("JSON serializes");
        let timeout = self.timeout(action);
        let exe = self.exe(action);
        crate::output::debug(&format!("{}: running {}", self.who(), exe.display()));
        let finished = run::run(&run::Invocation {
            exe: &exe,
            cwd: &self.dir,
            env: &env,
            stdin: &stdin,
            timeout,
        })
        .map_err(|e| {
            Error::unexpected(format!(
                "{}: cannot run {}: {e}",
                self.who(),
                self.action_label(action)
            ))
        })?;
        match finished {
            run::Finished::TimedOut { stderr, exited } => {
                let why = if exited {
                    "exited, but a process it started kept its output open"
                } else {
                    "did not finish"
                };
                Err(Error::Timeout(format!(
                    "{}: {} {why} within {}s (timeout); its process group was killed{}",
                    self.who(),
                    self.action_label(action),
                    timeout.as_secs_f64(),
                    self.stderr_tail(&stderr)
                )))
            }
            run::Finished::Exited {
                status,
                stdout,
                stderr,
            } => {
                let tail = self.stderr_tail(&stderr);
                if !status.success() {
                    let how = match status.code() {
                        Some(c) => format!("exited with status {c}"),
                        None => format!("was killed ({status})"),
                    };
                    return Err(Error::unexpected(format!(
                        "{}: {} {how}{tail}",
                        self.who(),
                        self.action_label(action)
                    )));
                }
                if !tail.is_empty() {
                    crate::output::debug(&format!("{}: {action}{tail}", self.who()));
                }
                String::from_utf8(stdout)
                    .map_err(|_| self.malformed(action, "printed output that is not UTF-8", ""))
            }
        }
    }

    /// `: last lines of stderr` (secrets redacted), or nothing when it was silent.
    fn stderr_tail(&self, stderr: &[u8]) -> String {
        let text = String::from_utf8_lossy(stderr);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return String::new();
        }
        let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ");
        format!(": {}", self.redact(&tail))
    }

    fn malformed(&self, action: &str, problem: &str, output: &str) -> Error {
        let quoted = if output.is_empty() {
            String::new()
        } else {
            format!("; its output began: {}", quote(&self.redact(output)))
        };
        Error::Malformed {
            provider: self.who(),
            message: format!("{} {problem}{quoted}", self.action_label(action)),
        }
    }

    /// Parses `out` as JSON; empty or garbage output is malformed.
    fn json(&self, action: &str, out: &str, expected: &str) -> Result<Value> {
        if out.trim().is_empty() {
            return Err(self.malformed(
                action,
                &format!("printed nothing on stdout (expected {expected})"),
                "",
            ));
        }
        serde_json::from_str(out).map_err(|e| {
            self.malformed(
                action,
                &format!("printed output that is not JSON ({e}; expected {expected})"),
                out,
            )
        })
    }

    /// The node in `v`; `at` says where in the output it was (for a list's items).
    fn node(&self, action: &str, at: &str, v: &Value, out: &str) -> Result<Node> {
        let mut n = node::parse(v)
            .map_err(|problem| self.malformed(action, &format!("printed{at} {problem}"), out))?;
        if n.state == super::NodeState::Unknown {
            if let Some(raw) = v.get("state").and_then(Value::as_str) {
                if raw != "unknown" {
                    crate::output::warn(&format!(
                        "{}: {action} reported node {} in state '{raw}', which is not one of {}: treated as unknown",
                        self.who(),
                        n.name,
                        node::STATE_NAMES.join(", ")
                    ));
                }
            }
        }
        let mut keys = self.host_keys.lock().unwrap_or_else(|e| e.into_inner());
        match &n.ssh.host_key {
            Some(k) => {
                keys.insert(n.id.clone(), k.clone());
            }
            None => n.ssh.host_key = keys.get(&n.id).cloned(),
        }
        Ok(n)
    }

    /// Every node the `list` action prints.
    fn list_all(&self) -> Result<Vec<Node>> {
        let out = self.call("list", &json!({"all": true}), &[env("LIST_ALL", "1")])?;
        let v = self.json("list", &out, "a JSON array of nodes")?;
        let Value::Array(items) = &v else {
            return Err(self.malformed(
                "list",
                &format!(
                    "printed {} instead of a JSON array of nodes",
                    node::kind(&v)
                ),
                &out,
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.node("list", &format!(", as item {i} of its array,"), item, &out))
            .collect()
    }
}

/// `PROVISION_<key>` = `value`.
fn env(key: &str, value: &str) -> (String, String) {
    (format!("PROVISION_{key}"), value.to_string())
}

/// True for variable names that hold credentials by convention.
fn secret_name(k: &str) -> bool {
    let k = k.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"]
        .iter()
        .any(|w| k.contains(w))
}

/// The start of `s`, on one line, quoted.
fn quote(s: &str) -> String {
    let one_line: String = s
        .trim()
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    let mut q: String = one_line.chars().take(QUOTE_CHARS).collect();
    if one_line.chars().count() > QUOTE_CHARS {
        q.push('…');
    }
    format!("«{q}»")
}

/// Checks `DIR/action`: present and executable (required), or absent (optional). True when it
/// is there.
fn check_action(name: &str, dir: &Path, action: &str, required: bool) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(action);
    let what = format!("[providers.{name}]");
    let meta = match std::fs::metadata(&p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::config(format!(
            "{what}: {} is missing: an exec provider needs executables named {} (and may have {})",
            p.display(),
            REQUIRED.join(", "),
            OPTIONAL.join(", ")
        )))
        }
        Err(e) => return Err(Error::config(format!("{what}: {}: {e}", p.display()))),
    };
    if !meta.is_file() {
        return Err(Error::config(format!(
            "{what}: {} is not a file",
            p.display()
        )));
    }
    let runnable = meta.permissions().mode() & 0o111 != 0
        && nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_ok();
    if !runnable {
        return Err(Error::config(format!(
            "{what}: {} is not executable (chmod +x {})",
            p.display(),
            p.display()
        )));
    }
    Ok(true)
}

/// `[providers.NAME.env]`: scalar values, passed to every action.
fn env_table(what: &str, table: &toml::Table) -> Result<Vec<(String, String)>> {
    let Some(v) = table.get("env") else {
        return Ok(Vec::new());
    };
    let t = v.as_table().ok_or_else(|| {
        Error::config(format!("{what} env: expected a table of NAME = \"value\""))
    })?;
    t.iter()
        .map(|(k, v)| match v {
            toml::Value::Table(_) | toml::Value::Array(_) => Err(Error::config(format!(
                "{what} env.{k}: expected a string, number or boolean"
            ))),
            v => Ok((k.clone(), crate::config::schema::value_to_string(v))),
        })
        .collect()
}

/// `timeout = SECONDS` (every action) or `timeout = { create = SECONDS, ... }`.
fn timeouts(what: &str, table: &toml::Table) -> Result<HashMap<&'static str, Duration>> {
    let secs = |key: &str, v: &toml::Value| {
        v.as_float()
            .or_else(|| v.as_integer().map(|i| i as f64))
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                Error::config(format!(
                    "{what} {key}: expected a positive number of seconds"
                ))
            })
    };
    let all: Vec<&'static str> = REQUIRED.iter().chain(OPTIONAL).copied().collect();
    let mut out = HashMap::new();
    match table.get("timeout") {
        None => {}
        Some(toml::Value::Table(t)) => {
            for (k, v) in t {
                let action = all.iter().find(|a| **a == k.as_str()).ok_or_else(|| {
                    Error::config(format!(
                        "{what} timeout.{k}: not an action (actions: {})",
                        all.join(", ")
                    ))
                })?;
                out.insert(*action, secs(&format!("timeout.{k}"), v)?);
            }
        }
        Some(v) => {
            let d = secs("timeout", v)?;
            for a in all {
                out.insert(a, d);
            }
        }
    }
    Ok(out)
}

impl Provider for ExecProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn create(&self, spec: &NodeSpec) -> Result<Node> {
        let host = HostKey::generate()?;
        let user_data = cloudinit::user_data(&spec.public_keys, &host, self.user.as_ref());
        {
            let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
            secrets.push(host.private_openssh().trim().to_string());
            secrets.extend(
                host.private_openssh()
                    .lines()
                    .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                    .map(str::to_string),
            );
        }
        let ud_file = tempfile::Builder::new()
            .prefix("provision-user-data-")
            .tempfile()
            .map_err(|e| Error::io("cannot write the user-data file", e))?;
        std::fs::write(ud_file.path(), &user_data)
            .map_err(|e| Error::io("cannot write the user-data file", e))?;
        let tags_lines: String = spec
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        let input = json!({
            "name": spec.name,
            "image": spec.image,
            "size": spec.size,
            "location": spec.location,
            "public_keys": spec.public_keys,
            "user_data": user_data,
            "tags": spec.tags,
        });
        let extra = [
            env("NODE_NAME", &spec.name),
            env("IMAGE", &spec.image),
            env("SIZE", &spec.size),
            env("LOCATION", &spec.location),
            env("PUBLIC_KEYS", &spec.public_keys.join("\n")),
            env("USER_DATA_FILE", &ud_file.path().to_string_lossy()),
            env("TAGS", &tags_lines),
        ];
        let out = self.call("create", &input, &extra)?;
        let v = self.json("create", &out, "one node as a JSON object")?;
        let node = self.node("create", "", &v, &out)?;
        if node.name != spec.name {
            // deploy-node would look for the asked name and miss this node: destroy it by id
            let fate = match self.destroy(&node.id) {
                Ok(_) => format!("node {} destroyed", node.id),
                Err(e) => format!(
                    "node {} could not be destroyed ({e}); it still exists",
                    node.id
                ),
            };
            return Err(self.malformed(
                "create",
                &format!(
                    "printed a node whose \"name\" is '{}', not '{}' as asked ({fate})",
                    node.name, spec.name
                ),
                &out,
            ));
        }
        Ok(node)
    }

    fn list(&self, all: bool) -> Result<Vec<Node>> {
        let nodes = self.list_all()?;
        Ok(nodes
            .into_iter()
            .filter(|n| all || n.is_managed())
            .collect())
    }

    fn get(&self, id: &str) -> Result<Option<Node>> {
        if !self.has_get {
            return Ok(self.list_all()?.into_iter().find(|n| n.id == id));
        }
        let out = self.call("get", &json!({"id": id}), &[env("NODE_ID", id)])?;
        let v = self.json("get", &out, "one node as a JSON object, or null")?;
        if v.is_null() {
            return Ok(None);
        }
        let node = self.node("get", "", &v, &out)?;
        if node.id != id {
            return Err(self.malformed(
                "get",
                &format!(
                    "printed a node whose \"id\" is '{}', not '{id}' as asked",
                    node.id
                ),
                &out,
            ));
        }
        Ok(Some(node))
    }

    /// Destroyed, or already gone when the action printed `{"gone": true}`. Other output
    /// (nothing, text, `{}`) means destroyed: stdout was ignored before `gone` existed.
    fn destroy(&self, id: &str) -> Result<Destroyed> {
        let out = self.call("destroy", &json!({"id": id}), &[env("NODE_ID", id)])?;
        self.host_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let Ok(Value::Object(o)) = serde_json::from_str::<Value>(&out) else {
            return Ok(Destroyed::Destroyed);
        };
        match node::gone(&o) {
            Ok(true) => Ok(Destroyed::AlreadyGone),
            Ok(false) => Ok(Destroyed::Destroyed),
            Err(p) => Err(self.malformed("destroy", &p, &out)),
        }
    }

    fn updates_tags(&self) -> bool {
        self.has_tag
    }

    /// Runs `tag` with the node's id and the tags to add or replace; its stdout is ignored.
    fn update_tags(&self, node: &Node, tags: &BTreeMap<String, String>) -> Result<()> {
        if !self.has_tag {
            return Err(Error::usage(format!(
                "{} has no tag executable in {}: the tags of {} cannot be updated",
                self.who(),
                self.dir.display(),
                node.name
            )));
        }
        let lines: String = tags.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        self.call(
            "tag",
            &json!({"id": node.id, "tags": tags}),
            &[env("NODE_ID", &node.id), env("TAGS", &lines)],
        )?;
        Ok(())
    }

    fn catalog(&self, kind: Catalog) -> Result<Vec<(String, String)>> {
        if !self.has_catalog {
            return Err(Error::usage(format!(
                "{} has no catalog executable in {}: it cannot list {kind}",
                self.who(),
                self.dir.display()
            )));
        }
        let k = kind.to_string();
        let out = self.call("catalog", &json!({"kind": k}), &[env("CATALOG", &k)])?;
        let v = self.json("catalog", &out, "a JSON array")?;
        node::catalog(&v).map_err(|p| self.malformed("catalog", &p, &out))
    }

    fn poll_interval(&self) -> Duration {
        self.poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn timeouts_for_every_action_or_per_action() {
        let t = timeouts("[p]", &table("timeout = 5")).unwrap();
        assert_eq!(t["create"], Duration::from_secs(5));
        assert_eq!(t["catalog"], Duration::from_secs(5));
        let t = timeouts("[p]", &table("timeout = { create = 1.5 }")).unwrap();
        assert_eq!(t["create"], Duration::from_millis(1500));
        assert!(!t.contains_key("list"));
        let e = |s: &str| timeouts("[p]", &table(s)).unwrap_err().to_string();
        assert!(e("timeout = { crate = 3 }").contains("timeout.crate: not an action"));
        assert!(e("timeout = -1").contains("positive number of seconds"));
        assert!(e("timeout = \"10m\"").contains("positive number of seconds"));
    }

    #[test]
    fn env_takes_scalars_only() {
        let env = env_table("[p]", &table("[env]\nA = \"x\"\nN = 3\n")).unwrap();
        assert_eq!(
            env,
            vec![("A".into(), "x".into()), ("N".into(), "3".into())]
        );
        assert!(env_table("[p]", &table("[env]\nA = [1]\n")).is_err());
        assert!(env_table("[p]", &table("env = 1\n")).is_err());
    }

    #[test]
    fn quotes_are_one_line_and_bounded() {
        assert_eq!(quote("a\nb"), "«a b»");
        let long = "x".repeat(500);
        assert_eq!(quote(&long).chars().count(), QUOTE_CHARS + 3);
        assert!(secret_name("hcloud_token") && secret_name("API_KEY") && !secret_name("REGION"));
    }
}
