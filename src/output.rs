//! What the user sees. stdout carries data only (node lines, JSON, plans); everything else goes
//! to stderr, as plain timestamped lines when stderr is not a terminal so CI logs stay readable.
//! Nothing below `deploy` prints except through here.

use crate::error::Result;
use crate::exit::print_stdout;
use crate::plan::Plan;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicI8, Ordering};

static VERBOSITY: AtomicI8 = AtomicI8::new(0);

/// -1 quiet (errors only), 0 normal, 1+ verbose.
pub fn set_verbosity(v: i8) {
    VERBOSITY.store(v, Ordering::Relaxed);
}

pub fn verbosity() -> i8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// True when stderr is a terminal (progress bars, no timestamps) and color is allowed.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

fn emit(level: &str, msg: &str) {
    let mut err = std::io::stderr().lock();
    if stderr_is_terminal() {
        let _ = writeln!(err, "{level}{msg}");
    } else {
        let _ = writeln!(err, "{} {level}{msg}", timestamp());
    }
}

/// `HH:MM:SS` UTC, for log lines.
pub fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
}

/// Progress and facts (hidden by -q).
pub fn info(msg: &str) {
    if verbosity() >= 0 {
        emit("", msg);
    }
}

/// Detail (shown with -v).
pub fn debug(msg: &str) {
    if verbosity() >= 1 {
        emit("debug: ", msg);
    }
}

/// Something the user should act on; shown even with -q.
pub fn warn(msg: &str) {
    emit("warning: ", msg);
}

/// A line of a script's output, prefixed with the node name: `[node] line`.
pub fn node_line(node: &str, line: &str) {
    if verbosity() >= 0 {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "[{node}] {line}");
    }
}

/// `deploy-node --dry-run`: the plan for people, or as JSON.
pub fn print_plan(plan: &Plan, json: bool) -> Result<()> {
    if json {
        let text = serde_json::to_string_pretty(plan).expect("plan serializes");
        return print_stdout(&(text + "\n"));
    }
    print_stdout(&render_plan(plan))
}

fn sourced(v: &Option<crate::config::Sourced<String>>) -> String {
    match v {
        Some(s) => format!("{}  ({})", s.value, s.layer),
        None => "(not set)".to_string(),
    }
}

/// The human form of a plan.
pub fn render_plan(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Plan for node {} (dry run: nothing is created)",
        plan.node_name
    );
    let _ = writeln!(
        s,
        "  provider:  {}  ({})",
        plan.provider.value, plan.provider.layer
    );
    let _ = writeln!(s, "  image:     {}", sourced(&plan.image));
    let _ = writeln!(s, "  size:      {}", sourced(&plan.size));
    let _ = writeln!(s, "  location:  {}", sourced(&plan.location));
    let _ = writeln!(
        s,
        "  ssh user:  {}  ({})",
        plan.ssh_user.value, plan.ssh_user.layer
    );
    let _ = writeln!(s, "\nBundles, in order:");
    if plan.bundles.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for b in &plan.bundles {
        let _ = writeln!(s, "  {}  ({}; from {})", b.name, b.reason, b.layer);
    }
    let _ = writeln!(s, "\nPublic keys for authorized_keys:");
    for k in &plan.pubkeys {
        let _ = writeln!(s, "  {} {}  ({})", k.fingerprint, k.comment, k.source);
    }
    let _ = writeln!(s, "\nFiles:");
    if plan.files.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for f in &plan.files {
        let _ = writeln!(
            s,
            "  {} ← {} ({} bytes, mode {:04o}; bundle {})",
            f.target, f.source, f.size, f.mode, f.bundle
        );
    }
    let _ = writeln!(s, "\nVariables:");
    for (k, v) in &plan.vars {
        let _ = writeln!(s, "  {k} = {:?}  ({})", v.value, v.layer);
    }
    let _ = writeln!(s, "\nScripts, in run order:");
    if plan.scripts.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for sc in &plan.scripts {
        let how = sc
            .template
            .map(|e| format!("template: {e}"))
            .unwrap_or_else(|| "plain".into());
        let _ = writeln!(
            s,
            "\n--- {}/{} ← {} ({how}; bundle {})",
            crate::plan::REMOTE_SCRIPT_DIR,
            sc.remote_name,
            sc.source,
            sc.bundle
        );
        s.push_str(&sc.rendered);
        if !sc.rendered.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}
