//! Local nodes as machines of their own (issue 7): run as root, a node's scripts change the
//! node and not the host, the node keeps its own hostname, address and processes, and
//! destroying it leaves no process, mount or file behind. Checked with the real ssh client,
//! like a user would. The tests need root (CI runs them as root) and skip, saying so, without.

use crate::support::procs;
use procs::pids_with_cmdline;
use provision::provider::local::{self, Isolation, LocalProvider, NO_ISOLATION_ENV};
use provision::provider::{Destroyed, Node, NodeSpec, NodeState, Provider};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: local node isolation needs root (CI runs these tests as root)");
    }
    root
}

/// Destroys the node when a test ends, even by panic.
struct Guard<'a>(&'a LocalProvider, &'a str);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.0.destroy(self.1);
    }
}

fn spec(name: &str, keys: Vec<String>) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        image: String::new(),
        size: String::new(),
        location: String::new(),
        public_keys: keys,
        tags: BTreeMap::new(),
    }
}

fn client_key(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("id");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    let public = fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

/// `ssh root@ADDR cmd`, host key pinned, only the test's key; panics on failure.
fn ssh(node: &Node, key: &Path, dir: &Path, cmd: &str) -> String {
    let out = ssh_out(node, key, dir, cmd);
    assert!(
        out.status.success(),
        "ssh {cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ssh_out(node: &Node, key: &Path, dir: &Path, cmd: &str) -> Output {
    let ip = node.public_ip.clone().unwrap();
    let port = node.ssh.port.unwrap();
    let known = dir.join(format!("known_hosts_{}", node.name));
    let host = if port == 22 {
        ip.clone()
    } else {
        format!("[{ip}]:{port}")
    };
    let line = format!("{host} {}\n", node.ssh.host_key.as_ref().unwrap());
    fs::write(&known, line).unwrap();
    Command::new("ssh")
        .env_remove("SSH_AUTH_SOCK")
        .arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(key)
        .arg("-p")
        .arg(port.to_string())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(["-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10"])
        .arg(format!("root@{ip}"))
        .arg(cmd)
        .output()
        .unwrap()
}

/// How long a node's processes may take to appear or go.
const SETTLE: Duration = Duration::from_secs(10);

fn wait_until(f: impl FnMut() -> bool) -> bool {
    procs::wait_until(SETTLE, f)
}

fn host_mounts_mention(path: &Path) -> Vec<String> {
    let p = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&p))
        .map(String::from)
        .collect()
}

fn provider(tmp: &Path) -> LocalProvider {
    LocalProvider::with_state_dir(tmp).with_isolation(Isolation::Required)
}

#[test]
fn scripts_change_the_node_not_the_host_and_destroy_leaves_nothing() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(tmp.path());
    let (key, public) = client_key(tmp.path());
    let name = "iso-bundle";
    let node = p.create(&spec(name, vec![public])).unwrap();
    let _g = Guard(&p, name);
    let dir = p.node_dir(name);
    assert!(p.record(name).unwrap().unwrap().isolated);

    // Its own loopback address, port 22 unless a host sshd holds it.
    let ip: std::net::Ipv4Addr = node.public_ip.as_deref().unwrap().parse().unwrap();
    assert!(
        ip.is_loopback() && ip != std::net::Ipv4Addr::LOCALHOST,
        "{ip}"
    );
    let port = node.ssh.port.unwrap();
    let host_sshd = std::net::TcpStream::connect(("127.0.0.1", 22)).is_ok();
    if !host_sshd {
        assert_eq!(port, 22);
    }

    let host_hostname = fs::read_to_string("/etc/hostname").ok();
    let host_bin: Vec<_> = fs::read_dir("/usr/local/bin")
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.file_name())).collect())
        .unwrap_or_default();
    let secs = format!("{}", 12345 + u32::from(ip.octets()[3]) * 1000);
    let bundle = format!(
        "set -e; echo marker > /etc/provision-test; \
         printf '#!/bin/sh\\necho tool\\n' > /usr/local/bin/provision-test-tool; \
         chmod 755 /usr/local/bin/provision-test-tool; echo changed-name > /etc/hostname; \
         mkdir -p /root/.ssh; echo 'ssh-ed25519 AAAAengine' >> /root/.ssh/authorized_keys; \
         nohup sleep {secs} >/dev/null 2>&1 &"
    );
    ssh(&node, &key, tmp.path(), &bundle);

    // The node sees all of it, under its own name, with its own processes only.
    let seen = ssh(
        &node,
        &key,
        tmp.path(),
        "cat /etc/provision-test; provision-test-tool; cat /etc/hostname; hostname; \
         grep -c engine /root/.ssh/authorized_keys; ls /proc | grep -c '^[0-9]'; \
         test -e /etc/ssh/ssh_host_rsa_key && echo host-key-visible || echo own-keys",
    );
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines[..5],
        ["marker", "tool", "changed-name", name, "1"],
        "{seen}"
    );
    let nprocs: usize = lines[5].parse().unwrap();
    assert!(
        nprocs < 15,
        "the node sees {nprocs} processes: not its own PID namespace"
    );
    assert_eq!(lines[6], "own-keys");

    // The host sees none of it.
    assert!(!Path::new("/etc/provision-test").exists());
    assert!(!Path::new("/usr/local/bin/provision-test-tool").exists());
    let host_bin_now: Vec<_> = fs::read_dir("/usr/local/bin")
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.file_name())).collect())
        .unwrap_or_default();
    assert_eq!(host_bin, host_bin_now);
    assert_eq!(fs::read_to_string("/etc/hostname").ok(), host_hostname);
    let host_keys = fs::read_to_string("/root/.ssh/authorized_keys").unwrap_or_default();
    assert!(!host_keys.contains("AAAAengine"));
    assert!(
        host_mounts_mention(&dir).is_empty(),
        "host sees the node's mounts"
    );
    // ... except its processes, as a host sees a VM's.
    let needle = format!("sleep {secs}");
    assert!(wait_until(|| pids_with_cmdline(&needle).len() == 1));
    assert_eq!(p.get(name).unwrap().unwrap().state, NodeState::Running);

    assert_eq!(p.destroy(name).unwrap(), Destroyed::Destroyed);
    assert!(
        wait_until(|| pids_with_cmdline(&needle).is_empty()),
        "background job survived"
    );
    assert!(pids_with_cmdline(&dir.to_string_lossy()).is_empty());
    assert!(host_mounts_mention(&dir).is_empty());
    assert!(!dir.exists());
    assert!(local::banner_at(ip, port).is_none(), "sshd still answers");
    assert_eq!(p.destroy(name).unwrap(), Destroyed::AlreadyGone);
}

