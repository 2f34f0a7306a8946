//! Provisioning in one exec: the tar stream (keys, files, scripts, the runner and its plan),
//! the remote command that unpacks and runs it, and the demultiplexer that splits the runner's
//! output into steps by nonce markers.
//!
//! On the node, `sh -c` unpacks the stream into a private staging dir (mktemp, 0700) and runs
//! `run.sh login`, which appends the keys to the login user's authorized_keys, then re-runs
//! itself as root (directly, or through `sudo -n`; as the login user when root is unreachable)
//! to append root's keys, move files into place, place the scripts and run them. Files travel
//! as a nested `files.tar` whose entries already sit at `<target dir>/.provision-<nonce>/<name>`
//! with their modes: one `tar` as root stages them all beside their targets (same filesystem),
//! then one `mv` per target directory renames them into place — each rename atomic, and the
//! number of processes on the node grows with directories, not files. Before and after each step the runner prints
//! `NONCE start I` / `NONCE end I STATUS` on both stdout and stderr, and `NONCE done` at the
//! end; the nonce is random per provision, so script output cannot fake a marker.

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

/// The remote command line's program: unpack stdin into a staging dir, run the runner, clean
/// up. One line, so any login shell passes it to `sh -c` intact.
const UNPACK: &str = r#"umask 077; st=$(mktemp -d "${TMPDIR:-/tmp}/provision.XXXXXX") || exit 97; if tar -x -m -f - -C "$st"; then sh "$st/run.sh" login "$st" "$@"; rc=$?; else rc=98; fi; rm -rf "$st"; exit $rc"#;

