//! Expiry and ownership records, kept on the node itself (its tags/labels/metadata) so that
//! any runner — or one scheduled reaper job — sees who made a node, for which CI job, and when
//! it may be destroyed, with no local journal shared. Values are plain strings here; each
//! driver encodes them to its provider's rules ([`crate::provider::tags`]).
//!
//! Deploys that never completed: where the provider can update tags, a node carries
//! `provision-state=deploying` from its create until the deploy marks it `ready` or `failed`.
//! A node of ours still `deploying` (or still pending at the provider) [`STUCK_AFTER`] after
//! its create was left by a runner that died mid-deploy: `--expired` reaps it too, whatever
//! its expiry says (a deploy that was alive would have finished or destroyed it by then).
//!
//! Clock skew: `provision-expires-at` is absolute (Unix seconds, from the deploying runner's
//! clock). A reaper treats a node as expired only when its own clock is past that time by
//! [`SKEW_MARGIN`], so a runner a few minutes ahead never reaps a node early.

use crate::provider::{Node, NodeState, DEPLOYING, DEPLOY_READY, TAG_CREATED};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When the node may be reaped: Unix seconds.
pub const TAG_EXPIRES: &str = "provision-expires-at";
/// Who deployed it: `user@host`.
pub const TAG_OWNER: &str = "provision-owner";
/// The CI system (`github`, `gitlab`, `jenkins`, `buildkite`, `circleci`).
pub const TAG_CI: &str = "ci";
/// The CI job's id: `destroy-node --label ci_job=ID` reaps every node of that job.
pub const TAG_CI_JOB: &str = "ci_job";
/// The CI project (repository path, pipeline slug or job URL).
pub const TAG_CI_PROJECT: &str = "ci_project";
/// The TTL when `CI=true` and neither `--ttl` nor `ttl` is given.
pub const CI_DEFAULT_TTL: Duration = Duration::from_secs(4 * 3600);
/// How long after its create a node still `deploying` (or pending) counts as abandoned.
pub const STUCK_AFTER: Duration = Duration::from_secs(4 * 3600);
/// How far past `expires-at` a node must be before it counts as expired (clock skew).
pub const SKEW_MARGIN: Duration = Duration::from_secs(5 * 60);

/// `--ttl`: `None` inside is an explicit "never" (a flag value clap keeps apart from "unset").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(pub Option<Duration>);

impl Ttl {
    /// clap's parser for `--ttl`.
    pub fn parse(s: &str) -> std::result::Result<Ttl, String> {
        parse_ttl(s).map(Ttl)
    }
}

/// Parses `--ttl`/`ttl`: a duration (`90m`, `4h`), or `0`/`never` for no expiry (`None`).
pub fn parse_ttl(s: &str) -> std::result::Result<Option<Duration>, String> {
    match s.trim() {
        "0" | "never" => Ok(None),
        d => crate::cli::parse_duration(d)
            .map(|d| (!d.is_zero()).then_some(d))
            .map_err(|e| format!("ttl '{s}': {e} (or 0/never for no expiry)")),
    }
}

/// The TTL in effect: the flag, else config's `ttl`, else 4h in CI (`CI=true`), else none.
pub fn effective_ttl(
    flag: Option<Option<Duration>>,
    config: Option<Option<Duration>>,
) -> Option<Duration> {
    flag.or(config)
        .unwrap_or_else(|| in_ci().then_some(CI_DEFAULT_TTL))
}