#[test]
fn node_whose_init_died_lists_stopped_and_destroys_cleanly() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(tmp.path());
    let (key, public) = client_key(tmp.path());
    let node = p.create(&spec("iso-dead", vec![public])).unwrap();
    let _g = Guard(&p, "iso-dead");
    ssh(
        &node,
        &key,
        tmp.path(),
        "nohup sleep 23456 >/dev/null 2>&1 &",
    );
    assert!(wait_until(|| pids_with_cmdline("sleep 23456").len() == 1));
    let init = p.record("iso-dead").unwrap().unwrap().pid;
    // SAFETY: kill(2) on the node's init, which this test created.
    unsafe { libc::kill(init as i32, libc::SIGKILL) };
    assert!(wait_until(
        || p.get("iso-dead").unwrap().unwrap().state == NodeState::Stopped
    ));
    // The PID namespace died with its init.
    assert!(wait_until(|| pids_with_cmdline("sleep 23456").is_empty()));
    let listed = p.list(false).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, NodeState::Stopped);
    assert_eq!(p.destroy("iso-dead").unwrap(), Destroyed::Destroyed);
    assert!(!p.node_dir("iso-dead").exists());
    assert!(host_mounts_mention(&p.node_dir("iso-dead")).is_empty());
}

#[test]
fn nodes_get_distinct_addresses_and_isolated_filesystems() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(tmp.path());
    let (key, public) = client_key(tmp.path());
    let a = p.create(&spec("iso-a", vec![public.clone()])).unwrap();
    let _ga = Guard(&p, "iso-a");
    let b = p.create(&spec("iso-b", vec![public])).unwrap();
    let _gb = Guard(&p, "iso-b");
    assert_ne!(a.public_ip, b.public_ip);
    ssh(&a, &key, tmp.path(), "echo a > /etc/provision-only-a");
    let on_b = ssh(
        &b,
        &key,
        tmp.path(),
        "ls /etc/provision-only-a 2>&1 || true; ls /tmp",
    );
    assert!(on_b.contains("No such file"), "{on_b}");
    // The state directory (other nodes' keys and layers) is hidden inside a node.
    let state = tmp.path().join("local");
    let cmd = format!("ls {} 2>/dev/null | wc -l", state.display());
    assert_eq!(ssh(&b, &key, tmp.path(), &cmd).trim(), "0");
}

#[test]
fn taken_port_22_falls_back_to_a_free_port() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = provider(tmp.path());
    let (key, public) = client_key(tmp.path());
    // Addresses derive from the name: learn this one's, then hold its port 22 the way a host
    // sshd on 0.0.0.0:22 would.
    let first = p.create(&spec("iso-port", vec![public.clone()])).unwrap();
    p.destroy("iso-port").unwrap();
    let ip: std::net::Ipv4Addr = first.public_ip.as_deref().unwrap().parse().unwrap();
    let _holder = std::net::TcpListener::bind((ip, 22)).unwrap();
    let node = p.create(&spec("iso-port", vec![public])).unwrap();
    let _g = Guard(&p, "iso-port");
    assert_eq!(node.public_ip, first.public_ip);
    assert_ne!(node.ssh.port, Some(22));
    assert_eq!(ssh(&node, &key, tmp.path(), "hostname").trim(), "iso-port");
}

#[test]
fn config_table_sets_isolation_and_rejects_nonsense() {
    let t: toml::Table = toml::from_str("isolation = \"off\"").unwrap();
    assert_eq!(
        LocalProvider::from_table(&t).unwrap().isolation(),
        Isolation::Off
    );
    let t: toml::Table = toml::from_str("isolation = \"sometimes\"").unwrap();
    assert_eq!(LocalProvider::from_table(&t).err().unwrap().code(), 2);
    let t: toml::Table = toml::from_str("isolation = true").unwrap();
    assert_eq!(LocalProvider::from_table(&t).err().unwrap().code(), 2);
    assert_eq!(
        LocalProvider::from_table(&toml::Table::new())
            .unwrap()
            .isolation(),
        Isolation::Auto
    );
    assert_eq!("required".parse::<Isolation>(), Ok(Isolation::Required));
}

/// Runs [`CHILD`] in a process of its own with isolation made unavailable.

#[test]
fn isolation_is_available_here_as_root() {
    if !root() || std::env::var_os(NO_ISOLATION_ENV).is_some() {
        return;
    }
    assert_eq!(local::isolation_available(), Ok(()));
}
