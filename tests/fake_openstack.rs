//! The OpenStack fake is proven to speak the real API by the official client: the test runs
//! python-openstackclient (installed by scripts/setup-openstackclient.sh when missing) against
//! the fake on loopback: token and catalog from Keystone, `flavor list`, `image list`,
//! `keypair create`, `server create/list/show/delete` — and the created server is a REAL local
//! node (keyed and host-keyed as its user-data says) at a loopback address, gone after delete.
//!
//! Nodes are isolated local nodes on their own 127.x.y.z port 22: this needs root, as in CI.

use crate::support::{cloudnodes, fakecloud, tools};

use cloudnodes::{assert_node_gone, assert_node_started, attach_nodes, node_pid, Cleanup};
use fakecloud::{Api, FakeCloud};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PASSWORD: &str = "os-fake-password-0123456789";

fn openstack_path() -> PathBuf {
    tools::installed(
        "setup-openstackclient.sh",
        "python-openstackclient is needed to prove the OpenStack fake",
    )
}

struct Client {
    exe: PathBuf,
    env: Vec<(&'static str, String)>,
    home: tempfile::TempDir,
}

impl Client {
    /// Runs `openstack ARGS` with the standard OS_* variables and nothing else from our
    /// environment; returns stdout, panicking with both streams on failure.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.exe)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("OS_IDENTITY_API_VERSION", "3")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.home.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "openstack {args:?} failed\n--- stdout\n{stdout}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-f", "json"]);
        let out = self.run(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x["Name"].as_str().unwrap().to_string())
        .collect()
}

/// User-data as the drivers write it: authorized keys and a pinned ed25519 host key.
fn user_data(home: &Path) -> PathBuf {
    let key = home.join("host");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let private = std::fs::read_to_string(&key).unwrap();
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let doc = serde_json::json!({
        "ssh_authorized_keys": [public.trim()],
        "ssh_keys": {"ed25519_private": private}
    });
    let p = home.join("user-data");
    std::fs::write(&p, format!("#cloud-config\n{doc}")).unwrap();
    p
}

#[test]
fn openstackclient_runs_against_the_fake() {
    let fake = FakeCloud::start(Api::OpenStack, PASSWORD);
    attach_nodes(&fake);
    // ACTIVE at the first read after the create: `--wait` polls every few seconds
    fake.set_polls_until_active(1);
    let os = Client {
        exe: openstack_path(),
        env: fake.os_env(PASSWORD),
        home: tempfile::tempdir().unwrap(),
    };

    let flavors = os.json(&["flavor", "list"]);
    assert_eq!(names(&flavors), ["m1.tiny", "m1.small", "m1.medium"]);
    assert_eq!(flavors[1]["RAM"], 2048, "{flavors}");

    // Glance pages by two: every image arrives through `next` links
    let images = os.json(&["image", "list"]);
    let got = names(&images);
    for want in ["ubuntu-24.04", "ubuntu-22.04", "debian-12", "my-snapshot"] {
        assert!(got.iter().any(|n| n == want), "{want} missing: {got:?}");
    }
    assert_eq!(got.len(), 5, "{got:?}");

    // a key pair the client generates, and one imported from a file
    // (the client generates the key itself and prints its private half)
    let made = os.run(&["keypair", "create", "k-generated"]);
    assert!(made.contains("PRIVATE KEY-----"), "{made}");
    let pubfile = os.home.path().join("id.pub");
    std::fs::write(
        &pubfile,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGYTpXYmB6sFNj3V7cEzRT+jEwcVmlNzm0ZY8kpm6Hdt t@x\n",
    )
    .unwrap();
    os.json(&[
        "keypair",
        "create",
        "--public-key",
        pubfile.to_str().unwrap(),
        "k-imported",
    ]);
    let keys = os.json(&["keypair", "list"]);
    assert_eq!(names(&keys), ["k-generated", "k-imported"]);
    assert_eq!(fake.keys().len(), 2);

    let name = "osc-fake-node";
    let _g = Cleanup(name.into());
    let ud = user_data(os.home.path());
    let created = os.json(&[
        "server",
        "create",
        "--image",
        "ubuntu-24.04",
        "--flavor",
        "m1.small",
        "--key-name",
        "k-imported",
        "--property",
        "provision=",
        "--property",
        "team=web",
        "--user-data",
        ud.to_str().unwrap(),
        "--wait",
        name,
    ]);
    assert_node_started(name);
    assert_eq!(created["status"], "ACTIVE", "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let pid = node_pid(name);
    let ip = fake.server_named(name).unwrap().ip;
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "{ip}");
    assert_eq!(
        fake.metadata(name).unwrap().get("team").map(String::as_str),
        Some("web")
    );

    let listed = os.json(&["server", "list"]);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == name)
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(row["Status"], "ACTIVE");
    assert_eq!(row["ID"], id.as_str());
    assert!(row["Networks"].to_string().contains(&ip), "{row}");
    assert_eq!(row["Image"], "ubuntu-24.04", "{row}");
    assert_eq!(row["Flavor"], "m1.small", "{row}");

    let shown = os.json(&["server", "show", name]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["key_name"], "k-imported");
    assert!(shown["addresses"].to_string().contains(&ip), "{shown}");
    assert!(shown["properties"].to_string().contains("web"), "{shown}");

    os.run(&["server", "delete", "--wait", name]);
    assert_eq!(fake.count_named(name), 0);
    assert_node_gone(name, Some(pid));
    let listed = os.json(&["server", "list"]);
    assert_eq!(listed, serde_json::json!([]));
}
