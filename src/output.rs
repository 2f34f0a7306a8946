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

/// One spinner line per node while many nodes deploy on a terminal.
struct Progress {
    mp: indicatif::MultiProgress,
    bars: std::collections::HashMap<String, indicatif::ProgressBar>,
}

static PROGRESS: std::sync::Mutex<Option<Progress>> = std::sync::Mutex::new(None);

/// Starts the multi-progress view for `names` when stderr is a terminal and there are many.
pub fn start_progress(names: &[String]) {
    if names.len() < 2 || !stderr_is_terminal() || verbosity() < 0 {
        return;
    }
    let mp = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
        .expect("valid template");
    let bars = names
        .iter()
        .map(|n| {
            let bar = mp.add(indicatif::ProgressBar::new_spinner().with_style(style.clone()));
            bar.set_prefix(n.clone());
            bar.set_message("queued");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            (n.clone(), bar)
        })
        .collect();
    *PROGRESS.lock().unwrap() = Some(Progress { mp, bars });
}

/// Ends the view, leaving each node's last status on screen.
pub fn finish_progress() {
    if let Some(p) = PROGRESS.lock().unwrap().take() {
        for bar in p.bars.values() {
            bar.finish();
        }
        eprintln!();
    }
}

/// Routes a line through the progress view when one is shown: `NODE: status` lines update
/// that node's spinner, anything else prints above the spinners. False when no view is shown.
fn through_progress(level: &str, msg: &str) -> bool {
    let guard = PROGRESS.lock().unwrap();
    let Some(p) = guard.as_ref() else {
        return false;
    };
    if level.is_empty() {
        if let Some((node, rest)) = msg.split_once(": ") {
            if let Some(bar) = p.bars.get(node) {
                bar.set_message(rest.to_string());
                return true;
            }
        }
    }
    let _ = p.mp.println(format!("{level}{msg}"));
    true
}

fn emit(level: &str, msg: &str) {
    if through_progress(level, msg) {
        return;
    }
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
    if verbosity() >= 0 && !through_progress("", &format!("[{node}] {line}")) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "[{node}] {line}");
    }
}

/// `deploy-node --dry-run`: the plan for people (JSON: `cli`'s versioned document).
pub fn print_plan(plan: &Plan) -> Result<()> {
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

/// Pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("serializable");
    print_stdout(&(text + "\n"))
}

/// The description of a deployed node: the original's fields (id, name, state, public_ip,
/// private_ip, image_id, image_name) plus each script's name, exit status and duration.
pub fn description(outcome: &crate::deploy::Outcome) -> serde_json::Value {
    let node = outcome.node.as_ref();
    let scripts: Vec<serde_json::Value> = outcome
        .report
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter(|s| matches!(s.kind, crate::ssh::StepKind::Script))
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
    })
}

/// `-d FILE`, written atomically: the original's one object for one node, an array for a
/// pool, from the [`description`]s of the nodes that exist. Nothing is written when none does.
pub fn write_description(
    path: &std::path::Path,
    descs: Vec<serde_json::Value>,
    many: bool,
) -> Result<()> {
    if descs.is_empty() {
        return Ok(());
    }
    let value = if many {
        serde_json::Value::Array(descs)
    } else {
        descs.into_iter().next().expect("one description")
    };
    let text = serde_json::to_string_pretty(&value).expect("serializable") + "\n";
    crate::state::write_atomic(path, text.as_bytes(), 0o644)
}

/// list-nodes output in the chosen format.
pub fn print_nodes(nodes: &[crate::provider::Node], format: crate::cli::ListFormat) -> Result<()> {
    use crate::cli::ListFormat;
    match format {
        ListFormat::Json => print_json(&nodes),
        ListFormat::Text => {
            let mut s = String::new();
            for n in nodes {
                let _ = writeln!(s, "{} {}", n.name, n.public_ip.as_deref().unwrap_or(""));
            }
            print_stdout(&s)
        }
        ListFormat::SshConfig => print_stdout(&ssh_config(nodes)?),
    }
}

/// `Host` blocks for `ssh -F`: HostName, Port, User, IdentityFile, and a known_hosts file
/// holding the node's pinned host key (written under the state directory).
pub fn ssh_config(nodes: &[crate::provider::Node]) -> Result<String> {
    let mut s = String::new();
    let keydir = crate::state::state_dir().join("known_hosts.d");
    let identity = crate::plan::own_public_key().map(|p| p.with_extension(""));
    for n in nodes {
        let Some(ip) = &n.public_ip else { continue };
        let port = n.ssh.port.unwrap_or(22);
        let _ = writeln!(s, "Host {}", n.name);
        let _ = writeln!(s, "    HostName {ip}");
        let _ = writeln!(s, "    Port {port}");
        if let Some(user) = &n.ssh.user {
            let _ = writeln!(s, "    User {user}");
        }
        if let Some(id) = n
            .ssh
            .identity
            .as_ref()
            .map(std::path::PathBuf::from)
            .or(identity.clone())
        {
            let _ = writeln!(s, "    IdentityFile {}", id.display());
        }
        if let Some(key) = &n.ssh.host_key {
            let host = if port == 22 {
                ip.clone()
            } else {
                format!("[{ip}]:{port}")
            };
            let file = keydir.join(&n.name);
            std::fs::create_dir_all(&keydir).map_err(|e| crate::Error::io(keydir.display(), e))?;
            crate::state::write_atomic(
                &file,
                format!("{host} {}\n", key.trim()).as_bytes(),
                0o644,
            )?;
            let _ = writeln!(s, "    UserKnownHostsFile {}", file.display());
            let _ = writeln!(s, "    StrictHostKeyChecking yes");
        }
        s.push('\n');
    }
    Ok(s)
}

/// `list-nodes --images/--sizes/--locations`: `NAME  DESCRIPTION` lines (or JSON).
pub fn print_catalog(items: &[(String, String)], format: crate::cli::ListFormat) -> Result<()> {
    if format == crate::cli::ListFormat::Json {
        let v: Vec<serde_json::Value> = items
            .iter()
            .map(|(n, d)| serde_json::json!({"name": n, "description": d}))
            .collect();
        return print_json(&v);
    }
    let width = items.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut s = String::new();
    for (name, desc) in items {
        let _ = writeln!(s, "{name:<width$}  {desc}");
    }
    print_stdout(&s)
}
