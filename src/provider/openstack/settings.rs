//! Where the OpenStack driver's credentials come from, as the `openstack` CLI finds them: a
//! `clouds.yaml` entry named by `OS_CLOUD` (or `cloud` in `[providers.openstack]`), overridden
//! field by field by the standard `OS_*` variables, then by `-u/-k`; anything still missing
//! from `[providers.openstack]`. Password or application-credential auth; the project by name
//! (with its domain) or by id; region and interface pick the catalog's endpoints.
//!
//! clouds.yaml is looked for where openstacksdk looks: `OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`,
//! `$XDG_CONFIG_HOME/openstack/clouds.yaml` (default `~/.config/openstack/clouds.yaml`),
//! `/etc/openstack/clouds.yaml`; the first file that names the cloud wins.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// How to authenticate. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Method {
    Password { username: String, password: String },
    AppCredential { id: String, secret: String },
}

/// Everything needed to get a token and pick endpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// Keystone v3 base, ending in `/v3`.
    pub auth_url: String,
    pub method: Method,
    pub user_domain: Domain,
    pub project: Option<Project>,
    pub region: Option<String>,
    /// `public` (default), `internal` or `admin`.
    pub interface: String,
    /// Where the credentials came from, for error lines.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    Name(String),
    Id(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Project {
    Id(String),
    Name { name: String, domain: Domain },
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Password { username, .. } => write!(f, "password of {username}"),
            Method::AppCredential { id, .. } => write!(f, "application credential {id}"),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("auth_url", &self.auth_url)
            .field("method", &self.method)
            .field("project", &self.project)
            .field("region", &self.region)
            .field("interface", &self.interface)
            .field("source", &self.source)
            .finish()
    }
}

impl Settings {
    /// The secret (password or application-credential secret), for redaction.
    pub fn secret(&self) -> &str {
        match &self.method {
            Method::Password { password, .. } => password,
            Method::AppCredential { secret, .. } => secret,
        }
    }
}

/// One cloud of a clouds.yaml.
#[derive(Debug, Default, Deserialize)]
struct CloudEntry {
    #[serde(default)]
    auth: BTreeMap<String, serde_yaml_ng::Value>,
    auth_type: Option<String>,
    region_name: Option<String>,
    interface: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: BTreeMap<String, CloudEntry>,
}

/// Where clouds.yaml may be, in the order openstacksdk reads them.
pub(super) fn clouds_yaml_paths(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(f) = env("OS_CLIENT_CONFIG_FILE") {
        v.push(PathBuf::from(f));
    }
    v.push(PathBuf::from("clouds.yaml"));
    let config = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
    if let Some(c) = config {
        v.push(c.join("openstack/clouds.yaml"));
    }
    v.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    v
}

/// The named cloud's settings as `OS_*`-style keys (`auth_url`, `username`, ...), and the
/// file it came from. Missing name → a config error listing the files and the clouds seen.
fn load_cloud(name: &str, paths: &[PathBuf]) -> Result<(BTreeMap<&'static str, String>, PathBuf)> {
    let mut seen = Vec::new();
    for p in paths {
        let Ok(text) = std::fs::read_to_string(p) else {
            continue;
        };
        let file: CloudsFile = serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::config(format!("{}: not a clouds.yaml: {e}", p.display())))?;
        seen.extend(file.clouds.keys().cloned());
        let Some(c) = file.clouds.get(name) else {
            continue;
        };
        let mut m = BTreeMap::new();
        for key in KEYS {
            if let Some(v) = c.auth.get(*key).and_then(yaml_scalar) {
                m.insert(*key, v);
            }
        }
        if let Some(r) = &c.region_name {
            m.insert("region_name", r.clone());
        }
        if let Some(i) = &c.interface {
            m.insert("interface", i.clone());
        }
        if let Some(t) = &c.auth_type {
            m.insert("auth_type", t.clone());
        }
        return Ok((m, p.clone()));
    }
    let looked: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    Err(Error::config(format!(
        "openstack: cloud '{name}' (OS_CLOUD) is in no clouds.yaml (looked in {}; clouds found: {})",
        looked.join(", "),
        if seen.is_empty() {
            "none".to_string()
        } else {
            seen.join(", ")
        }
    )))
}

