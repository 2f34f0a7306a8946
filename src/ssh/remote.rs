//! Provisioning in one exec: the tar stream (keys, files, scripts, the runner and its plan),
//! the remote command that unpacks and runs it, and the demultiplexer that splits the runner's
//! output into steps by nonce markers.
//!
//! The stream has two sections: a tar of the runner, its plan, the keys and the scripts, whose
//! length travels in the command line, then `files.tar` up to EOF — generated while it is sent
//! (`files_tar`), each file read from disk in chunks and checked against its plan. On the node, `sh -c` reads
//! exactly the first section (dd, see unpack.sh) into a private staging dir (mktemp, 0700) and
//! runs `run.sh login`, which appends the keys to the login user's authorized_keys, then re-runs
//! itself as root (directly, or through `sudo -n`; as the login user when root is unreachable)
//! to append root's keys, move files into place, place the scripts and run them. `files.tar`'s
//! entries already sit at `<target dir>/.provision-<nonce>/<name>` with their modes: one `tar`
//! as root reads it from stdin and stages them all beside their targets (same filesystem) while
//! the bytes arrive, then one `mv` per target directory renames them into place — each rename
//! atomic, so no half-written target is ever visible, and the number of processes on the node
//! grows with directories, not files. Before and after each step the runner prints
//! `NONCE start I` / `NONCE end I STATUS` on both stdout and stderr, and `NONCE done` at the
//! end; the nonce is random per provision, so script output cannot fake a marker.

use super::files_tar::FilesTar;
use super::pump;
use super::{Connection, ProvisionReport, RunOptions, StepKind, StepReport, TIMEOUT_STATUS};
use crate::error::{Error, Result};
use crate::output;
use crate::plan::Plan;
use rand::Rng;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How long to wait for the channel's EOF after the runner said `done` (a daemon started by a
/// script may hold its stdout open).
const EOF_GRACE: Duration = Duration::from_secs(2);

/// Step indexes in the runner's markers: 0 keys, 1 files, 2.. scripts.
const KEYS: usize = 0;
const FILES: usize = 1;

/// The remote command (`unpack.sh`): unpack stdin into a staging dir, run the runner, clean up.
const UNPACK_SH: &str = include_str!("unpack.sh");

/// The runner (`runner.sh`), shipped in the upload as `run.sh`; settings reach it as named
/// variables in the generated `vars.sh`, and the generated `plan.sh` calls its functions.
const RUNNER: &str = include_str!("runner.sh");

/// The one line of `unpack.sh` that is sent (its other lines are comments), so any login shell
/// passes it to `sh -c` intact.
fn unpack_line() -> &'static str {
    UNPACK_SH
        .lines()
        .rfind(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap_or_default()
}

/// The exit statuses of the remote command when the runner did not finish, decoded here and
/// nowhere else (`unpack.sh` sets 97 and 98; 127 is sh's "command not found").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RemoteExit {
    NoStaging,
    UnpackFailed,
    CommandMissing,
    Other(i32),
}

impl RemoteExit {
    const NO_STAGING: i32 = 97;
    const UNPACK_FAILED: i32 = 98;
    const COMMAND_MISSING: i32 = 127;

    fn from_status(status: i32) -> RemoteExit {
        match status {
            Self::NO_STAGING => RemoteExit::NoStaging,
            Self::UNPACK_FAILED => RemoteExit::UnpackFailed,
            Self::COMMAND_MISSING => RemoteExit::CommandMissing,
            s => RemoteExit::Other(s),
        }
    }

    /// Why provisioning stopped, for the error message; `during` names the step.
    fn why(status: Option<i32>, during: &str) -> String {
        match status.map(RemoteExit::from_status) {
            Some(RemoteExit::NoStaging) => {
                "could not create a staging directory (mktemp)".to_string()
            }
            Some(RemoteExit::UnpackFailed) => "unpacking the upload failed (tar)".to_string(),
            Some(RemoteExit::CommandMissing) => {
                "a command is missing on the node (sh, tar, mktemp?)".to_string()
            }
            Some(RemoteExit::Other(s)) => {
                format!("the remote runner stopped during {during} (exit status {s})")
            }
            None => format!("the connection closed during {during}"),
        }
    }
}

