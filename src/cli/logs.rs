//! `deploy-node --log-dir DIR`: the whole output of every script, per node and script, as
//! `DIR/NODE/NN-script.out` and `.err` (NN-script is the script's name on the node), so
//! nothing is lost to the JUnit report's 64 KiB tail or to the interleaved live stream. The
//! `-d` description and `--json` name each script's files; JUnit points at them.

use crate::deploy::Outcome;
use crate::error::Result;
use crate::plan::Plan;
use crate::ssh::StepKind;
use std::path::{Path, PathBuf};

/// The log files of one script that ran: (script name as planned, stdout file, stderr file).
#[derive(Debug, Clone)]
pub(super) struct ScriptLog {
    pub script: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// Writes the logs of every script of `outcome` that ran (skipped ones have none).
pub(super) fn write(dir: &Path, plan: &Plan, outcome: &Outcome) -> Result<Vec<ScriptLog>> {
    let Some(report) = &outcome.report else {
        return Ok(Vec::new());
    };
    let node_dir = dir.join(&outcome.name);
    let scripts = report.steps.iter().filter(|s| s.kind == StepKind::Script);
    let mut out = Vec::new();
    for (step, planned) in scripts.zip(&plan.scripts) {
        if step.skipped {
            continue;
        }
        let base = node_dir.join(&planned.remote_name);
        let log = ScriptLog {
            script: step.name.clone(),
            stdout: base.with_extension(ext(&base, "out")),
            stderr: base.with_extension(ext(&base, "err")),
        };
        crate::state::write_atomic(
            &log.stdout,
            crate::output::redact(&step.stdout).as_bytes(),
            0o600,
        )?;
        crate::state::write_atomic(
            &log.stderr,
            crate::output::redact(&step.stderr).as_bytes(),
            0o600,
        )?;
        out.push(log);
    }
    Ok(out)
}

/// `01-setup.sh` → `01-setup.sh.out`: the script's own extension stays.
fn ext(base: &Path, suffix: &str) -> String {
    match base.extension() {
        Some(e) => format!("{}.{suffix}", e.to_string_lossy()),
        None => suffix.to_string(),
    }
}

/// Adds `stdout_log`/`stderr_log` to each script entry of a node description.
pub(super) fn annotate(desc: &mut serde_json::Value, logs: &[ScriptLog]) {
    let Some(scripts) = desc.get_mut("scripts").and_then(|s| s.as_array_mut()) else {
        return;
    };
    let mut unused: Vec<&ScriptLog> = logs.iter().collect();
    for entry in scripts {
        let name = entry.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let Some(pos) = unused.iter().position(|l| l.script == name) else {
            continue;
        };
        let log = unused.remove(pos);
        entry["stdout_log"] = log.stdout.display().to_string().into();
        entry["stderr_log"] = log.stderr.display().to_string().into();
    }
}
