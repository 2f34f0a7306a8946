//! The `local` driver against the real OpenSSH sshd, ssh, ssh-keygen and ssh-keyscan: a node
//! serves SSH with the pinned host key and the authorized key only, outlives its creator,
//! lists truthfully, and leaves no process and no file behind once destroyed. Run as root,
//! nodes are isolated (tests/local_isolation.rs checks what that adds); the tests with fake
//! sshd scripts in a temporary directory turn isolation off, since such a script is not
//! visible inside a node.

use crate::support::procs;
use procs::pids_with_cmdline;
use provision::provider::local::{self, Isolation, LocalProvider};
use provision::provider::{build, Credentials, Destroyed, Node, NodeSpec, NodeState, Provider};
use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Destroys the node when a test ends, even by panic, so no sshd outlives the tests.
struct Guard<'a>(&'a LocalProvider, String);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.0.destroy(&self.1);
    }
}

fn spec(name: &str, keys: Vec<String>) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        image: String::new(),
        size: String::new(),
        location: String::new(),
        public_keys: keys,
        tags: BTreeMap::from([("role".to_string(), "test".to_string())]),
    }
}

/// A fresh ed25519 client key: (private key path, public key line).
fn client_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    let public = fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

fn addr(node: &Node) -> Ipv4Addr {
    node.public_ip.as_deref().unwrap().parse().unwrap()
}

/// Runs `cmd` on the node with the real ssh client, host key pinned, strict checking.
fn ssh(node: &Node, key: &Path, dir: &Path, cmd: &str) -> Output {
    let port = node.ssh.port.unwrap();
    let ip = addr(node);
    let known = dir.join(format!("known_hosts_{ip}_{port}"));
    let host = if port == 22 {
        ip.to_string()
    } else {
        format!("[{ip}]:{port}")
    };
    let line = format!("{host} {}\n", node.ssh.host_key.as_ref().unwrap());
    fs::write(&known, line).unwrap();
    Command::new("ssh")
        .env_remove("SSH_AUTH_SOCK")
        .arg("-i")
        .arg(key)
        .arg("-p")
        .arg(port.to_string())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            "-F",
            "/dev/null",
        ])
        .arg(format!("{}@{ip}", node.ssh.user.as_ref().unwrap()))
        .arg(cmd)
        .output()
        .unwrap()
}

/// How long a node's processes may take to appear or go.
const SETTLE: Duration = Duration::from_secs(5);

fn wait_until(f: impl FnMut() -> bool) -> bool {
    procs::wait_until(SETTLE, f)
}

fn record_pid(p: &LocalProvider, name: &str) -> u32 {
    p.record(name).unwrap().unwrap().pid
}

#[test]
fn create_serves_ssh_with_pinned_host_key_and_authorized_key_only() {
    let tmp = tempfile::tempdir().unwrap();
    let p = LocalProvider::with_state_dir(tmp.path());
    let (key, public) = client_key(tmp.path(), "good");
    let (other, _) = client_key(tmp.path(), "other");
    let node = p.create(&spec("n1", vec![public.clone()])).unwrap();
    let _g = Guard(&p, "n1".into());

    assert_eq!(node.id, "n1");
    assert_eq!(node.state, NodeState::Running);
    if p.record("n1").unwrap().unwrap().isolated {
        assert_ne!(addr(&node), Ipv4Addr::LOCALHOST);
        assert!(addr(&node).is_loopback());
    } else {
        assert_eq!(node.public_ip.as_deref(), Some("127.0.0.1"));
    }
    assert_eq!(node.image.as_deref(), Some("local"));
    assert_eq!(node.tags.get("role").map(String::as_str), Some("test"));
    assert!(node.is_managed());
    assert_eq!(node.ssh.user, Some(local::current_user()));
    let port = node.ssh.port.unwrap();
    let banner = local::banner_at(addr(&node), port).unwrap();
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner}");

    // The state directory is complete; secrets are private.
    let d = p.node_dir("n1");
    for f in [
        "node.json",
        "sshd_config",
        "ssh_host_ed25519_key",
        "authorized_keys",
        "sshd.log",
        "sshd.pid",
    ] {
        assert!(d.join(f).is_file(), "missing {f}");
    }
    for f in ["ssh_host_ed25519_key", "authorized_keys", "node.json"] {
        let mode = fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("node.json")).unwrap()).unwrap();
    for k in [
        "id", "name", "address", "port", "pid", "user", "host_key", "created", "tags",
    ] {
        assert!(!json[k].is_null(), "node.json lacks {k}");
    }
    assert_eq!(json["port"], port);
    assert!(time::OffsetDateTime::parse(
        json["created"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    assert_eq!(
        fs::read_to_string(d.join("authorized_keys")).unwrap(),
        public + "\n"
    );

    // The host key we pin is the one sshd serves.
    let scan = Command::new("ssh-keyscan")
        .args(["-t", "ed25519", "-p", &port.to_string()])
        .arg(addr(&node).to_string())
        .output()
        .unwrap();
    let scanned = String::from_utf8_lossy(&scan.stdout);
    let served = scanned
        .lines()
        .find(|l| !l.starts_with('#'))
        .expect("ssh-keyscan got a key");
    let host_key = node.ssh.host_key.clone().unwrap();
    assert_eq!(served.split_once(' ').unwrap().1.trim(), host_key.trim());

    // End to end with the real client: the authorized key works, another key does not.
    let ok = ssh(&node, &key, tmp.path(), "echo hello-$(id -un)");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        format!("hello-{}", local::current_user())
    );
    let denied = ssh(&node, &other, tmp.path(), "true");
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Permission denied"));

    // Nothing went wrong on the server side (LogLevel ERROR).
    let log = fs::read_to_string(d.join("sshd.log")).unwrap();
    assert!(log.trim().is_empty(), "sshd.log: {log}");

    // list and get agree.
    let listed = p.list(false).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], node);
    assert_eq!(p.get("n1").unwrap().unwrap(), node);
    assert_eq!(p.get("nope").unwrap(), None);
    assert_eq!(p.poll_interval(), Duration::from_millis(50));
}

