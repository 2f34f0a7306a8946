//! Processes of local nodes, through `/proc`: is a node's sshd still the process we started
//! (pids get reused), and which processes belong to a node so destroying it leaves nothing
//! running — its sshd, the per-connection sshd children, and everything started in its SSH
//! sessions, even background jobs that were reparented away (`nohup sleep 1000 &`).
//!
//! A session's processes are not reliably descendants or session members of the listener
//! (sshd calls `setsid` per connection and per session, and orphans go to init), so sshd
//! exports a marker variable into every session it starts (`SetEnv` in the node's
//! sshd_config) and we also match processes whose environment carries it.

use nix::sys::signal::Signal;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy)]
struct Stat {
    pid: i32,
    state: char,
    ppid: i32,
    sid: i32,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session ...`; comm may contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let _pgrp = f.next()?;
    let sid = f.next()?.parse().ok()?;
    Some(Stat {
        pid,
        state,
        ppid,
        sid,
    })
}

/// True while `pid` exists and is not a zombie (a killed daemon reparented to an init that
/// does not reap stays a zombie; it is dead for us).
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    if Path::new("/proc/self/stat").exists() {
        return stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X');
    }
    // no signal: only checks that the process exists and may be signalled
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// True when `pid` is alive and its command line mentions `needle` (the node's sshd_config
/// path, which sshd keeps in its process title): the pid was not reused by something else.
pub(crate) fn is_ours(pid: u32, needle: &str) -> bool {
    if !alive(pid) {
        return false;
    }
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => String::from_utf8_lossy(&raw).contains(needle),
        // No /proc (not Linux): trust the pid.
        Err(_) => !Path::new("/proc/self/stat").exists(),
    }
}

fn all_pids() -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn environ_has(pid: i32, marker: &[u8]) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|kv| kv == marker))
        .unwrap_or(false)
}

/// Every live process that belongs to a node: `root` (its sshd, if still ours), members of
/// `root`'s session, processes whose environment holds `marker` (`NAME=VALUE`), and all
/// descendants of those. Never this process or its ancestors.
fn members(root: Option<i32>, marker: &[u8]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let stats: Vec<Stat> = all_pids().into_iter().filter_map(stat).collect();
    let mut ancestors = vec![me];
    let mut cur = me;
    while let Some(s) = stats.iter().find(|s| s.pid == cur) {
        if s.ppid <= 1 || ancestors.contains(&s.ppid) {
            break;
        }
        ancestors.push(s.ppid);
        cur = s.ppid;
    }
    let mut found: Vec<i32> = stats
        .iter()
        .filter(|s| s.state != 'Z')
        .filter(|s| Some(s.pid) == root || Some(s.sid) == root || environ_has(s.pid, marker))
        .map(|s| s.pid)
        .collect();
    // Descendants, to a fixed point (the tree is small).
    loop {
        let before = found.len();
        for s in &stats {
            if s.state != 'Z' && found.contains(&s.ppid) && !found.contains(&s.pid) {
                found.push(s.pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.retain(|p| *p > 1 && !ancestors.contains(p));
    found
}

fn signal(pids: &[i32], sig: Signal) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

fn wait_dead(pids: &[i32], timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p as u32)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Stops a node's processes: SIGTERM to all of them, SIGKILL to what is left after `grace`;
/// repeated a few times so children forked meanwhile die too. `root` is the sshd pid when it
/// is still ours. Returns how many processes were signalled.
pub(crate) fn kill_node(root: Option<u32>, marker: &str, grace: Duration) -> usize {
    let root = root.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1);
    let mut total = 0;
    for _ in 0..3 {
        let pids = members(root.filter(|r| alive(*r as u32)), marker.as_bytes());
        if pids.is_empty() {
            break;
        }
        total += pids.len();
        // The listener first, so it accepts nothing new while its sessions die.
        if let Some(r) = root {
            signal(&[r], Signal::SIGTERM);
        }
        signal(&pids, Signal::SIGTERM);
        let left = wait_dead(&pids, grace);
        signal(&left, Signal::SIGKILL);
        wait_dead(&left, Duration::from_secs(1));
    }
    total
}

/// SIGKILL to `pid`, then waits up to `timeout` for it to be gone. For the init of an
/// isolated node, gone means every process of its PID namespace is gone too.
pub(crate) fn kill_now(pid: u32, timeout: Duration) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if pid > 1 {
        signal(&[pid], Signal::SIGKILL);
        wait_dead(&[pid], timeout);
    }
}
