//! User variables beyond `[vars]` and `-t`: overrides from the environment
//! (`PROVISION_VAR_<NAME>`), references between values (`{{ name }}`), and required variables
//! declared by a layer. Kept apart from the plan so the rules (precedence, cycles, what is
//! missing) live in one place and the plan only calls them in order.

use crate::config::Sourced;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The prefix of an environment variable that sets a template variable.
pub const ENV_PREFIX: &str = "PROVISION_VAR_";

/// The `PROVISION_VAR_*` variables of `env` as (environment name, value), sorted by name.
pub fn env_overrides(env: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env
        .filter(|(k, _)| k.len() > ENV_PREFIX.len() && k.starts_with(ENV_PREFIX))
        .collect();
    out.sort();
    out
}

/// The variable an environment name sets: the known name (from a layer or a required
/// declaration) whose upper case matches, else the suffix lower-cased.
pub fn env_target<'a>(env_name: &str, known: impl Iterator<Item = &'a String>) -> String {
    let suffix = &env_name[ENV_PREFIX.len()..];
    let mut known = known;
    known
        .find(|k| k.to_ascii_uppercase() == suffix)
        .cloned()
        .unwrap_or_else(|| suffix.to_ascii_lowercase())
}

fn reference_re() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}").expect("valid regex")
    })
}

/// Replaces every `{{ name }}` in every value by that variable's resolved value, whatever
/// layer, `-t` or environment variable set either. A reference to an unknown name or a cycle
/// is a config error naming the chain (`a -> b -> a`).
pub fn resolve_references(vars: &mut BTreeMap<String, Sourced<String>>) -> Result<()> {
    let mut done: BTreeMap<String, String> = BTreeMap::new();
    let names: Vec<String> = vars.keys().cloned().collect();
    for name in &names {
        let mut chain = Vec::new();
        resolve_one(name, vars, &mut done, &mut chain)?;
    }
    for (k, v) in done {
        if let Some(s) = vars.get_mut(&k) {
            s.value = v;
        }
    }
    Ok(())
}

fn resolve_one(
    name: &str,
    vars: &BTreeMap<String, Sourced<String>>,
    done: &mut BTreeMap<String, String>,
    chain: &mut Vec<String>,
) -> Result<String> {
    if let Some(v) = done.get(name) {
        return Ok(v.clone());
    }
    if chain.iter().any(|c| c == name) {
        chain.push(name.to_string());
        let from = chain.iter().position(|c| c == name).unwrap_or(0);
        let first = &chain[from];
        let layer = vars.get(first).map(|v| v.layer.as_str()).unwrap_or("");
        return Err(Error::config(format!(
            "{layer}: variable '{first}' refers to itself: {}",
            chain[from..].join(" -> ")
        )));
    }
    let Some(var) = vars.get(name) else {
        let from = chain.last().cloned().unwrap_or_default();
        let layer = vars.get(&from).map(|v| v.layer.as_str()).unwrap_or("");
        chain.push(name.to_string());
        return Err(Error::config(format!(
            "{layer}: variable '{from}' refers to unknown variable '{name}' ({})",
            chain.join(" -> ")
        )));
    };
    chain.push(name.to_string());
    let text = var.value.clone();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in reference_re().captures_iter(&text) {
        let whole = caps.get(0).expect("match");
        out.push_str(&text[last..whole.start()]);
        out.push_str(&resolve_one(&caps[1], vars, done, chain)?);
        last = whole.end();
    }
    out.push_str(&text[last..]);
    chain.pop();
    done.insert(name.to_string(), out.clone());
    Ok(out)
}

/// Every required variable (name → description and declaring layer) that `vars` lacks, as
/// one error listing them all with how to set them; `Ok` when none is missing.
pub fn check_required(
    required: &BTreeMap<String, Sourced<String>>,
    vars: &BTreeMap<String, Sourced<String>>,
) -> Result<()> {
    let missing: Vec<String> = required
        .iter()
        .filter(|(k, _)| !vars.contains_key(*k))
        .map(|(k, d)| {
            format!(
                "  {k}: {} (required by {}; set it with -t {k}=... or {ENV_PREFIX}{})",
                d.value,
                d.layer,
                k.to_ascii_uppercase()
            )
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::config(format!(
        "missing required variable{}:\n{}",
        if missing.len() == 1 { "" } else { "s" },
        missing.join("\n")
    )))
}

/// A secret's value from its raw form: `env:NAME` (that environment variable, which must be
/// set), `file:PATH` (the file's content without its trailing newline; `~/` is the home
/// directory), or the value itself.
pub fn secret_value(name: &str, raw: &Sourced<String>) -> Result<String> {
    if let Some(var) = raw.value.strip_prefix("env:") {
        return std::env::var(var).map_err(|_| {
            Error::config(format!(
                "{}: secret '{name}': environment variable {var} is not set",
                raw.layer
            ))
        });
    }
    if let Some(path) = raw.value.strip_prefix("file:") {
        let path = match path.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(rest))
                .unwrap_or_else(|| path.into()),
            None => path.into(),
        };
        return std::fs::read_to_string(&path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| {
                Error::config(format!(
                    "{}: secret '{name}': cannot read {}: {e}",
                    raw.layer,
                    path.display()
                ))
            });
    }
    Ok(raw.value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, Sourced<String>> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Sourced {
                        value: v.to_string(),
                        layer: "L".into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn references_resolve_transitively() {
        let mut v = vars(&[
            ("url", "https://{{ host }}:{{port}}/"),
            ("host", "{{ name }}.example"),
            ("name", "db"),
            ("port", "5432"),
        ]);
        resolve_references(&mut v).unwrap();
        assert_eq!(v["url"].value, "https://db.example:5432/");
    }

    #[test]
    fn cycles_and_unknown_names_the_chain() {
        let mut v = vars(&[("a", "{{ b }}"), ("b", "x{{a}}")]);
        let e = resolve_references(&mut v).unwrap_err().to_string();
        assert!(e.contains("a -> b -> a"), "{e}");
        let mut v = vars(&[("a", "{{ b }}"), ("b", "{{ nope }}")]);
        let e = resolve_references(&mut v).unwrap_err().to_string();
        assert!(e.contains("a -> b -> nope"), "{e}");
    }

    #[test]
    fn env_names_match_known_variables() {
        let known = ["dbHost".to_string()];
        assert_eq!(env_target("PROVISION_VAR_DBHOST", known.iter()), "dbHost");
        assert_eq!(env_target("PROVISION_VAR_RELEASE", known.iter()), "release");
    }
}
