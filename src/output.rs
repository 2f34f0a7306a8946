//! What the user sees. stdout carries data only (node lines, JSON, plans); everything else goes
//! to stderr, as plain timestamped lines when stderr is not a terminal so CI logs stay readable.
//! Nothing below `deploy` prints except through here.

use crate::error::Result;
use crate::exit::print_stdout;
use crate::plan::Plan;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicI8, Ordering};
use std::sync::Mutex;

static VERBOSITY: AtomicI8 = AtomicI8::new(0);

/// The target of our own records; anything else is another crate's (reqwest, rustls, ...).
const TARGET: &str = "provision";

/// -1 quiet (errors only), 0 normal, 1 verbose (our debug lines), 2 also other crates' debug
/// lines (reqwest), 3+ their trace lines.
pub(crate) fn set_verbosity(v: i8) {
    VERBOSITY.store(v, Ordering::Relaxed);
    install();
}

pub(crate) fn verbosity() -> i8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// True when stderr is a terminal (progress bars, no timestamps) and color is allowed.
pub(crate) fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

// ---- the sink: a tiny `log::Log` (ripgrep's crates/core/logger.rs), no env_logger ----

/// Every line on stderr that is not a node's progress goes through the `log` facade, so the
/// HTTP stack's own records show with `-vv`, formatted and redacted like ours.
struct Sink;

static SINK: Sink = Sink;

/// Installs the sink (once) and sets the facade's level from the verbosity.
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // a host program (a test harness) may have its own logger: then ours stays out
        let _ = log::set_logger(&SINK);
    });
    log::set_max_level(own_level().max(foreign_level()));
}

/// The most detailed level shown of our own records.
fn own_level() -> log::LevelFilter {
    match verbosity() {
        ..=-1 => log::LevelFilter::Warn,
        0 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    }
}

