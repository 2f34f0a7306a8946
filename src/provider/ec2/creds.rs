//! AWS credentials and region the way the AWS CLI finds them: `-u/-k`, then
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), then the profile
//! (`AWS_PROFILE`, config `profile`, else `default`) in `~/.aws/credentials` and
//! `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`). The region: `-l`
//! (at prepare), `AWS_REGION`, `AWS_DEFAULT_REGION`, config `region`, the profile's `region`.

use crate::error::{Error, Result};
use ini::Ini;
use std::path::PathBuf;

/// Keys and where they came from (named in errors; the secret never shown).
#[derive(Clone)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub source: String,
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AwsKeys({} from {}, <redacted>)",
            self.access_key_id, self.source
        )
    }
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn home_file(var: &str, name: &str) -> Option<PathBuf> {
    env(var)
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".aws").join(name)))
}

/// The profile's section of an INI file (`[NAME]` in credentials, `[profile NAME]` or
/// `[default]` in config).
fn profile_value(file: &Option<PathBuf>, section: &str, key: &str) -> Result<Option<String>> {
    let Some(path) = file else { return Ok(None) };
    if !path.exists() {
        return Ok(None);
    }
    let ini = Ini::load_from_file(path)
        .map_err(|e| Error::config(format!("ec2: cannot read {}: {e}", path.display())))?;
    Ok(ini
        .section(Some(section))
        .and_then(|sec| sec.get(key))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty()))
}

/// Where a profile's settings live.
pub struct Profile {
    pub name: String,
    named: bool,
    credentials: Option<PathBuf>,
    config: Option<PathBuf>,
}

impl Profile {
    /// `AWS_PROFILE`, else config `profile`, else `default`.
    pub fn find(table: &toml::Table) -> Profile {
        let from_table = table
            .get("profile")
            .and_then(|v| v.as_str())
            .map(String::from);
        let named = env("AWS_PROFILE").or(from_table);
        Profile {
            name: named.clone().unwrap_or_else(|| "default".into()),
            named: named.is_some(),
            credentials: home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            config: home_file("AWS_CONFIG_FILE", "config"),
        }
    }

    fn get(&self, key: &str) -> Result<Option<String>> {
        let cfg_section = if self.name == "default" {
            "default".to_string()
        } else {
            format!("profile {}", self.name)
        };
        match profile_value(&self.credentials, &self.name, key)? {
            Some(v) => Ok(Some(v)),
            None => profile_value(&self.config, &cfg_section, key),
        }
    }

    /// The region of the environment, config table or profile.
    pub fn region(&self, table: &toml::Table) -> Result<Option<String>> {
        if let Some(r) = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) {
            return Ok(Some(r));
        }
        if let Some(r) = table.get("region").and_then(|v| v.as_str()) {
            return Ok(Some(r.to_string()));
        }
        self.get("region")
    }

    /// The keys: flags, environment, then this profile.
    pub fn keys(&self, userid: Option<&str>, secret: Option<&str>) -> Result<AwsKeys> {
        let some = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(String::from);
        match (some(userid), some(secret)) {
            (Some(id), Some(sk)) => {
                return Ok(AwsKeys {
                    access_key_id: id,
                    secret_access_key: sk,
                    session_token: None,
                    source: "flags -u/-k".into(),
                })
            }
            (None, None) => {}
            _ => {
                return Err(Error::usage(
                    "ec2: -u (access key id) and -k (secret access key) go together",
                ))
            }
        }
        if !self.named {
            if let (Some(id), Some(sk)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                return Ok(AwsKeys {
                    access_key_id: id,
                    secret_access_key: sk,
                    session_token: env("AWS_SESSION_TOKEN"),
                    source: "environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".into(),
                });
            }
        }
        if let (Some(id), Some(sk)) = (
            self.get("aws_access_key_id")?,
            self.get("aws_secret_access_key")?,
        ) {
            return Ok(AwsKeys {
                access_key_id: id,
                secret_access_key: sk,
                session_token: self.get("aws_session_token")?,
                source: format!("profile '{}' of ~/.aws", self.name),
            });
        }
        Err(Error::config(format!(
            "ec2: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE \
             with keys in ~/.aws/credentials (profile '{}' has none), or pass -u/-k",
            self.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_sections_of_both_files() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("credentials");
        let f = d.path().join("config");
        std::fs::write(&c, "[default]\naws_access_key_id = AKD\naws_secret_access_key = SD\n[ci]\naws_access_key_id = AKCI\naws_secret_access_key = SCI\n").unwrap();
        std::fs::write(
            &f,
            "[default]\nregion = eu-west-1\n[profile ci]\nregion = us-east-2\n",
        )
        .unwrap();
        let p = |name: &str| Profile {
            name: name.into(),
            named: true,
            credentials: Some(c.clone()),
            config: Some(f.clone()),
        };
        let k = p("ci").keys(None, None).unwrap();
        assert_eq!(k.access_key_id, "AKCI");
        assert!(!format!("{k:?}").contains("SCI"));
        assert_eq!(p("ci").get("region").unwrap().as_deref(), Some("us-east-2"));
        assert_eq!(
            p("default").get("region").unwrap().as_deref(),
            Some("eu-west-1")
        );
        let e = p("nope").keys(None, None).unwrap_err().to_string();
        assert!(e.contains("profile 'nope'"), "{e}");
        assert!(p("ci").keys(Some("A"), None).is_err());
    }
}