pub(super) fn provision(
    conn: &mut Connection,
    plan: &Plan,
    opts: &RunOptions,
    on_line: &mut dyn FnMut(&str, bool, &str),
    reached: &mut Vec<crate::phases::Phase>,
) -> Result<ProvisionReport> {
    let nonce = format!("provision-{:032x}", rand::thread_rng().gen::<u128>());
    let vars = runner_vars(&nonce, opts, &conn.paths)?;
    let first = build_upload(plan, &nonce, &vars)?;
    let command = format!("sh -c {} sh {}", quote(unpack_line())?, first.len());
    let file_bytes: u64 = plan.files.iter().map(|f| f.size).sum();
    output::status(
        &conn.node,
        &format!(
            "installing {} key(s), {} file(s), {} script(s) ({} + {file_bytes} bytes in one stream)",
            plan.pubkeys.len(),
            plan.files.len(),
            plan.scripts.len(),
            first.len(),
        ),
    );
    // files.tar follows the first section, built while it is sent (empty without files)
    let mut files = FilesTar::new(&conn.node, &plan.files, staged_paths(plan, &nonce));
    let files_part: &mut dyn std::io::Read = if plan.files.is_empty() {
        &mut std::io::empty()
    } else {
        &mut files
    };
    let mut upload = std::io::Read::chain(first.as_slice(), files_part);

    let names: Vec<String> = plan.scripts.iter().map(|s| s.name.clone()).collect();
    let started = Instant::now();
    let mut demux = Demux::new(&conn.node, &nonce, &names, on_line);
    let (pumped, status) = {
        let mut channel = conn.open_exec(&command)?;
        let mut sink = |is_err: bool, data: &[u8]| demux.feed(is_err, data);
        let pumped = pump::pump(
            &conn.session,
            conn.fd,
            &mut channel,
            &mut upload,
            Some(EOF_GRACE),
            &mut sink,
        );
        let status = match &pumped {
            Ok(()) => pump::finish(&conn.session, &mut channel).ok().flatten(),
            Err(_) => None,
        };
        (pumped, status)
    };
    demux.flush();
    if let Some(e) = files.take_failure() {
        return Err(e);
    }
    let during = demux.current_step_name();
    if pumped.is_err() || !demux.all_done() {
        *reached = demux.broken_phases(started, Instant::now());
    }
    if let Err(e) = pumped {
        return Err(conn.transport(&format!("provisioning ({during})"), e));
    }
    if !demux.all_done() {
        let why = RemoteExit::why(status, &during);
        return Err(Error::deploy(
            &conn.node,
            format!("provisioning failed: {why}{}", tail(&demux.all_stderr())),
        ));
    }
    let report = demux.into_report(started);
    for (i, what) in [(KEYS, "installing public keys"), (FILES, "writing files")] {
        let step = &report.steps[i];
        if !step.succeeded() {
            return Err(Error::deploy(
                &conn.node,
                format!("{what} failed{}", tail(&step.stderr)),
            ));
        }
    }
    Ok(report)
}

/// `: <last lines of stderr>` for error messages, or nothing.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(": {}", lines[lines.len().saturating_sub(5)..].join(" / "))
}

fn quote(s: &str) -> Result<String> {
    shlex::try_quote(s)
        .map(|c| c.into_owned())
        .map_err(|e| Error::unexpected(format!("cannot quote {s:?} for the remote shell: {e}")))
}

/// A duration as seconds for sleep(1): whole seconds when exact, else millisecond precision.
fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        d.as_secs().max(1).to_string()
    } else {
        format!("{:.3}", d.as_secs_f64())
    }
}

/// Target directories in first-seen order, each with the names of the files it receives.
type DirFiles = Vec<(String, Vec<String>)>;