/// The runner, shipped in the tar as `run.sh`. `plan.sh` (generated) calls put/place/run.
const RUNNER: &str = r#"# provision runner: installs what is staged in $st; steps framed by "$N" markers.
mode=$1; st=$2; N=$3; KG=$4; T=$5; LK=$6; RK=$7; SD=$8; USD=$9; shift 9; ROOT=${1:-}
mark() { printf '%s %s\n' "$N" "$*"; printf '%s %s\n' "$N" "$*" >&2; }
abort() { mark end "$1" "${2:-1}"; mark done; exit 0; }
xp() {
  case $1 in
    '~/'*) printf '%s/%s' "$HOME" "${1#??}" ;;
    '~root/'*) printf '%s/%s' "$RH" "${1#??????}" ;;
    *) printf '%s' "$1" ;;
  esac
}
addkeys() {
  f=$1; d=$(dirname "$f")
  (umask 077; mkdir -p "$d") && chmod 700 "$d" || return 1
  [ -e "$f" ] || : > "$f" || return 1
  chmod 600 "$f" || return 1
  if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f" || return 1; fi
  while read -r blob line; do
    [ -n "$blob" ] || continue
    grep -qF -e "$blob" "$f" || printf '%s\n' "$line" >> "$f" || return 1
  done < "$st/keys"
}
unstage() { [ -s "$st/stages" ] && while read -r sd; do rm -rf "$sd"; done < "$st/stages"; return 0; }
stagefiles() {
  (umask 022; tar -x -p -m --no-same-owner -f "$st/files.tar" -C /) && return 0
  unstage; echo "provision: cannot unpack the files on the node" >&2
  while read -r t; do
    d=${t%/*}; [ -d "${d:-/}" ] || echo "provision: cannot write $t: cannot create directory ${d:-/}" >&2
  done < "$st/targets"
  return 1
}
notdir() {
  while read -r t; do
    if [ -d "$t" ] && [ ! -L "$t" ]; then echo "provision: cannot write $t: it is a directory" >&2; return 1; fi
  done < "$st/targets"
}
movein() {
  d=$1; shift
  mv -f -- "$@" "$d/" || { unstage; echo "provision: cannot write into $d" >&2; return 1; }
}
place() {
  [ -d "$SD" ] || (umask 077; mkdir -p "$SD") || { echo "provision: cannot create $SD" >&2; return 1; }
  tmp=$SD/.provision-$N-$1
  if cp "$st/s/$1" "$tmp" && chmod 700 "$tmp" && mv -f "$tmp" "$SD/$2"; then return 0; fi
  rm -f "$tmp"; echo "provision: cannot write $SD/$2" >&2; return 1
}
run() {
  i=$1; name=$2
  if [ "$failed" = 1 ] && [ "$KG" != 1 ]; then return 0; fi
  if [ "$3" = 1 ]; then set -- "$SD/$name"; else set -- sh "$SD/$name"; fi
  mark start "$i"
  (umask 022; cd "$SD" && exec $SETSID "$@" </dev/null) &
  pid=$!; wd=
  if [ "$T" != 0 ]; then
    $SETSID sh -c 'sleep "$1"; : > "$2"; kill -TERM -"$3" 2>/dev/null || kill -TERM "$3"; sleep 2; kill -KILL -"$3" 2>/dev/null || kill -KILL "$3"' wd "$T" "$st/timedout.$i" "$pid" </dev/null >/dev/null 2>&1 &
    wd=$!
  fi
  wait "$pid"; rc=$?
  if [ -n "$wd" ]; then kill -TERM -"$wd" 2>/dev/null || kill -TERM "$wd" 2>/dev/null; wait "$wd" 2>/dev/null; fi
  if [ -e "$st/timedout.$i" ]; then rc=124; echo "provision: $name killed after ${T}s (script timeout)" >&2; fi
  [ "$rc" = 0 ] || failed=1
  mark end "$i" "$rc"
}
if [ "$mode" = login ]; then
  mark start 0
  RH=~root
  [ "$RH" != '~root' ] || RH=/root
  LK=$(xp "$LK"); RK=$(xp "$RK"); SD=$(xp "$SD"); USD=$(xp "$USD")
  if [ "$(id -u)" = 0 ]; then RUN=; ROOT=1
  elif sudo -n true >/dev/null 2>&1; then RUN='sudo -n'; ROOT=1
  else
    RUN=; ROOT=0; SD=$USD
    echo "provision: $(id -un) is not root and 'sudo -n' fails: root's authorized_keys not written; scripts run as $(id -un) from $SD" >&2
  fi
  addkeys "$LK" || abort 0
  exec $RUN sh "$st/run.sh" root "$st" "$N" "$KG" "$T" "$LK" "$RK" "$SD" "$USD" "$ROOT"
fi
if [ "$ROOT" = 1 ] && [ "$RK" != "$LK" ]; then addkeys "$RK" || abort 0; fi
mark end 0 0
mark start 1
SETSID=$(command -v setsid 2>/dev/null) || SETSID=
failed=0
. "$st/plan.sh"
mark done
"#;

pub(super) fn provision(
    conn: &mut Connection,
    plan: &Plan,
    opts: &RunOptions,
    on_line: &mut dyn FnMut(&str, bool, &str),
) -> Result<ProvisionReport> {
    let nonce = format!("provision-{:032x}", rand::thread_rng().gen::<u128>());
    let upload = build_upload(plan, &nonce)?;
    let timeout = opts.script_timeout.map(secs).unwrap_or_else(|| "0".into());
    let paths = conn.paths.clone();
    let args = [
        nonce.as_str(),
        if opts.keep_going { "1" } else { "0" },
        &timeout,
        &paths.login_keys,
        &paths.root_keys,
        &paths.script_dir,
        &paths.user_script_dir,
    ];
    let mut command = format!("sh -c {} provision", quote(UNPACK)?);
    for a in args {
        command.push(' ');
        command.push_str(&quote(a)?);
    }
    output::status(
        &conn.node,
        &format!(
            "installing {} key(s), {} file(s), {} script(s) ({} bytes in one stream)",
            plan.pubkeys.len(),
            plan.files.len(),
            plan.scripts.len(),
            upload.len()
        ),
    );

    let names: Vec<String> = plan.scripts.iter().map(|s| s.name.clone()).collect();
    let mut demux = Demux::new(&conn.node, &nonce, &names, on_line);
    let (pumped, status) = {
        let mut channel = conn.open_exec(&command)?;
        let mut sink = |is_err: bool, data: &[u8]| demux.feed(is_err, data);
        let pumped = pump::pump(
            &conn.session,
            conn.fd,
            &mut channel,
            &upload,
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
    let during = demux.current_step_name();
    if let Err(e) = pumped {
        return Err(conn.transport(&format!("provisioning ({during})"), e));
    }
    if !demux.all_done() {
        let why = match status {
            Some(97) => "could not create a staging directory (mktemp)".to_string(),
            Some(98) => "unpacking the upload failed (tar)".to_string(),
            Some(127) => "a command is missing on the node (sh, tar, mktemp?)".to_string(),
            Some(s) => format!("the remote runner stopped during {during} (exit status {s})"),
            None => format!("the connection closed during {during}"),
        };
        return Err(Error::deploy(
            &conn.node,
            format!("provisioning failed: {why}{}", tail(&demux.all_stderr())),
        ));
    }
    let report = demux.into_report();
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

/// The files as a tar to unpack at `/`: each at `<its dir>/.<nonce>/<name>` with its mode; and
/// the target directories in first-seen order with their files' names.
fn build_files_tar(plan: &Plan, nonce: &str) -> Result<(Vec<u8>, DirFiles)> {
    let mut dirs: DirFiles = Vec::new();
    let mut tar = tar::Builder::new(Vec::new());
    for f in &plan.files {
        let (dir, name) = f.target.rsplit_once('/').unwrap_or(("", &f.target));
        let dir = if dir.is_empty() { "/" } else { dir };
        match dirs.iter_mut().find(|(d, _)| d == dir) {
            Some((_, names)) => names.push(name.to_string()),
            None => dirs.push((dir.to_string(), vec![name.to_string()])),
        }
        let path = format!("{}/{name}", stage_dir(dir, nonce));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(f.content.len() as u64);
        h.set_mode(f.mode & 0o7777);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        tar.append_data(&mut h, path.trim_start_matches('/'), f.content.as_slice())
            .map_err(|e| Error::unexpected(format!("building the upload: {}: {e}", f.target)))?;
    }
    let bytes = tar
        .into_inner()
        .map_err(|e| Error::unexpected(format!("building the upload: {e}")))?;
    Ok((bytes, dirs))
}

/// The one tar stream: `run.sh`, `plan.sh`, `keys`, `files.tar`, `s/I` (scripts).
fn build_upload(plan: &Plan, nonce: &str) -> Result<Vec<u8>> {
    let mut keys = String::new();
    for k in &plan.pubkeys {
        let blob = super::openssh_blob(&k.line).ok_or_else(|| {
            Error::unexpected(format!("{}: not an OpenSSH public key line", k.source))
        })?;
        let _ = writeln!(keys, "{} {}", super::b64(&blob), k.line.trim());
    }
    let mut script = String::new();
    let (files_tar, dirs) = build_files_tar(plan, nonce)?;
    if !dirs.is_empty() {
        let stages: String = dirs
            .iter()
            .map(|(d, _)| format!("{}\n", stage_dir(d, nonce)))
            .collect();
        let _ = writeln!(script, "printf '%s' {} > \"$st/stages\"", quote(&stages)?);
        let targets: String = plan
            .files
            .iter()
            .map(|f| format!("{}\n", f.target))
            .collect();
        let _ = writeln!(script, "printf '%s' {} > \"$st/targets\"", quote(&targets)?);
        let _ = writeln!(script, "notdir || abort 1");
        let _ = writeln!(script, "stagefiles || abort 1");
        for (dir, names) in &dirs {
            let stage = stage_dir(dir, nonce);
            for chunk in names.chunks(200) {
                let staged: Vec<String> = chunk
                    .iter()
                    .map(|n| quote(&format!("{stage}/{n}")))
                    .collect::<Result<_>>()?;
                let _ = writeln!(
                    script,
                    "movein {} {} || abort 1",
                    quote(dir)?,
                    staged.join(" ")
                );
            }
        }
        let _ = writeln!(script, "unstage");
    }
    for (i, s) in plan.scripts.iter().enumerate() {
        let _ = writeln!(script, "place {i} {} || abort 1", quote(&s.remote_name)?);
    }
    let _ = writeln!(script, "mark end 1 0");
    for (i, s) in plan.scripts.iter().enumerate() {
        let shebang = u8::from(s.content.starts_with(b"#!"));
        let _ = writeln!(script, "run {} {} {shebang}", i + 2, quote(&s.remote_name)?);
    }
    let mut entries: Vec<(String, &[u8])> = vec![
        ("run.sh".into(), RUNNER.as_bytes()),
        ("plan.sh".into(), script.as_bytes()),
        ("keys".into(), keys.as_bytes()),
        ("files.tar".into(), &files_tar),
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
            match find(line, &self.nonce) {
                Some(p) => {
                    if p > 0 {
                        // The last line of a step's output, without its newline.
                        self.content(is_err, &line[..p], false);
                    }
                    let marker = String::from_utf8_lossy(&line[p + self.nonce.len()..]);
                    self.marker(is_err, marker.trim());
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
        let text = String::from_utf8_lossy(line);
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
            ("start", Some(i)) if i < self.steps.len() => {
                stream.current = i;
                if !is_err {
                    self.steps[i].started = Some(Instant::now());
                }
            }
            ("end", Some(i)) if i < self.steps.len() && !is_err => {
                let step = &mut self.steps[i];
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

    fn all_stderr(&self) -> String {
        let all: Vec<u8> = self.steps.iter().flat_map(|s| s.err.clone()).collect();
        String::from_utf8_lossy(&all).into_owned()
    }

    fn into_report(self) -> ProvisionReport {
        let steps = self
            .steps
            .into_iter()
            .map(|s| {
                let mut r = s.report;
                r.stdout = String::from_utf8_lossy(&s.out).into_owned();
                r.stderr = String::from_utf8_lossy(&s.err).into_owned();
                r.skipped = r.status.is_none();
                r
            })
            .collect();
        ProvisionReport { steps }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
        let r = d.into_report();
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
        let r = d.into_report();
        assert!(r.steps[2].skipped && r.steps[2].status.is_none());
        assert!(!r.steps[0].skipped);
    }

    #[test]
    fn timeout_seconds_for_sleep() {
        assert_eq!(secs(Duration::from_secs(5)), "5");
        assert_eq!(secs(Duration::from_millis(1500)), "1.500");
    }
}