/// The most detailed level shown of other crates' records: none without -vv.
fn foreign_level() -> log::LevelFilter {
    match verbosity() {
        ..=1 => log::LevelFilter::Off,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

fn is_ours(target: &str) -> bool {
    target == TARGET || target.starts_with("provision::")
}

impl log::Log for Sink {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        let shown = if is_ours(m.target()) {
            own_level()
        } else {
            foreign_level()
        };
        m.level() <= shown
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            write_line(&render(record));
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// A record as its stderr line (without timestamp): ours as `warning: ...`, `debug: ...` or
/// bare; another crate's as `debug: reqwest::connect: ...`.
fn render(record: &log::Record<'_>) -> String {
    let level = match record.level() {
        log::Level::Error => "error: ",
        log::Level::Warn => "warning: ",
        log::Level::Info => "",
        log::Level::Debug | log::Level::Trace => "debug: ",
    };
    if is_ours(record.target()) {
        format!("{level}{}", record.args())
    } else {
        format!("{level}{}: {}", record.target(), record.args())
    }
}

// ---- secrets: never on stderr, whoever writes the line ----

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers a secret (an API token) that no stderr line may show, whichever crate writes it.
/// Short values (under 8 characters) are not registered: they would mangle ordinary text.
pub(crate) fn secret(s: &str) {
    register(s, 8);
}

/// The shortest user secret (`[secrets]`, `-T`) that can be hidden: the user said it is one,
/// so it is hidden even where that hides an ordinary word too; a shorter one is refused while
/// planning (see [`crate::plan`]), since hiding it would hide every such run of characters.
pub(crate) const MIN_USER_SECRET: usize = 4;

/// Registers a secret variable's value ([`MIN_USER_SECRET`] characters or more).
pub(crate) fn user_secret(s: &str) {
    register(s, MIN_USER_SECRET);
}

fn register(s: &str, min: usize) {
    let s = s.trim();
    if s.chars().count() < min {
        return;
    }
    let mut v = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
        // longest first, so a whole secret is replaced before any part of it
        v.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

/// `line` with every registered secret replaced by `<redacted>`.
pub(crate) fn redact(line: &str) -> String {
    let v = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = line.to_string();
    for s in v.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}

// ---- progress: typed events, not parsed text ----

/// One spinner line per node while many nodes deploy on a terminal.
struct Progress {
    mp: indicatif::MultiProgress,
    bars: std::collections::HashMap<String, indicatif::ProgressBar>,
}

static PROGRESS: Mutex<Option<Progress>> = Mutex::new(None);

/// Starts the progress view (a row per node showing its phase and current script) when
/// stderr is a terminal, for one node as for many.
pub(crate) fn start_progress(names: &[String]) {
    if names.is_empty() || !stderr_is_terminal() || verbosity() < 0 {
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
    *lock_progress() = Some(Progress { mp, bars });
}

fn lock_progress() -> std::sync::MutexGuard<'static, Option<Progress>> {
    PROGRESS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ends the view, leaving each node's last status on screen.
pub(crate) fn finish_progress() {
    if let Some(p) = lock_progress().take() {
        for bar in p.bars.values() {
            bar.finish();
        }
        eprintln!();
    }
}

/// The one writer of stderr lines: above the spinners when they are shown, else plain (with a
/// timestamp when stderr is not a terminal, so CI logs stay readable). Redacts secrets.
fn write_line(line: &str) {
    let line = redact(line);
    if let Some(p) = lock_progress().as_ref() {
        let _ = p.mp.println(line);
        return;
    }
    let mut err = std::io::stderr().lock();
    if stderr_is_terminal() {
        let _ = writeln!(err, "{line}");
    } else {
        let _ = writeln!(err, "{} {line}", timestamp());
    }
}

/// `HH:MM:SS` UTC, for log lines.
pub(crate) fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
}

/// Progress and facts (hidden by -q).
pub(crate) fn info(msg: &str) {
    install();
    log::info!(target: TARGET, "{msg}");
}

/// Detail (shown with -v).
pub(crate) fn debug(msg: &str) {
    install();
    log::debug!(target: TARGET, "{msg}");
}

/// Something the user should act on; shown even with -q.
pub(crate) fn warn(msg: &str) {
    install();
    log::warn!(target: TARGET, "{msg}");
}

/// A node's status changed (`creating on hetzner`, `waiting until it runs`, `ready in 9.1s`):
/// the node's spinner shows it when the progress view is up, else an info line `NODE: status`.
pub(crate) fn status(node: &str, status: &str) {
    if verbosity() < 0 {
        return;
    }
    if let Some(bar) = lock_progress().as_ref().and_then(|p| p.bars.get(node)) {
        bar.set_message(redact(status));
        return;
    }
    info(&format!("{node}: {status}"));
}

/// A line of a script's output, prefixed with the node name: `[node] line`. Script output is
/// data the user asked for: no timestamp, above the spinners when they are shown.
pub(crate) fn node_line(node: &str, line: &str) {
    if verbosity() < 0 {
        return;
    }
    let text = redact(&format!("[{node}] {line}"));
    if let Some(p) = lock_progress().as_ref() {
        let _ = p.mp.println(text);
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// `deploy-node --dry-run`: the plan for people (JSON: `cli`'s versioned document).
pub(crate) fn print_plan(plan: &Plan) -> Result<()> {
    print_stdout(&render_plan(plan))
}

fn sourced(v: &Option<crate::config::Sourced<String>>) -> String {
    match v {
        Some(s) => format!("{}  ({})", s.value, s.layer),
        None => "(not set)".to_string(),
    }
}

/// The human form of a plan.
pub(crate) fn render_plan(plan: &Plan) -> String {
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
    if let Some(j) = &plan.jump {
        let _ = writeln!(s, "  jump host: {}  ({})", j.value, j.layer);
    }
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
        let also = if sc.also_in.is_empty() {
            String::new()
        } else {
            format!(
                "; also in bundle {}: runs once, here",
                sc.also_in.join(", ")
            )
        };
        let _ = writeln!(
            s,
            "\n--- {}/{} ← {} ({how}; bundle {}{also})",
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
pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("serializable");
    print_stdout(&(text + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(target: &'a str, level: log::Level, args: std::fmt::Arguments<'a>) -> String {
        render(
            &log::Record::builder()
                .target(target)
                .level(level)
                .args(args)
                .build(),
        )
    }

    #[test]
    fn lines_keep_their_old_form_and_foreign_ones_name_their_crate() {
        assert_eq!(
            record(TARGET, log::Level::Info, format_args!("web-1: ready")),
            "web-1: ready"
        );
        assert_eq!(
            record(TARGET, log::Level::Warn, format_args!("x")),
            "warning: x"
        );
        assert_eq!(
            record(TARGET, log::Level::Debug, format_args!("x")),
            "debug: x"
        );
        assert_eq!(
            record(
                "reqwest::connect",
                log::Level::Debug,
                format_args!("starting new connection")
            ),
            "debug: reqwest::connect: starting new connection"
        );
    }

    #[test]
    fn levels_follow_the_verbosity() {
        use log::Log as _;
        let shown = |target: &str, level: log::Level| {
            SINK.enabled(&log::Metadata::builder().target(target).level(level).build())
        };
        for (v, ours_debug, ours_info, foreign_debug, foreign_trace) in [
            (-1, false, false, false, false),
            (0, false, true, false, false),
            (1, true, true, false, false),
            (2, true, true, true, false),
            (3, true, true, true, true),
        ] {
            set_verbosity(v);
            assert!(shown(TARGET, log::Level::Warn), "warnings always ({v})");
            assert_eq!(shown(TARGET, log::Level::Debug), ours_debug, "{v}");
            assert_eq!(shown(TARGET, log::Level::Info), ours_info, "{v}");
            assert_eq!(
                shown("reqwest::connect", log::Level::Debug),
                foreign_debug,
                "{v}"
            );
            assert_eq!(shown("hyper_util", log::Level::Trace), foreign_trace, "{v}");
            assert!(log::max_level() >= own_level().max(foreign_level()));
        }
        set_verbosity(0);
    }

    #[test]
    fn a_registered_secret_is_redacted_from_any_crates_line() {
        let token = "dop_v1_redact-me-0123456789abcdef";
        secret(token);
        let line = record(
            "reqwest::connect",
            log::Level::Debug,
            format_args!("starting new connection: http://127.0.0.1:9/{token}/v2"),
        );
        assert_eq!(
            redact(&line),
            "debug: reqwest::connect: starting new connection: http://127.0.0.1:9/<redacted>/v2"
        );
        secret("short");
        assert_eq!(
            redact("a short line"),
            "a short line",
            "short values are not secrets"
        );
    }
}
