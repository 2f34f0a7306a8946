//! Running OpenSSH's sshd for a local node: finding the binary, writing its config, waiting
//! until it listens, and reading its log when it does not.

use super::ADDRESS;
use crate::error::{Error, Result};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
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
    // SAFETY: getpwuid_r writes into our buffer; the returned pointers point into it.
    unsafe {
        let uid = libc::geteuid();
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) == 0
            && !out.is_null()
            && !pw.pw_name.is_null()
        {
            return std::ffi::CStr::from_ptr(pw.pw_name)
                .to_string_lossy()
                .into_owned();
        }
        std::env::var("USER").unwrap_or_else(|_| uid.to_string())
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

/// A port the kernel says is free on the loopback address right now.
pub(super) fn free_port() -> Result<u16> {
    let l = TcpListener::bind((ADDRESS, 0))
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
            if banner(port).is_some_and(|b| b.starts_with("SSH-2.0-")) {
                return Ok(p);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(pid)
}

/// Whether sshd's log says it gave up.
fn is_fatal(log: &str) -> bool {
    log.contains("fatal") || bind_failed(log)
}

/// Whether sshd's log says its port was taken (worth retrying with another port).
pub(super) fn bind_failed(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("Cannot bind")
}

/// The first line a server on the loopback `port` sends, if it answers quickly.
pub fn banner(port: u16) -> Option<String> {
    let addr = (ADDRESS, port).into();
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

/// sshd's config for a node living in `dir`. `marker` (`NAME=VALUE`) is exported into every
/// session so destroy finds the session's processes.
pub(super) fn config_text(dir: &Path, name: &str, port: u16, marker: &str) -> String {
    let p = |f: &str| conf_value(&dir.join(f).to_string_lossy());
    // AuthorizedKeysFile expands %-tokens; a literal % must be doubled.
    let keys = p("authorized_keys").replace('%', "%%");
    // Without PAM, sshd refuses every login to a locked account ('!' in /etc/shadow, as root
    // is on many installs) even with a valid key; with PAM the key is enough. sshd as a
    // normal user cannot read /etc/shadow, sees no lock, and runs best without PAM.
    let pam = if root_locked() { "yes" } else { "no" };
    format!(
        "# Written by provision for local node {name}; removed by destroy-node.\n\
         ListenAddress {ADDRESS}:{port}\n\
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
        hostkey = p("ssh_host_ed25519_key"),
        pid = p("sshd.pid"),
        marker = conf_value(marker),
    )
}

/// True when we run as root and root's password field in /etc/shadow marks it locked.
fn root_locked() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
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