/// Whether this runs in a CI job (`CI=true`, as every major CI sets it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// `(ci, job, project)` from the CI's own variables, when there is one.
pub fn ci_identity() -> Option<(&'static str, String, Option<String>)> {
    if let Some(run) = env("GITHUB_RUN_ID") {
        let job = match env("GITHUB_JOB") {
            Some(j) => format!("{run}-{j}"),
            None => run,
        };
        return Some(("github", job, env("GITHUB_REPOSITORY")));
    }
    if let Some(job) = env("CI_JOB_ID") {
        return Some(("gitlab", job, env("CI_PROJECT_PATH")));
    }
    if let Some(job) = env("BUILDKITE_JOB_ID") {
        return Some(("buildkite", job, env("BUILDKITE_PIPELINE_SLUG")));
    }
    if let Some(job) = env("CIRCLE_WORKFLOW_JOB_ID").or_else(|| env("CIRCLE_BUILD_NUM")) {
        return Some(("circleci", job, env("CIRCLE_PROJECT_REPONAME")));
    }
    if let Some(url) = env("BUILD_URL") {
        return Some((
            "jenkins",
            env("BUILD_TAG").unwrap_or(url.clone()),
            Some(url),
        ));
    }
    None
}

/// `user@host` of this process.
pub fn owner() -> String {
    let user = env("USER")
        .or_else(|| env("LOGNAME"))
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}")
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The records a deploy puts on every node: expiry, owner, CI job and the user's labels.
pub fn records(ttl: Option<Duration>, labels: &[(String, String)]) -> BTreeMap<String, String> {
    let mut t: BTreeMap<String, String> = labels.iter().cloned().collect();
    if let Some(ttl) = ttl {
        t.insert(TAG_EXPIRES.into(), (now_secs() + ttl.as_secs()).to_string());
    }
    t.insert(TAG_OWNER.into(), owner());
    if let Some((ci, job, project)) = ci_identity() {
        t.insert(TAG_CI.into(), ci.into());
        t.insert(TAG_CI_JOB.into(), job);
        if let Some(p) = project {
            t.insert(TAG_CI_PROJECT.into(), p);
        }
    }
    t
}

/// In CI, once per run: how to reap this job's nodes if the job dies before its destroy step.
pub fn print_reap_hint(records: &BTreeMap<String, String>) {
    if let Some(job) = records.get(TAG_CI_JOB) {
        let expiry = records
            .get(TAG_EXPIRES)
            .and_then(|e| e.parse::<u64>().ok())
            .map_or("no expiry".to_string(), |e| {
                format!("expires {}", rfc3339(e))
            });
        crate::output::info(&format!(
            "nodes of this job ({expiry}) can be reaped from any runner: destroy-node --label {TAG_CI_JOB}={job}"
        ));
    }
}

