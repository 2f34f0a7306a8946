//! Running OpenSSH's sshd for a local node: finding the binary, writing its config, waiting
//! until it listens, and reading its log when it does not.

use super::ADDRESS;
use crate::error::{Error, Result};
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian/Ubuntu's openssh-server puts sshd; PATH is searched after it.
const SSHD: &str = "/usr/sbin/sshd";

/// How long `create` waits for sshd to listen.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns `Ok` when sshd is installed, else the configuration error telling how to install
/// it. deploy-node calls this while planning, before anything is created.
pub fn check_available() -> Result<()> {
    sshd_path().map(|_| ())
}

/// The sshd binary: `/usr/sbin/sshd`, else `sshd` on PATH.
pub fn sshd_path() -> Result<PathBuf> {
    let fixed = Path::new(SSHD);
    if is_executable(fixed) {
        return Ok(fixed.to_path_buf());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("sshd"))
        .find(|p| p.is_absolute() && is_executable(p))
        .ok_or_else(|| {
            Error::config("sshd not found: install openssh-server (apt-get install openssh-server)")
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The name of the user this process runs as (effective uid), for the node's login user.
pub fn current_user() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => std::env::var("USER").unwrap_or_else(|_| uid.to_string()),
    }
}

/// A value for sshd_config: double-quoted when it holds blanks or quotes.
pub(super) fn conf_value(v: &str) -> String {
    if v.chars().any(|c| c.is_whitespace() || c == '"' || c == '#') {
        format!("\"{}\"", v.replace('"', ""))
    } else {
        v.to_string()
    }
}

/// Starts sshd with config `conf` as a daemon (it forks and `setsid`s, so the node outlives
/// us) logging to `log_path`; `Some(status)` when the command failed.
pub(super) fn daemonize(
    sshd: &Path,
    conf: &Path,
    log_path: &Path,
    dir: &Path,
    log: fs::File,
) -> Result<Option<String>> {
    let err_log = log
        .try_clone()
        .map_err(|e| Error::io("cannot duplicate the log file", e))?;
    // -f first: the config path stays in the process title, which `list` checks.
    let status = Command::new(sshd)
        .arg("-f")
        .arg(conf)
        .arg("-E")
        .arg(log_path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .status()
        .map_err(|e| Error::io(format!("cannot run {}", sshd.display()), e))?;
    Ok((!status.success()).then(|| status.to_string()))
}

/// Port 22 when `prefer_22` and it is free on `addr` (an isolated node, like a real
/// machine; a host sshd on 0.0.0.0:22 takes it), else a port the kernel says is free now.
pub(super) fn free_port(addr: IpAddr, prefer_22: bool) -> Result<u16> {
    if prefer_22 && TcpListener::bind((addr, 22)).is_ok() {
        return Ok(22);
    }
    let l = TcpListener::bind((addr, 0))
        .map_err(|e| Error::io("cannot find a free loopback port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("cannot find a free loopback port", e))
}

/// Waits until sshd wrote its pid file, is alive and answers with an SSH banner. `Err` holds
/// the pid when one was written (so the caller can stop it). sshd forks before it binds, so
/// a failed bind shows only as a fatal line in the log (written since `log_from`) and no pid.
pub(super) fn wait_listening(
    dir: &Path,
    addr: IpAddr,
    port: u16,
    log_from: u64,
) -> std::result::Result<u32, Option<u32>> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pid = None;
    while Instant::now() < deadline {
        if pid.is_none() {
            pid = fs::read_to_string(dir.join("sshd.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if pid.is_none() && is_fatal(&log_tail(&dir.join("sshd.log"), log_from)) {
                return Err(None);
            }
        }
        if let Some(p) = pid {
            if !super::procs::alive(p) {
                return Err(pid);
            }
            if banner_at(addr, port).is_some_and(|b| b.starts_with("SSH-2.0-")) {
                return Ok(p);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(pid)
}

/// Whether sshd's log (or the isolated launcher's, `unshare: ...`) says it gave up.
fn is_fatal(log: &str) -> bool {
    log.contains("fatal") || log.contains("unshare: ") || bind_failed(log)
}

/// Whether sshd's log says its port was taken (worth retrying with another port).
pub(super) fn bind_failed(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("Cannot bind")
}

/// The first line a server on `127.0.0.1:port` (an unisolated node) sends, if it answers
/// quickly.
pub fn banner(port: u16) -> Option<String> {
    banner_at(ADDRESS, port)
}

/// The first line a server on `addr:port` sends, if it answers quickly.
pub fn banner_at(addr: impl Into<IpAddr>, port: u16) -> Option<String> {
    let addr = (addr.into(), port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while !got.contains(&b'\n') && got.len() < buf.len() {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    // Say goodbye politely so sshd does not log a protocol error.
    let _ = s.write_all(b"SSH-2.0-provision-probe\r\n");
    let line = String::from_utf8_lossy(&got);
    Some(line.lines().next().unwrap_or("").trim().to_string())
}

/// The log written since `from`, as one line (sshd's messages for an error).
pub(super) fn log_tail(path: &Path, from: u64) -> String {
    let text = fs::read(path).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(0).min(text.len());
    String::from_utf8_lossy(&text[start..])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// sshd's config for a node living in `dir` and listening on `listen` (each address, one
/// port; IPv6 ones in brackets, as sshd_config wants them with a port). `marker`
/// (`NAME=VALUE`) is exported into every session so destroy finds the session's processes.
/// An isolated node's sshd reads it as its own /etc/ssh/sshd_config: its host key is in
/// /etc/ssh, root's keys in the node's private /root/.ssh, and the launcher writes the pid.
pub(super) fn config_text(
    dir: &Path,
    name: &str,
    listen: (&[IpAddr], u16),
    marker: &str,
    isolated: bool,
) -> String {
    let p = |f: &str| conf_value(&dir.join(f).to_string_lossy());
    let (hostkey, keys, pid) = if isolated {
        (
            "/etc/ssh/ssh_host_ed25519_key".to_string(),
            ".ssh/authorized_keys".to_string(),
            "none".to_string(),
        )
    } else {
        // AuthorizedKeysFile expands %-tokens; a literal % must be doubled.
        let keys = p("authorized_keys").replace('%', "%%");
        (p("ssh_host_ed25519_key"), keys, p("sshd.pid"))
    };
    // Without PAM, sshd refuses every login to a locked account ('!' in /etc/shadow, as root
    // is on many installs) even with a valid key; with PAM the key is enough. sshd as a
    // normal user cannot read /etc/shadow, sees no lock, and runs best without PAM.
    let pam = if root_locked() { "yes" } else { "no" };
    let listen_lines: String = listen
        .0
        .iter()
        .map(|a| {
            format!(
                "ListenAddress {}\n",
                crate::address::with_port(&a.to_string(), listen.1)
            )
        })
        .collect();
    format!(
        "# Written by provision for local node {name}; removed by destroy-node.\n\
         {listen_lines}\
         HostKey {hostkey}\n\
         AuthorizedKeysFile {keys}\n\
         PidFile {pid}\n\
         SetEnv {marker}\n\
         UsePAM {pam}\n\
         StrictModes no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         PrintMotd no\n\
         Subsystem sftp internal-sftp\n\
         LogLevel ERROR\n",
        marker = conf_value(marker),
    )
}

/// True when we run as root and root's password field in /etc/shadow marks it locked.
fn root_locked() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    let user = current_user();
    fs::read_to_string("/etc/shadow")
        .ok()
        .and_then(|t| {
            t.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(u, _)| *u == user)
                .map(|(_, rest)| rest.starts_with('!'))
        })
        .unwrap_or(false)
}