/// Where a directory's files are staged: beside their targets, so the final rename is atomic.
fn stage_dir(dir: &str, nonce: &str) -> String {
    format!("{}/.{nonce}", dir.trim_end_matches('/'))
}

/// A target's directory (`/` for a file at the root) and its name.
fn split_target(target: &str) -> (&str, &str) {
    let (dir, name) = target.rsplit_once('/').unwrap_or(("", target));
    (if dir.is_empty() { "/" } else { dir }, name)
}

/// The target directories in first-seen order, each with its files' names.
fn dir_files(plan: &Plan) -> DirFiles {
    let mut dirs: DirFiles = Vec::new();
    for f in &plan.files {
        let (dir, name) = split_target(&f.target);
        match dirs.iter_mut().find(|(d, _)| d == dir) {
            Some((_, names)) => names.push(name.to_string()),
            None => dirs.push((dir.to_string(), vec![name.to_string()])),
        }
    }
    dirs
}

/// Where each file is unpacked from `files.tar` (at `/`): `<its dir>/.<nonce>/<name>`.
fn staged_paths(plan: &Plan, nonce: &str) -> Vec<String> {
    plan.files
        .iter()
        .map(|f| {
            let (dir, name) = split_target(&f.target);
            format!("{}/{name}", stage_dir(dir, nonce))
        })
        .collect()
}

/// `vars.sh`: the runner's settings as named shell variables (see runner.sh's header).
fn runner_vars(nonce: &str, opts: &RunOptions, paths: &super::RemotePaths) -> Result<String> {
    let timeout = opts.script_timeout.map(secs).unwrap_or_else(|| "0".into());
    let cloud_init = opts
        .cloud_init
        .map(|d| d.as_secs().max(1).to_string())
        .unwrap_or_else(|| "0".into());
    let vars = [
        ("NONCE", nonce),
        ("KEEP_GOING", if opts.keep_going { "1" } else { "0" }),
        (
            "REMOVE_SCRIPTS",
            if opts.remove_scripts { "1" } else { "0" },
        ),
        ("SCRIPT_TIMEOUT", &timeout),
        ("LOGIN_KEYS", &paths.login_keys),
        ("ROOT_KEYS", &paths.root_keys),
        ("SCRIPT_DIR", &paths.script_dir),
        ("USER_SCRIPT_DIR", &paths.user_script_dir),
        ("CLOUD_INIT_WAIT", &cloud_init),
    ];
    let mut out = String::new();
    for (name, value) in vars {
        let _ = writeln!(out, "{name}={}", quote(value)?);
    }
    Ok(out)
}

