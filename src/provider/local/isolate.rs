//! Isolation of local nodes, so a node's scripts cannot reconfigure the host (`-b tz` run as
//! root must change the node's clock settings, not the user's machine).
//!
//! As root on Linux, a node's sshd is the init of its own mount, PID, UTS and IPC namespaces
//! (`unshare` from util-linux runs `launch.sh`): the host's root filesystem is seen through an
//! overlay whose upper layer lives in the node's state directory, `/root`, `/tmp` and `/run`
//! are private, `/etc/ssh` holds the node's own key and config, `/proc` shows only the node,
//! and the hostname is the node's name. The network stays the host's: each node listens on
//! its own loopback address, 127.x.y.z port 22, like a machine of its own.
//!
//! Every mount is made inside the node's private mount namespace, so the host's mount table
//! never shows one, and all of them vanish when the namespace's last process exits; killing
//! the namespace's init (the node's sshd) kills every process of the node. Without root,
//! namespaces or overlayfs the node runs unisolated, as before.

use crate::error::{Error, Result};
use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;

/// The node's init, written to the node's directory and run by `sh` inside the new namespaces.
const LAUNCHER: &str = include_str!("launch.sh");

/// Test and debug knob: when set (and not `0` or empty), [`isolation_available`] says no, as
/// on a machine without namespaces.
pub const NO_ISOLATION_ENV: &str = "PROVISION_LOCAL_NO_ISOLATION";

/// Whether local nodes run isolated from the host (`[providers.local] isolation`,
/// `deploy-node --isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Isolated when possible; otherwise unisolated, with one warning.
    #[default]
    Auto,
    /// Isolated or not at all: creating a node is an error (exit 2) when isolation is unavailable.
    Required,
    /// Never isolated: scripts run on the host itself.
    Off,
}

impl Isolation {
    /// The accepted spellings, for help texts and clap's `PossibleValuesParser`.
    pub const NAMES: [&'static str; 3] = ["auto", "required", "off"];
}

impl FromStr for Isolation {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Isolation::Auto),
            "required" => Ok(Isolation::Required),
            "off" => Ok(Isolation::Off),
            _ => Err(format!(
                "invalid isolation '{s}' (expected one of: {})",
                Isolation::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isolation::Auto => "auto",
            Isolation::Required => "required",
            Isolation::Off => "off",
        })
    }
}

