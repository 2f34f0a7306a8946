//! Running one action of an exec provider: a child process in a process group of its own, its
//! input written to stdin, stdout and stderr collected, and a deadline that ends the whole
//! group (the action and every child it started, even ones that left the group's parent) so a
//! hung action never leaves processes behind. Its own group also keeps a terminal's Ctrl-C
//! away from it: deploy-node decides what happens to a create in flight.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bytes of stdout kept (a node list of a big account fits many times over).
const STDOUT_LIMIT: usize = 32 << 20;
/// Bytes of stderr kept: the end, which holds the error.
const STDERR_LIMIT: usize = 64 << 10;
/// How long a group gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

/// One invocation.
pub(crate) struct Invocation<'a> {
    pub exe: &'a Path,
    pub cwd: &'a Path,
    /// Added to this process's environment.
    pub env: &'a [(String, String)],
    pub stdin: &'a [u8],
    pub timeout: Duration,
}

/// How an invocation ended.
pub(crate) enum Finished {
    /// It exited (or was killed by a signal not ours) and closed its output.
    Exited {
        status: ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// The deadline passed: its process group was killed. `exited` when the action itself had
    /// ended but something it started kept stdout or stderr open.
    TimedOut { stderr: Vec<u8>, exited: bool },
}

/// Runs the invocation to its end or its deadline.
pub(crate) fn run(inv: &Invocation) -> std::io::Result<Finished> {
    let deadline = Instant::now() + inv.timeout;
    let mut child = Command::new(inv.exe)
        .current_dir(inv.cwd)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pgid = child.id() as i32;
    let mut stdin = child.stdin.take().expect("piped");
    let input = inv.stdin.to_vec();
    // An action that does not read its input must not block us: write from a thread and
    // ignore a closed pipe.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = reader(child.stdout.take().expect("piped"), STDOUT_LIMIT, false);
    let err = reader(child.stderr.take().expect("piped"), STDERR_LIMIT, true);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });

    let remaining = || deadline.saturating_duration_since(Instant::now());
    let status = match rx.recv_timeout(remaining()) {
        Ok(status) => status?,
        Err(_) => {
            kill_group(pgid);
            let _ = rx.recv_timeout(TERM_GRACE * 3);
            return Ok(Finished::TimedOut {
                stderr: collect(&err, TERM_GRACE),
                exited: false,
            });
        }
    };
    let stdout = out.recv_timeout(remaining());
    let stderr = err.recv_timeout(remaining());
    match (stdout, stderr) {
        (Ok(stdout), Ok(stderr)) => Ok(Finished::Exited {
            status,
            stdout,
            stderr,
        }),
        (_, stderr) => {
            kill_group(pgid);
            let stderr = stderr.or_else(|_| err.recv_timeout(TERM_GRACE));
            Ok(Finished::TimedOut {
                stderr: stderr.unwrap_or_default(),
                exited: true,
            })
        }
    }
}

fn collect(rx: &mpsc::Receiver<Vec<u8>>, within: Duration) -> Vec<u8> {
    rx.recv_timeout(within).unwrap_or_default()
}

/// Reads `r` to its end in a thread; keeps the first (or, with `tail`, the last) `limit` bytes.
fn reader(mut r: impl Read + Send + 'static, limit: usize, tail: bool) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > limit {
                        if tail {
                            kept.drain(..kept.len() - limit);
                        } else {
                            kept.truncate(limit);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

/// Ends process group `pgid` and every descendant of its leader (also those that moved to a
/// group or session of their own): SIGTERM, a grace period, then SIGKILL.
fn kill_group(pgid: i32) {
    let mut victims = descendants(pgid as u32);
    signal_all(pgid, &victims, Signal::SIGTERM);
    let until = Instant::now() + TERM_GRACE;
    while Instant::now() < until && (group_alive(pgid) || victims.iter().any(|&p| alive(p))) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Children forked during the grace period.
    victims.extend(descendants(pgid as u32));
    signal_all(pgid, &victims, Signal::SIGKILL);
}

/// Sends `sig` to process group `pgid` and to each of `pids`.
fn signal_all(pgid: i32, pids: &BTreeSet<u32>, sig: Signal) {
    let _ = killpg(Pid::from_raw(pgid), sig);
    for &p in pids {
        let _ = kill(Pid::from_raw(p as i32), sig);
    }
}

fn group_alive(pgid: i32) -> bool {
    // no signal: only checks that the group exists
    killpg(Pid::from_raw(pgid), None).is_ok()
}

/// Live, non-zombie process `pid`.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

/// Every process descending from `root` (parent links from /proc), not `root` itself.
fn descendants(root: u32) -> BTreeSet<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && found.insert(child) {
                frontier.push(child);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Finished {
        run(&Invocation {
            exe: Path::new("/bin/sh"),
            cwd: Path::new("/"),
            env: &[],
            stdin: format!("{script}\n").as_bytes(),
            timeout,
        })
        .unwrap()
    }

    #[test]
    fn collects_output_and_status() {
        match sh("echo out; echo err >&2; exit 3", Duration::from_secs(10)) {
            Finished::Exited {
                status,
                stdout,
                stderr,
            } => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(stdout, b"out\n");
                assert_eq!(stderr, b"err\n");
            }
            Finished::TimedOut { .. } => panic!("timed out"),
        }
    }

    #[test]
    fn a_background_child_holding_stdout_is_a_timeout_and_is_killed() {
        let started = Instant::now();
        match sh("sleep 30 & echo $! >&2; exit 0", Duration::from_millis(500)) {
            Finished::TimedOut { stderr, exited } => {
                assert!(exited);
                let pid: u32 = String::from_utf8_lossy(&stderr).trim().parse().unwrap();
                std::thread::sleep(Duration::from_millis(100));
                assert!(!alive(pid), "sleep {pid} survived");
            }
            Finished::Exited { .. } => panic!("should time out"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