/// The stream's first section: a tar of `run.sh`, `vars.sh`, `plan.sh`, `keys`, `s/I`
/// (scripts). `files.tar` follows it ([`FilesTar`], generated while sent, unpacked on the node
/// as it arrives).
fn build_upload(plan: &Plan, nonce: &str, vars: &str) -> Result<Vec<u8>> {
    let mut keys = String::new();
    for k in &plan.pubkeys {
        let blob = super::openssh_blob(&k.line).ok_or_else(|| {
            Error::unexpected(format!("{}: not an OpenSSH public key line", k.source))
        })?;
        let _ = writeln!(keys, "{} {}", super::b64(&blob), k.line.trim());
    }
    let mut script = String::new();
    let dirs = dir_files(plan);
    // renameall's list, per target directory: DIR NUL NAME NUL ... NUL (an empty record ends
    // the directory); each name is staged at stage_dir(DIR)/NAME
    let mut renames = Vec::new();
    for (dir, names) in &dirs {
        for r in std::iter::once(dir).chain(names) {
            renames.extend_from_slice(r.as_bytes());
            renames.push(0);
        }
        renames.push(0);
    }
    if !dirs.is_empty() {
        let stages: String = dirs
            .iter()
            .map(|(d, _)| format!("{}\n", stage_dir(d, nonce)))
            .collect();
        let _ = writeln!(script, "printf '%s' {} > \"$st/stages\"", quote(&stages)?);
        for chunk in plan.files.chunks(500) {
            let targets: Vec<String> = chunk
                .iter()
                .map(|f| quote(&f.target))
                .collect::<Result<_>>()?;
            let _ = writeln!(script, "notdir {} || abort 1", targets.join(" "));
        }
        let _ = writeln!(script, "stagefiles || abort 1");
        let _ = writeln!(script, "if haveperl; then renameall || abort 1; else");
        for (dir, names) in &dirs {
            for chunk in names.chunks(200) {
                let staged: Vec<String> = chunk.iter().map(|n| quote(n)).collect::<Result<_>>()?;
                let _ = writeln!(
                    script,
                    "movein {} {} || abort 1",
                    quote(dir)?,
                    staged.join(" ")
                );
            }
        }
        let _ = writeln!(script, "fi");
        let _ = writeln!(script, "unstage");
    }
    for (i, s) in plan.scripts.iter().enumerate() {
        let _ = writeln!(script, "place {i} {} || abort 1", quote(&s.remote_name)?);
    }
    let _ = writeln!(script, "mark end 1 0");
    if !plan.scripts.is_empty() {
        let _ = writeln!(script, "cloudinit");
    }
    for (i, s) in plan.scripts.iter().enumerate() {
        let shebang = u8::from(s.content.starts_with(b"#!"));
        let _ = writeln!(script, "run {} {} {shebang}", i + 2, quote(&s.remote_name)?);
    }
    let mut entries: Vec<(String, &[u8])> = vec![
        ("run.sh".into(), RUNNER.as_bytes()),
        ("vars.sh".into(), vars.as_bytes()),
        ("plan.sh".into(), script.as_bytes()),
        ("keys".into(), keys.as_bytes()),
        ("renames".into(), &renames),
    ];
    for (i, s) in plan.scripts.iter().enumerate() {
        entries.push((format!("s/{i}"), &s.content));
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, &name, data)
            .map_err(|e| Error::unexpected(format!("building the upload: {e}")))?;
    }
    tar.into_inner()
        .map_err(|e| Error::unexpected(format!("building the upload: {e}")))
}

struct Step {
    report: StepReport,
    out: Vec<u8>,
    err: Vec<u8>,
    started: Option<Instant>,
    ended: Option<Instant>,
}

#[derive(Default)]
struct StreamState {
    buf: Vec<u8>,
    current: usize,
    done: bool,
}

/// Splits the runner's stdout and stderr into steps at the nonce markers, streaming script
/// lines live.
struct Demux<'a> {
    node: String,
    nonce: Vec<u8>,
    steps: Vec<Step>,
    streams: [StreamState; 2],
    on_line: &'a mut dyn FnMut(&str, bool, &str),
}

impl<'a> Demux<'a> {
    fn new(
        node: &str,
        nonce: &str,
        scripts: &[String],
        on_line: &'a mut dyn FnMut(&str, bool, &str),
    ) -> Self {
        let step = |name: &str, kind| Step {
            report: StepReport {
                name: name.to_string(),
                kind,
                status: None,
                duration: Duration::ZERO,
                stdout: String::new(),
                stderr: String::new(),
                skipped: false,
            },
            out: Vec::new(),
            err: Vec::new(),
            started: None,
            ended: None,
        };
        let mut steps = vec![step("keys", StepKind::Keys), step("files", StepKind::Files)];
        steps.extend(scripts.iter().map(|s| step(s, StepKind::Script)));
        Demux {
            node: node.to_string(),
            nonce: nonce.as_bytes().to_vec(),
            steps,
            streams: Default::default(),
            on_line,
        }
    }

