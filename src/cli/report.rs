//! What deploy-node reports after its nodes ran: the `-d` description file, the JUnit report,
//! stdout (node lines or the versioned `--json` document), the names of every node that stays,
//! and the one exit code folded from all of it. A report that cannot be written never hides a
//! node: the message names every node that exists and says whether it was kept.

use super::logs::{self, ScriptLog};
use super::options::DeployOptions;
use crate::deploy::{self, Outcome};
use crate::error::{Error, Result};
use crate::output;

/// The version of deploy-node's `--json` document, `{"format": 1, "nodes": [...]}`. Raised
/// only when a field changes meaning or goes away; new fields may appear in any version.
pub const JSON_FORMAT: u32 = 1;

/// `--json`: one object for one node or many, listing every node of the run (with its error
/// and whether it was kept), so a script reads the same shape whatever happened.
pub fn json_document(descs: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({ "format": JSON_FORMAT, "nodes": descs })
}

/// Each node's description, with its script logs named when there are any.
fn descriptions(outcomes: &[Outcome], logs: &[Vec<ScriptLog>]) -> Vec<serde_json::Value> {
    outcomes
        .iter()
        .zip(logs)
        .map(|(o, l)| {
            let mut d = crate::describe::description(o);
            logs::annotate(&mut d, l);
            d
        })
        .collect()
}

/// The nodes that exist after the run: (name, kept after a failure).
fn staying(outcomes: &[Outcome]) -> Vec<(&str, bool)> {
    outcomes
        .iter()
        .filter(|o| o.node.is_some() && (o.error.is_none() || o.kept))
        .map(|o| (o.name.as_str(), o.kept))
        .collect()
}

/// Writes every report, names what stays, and returns the run's result (the worst error).
pub(super) fn finish(opts: &DeployOptions, outcomes: Vec<Outcome>) -> Result<()> {
    let mut errors: Vec<Error> = Vec::new();
    let logs: Vec<Vec<ScriptLog>> = match &opts.outputs.log_dir {
        None => outcomes.iter().map(|_| Vec::new()).collect(),
        Some(dir) => opts
            .plans
            .iter()
            .zip(&outcomes)
            .map(|(p, o)| {
                logs::write(dir, p, o).unwrap_or_else(|e| {
                    errors.push(e);
                    Vec::new()
                })
            })
            .collect(),
    };
    let descs = descriptions(&outcomes, &logs);
    if let Some(path) = &opts.outputs.description {
        // the -d file: the original's shape (format 2, src/description.rs), naming the logs
        let existing: Vec<serde_json::Value> = outcomes
            .iter()
            .zip(&logs)
            .filter(|(o, _)| o.node.is_some())
            .map(|(o, l)| {
                let plan = opts.plans.iter().find(|p| p.node_name == o.name);
                let mut d = crate::description::describe(o, plan);
                logs::annotate(&mut d, l);
                d
            })
            .collect();
        if let Some(text) = crate::description::render(existing, opts.many()) {
            let text = output::redact(&text);
            if let Err(e) = crate::state::write_atomic(path, text.as_bytes(), 0o644) {
                errors.push(e);
            }
        }
    }
    if let Some(path) = &opts.outputs.junit {
        let mut nodes: Vec<_> = outcomes.iter().map(deploy::junit_result).collect();
        for (node, logs) in nodes.iter_mut().zip(&logs) {
            for step in &mut node.steps {
                if let Some(l) = logs.iter().find(|l| l.script == step.name) {
                    step.log = Some((l.stdout.clone(), l.stderr.clone()));
                }
            }
        }
        let xml = output::redact(&crate::junit::report::to_xml(&nodes));
        if let Err(e) = crate::state::write_atomic(path, xml.as_bytes(), 0o644) {
            errors.push(e);
        }
    }
    if let Err(e) = print_stdout(opts, &outcomes, descs) {
        errors.push(e);
    }
    let stays = staying(&outcomes);
    for e in &errors {
        output::warn(&format!("{e}; {}", what_stays(&stays, &opts.provider)));
    }
    let kept: Vec<&str> = stays.iter().filter(|(_, k)| *k).map(|(n, _)| *n).collect();
    if opts.many() && !kept.is_empty() {
        output::warn(&format!(
            "kept after a failure: {} (destroy them with `destroy-node -p {} {}`)",
            kept.join(", "),
            opts.provider,
            kept.join(" ")
        ));
    }
    outcomes
        .into_iter()
        .filter_map(|o| o.error)
        .chain(errors)
        .max_by_key(Error::code)
        .map_or(Ok(()), Err)
}

/// "nodes that exist: a (kept), b (deployed)" for a message about a report not written.
fn what_stays(stays: &[(&str, bool)], provider: &str) -> String {
    if stays.is_empty() {
        return "no node exists from this run".into();
    }
    let list: Vec<String> = stays
        .iter()
        .map(|(n, kept)| format!("{n} ({})", if *kept { "kept" } else { "deployed" }))
        .collect();
    let names: Vec<&str> = stays.iter().map(|(n, _)| *n).collect();
    format!(
        "these nodes exist: {} (destroy with `destroy-node -p {provider} {}`)",
        list.join(", "),
        names.join(" ")
    )
}

/// stdout: the `--json` document, or `NAME PUBLIC_IP` per node that is ready.
fn print_stdout(
    opts: &DeployOptions,
    outcomes: &[Outcome],
    descs: Vec<serde_json::Value>,
) -> Result<()> {
    if opts.json {
        return output::print_json(&json_document(descs));
    }
    let mut text = String::new();
    for o in outcomes.iter().filter(|o| o.error.is_none()) {
        let ip = o
            .node
            .as_ref()
            .and_then(|n| n.public_ip.as_deref())
            .unwrap_or("");
        text.push_str(&format!("{} {ip}\n", o.name));
    }
    crate::exit::print_stdout(&text)
}
