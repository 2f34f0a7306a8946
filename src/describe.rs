//! The JSON description of deployed nodes (`-d FILE`, `--json`): what a deploy's outcome says
//! about its node, in the original's fields. It lives above `deploy` (it reads an `Outcome`),
//! so `output` below stays free of deploy's types.

use crate::deploy::Outcome;
use crate::ssh::StepKind;

/// The description of a deployed node: the original's fields (id, name, state, public_ip,
/// private_ip, image_id, image_name) plus each script's name, exit status and duration, and
/// how long each phase took (`phases`, [`crate::phases`]).
pub(crate) fn description(outcome: &Outcome) -> serde_json::Value {
    let node = outcome.node.as_ref();
    let scripts: Vec<serde_json::Value> = outcome
        .report
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter(|s| matches!(s.kind, StepKind::Script))
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "status": s.status,
                "duration": s.duration.as_secs_f64(),
            })
        })
        .collect();
    serde_json::json!({
        "id": node.map(|n| n.id.clone()),
        "name": outcome.name,
        "state": node.map(|n| n.state.to_string()),
        "public_ip": node.and_then(|n| n.public_ip.clone()),
        "private_ip": node.and_then(|n| n.private_ip.clone()),
        "image_id": node.and_then(|n| n.image.clone()),
        "image_name": node.and_then(|n| n.image.clone()),
        "size": node.and_then(|n| n.size.clone()),
        "location": node.and_then(|n| n.location.clone()),
        "ssh_port": node.and_then(|n| n.ssh.port),
        "kept": outcome.kept,
        "error": outcome.error.as_ref().map(|e| e.to_string()),
        "scripts": scripts,
        "phases": outcome.phases.to_json(),
        "duration": outcome.duration.as_secs_f64(),
    })
}