    /// Takes a chunk of stdout or stderr; true once both streams said `done`.
    fn feed(&mut self, is_err: bool, data: &[u8]) -> bool {
        let s = usize::from(is_err);
        self.streams[s].buf.extend_from_slice(data);
        while let Some(nl) = self.streams[s].buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.streams[s].buf.drain(..=nl).collect();
            let line = &line[..nl];
            match marker_at(line, &self.nonce) {
                Some((p, marker)) => {
                    if p > 0 {
                        // The last line of a step's output, without its newline.
                        self.content(is_err, &line[..p], false);
                    }
                    self.marker(is_err, &marker);
                }
                None => self.content(is_err, line, true),
            }
        }
        self.all_done()
    }

    /// Output left without a final newline when the channel ended.
    fn flush(&mut self) {
        for is_err in [false, true] {
            let rest = std::mem::take(&mut self.streams[usize::from(is_err)].buf);
            if !rest.is_empty() {
                self.content(is_err, &rest, false);
            }
        }
    }

    fn content(&mut self, is_err: bool, line: &[u8], newline: bool) {
        let i = self.streams[usize::from(is_err)].current;
        let step = &mut self.steps[i];
        let buf = if is_err { &mut step.err } else { &mut step.out };
        buf.extend_from_slice(line);
        if newline {
            buf.push(b'\n');
        }
        let text = text(line);
        let text = text.trim_end_matches('\r');
        if step.report.kind == StepKind::Script {
            (self.on_line)(&step.report.name, is_err, text);
        } else if let Some(msg) = text.strip_prefix("provision: ") {
            output::warn(&format!("{}: {msg}", self.node));
        } else if !text.trim().is_empty() {
            output::debug(&format!("{}: {}: {text}", self.node, step.report.name));
        }
    }

    fn marker(&mut self, is_err: bool, marker: &str) {
        let mut words = marker.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let index: Option<usize> = words.next().and_then(|w| w.parse().ok());
        let status: Option<i32> = words.next().and_then(|w| w.parse().ok());
        let stream = &mut self.streams[usize::from(is_err)];
        match (kind, index) {
            ("done", _) => stream.done = true,
            ("note", _) if !is_err && marker.ends_with(" cloud-init") => {
                output::status(&self.node, "waiting for cloud-init");
            }
            ("start", Some(i)) if i < self.steps.len() => {
                stream.current = i;
                if !is_err {
                    self.steps[i].started = Some(Instant::now());
                    if self.steps[i].report.kind == StepKind::Script {
                        // the node's row on a terminal shows the script it is in
                        output::status(
                            &self.node,
                            &format!("running {}", self.steps[i].report.name),
                        );
                    }
                }
            }
            ("end", Some(i)) if i < self.steps.len() && !is_err => {
                let step = &mut self.steps[i];
                step.ended = Some(Instant::now());
                step.report.status = status;
                step.report.duration = step.started.map(|t| t.elapsed()).unwrap_or_default();
                if step.report.kind == StepKind::Script && status == Some(TIMEOUT_STATUS) {
                    output::debug(&format!(
                        "{}: {} reported status {TIMEOUT_STATUS} (timeout)",
                        self.node, step.report.name
                    ));
                }
            }
            _ => {}
        }
    }

    fn all_done(&self) -> bool {
        self.streams.iter().all(|s| s.done)
    }

    fn current_step_name(&self) -> String {
        let s = &self.steps[self.streams[0].current].report;
        match s.kind {
            StepKind::Script => format!("script {}", s.name),
            _ => s.name.clone(),
        }
    }

    /// The phases of a provision that broke at `end` (the connection lost, the runner gone):
    /// the upload, the cloud-init wait and each script, as far as they got, the one it broke
    /// in marked failed (a script that ended with a failing status is marked failed too).
    fn broken_phases(&self, started: Instant, end: Instant) -> Vec<crate::phases::Phase> {
        use crate::phases::Phase;
        let stuck = |kind, script: Option<String>, from: Instant| Phase {
            kind,
            script,
            duration: end.saturating_duration_since(from),
            failed: true,
        };
        let Some(placed) = self.steps.get(FILES).and_then(|s| s.ended) else {
            return vec![stuck("upload", None, started)];
        };
        let mut out = vec![Phase::new(
            "upload",
            placed.saturating_duration_since(started),
        )];
        let Some(first) = self.steps.get(FILES + 1).and_then(|s| s.started) else {
            out.push(stuck("cloud-init", None, placed));
            return out;
        };
        out.push(Phase::new(
            "cloud-init",
            first.saturating_duration_since(placed),
        ));
        for s in &self.steps[FILES + 1..] {
            let Some(begun) = s.started else { break };
            let name = Some(s.report.name.clone());
            match s.ended {
                None => {
                    out.push(stuck("script", name, begun));
                    break;
                }
                Some(ended) => out.push(Phase {
                    kind: "script",
                    script: name,
                    duration: ended.saturating_duration_since(begun),
                    failed: s.report.status.is_some_and(|c| c != 0),
                }),
            }
        }
        out
    }

    fn all_stderr(&self) -> String {
        let all: Vec<u8> = self.steps.iter().flat_map(|s| s.err.clone()).collect();
        String::from_utf8_lossy(&all).into_owned()
    }

    /// The steps' reports, and the upload and cloud-init phases of a provision that began at
    /// `started`: the upload ends with the files step (keys, files and scripts in place), the
    /// cloud-init wait with the first script's start.
    fn into_report(self, started: Instant) -> ProvisionReport {
        let placed = self.steps.get(FILES).and_then(|s| s.ended);
        let upload = placed.map(|t| t.saturating_duration_since(started));
        let first_script = self.steps.get(FILES + 1).and_then(|s| s.started);
        let cloud_init = placed
            .zip(first_script)
            .map(|(p, f)| f.saturating_duration_since(p));
        let steps = self
            .steps
            .into_iter()
            .map(|s| {
                let mut r = s.report;
                r.stdout = text(&s.out);
                r.stderr = text(&s.err);
                r.skipped = r.status.is_none();
                r
            })
            .collect();
        ProvisionReport {
            steps,
            upload,
            cloud_init,
        }
    }
}