fn yaml_scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The settings keys, as clouds.yaml's `auth` spells them; `OS_<KEY>` in the environment.
const KEYS: &[&str] = &[
    "auth_url",
    "username",
    "password",
    "project_name",
    "project_id",
    "user_domain_name",
    "user_domain_id",
    "project_domain_name",
    "project_domain_id",
    "application_credential_id",
    "application_credential_secret",
];

/// The settings from, highest first: `-u`/`-k`, `OS_*` variables, the `OS_CLOUD` entry of
/// clouds.yaml, `[providers.openstack]` keys of the same names (plus `region`, `interface`,
/// `cloud`). `-u` is the user name (or application-credential id), `-k` the password (or
/// secret).
pub fn resolve(
    table: &toml::Table,
    userid: Option<&str>,
    secret: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings> {
    let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let cfg = |k: &str| table.get(k).and_then(|v| v.as_str()).map(String::from);
    let cloud_name = env("OS_CLOUD").or_else(|| cfg("cloud"));
    let (cloud, cloud_file) = match &cloud_name {
        Some(n) => {
            let (m, p) = load_cloud(n, &clouds_yaml_paths(&env))?;
            (m, Some(p))
        }
        None => (BTreeMap::new(), None),
    };
    let mut sources: Vec<String> = Vec::new();
    let mut get = |key: &str, os: &str, cfg_key: &str| -> Option<String> {
        if let Some(v) = env(os) {
            sources.push(os.to_string());
            return Some(v);
        }
        if let Some(v) = cloud.get(key) {
            return Some(v.clone());
        }
        cfg(cfg_key)
    };
    let auth_url = get("auth_url", "OS_AUTH_URL", "auth_url");
    let mut username = get("username", "OS_USERNAME", "username");
    let mut password = get("password", "OS_PASSWORD", "password");
    let mut app_id = get(
        "application_credential_id",
        "OS_APPLICATION_CREDENTIAL_ID",
        "application_credential_id",
    );
    let mut app_secret = get(
        "application_credential_secret",
        "OS_APPLICATION_CREDENTIAL_SECRET",
        "application_credential_secret",
    );
    let project_name =
        get("project_name", "OS_PROJECT_NAME", "project_name").or_else(|| env("OS_TENANT_NAME"));
    let project_id =
        get("project_id", "OS_PROJECT_ID", "project_id").or_else(|| env("OS_TENANT_ID"));
    let user_domain_name = get(
        "user_domain_name",
        "OS_USER_DOMAIN_NAME",
        "user_domain_name",
    );
    let user_domain_id = get("user_domain_id", "OS_USER_DOMAIN_ID", "user_domain_id");
    let project_domain_name = get(
        "project_domain_name",
        "OS_PROJECT_DOMAIN_NAME",
        "project_domain_name",
    );
    let project_domain_id = get(
        "project_domain_id",
        "OS_PROJECT_DOMAIN_ID",
        "project_domain_id",
    );
    let region = get("region_name", "OS_REGION_NAME", "region");
    let interface = get("interface", "OS_INTERFACE", "interface");
    let auth_type = get("auth_type", "OS_AUTH_TYPE", "auth_type");
    let app = app_id.is_some() || auth_type.as_deref() == Some("v3applicationcredential");
    if app {
        if let Some(u) = userid {
            app_id = Some(u.to_string());
        }
        if let Some(k) = secret {
            app_secret = Some(k.to_string());
        }
    } else {
        if let Some(u) = userid {
            username = Some(u.to_string());
        }
        if let Some(k) = secret {
            password = Some(k.to_string());
        }
    }
    let source = match (&cloud_name, &cloud_file) {
        (Some(n), Some(f)) if sources.is_empty() => format!("cloud '{n}' of {}", f.display()),
        (Some(n), Some(f)) => format!("cloud '{n}' of {} with {}", f.display(), sources.join(", ")),
        _ if !sources.is_empty() => sources.join(", "),
        _ => "[providers.openstack]".to_string(),
    };
    let missing = |what: &str, var: &str| {
        Error::config(format!(
            "openstack: no {what}: set {var} (or OS_CLOUD with a clouds.yaml, or {} in [providers.openstack])",
            var.trim_start_matches("OS_").to_ascii_lowercase()
        ))
    };
    let auth_url = v3_url(&auth_url.ok_or_else(|| missing("Keystone URL", "OS_AUTH_URL"))?)?;
    let method = if app {
        Method::AppCredential {
            id: app_id.ok_or_else(|| {
                missing("application credential id", "OS_APPLICATION_CREDENTIAL_ID")
            })?,
            secret: app_secret.ok_or_else(|| {
                missing(
                    "application credential secret",
                    "OS_APPLICATION_CREDENTIAL_SECRET",
                )
            })?,
        }
    } else {
        Method::Password {
            username: username.ok_or_else(|| missing("user name", "OS_USERNAME"))?,
            password: password.ok_or_else(|| missing("password", "OS_PASSWORD"))?,
        }
    };
    let domain = |name: Option<String>, id: Option<String>| match (id, name) {
        (Some(id), _) => Domain::Id(id),
        (None, Some(n)) => Domain::Name(n),
        (None, None) => Domain::Id("default".into()),
    };
    let project = match (project_id, project_name) {
        (Some(id), _) => Some(Project::Id(id)),
        (None, Some(name)) => Some(Project::Name {
            name,
            domain: domain(project_domain_name, project_domain_id),
        }),
        (None, None) if app => None,
        (None, None) => return Err(missing("project", "OS_PROJECT_NAME or OS_PROJECT_ID")),
    };
    let interface = interface
        .unwrap_or_else(|| "public".into())
        .trim_end_matches("URL")
        .to_ascii_lowercase();
    if !["public", "internal", "admin"].contains(&interface.as_str()) {
        return Err(Error::config(format!(
            "openstack: interface '{interface}' (OS_INTERFACE): expected public, internal or admin"
        )));
    }
    Ok(Settings {
        auth_url,
        method,
        user_domain: domain(user_domain_name, user_domain_id),
        project,
        region,
        interface,
        source,
    })
}

/// The Keystone v3 base for an `OS_AUTH_URL` with or without its `/v3`.
fn v3_url(url: &str) -> Result<String> {
    let u = url.trim().trim_end_matches('/');
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(Error::config(format!(
            "openstack: auth URL '{u}' (OS_AUTH_URL) is not an http(s) URL"
        )));
    }
    Ok(if u.ends_with("/v3") {
        u.to_string()
    } else {
        format!("{u}/v3")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const RC: &[(&str, &str)] = &[
        ("OS_AUTH_URL", "http://127.0.0.1:5000"),
        ("OS_USERNAME", "alice"),
        ("OS_PASSWORD", "s3cret-password"),
        ("OS_PROJECT_NAME", "demo"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ("OS_REGION_NAME", "RegionTwo"),
        ("OS_INTERFACE", "internalURL"),
    ];

    #[test]
    fn an_openrc_file_is_enough() {
        let s = resolve(&toml::Table::new(), None, None, &env_of(RC)).unwrap();
        assert_eq!(s.auth_url, "http://127.0.0.1:5000/v3");
        assert_eq!(
            s.method,
            Method::Password {
                username: "alice".into(),
                password: "s3cret-password".into()
            }
        );
        assert_eq!(s.user_domain, Domain::Name("Default".into()));
        assert_eq!(
            s.project,
            Some(Project::Name {
                name: "demo".into(),
                domain: Domain::Name("Default".into())
            })
        );
        assert_eq!(s.region.as_deref(), Some("RegionTwo"));
        assert_eq!(s.interface, "internal");
        assert!(!format!("{s:?}").contains("s3cret"), "{s:?}");
        assert!(s.source.contains("OS_PASSWORD"), "{}", s.source);
    }

    #[test]
    fn flags_win_and_project_id_scopes() {
        let mut rc = RC.to_vec();
        rc.push(("OS_PROJECT_ID", "p-123"));
        let s = resolve(
            &toml::Table::new(),
            Some("bob"),
            Some("flag-pw"),
            &env_of(&rc),
        )
        .unwrap();
        assert_eq!(
            s.method,
            Method::Password {
                username: "bob".into(),
                password: "flag-pw".into()
            }
        );
        assert_eq!(s.project, Some(Project::Id("p-123".into())));
    }

    #[test]
    fn application_credentials_need_no_project() {
        let env = env_of(&[
            ("OS_AUTH_URL", "https://keystone.example/v3/"),
            ("OS_APPLICATION_CREDENTIAL_ID", "ac-1"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "ac-secret"),
        ]);
        let s = resolve(&toml::Table::new(), None, None, &env).unwrap();
        assert_eq!(s.auth_url, "https://keystone.example/v3");
        assert_eq!(
            s.method,
            Method::AppCredential {
                id: "ac-1".into(),
                secret: "ac-secret".into()
            }
        );
        assert_eq!(s.project, None);
    }

    #[test]
    fn missing_pieces_name_their_variable() {
        let e = resolve(&toml::Table::new(), None, None, &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("OS_AUTH_URL"), "{e}");
        let e = resolve(
            &toml::Table::new(),
            None,
            None,
            &env_of(&[("OS_AUTH_URL", "http://x/v3"), ("OS_USERNAME", "a")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("OS_PASSWORD"), "{e}");
        let e = resolve(
            &toml::Table::new(),
            None,
            None,
            &env_of(&[("OS_AUTH_URL", "keystone:5000")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an http(s) URL"), "{e}");
    }

    #[test]
    fn os_cloud_reads_clouds_yaml_and_env_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("xdg/openstack");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("clouds.yaml"),
            "clouds:\n  other:\n    auth: {auth_url: 'http://o'}\n  mycloud:\n    auth:\n      auth_url: http://127.0.0.1:5000/v3\n      username: carol\n      password: \"from-yaml\"\n      project_id: 4711\n      user_domain_name: Users\n    region_name: RegionOne\n    interface: public\n",
        )
        .unwrap();
        let xdg = dir.path().join("xdg").display().to_string();
        let env = env_of(&[
            ("OS_CLOUD", "mycloud"),
            ("XDG_CONFIG_HOME", &xdg),
            ("OS_REGION_NAME", "RegionTwo"),
        ]);
        let s = resolve(&toml::Table::new(), None, None, &env).unwrap();
        assert_eq!(
            s.method,
            Method::Password {
                username: "carol".into(),
                password: "from-yaml".into()
            }
        );
        assert_eq!(s.project, Some(Project::Id("4711".into())));
        assert_eq!(s.user_domain, Domain::Name("Users".into()));
        assert_eq!(s.region.as_deref(), Some("RegionTwo"));
        assert!(s.source.contains("cloud 'mycloud'"), "{}", s.source);
        assert!(s.source.contains("OS_REGION_NAME"), "{}", s.source);

        let env = env_of(&[("OS_CLOUD", "nope"), ("XDG_CONFIG_HOME", &xdg)]);
        let e = resolve(&toml::Table::new(), None, None, &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cloud 'nope'"), "{e}");
        assert!(e.contains("mycloud"), "{e}");
        assert!(e.contains("openstack/clouds.yaml"), "{e}");
    }
}
