//! What was last applied to a node, kept in its record ([`crate::known_nodes`]) so a
//! re-provision (`deploy-node --reprovision`) knows the node's bundles and variables, counts
//! its runs (`provision_run`), sends only the files that changed, and its dry run can show
//! what would change: a sha256 of each file (with its mode) and of each rendered script.
//!
//! No secret is kept: secret variables are recorded by name (and by their `env:`/`file:`
//! reference when given as one), and a script's hash is of its text as shown (secrets
//! redacted), so a hash never stands for a secret value.

use crate::plan::{Plan, PlannedFile, SecretRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The last provisioning of a node, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Applied {
    /// The bundles run, in order.
    pub bundles: Vec<String>,
    /// Every variable the scripts saw (built-ins included), secrets left out.
    pub vars: BTreeMap<String, String>,
    /// The `-t KEY=VALUE` given, in order: a re-provision applies them again before its own.
    #[serde(default)]
    pub subvars: Vec<String>,
    /// The secret variables, by name only.
    #[serde(default)]
    pub secrets: Vec<SecretRef>,
    /// Target path → what was written there.
    pub files: BTreeMap<String, FileHash>,
    /// Script name → sha256 of its rendered text (secrets redacted).
    pub scripts: BTreeMap<String, String>,
    /// 1 for the first deploy, then 2, 3... (`provision_run`).
    pub provision_run: u32,
    /// How that provisioning ended.
    pub last: LastResult,
}

/// A file as written: its content's sha256 and its mode (octal, as `ls` shows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileHash {
    pub sha256: String,
    pub mode: String,
}

/// How a provisioning ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LastResult {
    /// `ok` or `failed`.
    pub result: String,
    /// When it ended (RFC 3339, UTC).
    pub at: String,
    /// Why it failed (redacted), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn sha256(bytes: &[u8]) -> String {
    crate::file_content::sha256_hex(bytes)
}

/// How `f` is recorded.
pub fn file_hash(f: &PlannedFile) -> FileHash {
    FileHash {
        sha256: f.sha256.clone(),
        mode: format!("{:04o}", f.mode),
    }
}

impl Applied {
    /// What applying `plan` leaves on the node; `error` when it failed.
    pub fn of(plan: &Plan, error: Option<String>) -> Applied {
        let secret = |k: &str| plan.secrets.iter().any(|s| s.name == k);
        Applied {
            bundles: plan.bundles.iter().map(|b| b.name.clone()).collect(),
            vars: plan
                .vars
                .iter()
                .filter(|(k, _)| !secret(k))
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            subvars: plan
                .vars
                .iter()
                .filter(|(k, v)| v.layer == "-t" && !secret(k))
                .map(|(k, v)| format!("{k}={}", v.value))
                .collect(),
            secrets: plan.secrets.clone(),
            files: plan
                .files
                .iter()
                .map(|f| (f.target.clone(), file_hash(f)))
                .collect(),
            scripts: plan
                .scripts
                .iter()
                .map(|s| (s.name.clone(), sha256(s.rendered.as_bytes())))
                .collect(),
            provision_run: plan
                .vars
                .get("provision_run")
                .and_then(|v| v.value.parse().ok())
                .unwrap_or(1),
            last: LastResult {
                result: if error.is_some() { "failed" } else { "ok" }.into(),
                at: crate::now_rfc3339(),
                error: error.map(|e| crate::output::redact(&e)),
            },
        }
    }

    /// Whether `f` is on the node as the plan has it (same content and mode at that path).
    pub fn has_file(&self, f: &PlannedFile) -> bool {
        self.files.get(&f.target) == Some(&file_hash(f))
    }
}

/// How one file or script compares with what was last applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Changed,
    Removed,
    Unchanged,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Changed => "changed",
            Change::Removed => "removed",
            Change::Unchanged => "unchanged",
        }
    }
}

/// One line of a diff: a file's target path or a script's name, and its change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub name: String,
    pub change: Change,
}

/// What a re-provision would change on a node, against what was last applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub node: String,
    /// The run it is compared with.
    pub since_run: u32,
    pub files: Vec<Entry>,
    pub scripts: Vec<Entry>,
}

/// Compares `now` (name → hash) with `before`: every name of either, in name order.
fn compare<T: PartialEq>(before: &BTreeMap<String, T>, now: &BTreeMap<String, T>) -> Vec<Entry> {
    let mut names: Vec<&String> = before.keys().chain(now.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| Entry {
            name: n.clone(),
            change: match (before.get(n), now.get(n)) {
                (None, _) => Change::Added,
                (Some(_), None) => Change::Removed,
                (Some(a), Some(b)) if a == b => Change::Unchanged,
                _ => Change::Changed,
            },
        })
        .collect()
}

/// The diff between what was last applied and what `plan` would apply.
pub fn diff(before: &Applied, plan: &Plan) -> Diff {
    let now = Applied::of(plan, None);
    Diff {
        node: plan.node_name.clone(),
        since_run: before.provision_run,
        files: compare(&before.files, &now.files),
        scripts: compare(&before.scripts, &now.scripts),
    }
}

impl Diff {
    /// For people: one line per file and script.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{}: against what was last applied (provision_run {}):\n",
            self.node, self.since_run
        );
        for (kind, entries) in [("file", &self.files), ("script", &self.scripts)] {
            for e in entries {
                let _ = writeln!(s, "  {kind:<7}{:<10} {}", e.change.word(), e.name);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn compare_names_every_change() {
        let before = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let now = map(&[("a", "1"), ("b", "9"), ("d", "4")]);
        let got: Vec<(String, Change)> = compare(&before, &now)
            .into_iter()
            .map(|e| (e.name, e.change))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), Change::Unchanged),
                ("b".to_string(), Change::Changed),
                ("c".to_string(), Change::Removed),
                ("d".to_string(), Change::Added),
            ]
        );
    }

    #[test]
    fn sha256_is_the_known_digest() {
        assert_eq!(
            sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