/// Where a runner's marker ends `line`, and the marker's words: `NONCE start I`,
/// `NONCE end I STATUS` or `NONCE done`, exactly, at the end of the line (where the runner
/// writes them: alone, or after a script's last output that had no newline). The nonce
/// anywhere else — e.g. in a staged path that tar names in an error — is output.
fn marker_at(line: &[u8], nonce: &[u8]) -> Option<(usize, String)> {
    let p = line.windows(nonce.len()).rposition(|w| w == nonce)?;
    let rest = std::str::from_utf8(&line[p + nonce.len()..]).ok()?;
    let words: Vec<&str> = rest.strip_prefix(' ')?.split(' ').collect();
    let number = |w: &str| {
        !w.is_empty()
            && w.trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit())
    };
    let ok = match words.as_slice() {
        ["done"] => true,
        ["note", what] => !what.is_empty(),
        ["start", i] => number(i),
        ["end", i, status] => number(i) && number(status),
        _ => false,
    };
    ok.then(|| (p, words.join(" ")))
}

/// Output as text: UTF-8 as is; bytes that are not UTF-8 written as `\xNN`, so the reports
/// keep them (and show that they are not text) instead of turning them into U+FFFD.
pub(super) fn text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_splits_steps_and_streams_lines() {
        let mut lines = Vec::new();
        let mut on_line = |name: &str, err: bool, line: &str| {
            lines.push(format!("{name}:{}:{line}", u8::from(err)))
        };
        let names = vec!["a.sh".to_string(), "b.sh".to_string()];
        let mut d = Demux::new("n", "NONCE", &names, &mut on_line);
        let out = "NONCE start 0\nNONCE end 0 0\nNONCE start 1\nNONCE end 1 0\n\
                   NONCE start 2\nhello\nno newlineNONCE end 2 0\nNONCE start 3\nx\nNONCE end 3 7\nNONCE done\n";
        // Markers may arrive split across chunks.
        for chunk in out.as_bytes().chunks(5) {
            assert!(!d.feed(false, chunk));
        }
        assert!(d.feed(true, b"NONCE start 2\noops\nNONCE end 2 0\nNONCE done\n"));
        let r = d.into_report(Instant::now());
        assert_eq!(r.steps.len(), 4);
        assert_eq!(r.steps[2].stdout, "hello\nno newline");
        assert_eq!(r.steps[2].stderr, "oops\n");
        assert_eq!(r.steps[3].status, Some(7));
        assert_eq!(r.failed_script().unwrap().name, "b.sh");
        assert_eq!(
            lines,
            [
                "a.sh:0:hello",
                "a.sh:0:no newline",
                "b.sh:0:x",
                "a.sh:1:oops"
            ]
        );
    }

    #[test]
    fn steps_without_an_end_are_skipped() {
        let mut on_line = |_: &str, _: bool, _: &str| {};
        let names = vec!["a.sh".to_string()];
        let mut d = Demux::new("n", "N0", &names, &mut on_line);
        d.feed(
            false,
            b"N0 start 0\nN0 end 0 0\nN0 start 1\nN0 end 1 0\nN0 done\n",
        );
        let r = d.into_report(Instant::now());
        assert!(r.steps[2].skipped && r.steps[2].status.is_none());
        assert!(!r.steps[0].skipped);
    }

    #[test]
    fn the_remote_command_is_one_line_whose_statuses_are_decoded_here() {
        let line = unpack_line();
        assert!(
            !line.contains('\n') && line.starts_with("umask 077;"),
            "{line}"
        );
        assert!(line.contains(&format!("exit {}", RemoteExit::NO_STAGING)));
        assert!(line.contains(&format!("rc={}", RemoteExit::UNPACK_FAILED)));
        assert!(line.contains("run.sh\" login \"$st\""));
        // The first section is read by its length ($1), never by tar to the end of stdin.
        assert!(line.contains("count_bytes,fullblock") && line.contains("count=\"$1\""));
        assert_eq!(RemoteExit::from_status(97), RemoteExit::NoStaging);
        assert!(RemoteExit::why(Some(98), "files").contains("(tar)"));
        assert!(RemoteExit::why(Some(3), "files").contains("during files (exit status 3)"));
        assert!(RemoteExit::why(None, "keys").contains("closed during keys"));
    }

    #[test]
    fn runner_reads_every_variable_that_vars_sh_sets() {
        let vars = runner_vars("N1", &RunOptions::default(), &Default::default()).unwrap();
        for line in vars.lines() {
            let name = line.split('=').next().unwrap();
            assert!(
                RUNNER.contains(&format!("${name}")),
                "runner.sh never reads {name}"
            );
        }
        assert!(vars.contains("NONCE=N1\n") && vars.contains("SCRIPT_TIMEOUT=0\n"));
    }

    #[test]
    fn markers_match_only_at_the_end_of_a_line() {
        let n = b"provision-abc";
        assert_eq!(
            marker_at(b"provision-abc done", n),
            Some((0, "done".into()))
        );
        assert_eq!(
            marker_at(b"no newlineprovision-abc end 2 0", n),
            Some((10, "end 2 0".into()))
        );
        // tar naming a staged path: output, not a marker.
        let tar = b"tar: etc/.provision-abc/a b: Cannot write: No space left on device";
        assert_eq!(marker_at(tar, n), None);
        assert_eq!(marker_at(b"provision-abc start", n), None);
        assert_eq!(marker_at(b"provision-abc end 1 0 extra", n), None);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept_as_escapes() {
        assert_eq!(text(b"ok \xff\xfe caf\xc3\xa9"), "ok \\xFF\\xFE café");
    }

    #[test]
    fn timeout_seconds_for_sleep() {
        assert_eq!(secs(Duration::from_secs(5)), "5");
        assert_eq!(secs(Duration::from_millis(1500)), "1.500");
    }
}
