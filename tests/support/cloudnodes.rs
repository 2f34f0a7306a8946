//! The local nodes behind the cloud fakes: a fake's create starts a REAL isolated local node
//! (its own 127.x.y.z port 22) keyed and host-keyed as the cloud-init user-data says, and its
//! delete destroys it. Shared by the end-to-end and scale tests; needs root, as in CI.
#![allow(dead_code, unreachable_pub)]

use super::fakecloud::FakeCloud;
use provision::provider::local::LocalProvider;
use provision::provider::{NodeSpec, Provider};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One state directory for every fake's local nodes, so isolated nodes never pick the same
/// address.
pub fn local() -> LocalProvider {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    LocalProvider::with_state_dir(DIR.get_or_init(|| tempfile::tempdir().unwrap()).path())
}

/// Why the local node of a server could not serve it, by server name.
pub fn hook_errors() -> &'static Mutex<BTreeMap<String, String>> {
    static E: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    E.get_or_init(Default::default)
}

/// Starts the local node for a new server from its cloud-init user-data: the authorized keys
/// and the ed25519 host key the driver generated. Returns where it listens.
pub fn start_node(name: &str, user_data: &str) -> Result<(String, Option<u16>), String> {
    start_node_with(local(), name, user_data)
}

/// Holds `[::1]:22` for one test at a time, across nextest's processes (an flock on a file in
/// the temp dir): the IPv6 servers of the fakes all need that one address and port.
pub fn v6_loopback_22() -> nix::fcntl::Flock<std::fs::File> {
    let path = std::env::temp_dir().join("provision-tests-v6-loopback-22.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap()
}

/// [`start_node`] for an IPv6-only server: the local node listens on `::1` port 22 alone
/// (hold [`v6_loopback_22`] meanwhile).
pub fn start_v6_node(name: &str, user_data: &str) -> Result<(String, Option<u16>), String> {
    let only_v6: toml::Table = "ipv4 = false".parse().unwrap();
    let ip = provision::address::IpOptions::from_table("local", &only_v6, false).unwrap();
    start_node_with(local().with_ip(ip), name, user_data)
}

fn start_node_with(
    local: LocalProvider,
    name: &str,
    user_data: &str,
) -> Result<(String, Option<u16>), String> {
    let body = user_data
        .strip_prefix("#cloud-config\n")
        .ok_or("user-data does not start with #cloud-config")?;
    let doc: Value = serde_json::from_str(body).map_err(|e| format!("user-data: {e}"))?;
    let keys = doc["ssh_authorized_keys"]
        .as_array()
        .ok_or("user-data without ssh_authorized_keys")?
        .iter()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    let host = doc["ssh_keys"]["ed25519_private"]
        .as_str()
        .ok_or("user-data without ssh_keys.ed25519_private")?;
    let spec = NodeSpec {
        name: name.into(),
        image: String::new(),
        size: String::new(),
        location: String::new(),
        public_keys: keys,
        tags: BTreeMap::new(),
    };
    let node = local
        .create_with_host_key(&spec, host)
        .map_err(|e| format!("local node: {e}"))?;
    let ip = node.public_ip.clone().unwrap_or_default();
    match node.ssh.port {
        Some(22) => Ok((ip, None)),
        port => Err(format!(
            "local node {name} listens on {ip} port {port:?}, not 22, and the cloud APIs report \
             no port: run the tests as root (as CI does) with port 22 free on 127.x.y.z (and \
             ::1 for IPv6), so local nodes are isolated"
        )),
    }
}

/// Makes the fake's servers real local nodes, destroyed with them.
pub fn attach_nodes(fake: &FakeCloud) {
    fake.on_create(Box::new(|name, user_data| {
        start_node(name, user_data).unwrap_or_else(|e| {
            hook_errors().lock().unwrap().insert(name.into(), e);
            ("127.0.0.1".into(), None)
        })
    }));
    fake.on_delete(Box::new(|name| {
        let _ = local().destroy(name);
    }));
}

/// Destroys the local node of `name` when a test ends, even by panic.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = local().destroy(&self.0);
    }
}

/// Panics with the hook's reason when the local node of `name` could not be started.
pub fn assert_node_started(name: &str) {
    if let Some(e) = hook_errors().lock().unwrap().get(name) {
        panic!("{e}");
    }
}

/// The pid of the local node's sshd, and a check that it is gone.
pub fn node_pid(name: &str) -> u32 {
    local()
        .record(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no local node {name}"))
        .pid
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

pub fn assert_node_gone(name: &str, pid: Option<u32>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while local().record(name).unwrap().is_some() || pid.is_some_and(alive) {
        assert!(
            Instant::now() < deadline,
            "local node {name} (sshd pid {pid:?}) still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a deploy `cmd` whose server never starts, sends it Ctrl-C once the server exists and
/// the deploy waits for it, and checks: exit 130, the node named destroyed on stderr, nothing
/// on stdout, no server and no local node left.
pub fn ctrl_c_while_waiting(mut cmd: std::process::Command, fake: &FakeCloud, name: &str) {
    use std::process::Stdio;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.count_named(name) == 0 {
        assert!(Instant::now() < deadline, "the server never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    // let it get into the wait
    std::thread::sleep(Duration::from_millis(400));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    ended_130_and_destroyed(child, fake, name);
}

/// The signalled deploy exits 130 having destroyed its server, printing nothing on stdout.
pub fn ended_130_and_destroyed(child: std::process::Child, fake: &FakeCloud, name: &str) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains(&format!("{name}: destroyed")), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(fake.count(), 0);
    assert_node_gone(name, None);
}