#[test]
fn destroy_kills_session_background_jobs_and_removes_state() {
    let tmp = tempfile::tempdir().unwrap();
    let p = LocalProvider::with_state_dir(tmp.path());
    let (key, public) = client_key(tmp.path(), "k");
    let node = p.create(&spec("bg", vec![public])).unwrap();
    let _g = Guard(&p, "bg".into());
    let secs = format!("{}", 900_000 + u32::from(node.ssh.port.unwrap()));
    let out = ssh(
        &node,
        &key,
        tmp.path(),
        &format!(
            "nohup sleep {secs} >/dev/null 2>&1 & setsid sleep {secs} >/dev/null 2>&1 </dev/null &"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let needle = format!("sleep {secs}");
    assert!(wait_until(|| pids_with_cmdline(&needle).len() == 2));

    assert_eq!(p.destroy("bg").unwrap(), Destroyed::Destroyed);
    assert!(
        wait_until(|| pids_with_cmdline(&needle).is_empty()),
        "background jobs survived"
    );
    assert!(!p.node_dir("bg").exists());
    assert!(
        local::banner_at(addr(&node), node.ssh.port.unwrap()).is_none(),
        "sshd still answers"
    );
    assert_eq!(p.destroy("bg").unwrap(), Destroyed::AlreadyGone);
    assert_eq!(p.get("bg").unwrap(), None);
    assert!(p.list(true).unwrap().is_empty());
}

#[test]
fn node_whose_sshd_died_lists_stopped_and_destroys() {
    let tmp = tempfile::tempdir().unwrap();
    let p = LocalProvider::with_state_dir(tmp.path());
    p.create(&spec("dead", vec![])).unwrap();
    let _g = Guard(&p, "dead".into());
    let pid = record_pid(&p, "dead");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(wait_until(
        || p.get("dead").unwrap().unwrap().state == NodeState::Stopped
    ));
    let listed = p.list(false).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, NodeState::Stopped);
    assert_eq!(p.destroy("dead").unwrap(), Destroyed::Destroyed);
    assert!(!p.node_dir("dead").exists());
}

#[test]
fn duplicate_and_invalid_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p = LocalProvider::with_state_dir(tmp.path());
    p.create(&spec("dup", vec![])).unwrap();
    let _g = Guard(&p, "dup".into());
    let err = p.create(&spec("dup", vec![])).unwrap_err();
    assert_eq!(err.code(), 2);
    assert!(err.to_string().contains("'dup' already exists"), "{err}");
    // The first node is untouched.
    assert_eq!(p.get("dup").unwrap().unwrap().state, NodeState::Running);
    for bad in ["", "../x", ".hidden", "a b"] {
        assert_eq!(
            p.create(&spec(bad, vec![])).unwrap_err().code(),
            2,
            "{bad:?}"
        );
        assert_eq!(p.destroy(bad).unwrap(), Destroyed::AlreadyGone);
    }
}