/// `Ok` when nodes created now can be isolated; else why not, in a few words. Cheap after the
/// first call (the namespace probe runs once per process); the env knob is read every time.
pub fn isolation_available() -> std::result::Result<(), String> {
    if std::env::var_os(NO_ISOLATION_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
        return Err(format!("disabled by {NO_ISOLATION_ENV}"));
    }
    if !cfg!(target_os = "linux") {
        return Err("namespaces need Linux".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("not running as root".into());
    }
    static PROBE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

/// See [`super::LocalProvider::check_isolation`].
pub(super) fn decide(isolation: Isolation) -> Result<bool> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    match (isolation, isolation_available()) {
        (Isolation::Off, _) => Ok(false),
        (_, Ok(())) => Ok(true),
        (Isolation::Required, Err(why)) => Err(Error::usage(format!(
            "isolation of local nodes is required but unavailable: {why}"
        ))),
        (Isolation::Auto, Err(why)) => {
            WARNED.call_once(|| {
                crate::output::warn(&format!(
                    "local nodes are not isolated ({why}): their scripts change this machine"
                ))
            });
            Ok(false)
        }
    }
}

/// Tries what a node needs: the tools, the namespaces and an overlay of `/`.
fn probe() -> std::result::Result<(), String> {
    for tool in ["unshare", "setsid", "mount", "umount", "pivot_root"] {
        if which(tool).is_none() {
            return Err(format!("{tool} not found (install util-linux and mount)"));
        }
    }
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a probe directory: {e}"))?;
    for d in ["u", "w", "m"] {
        fs::create_dir(tmp.path().join(d)).map_err(|e| format!("probe: {e}"))?;
    }
    let out = Command::new("unshare")
        .args(["--mount", "--uts", "--ipc", "--pid", "--fork"])
        .args(["--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t overlay overlay -o lowerdir=/,upperdir=$1/u,workdir=$1/w $1/m && \
             mount -t proc proc $1/m/proc",
        )
        .arg("probe")
        .arg(tmp.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "namespaces or overlayfs unavailable: {}",
        why.lines().next().unwrap_or("unshare failed").trim()
    ))
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The loopback address of node `name`: derived from a hash of the name, so it is stable,
/// and never one in `taken` (other nodes) nor in 127.0.0.0/16 (127.0.0.1, 127.0.1.1, ...).
pub(super) fn pick_address(name: &str, taken: &[String]) -> Ipv4Addr {
    for salt in 0u32.. {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes().chain(salt.to_le_bytes()) {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        let [a, b, c, _] = h.to_le_bytes();
        let addr = Ipv4Addr::new(127, 1 + a % 254, b, 1 + c % 254);
        if !taken.iter().any(|t| *t == addr.to_string()) {
            return addr;
        }
    }
    unreachable!("2^32 salts cannot all be taken")
}

/// The node's layers under `dir/fs`: upper and work dirs of the overlay, its mount point, and
/// the private `/root`, seeded with `authorized_keys` as cloud-init would.
pub(super) fn prepare(dir: &Path, authorized_keys: &[u8]) -> Result<()> {
    let fs_dir = dir.join("fs");
    for (sub, mode) in [
        ("", 0o700),
        ("upper", 0o755),
        ("work", 0o700),
        ("merged", 0o755),
        ("root", 0o700),
        ("root/.ssh", 0o700),
    ] {
        let p = fs_dir.join(sub);
        fs::DirBuilder::new()
            .mode(mode)
            .create(&p)
            .map_err(|e| Error::io(format!("cannot create {}", p.display()), e))?;
    }
    crate::state::write_atomic(
        &fs_dir.join("root/.ssh/authorized_keys"),
        authorized_keys,
        0o600,
    )
}

/// The `-o` argument that puts the node's marker into sshd's command line (where `destroy`
/// finds it: sshd overwrites its environment with its process title).
pub(super) fn setenv_arg(marker: &str) -> String {
    format!("SetEnv={}", super::sshd::conf_value(marker))
}

/// What identifies an isolated node's sshd in its process title.
pub(super) fn title_needle(marker: &str) -> String {
    format!("{} -f", setenv_arg(marker))
}

/// Starts the node: `setsid -f` detaches the namespaces' holder from us, so the node outlives
/// deploy-node and nobody waits for it here. Returns once started; the launcher writes the
/// init's pid to `sshd.pid` and sshd's messages go to `log`.
pub(super) fn launch(
    dir: &Path,
    hostname: &str,
    addr: std::net::IpAddr,
    hide: &Path,
    sshd: &Path,
    marker: &str,
    log: fs::File,
) -> Result<()> {
    let (var, value) = marker.split_once('=').unwrap_or((marker, ""));
    let err_log = log
        .try_clone()
        .map_err(|e| Error::io("cannot duplicate the log file", e))?;
    // from a file, not an argv: `ps` shows a short command line, not 1.5 KB of script
    let script = dir.join("launch.sh");
    crate::state::write_atomic(&script, LAUNCHER.as_bytes(), 0o600)?;
    let status = Command::new("setsid")
        .arg("-f")
        .arg("unshare")
        .args(["--mount", "--uts", "--ipc", "--pid", "--fork"])
        .args(["--propagation", "private", "sh"])
        .arg(&script)
        .arg(dir)
        .arg(hostname)
        .arg(addr.to_string())
        .arg(hide)
        .arg(sshd)
        .arg(setenv_arg(marker))
        .env(var, value)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .status()
        .map_err(|e| Error::io("cannot run setsid/unshare", e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::unexpected(format!("setsid -f unshare: {status}")))
    }
}

/// The node's hostname: its name, cut to the 64 bytes the kernel allows.
pub(super) fn hostname(name: &str) -> &str {
    &name[..name.len().min(64)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_parses_and_prints() {
        for n in Isolation::NAMES {
            assert_eq!(n.parse::<Isolation>().unwrap().to_string(), n);
        }
        assert!("on".parse::<Isolation>().unwrap_err().contains("auto"));
        assert_eq!(Isolation::default(), Isolation::Auto);
    }

    #[test]
    fn addresses_are_stable_distinct_and_off_127_0() {
        let a = pick_address("web-1", &[]);
        assert_eq!(a, pick_address("web-1", &[]));
        assert_ne!(a.octets()[1], 0);
        assert!(a.is_loopback());
        let b = pick_address("web-1", &[a.to_string()]);
        assert_ne!(a, b);
        assert!(b.is_loopback() && b.octets()[3] != 0 && b.octets()[3] != 255);
    }
}
