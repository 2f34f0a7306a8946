//! The `-d FILE` description of deployed nodes: the original's keys with the original's types
//! (`public_ip`/`private_ip` lists, libcloud's integer `state`, `image_id`/`image_name`), so
//! consumers doing `d["public_ip"][0]` or `d["state"] == 0` keep working, plus today's additions
//! under keys the original did not have, and a `format` number so it can evolve. One node: an
//! object; `--count N`: an array of them.

use crate::deploy::Outcome;
use crate::plan::Plan;
use crate::provider::NodeState;
use serde_json::{json, Value};

/// The version of this layout; the original's had none (read it as 1).
pub const FORMAT: u32 = 2;

/// libcloud's `NodeState` integers, which the original wrote (0 = running).
pub fn libcloud_state(state: NodeState) -> i64 {
    match state {
        NodeState::Running => 0,
        NodeState::Terminated => 2,
        NodeState::Pending => 3,
        NodeState::Unknown => 4,
        NodeState::Stopped => 5,
        NodeState::Error => 7,
    }
}

/// One node's description; `plan` gives the image name that was asked for.
pub fn describe(outcome: &Outcome, plan: Option<&Plan>) -> Value {
    let node = outcome.node.as_ref();
    let ips = |ip: Option<&String>| -> Vec<String> { ip.into_iter().cloned().collect() };
    let image_id = node.and_then(|n| n.image.clone());
    let image_name = plan
        .and_then(|p| p.image.as_ref())
        .map(|s| s.value.clone())
        .or_else(|| image_id.clone());
    let scripts: Vec<Value> = outcome
        .report
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter(|s| matches!(s.kind, crate::ssh::StepKind::Script))
        .map(|s| json!({"name": s.name, "status": s.status, "duration": s.duration.as_secs_f64()}))
        .collect();
    json!({
        "format": FORMAT,
        "id": node.map(|n| n.id.clone()),
        "name": outcome.name,
        "state": node.map(|n| libcloud_state(n.state)),
        "public_ip": ips(node.and_then(|n| n.public_ip.as_ref())),
        "private_ip": ips(node.and_then(|n| n.private_ip.as_ref())),
        "image_id": image_id,
        "image_name": image_name,
        "state_name": node.map(|n| n.state.to_string()),
        "provider": plan.map(|p| p.provider.value.clone()),
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

/// The file's content for every outcome that has a node (`None` when none has one): one
/// object, or an array when `many`.
pub fn document(outcomes: &[Outcome], plans: &[Plan], many: bool) -> Option<String> {
    let descs: Vec<Value> = outcomes
        .iter()
        .filter(|o| o.node.is_some())
        .map(|o| describe(o, plans.iter().find(|p| p.node_name == o.name)))
        .collect();
    render(descs, many)
}

/// The file's text for these descriptions: an array when `many`, else the one object;
/// `None` when no node was made.
pub fn render(descs: Vec<Value>, many: bool) -> Option<String> {
    let value = match (many, descs.len()) {
        (_, 0) => return None,
        (true, _) => Value::Array(descs),
        (false, _) => descs.into_iter().next().expect("one"),
    };
    Some(serde_json::to_string_pretty(&value).expect("serializable") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_libclouds_integers() {
        assert_eq!(libcloud_state(NodeState::Running), 0);
        assert_eq!(libcloud_state(NodeState::Pending), 3);
        assert_eq!(libcloud_state(NodeState::Terminated), 2);
        assert_eq!(libcloud_state(NodeState::Unknown), 4);
    }
}
