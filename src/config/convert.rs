//! `deploy-node --convert-config DIR`: the original's `DIR/__init__.py`, read statically, printed
//! as the equivalent `provision.toml`, so a team can move at its own pace. Secrets are not
//! copied (a comment says where to put them); every value says the line it came from.

use super::pyinit;
use super::schema::{FilesDef, LayerConfig};
use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Reads `dir/__init__.py` and returns the provision.toml text.
pub fn convert_dir(dir: &Path) -> Result<String> {
    let py = dir.join("__init__.py");
    let display = py.display().to_string();
    let text = std::fs::read_to_string(&py)
        .map_err(|e| Error::config(format!("--convert-config: {display}: {e}")))?;
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let lc = pyinit::parse(&abs, &display, &text)?;
    Ok(to_toml(&lc, &display))
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_string()
    } else {
        q(k)
    }
}

fn list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// The TOML for one layer's settings; `source` names the file in the header.
pub fn to_toml(lc: &LayerConfig, source: &str) -> String {
    let mut s = String::new();
    let from = |k: &str| {
        lc.origins
            .get(k)
            .and_then(|o| o.rsplit_once(':'))
            .map(|(_, line)| format!("  # __init__.py:{line}"))
            .unwrap_or_default()
    };
    let _ = writeln!(s, "# provision.toml converted from {source}");
    let _ = writeln!(
        s,
        "# (deploy-node --convert-config). Save it beside __init__.py, which is then not read."
    );
    for w in &lc.warnings {
        let _ = writeln!(s, "# note: {w}");
    }
    for k in &lc.replaces {
        let _ = writeln!(
            s,
            "# note: __init__.py assigned {k} (replacing lower layers' list); here lists extend"
        );
    }
    s.push('\n');
    let scalars = [
        ("provider", &lc.provider),
        ("image", &lc.image),
        ("size", &lc.size),
        ("location", &lc.location),
        ("name_prefix", &lc.name_prefix),
        ("ssh_user", &lc.ssh_user),
    ];
    for (k, v) in scalars {
        let Some(v) = v else { continue };
        if k == "provider" {
            let check = super::original::check_provider(&super::Sourced {
                value: v.clone(),
                layer: source.to_string(),
            });
            if let Err(e) = check {
                let _ = writeln!(s, "# provider = {}{}", q(v), from(k));
                let _ = writeln!(s, "# ^ {e}");
                continue;
            }
        }
        let _ = writeln!(s, "{k} = {}{}", q(v), from(k));
    }
    let lists = [
        ("default_bundles", &lc.default_bundles),
        ("bootstrap_bundles", &lc.bootstrap_bundles),
        ("bootstrapped_images", &lc.bootstrapped_images),
        ("destroyable_prefixes", &lc.destroyable_prefixes),
        ("pubkeys", &lc.pubkeys),
    ];
    for (k, v) in lists {
        if !v.is_empty() {
            let _ = writeln!(s, "{k} = {}", list(v));
        }
    }
    if !lc.vars.is_empty() {
        let _ = writeln!(s, "\n[vars]");
        for (k, v) in &lc.vars {
            let _ = writeln!(s, "{} = {}{}", key(k), v, from(&format!("vars.{k}")));
        }
    }
    for (name, def) in &lc.bundles {
        let _ = writeln!(
            s,
            "\n[bundles.{}]{}",
            key(name),
            from(&format!("bundles.{name}"))
        );
        if let Some(d) = &def.description {
            let _ = writeln!(s, "description = {}", q(d));
        }
        let _ = writeln!(s, "scripts = {}", list(&def.scripts));
        match &def.files {
            FilesDef::List(l) if l.is_empty() => {}
            FilesDef::List(l) => {
                let _ = writeln!(s, "files = {}", list(l));
            }
            FilesDef::Map(m) => {
                let inner: Vec<String> = m
                    .iter()
                    .map(|(t, src)| format!("{} = {}", q(t), q(src)))
                    .collect();
                let _ = writeln!(s, "files = {{ {} }}", inner.join(", "));
            }
        }
    }
    for (name, table) in &lc.providers {
        let _ = writeln!(s, "\n[providers.{}]", key(name));
        for (k, v) in table {
            if k == "token" {
                let _ = writeln!(
                    s,
                    "# token: DEFAULT_SECRET_KEY is not copied here; pass -k, set the provider's \
                     environment variable, or add token = \"...\""
                );
            } else {
                let _ = writeln!(s, "{} = {v}", key(k));
            }
        }
    }
    s
}