/// Parses `--label KEY=VALUE` (the key checked for every provider's rules; ours refused).
pub fn parse_label(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label '{s}' must be KEY=VALUE"))?;
    crate::provider::tags::check_key(k)?;
    if k == "provision" || k.starts_with("provision-") {
        return Err(format!(
            "label key '{k}' is reserved for provision's own records"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses a `--label KEY=VALUE` filter (any key: ours are matched too, e.g. `ci_job`).
pub fn parse_label_filter(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label '{s}' must be KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Parses a time a tag holds: Unix seconds or RFC 3339.
fn parse_time(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
}

/// The node's expiry (Unix seconds), when it has one.
pub fn expires_at(n: &Node) -> Option<u64> {
    n.tags.get(TAG_EXPIRES).and_then(|v| parse_time(v))
}

/// The node's creation time (Unix seconds): our tag, else the provider's own.
pub fn created_at(n: &Node) -> Option<u64> {
    n.tags
        .get(TAG_CREATED)
        .and_then(|v| parse_time(v))
        .or_else(|| n.created.as_deref().and_then(parse_time))
}

/// Ours and past its expiry (by more than [`SKEW_MARGIN`]) at `now`.
pub fn is_expired(n: &Node, now: u64) -> bool {
    n.is_managed() && expires_at(n).is_some_and(|e| now >= e + SKEW_MARGIN.as_secs())
}

/// Ours, and its deploy never completed: still `deploying` (or pending at the provider)
/// [`STUCK_AFTER`] (plus [`SKEW_MARGIN`]) after its create.
pub fn is_stuck(n: &Node, now: u64) -> bool {
    n.is_managed()
        && (n.deploy_state() == Some(DEPLOYING) || n.state == NodeState::Pending)
        && created_at(n).is_some_and(|c| now >= c + STUCK_AFTER.as_secs() + SKEW_MARGIN.as_secs())
}

/// What `--expired` selects: expired, or stuck ([`is_stuck`]).
pub fn is_reapable(n: &Node, now: u64) -> bool {
    is_expired(n, now) || is_stuck(n, now)
}

/// The STATE cell: the provider's state, with the deploy's when it has not ended `ready`
/// (`running/deploying`, `running/failed`).
pub fn state_cell(n: &Node) -> String {
    match n.deploy_state() {
        Some(d) if d != DEPLOY_READY => format!("{}/{d}", n.state),
        _ => n.state.to_string(),
    }
}

/// Carries every `KEY=VALUE` of `labels`.
pub fn has_labels(n: &Node, labels: &[(String, String)]) -> bool {
    labels.iter().all(|(k, v)| n.tags.get(k) == Some(v))
}

/// `1d2h`, `3h5m`, `42s`: a short age or time left.
pub fn short(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

/// Nodes as JSON with their records read: `age_seconds`, `expires_at` (RFC 3339), `expired`,
/// `stuck` (its deploy never completed), `deploy_state`, `owner`, `ci_job` (null when
/// unknown), besides every field of [`Node`].
pub fn with_records(nodes: &[Node]) -> Vec<serde_json::Value> {
    let now = now_secs();
    nodes
        .iter()
        .map(|n| {
            let mut v = serde_json::to_value(n).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "age_seconds".into(),
                    created_at(n).map(|c| now.saturating_sub(c)).into(),
                );
                o.insert("expires_at".into(), expires_at(n).map(rfc3339).into());
                o.insert("expired".into(), is_expired(n, now).into());
                o.insert("stuck".into(), is_stuck(n, now).into());
                o.insert("deploy_state".into(), n.deploy_state().into());
                o.insert("owner".into(), n.tags.get(TAG_OWNER).cloned().into());
                o.insert("ci_job".into(), n.tags.get(TAG_CI_JOB).cloned().into());
            }
            v
        })
        .collect()
}

/// The records of a node as `--junit` suite properties: `provision-expires-at` (RFC 3339, or
/// `never`), `provision-owner` and the CI job, when the node carries them.
pub fn properties(n: &Node) -> Vec<(String, String)> {
    let mut p = vec![(
        TAG_EXPIRES.to_string(),
        expires_at(n).map_or("never".to_string(), rfc3339),
    )];
    for k in [TAG_OWNER, TAG_CI_JOB] {
        if let Some(v) = n.tags.get(k) {
            p.push((k.to_string(), v.clone()));
        }
    }
    p
}

fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The EXPIRES cell of `list-nodes --format table`: `in 3h59m`, `EXPIRED`, `STUCK` (its
/// deploy never completed: reaped as expired), `now` or `-`.
pub fn expires_cell(n: &Node, now: u64) -> String {
    match expires_at(n) {
        _ if is_expired(n, now) => "EXPIRED".to_string(),
        _ if is_stuck(n, now) => "STUCK".to_string(),
        Some(e) if e > now => format!("in {}", short(e - now)),
        Some(_) => "now".to_string(),
        None => "-".to_string(),
    }
}

/// The OWNER cell: `user@host`, with the CI job when there is one.
pub fn owner_cell(n: &Node) -> String {
    match (n.tags.get(TAG_OWNER), n.tags.get(TAG_CI_JOB)) {
        (Some(o), Some(j)) => format!("{o} (ci_job={j})"),
        (Some(o), None) => o.clone(),
        (None, Some(j)) => format!("ci_job={j}"),
        (None, None) => "-".to_string(),
    }
}

/// `destroy-node --expired/--label`: our tagged nodes (never untagged ones) past expiry and/or
/// carrying every label, announced before anything happens. Names are not checked against
/// `destroyable_prefixes`: that guard is for names typed by hand; these carry our tag.
pub fn select(
    provider: &dyn crate::provider::Provider,
    expired: bool,
    labels: &[(String, String)],
) -> crate::Result<Vec<Node>> {
    let now = now_secs();
    let nodes: Vec<Node> = provider
        .list(false)?
        .into_iter()
        .filter(|n| n.is_managed() && (!expired || is_reapable(n, now)) && has_labels(n, labels))
        .collect();
    let what = match (expired, labels.is_empty()) {
        (true, true) => "expired".to_string(),
        (e, _) => {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "{}labelled {}",
                if e { "expired and " } else { "" },
                l.join(",")
            )
        }
    };
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    crate::output::info(&format!(
        "{} {what} node(s) of ours on {}{}{}",
        nodes.len(),
        provider.name(),
        if nodes.is_empty() { "" } else { ": " },
        names.join(", ")
    ));
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{test_node, TAG_MANAGED};

    #[test]
    fn ttl_values() {
        assert_eq!(parse_ttl("never"), Ok(None));
        assert_eq!(parse_ttl("0"), Ok(None));
        assert_eq!(parse_ttl("4h"), Ok(Some(Duration::from_secs(14400))));
        assert!(parse_ttl("soon").is_err());
        assert_eq!(effective_ttl(Some(None), Some(Some(CI_DEFAULT_TTL))), None);
        assert_eq!(
            effective_ttl(None, Some(Some(Duration::from_secs(60)))),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn expiry_needs_our_tag_and_the_margin() {
        let mut n = test_node("1", "deploy-test-a");
        n.tags.insert(TAG_EXPIRES.into(), "1000".into());
        assert!(!is_expired(&n, 10_000), "untagged nodes never expire");
        n.tags.insert(TAG_MANAGED.into(), "1".into());
        assert!(!is_expired(&n, 1000 + SKEW_MARGIN.as_secs() - 1));
        assert!(is_expired(&n, 1000 + SKEW_MARGIN.as_secs()));
        n.tags
            .insert(TAG_EXPIRES.into(), "2026-01-01T00:00:00Z".into());
        assert_eq!(expires_at(&n), Some(1_767_225_600));
    }

    #[test]
    fn a_deploy_that_never_completed_is_stuck_after_its_bound() {
        let mut n = test_node("1", "deploy-test-a");
        n.tags.insert(TAG_CREATED.into(), "1000".into());
        n.tags
            .insert(crate::provider::TAG_STATE.into(), DEPLOYING.into());
        let bound = 1000 + STUCK_AFTER.as_secs() + SKEW_MARGIN.as_secs();
        assert!(!is_stuck(&n, bound), "untagged nodes are never stuck");
        n.tags.insert(TAG_MANAGED.into(), "1".into());
        assert!(!is_stuck(&n, bound - 1));
        assert!(is_stuck(&n, bound) && is_reapable(&n, bound));
        assert_eq!(state_cell(&n), "running/deploying");
        n.tags
            .insert(crate::provider::TAG_STATE.into(), DEPLOY_READY.into());
        assert!(!is_stuck(&n, bound * 10) && !is_reapable(&n, bound * 10));
        assert_eq!(state_cell(&n), "running");
        n.state = NodeState::Pending;
        assert!(
            is_stuck(&n, bound),
            "pending at the provider past the bound"
        );
    }

    #[test]
    fn labels_are_checked() {
        assert_eq!(
            parse_label("team=a b@c"),
            Ok(("team".into(), "a b@c".into()))
        );
        assert!(parse_label("team").is_err());
        assert!(parse_label("provision-owner=x").is_err());
        assert!(parse_label("a.b=x").is_err());
    }
}
