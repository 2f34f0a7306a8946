//! Looking at this machine's processes from tests: which are alive, and waiting for a change.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Live (not zombie) processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            !zombie
                && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
        })
        .collect()
}

/// Polls `f` until it holds or `within` has passed; its last answer.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// What a child used: peak RSS in KiB (`ru_maxrss` of wait4); peak threads and open file
/// descriptors (sampled from /proc every 50 ms).
pub struct Used {
    pub rss_kb: i64,
    pub threads: usize,
    pub fds: usize,
}

/// Samples `pid`'s threads and open fds until `done`; returns the peaks.
fn sample_peaks(pid: u32, done: &std::sync::atomic::AtomicBool) -> (usize, usize) {
    let (mut threads, mut fds) = (0, 0);
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let t = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let f = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        threads = threads.max(t);
        fds = fds.max(f);
        std::thread::sleep(Duration::from_millis(50));
    }
    (threads, fds)
}

/// The child's exit code and what it used, with its stdout and stderr read to the end.
// reaped by wait4, not Child::wait, which would not give the rusage
#[allow(clippy::zombie_processes)]
pub fn run_measured(mut cmd: std::process::Command) -> (i32, Used, String, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (pid, done) = (child.id(), done.clone());
        std::thread::spawn(move || sample_peaks(pid, &done))
    };
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).unwrap();
    let stderr = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; we wait for our own child, which nothing else reaps.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: status and usage are ours and live for the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (threads, fds) = sampler.join().unwrap();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let used = Used {
        rss_kb: usage.ru_maxrss,
        threads,
        fds,
    };
    (code, used, stdout, stderr)
}