#[test]
fn corrupt_record_is_skipped_by_list_and_still_destroyable() {
    let tmp = tempfile::tempdir().unwrap();
    let p = LocalProvider::with_state_dir(tmp.path());
    p.create(&spec("good", vec![])).unwrap();
    let _g = Guard(&p, "good".into());
    p.create(&spec("bad", vec![])).unwrap();
    let _g2 = Guard(&p, "bad".into());
    let bad = p.get("bad").unwrap().unwrap();
    let port = bad.ssh.port.unwrap();
    fs::write(p.node_dir("bad").join("node.json"), "{not json").unwrap();
    let names: Vec<String> = p.list(false).unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["good"]);
    assert!(p.get("bad").is_err());
    // destroy still finds sshd through its pid file.
    assert_eq!(p.destroy("bad").unwrap(), Destroyed::Destroyed);
    assert!(wait_until(|| local::banner_at(addr(&bad), port).is_none()));
}

#[test]
fn failing_sshd_gives_its_message_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("fake-sshd");
    fs::write(
        &fake,
        "#!/bin/sh\necho 'fatal: simulated failure' >&2\nexit 255\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let p = LocalProvider::with_state_dir(tmp.path())
        .with_sshd(&fake)
        .with_isolation(Isolation::Off);
    let err = p.create(&spec("broken", vec![])).unwrap_err().to_string();
    assert!(
        err.contains("broken") && err.contains("simulated failure"),
        "{err}"
    );
    assert!(!p.node_dir("broken").exists());
    assert!(p.list(true).unwrap().is_empty());
}

#[test]
fn taken_port_is_retried_with_another_one() {
    let tmp = tempfile::tempdir().unwrap();
    // The first start fails the way sshd does when another process took the port between our
    // probe and its bind: it forks, logs the fatal bind error and writes no pid file.
    let fake = tmp.path().join("racy-sshd");
    let flag = tmp.path().join("failed-once");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ ! -e {flag} ]; then touch {flag}\n\
             echo 'error: Bind to port 1 on 127.0.0.1 failed: Address already in use.' >&2\n\
             echo 'fatal: Cannot bind any address.' >&2\nexit 0\nfi\nexec {} \"$@\"\n",
            local::sshd_path().unwrap().display(),
            flag = flag.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let p = LocalProvider::with_state_dir(tmp.path())
        .with_sshd(&fake)
        .with_isolation(Isolation::Off);
    let started = Instant::now();
    let node = p.create(&spec("racy", vec![])).unwrap();
    let _g = Guard(&p, "racy".into());
    assert!(flag.exists());
    assert!(started.elapsed() < Duration::from_secs(4), "no fast retry");
    assert!(local::banner_at(addr(&node), node.ssh.port.unwrap())
        .unwrap()
        .starts_with("SSH-2.0-"));
    assert_eq!(node.state, NodeState::Running);
}

#[test]
fn build_makes_known_providers_and_refuses_unknown_ones() {
    let cfg = provision::config::Config::default();
    let creds = Credentials::default();
    assert_eq!(build("local", &cfg, &creds).unwrap().name(), "local");
    assert_eq!(build("static", &cfg, &creds).unwrap().name(), "static");
    let err = build("nimbus", &cfg, &creds).err().unwrap();
    assert_eq!(err.code(), 2);
    assert!(err.to_string().contains("nimbus"));
    let creds = Credentials {
        userid: Some("me".into()),
        secret: Some("s3cret".into()),
    };
    assert!(!format!("{creds:?}").contains("s3cret"));
    assert!(local::check_available().is_ok());
}

#[test]
fn create_with_host_key_serves_the_given_key() {
    let tmp = tempfile::tempdir().unwrap();
    let p = LocalProvider::with_state_dir(tmp.path());
    let (key, public) = client_key(tmp.path(), "good");
    // the host key a cloud driver would put into cloud-init user-data
    let (host, host_public) = client_key(tmp.path(), "host");
    let host_private = fs::read_to_string(&host).unwrap();
    let node = p
        .create_with_host_key(&spec("hk1", vec![public]), &host_private)
        .unwrap();
    let _g = Guard(&p, "hk1".into());
    let blob = |l: &str| l.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(
        blob(node.ssh.host_key.as_deref().unwrap()),
        blob(&host_public)
    );
    // `ssh` pins node.ssh.host_key with StrictHostKeyChecking=yes: the sshd really serves it
    let out = ssh(&node, &key, tmp.path(), "echo pinned");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pinned");

    // a key that is not an OpenSSH private key is refused, leaving nothing behind
    let e = p
        .create_with_host_key(&spec("hk2", vec![]), "not a key")
        .unwrap_err();
    assert!(e.to_string().contains("host key"), "{e}");
    assert!(!p.node_dir("hk2").exists());
}
