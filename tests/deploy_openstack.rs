//! End to end with the real binaries against the project's stateful OpenStack fake (Keystone
//! v3, Nova, Glance and Neutron on loopback; python-openstackclient proves it in
//! tests/fake_openstack.rs), whose create starts a REAL local node keyed and host-keyed as the
//! cloud-init user-data says. `deploy-node -p openstack` authenticates with the standard OS_*
//! variables, resolves image, flavor, zone and network by name, creates, waits for ACTIVE and
//! an address, connects with the pinned host key and runs a script; `list-nodes` and the gated
//! `destroy-node` follow.
//!
//! Also: tokens that expire mid-run are renewed; clouds.yaml with OS_CLOUD and application
//! credentials; region and interface pick the catalog's endpoints; floating addresses; and the
//! faults (429, 503, garbled and lost create answers, stuck BUILD, ERROR with Nova's fault,
//! Ctrl-C), each with its exit code, one error line, no duplicate and no leaked node.
//!
//! Nodes are isolated local nodes on their own 127.x.y.z port 22: this needs root, as in CI.

use crate::support::cli::{Cmd, Run, Sandbox};
use crate::support::{cloudnodes, fakecloud};
use cloudnodes::{assert_node_gone, assert_node_started, attach_nodes, node_pid, Cleanup};
use fakecloud::openstack::{APP_CRED_ID, FAULT, PROJECT_ID};
use fakecloud::{Api, FakeCloud, Fault};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "os-e2e-password-0123456789abcdef";
const RESULTS: &str = "<testsuite tests=\"1\"><testcase name=\"works\"/></testsuite>";
const CREATE: &str = "/compute/v2.1/servers";

pub fn fake() -> FakeCloud {
    let fake = FakeCloud::start(Api::OpenStack, PASSWORD);
    attach_nodes(&fake);
    fake
}

/// A sandbox with a `hello` bundle, quick polling and retries, and `extra` in
/// `[providers.openstack]` (with `network = "private"` unless `extra` names a network).
fn sandbox(extra: &str) -> Sandbox {
    let s = Sandbox::new();
    let network = if extra.contains("network =") {
        ""
    } else {
        "network = \"private\"\n"
    };
    s.write(
        "site/provision.toml",
        &format!(
            "destroyable_prefixes = [\"e2e-\"]\n[bundles.hello]\nscripts = [\"hello.sh\"]\n\n[providers.openstack]\npoll_interval = 0.1\nretries = 2\ntimeout = 10\nconnect_timeout = 2\n{network}{extra}"
        ),
    );
    s.write(
        "site/scripts/hello.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho \"hello from {node_name}\"\n",
    );
    s.write("results.xml", RESULTS);
    s
}

/// A binary with an openrc's worth of OS_* variables pointing at the fake.
fn cmd(s: &Sandbox, fake: &FakeCloud, bin: &str) -> Cmd {
    let mut c = s.cmd(bin);
    for (k, v) in fake.os_env(PASSWORD) {
        c = c.env(k, v);
    }
    c.args(["-c", "site", "-p", "openstack"])
}

fn deploy(s: &Sandbox, fake: &FakeCloud, name: &str, extra: &[&str]) -> Cmd {
    cmd(s, fake, "deploy-node")
        .args([
            "-i", "ubuntu", "-s", "m1.small", "-l", "nova", "-b", "hello", "-n", name,
        ])
        .args(extra)
}

fn destroy(s: &Sandbox, fake: &FakeCloud, name: &str) -> Run {
    cmd(s, fake, "destroy-node")
        .args(["-t", "results.xml", name])
        .run()
}

/// deploy → exit 0, `NAME IP` on stdout, the script's output streamed; returns the IP.
fn deployed(r: Run, fake: &FakeCloud, name: &str) -> String {
    assert_node_started(name);
    let r = r.code(0).stderr_has(&format!("[{name}] hello from {name}"));
    let (n, ip) = r.stdout.trim_end().split_once(' ').expect("NAME IP");
    assert_eq!(n, name, "{}", r.stdout);
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "{ip}");
    assert_eq!(fake.server_named(name).unwrap().ip, ip);
    assert_eq!(fake.count_named(name), 1, "duplicate servers");
    ip.to_string()
}

fn creates(fake: &FakeCloud) -> usize {
    fake.count_requests("POST", CREATE)
}

#[test]
fn openstack_deploy_list_destroy() {
    let fake = fake();
    // tokens live 2 s and servers take 3 s to boot: the run outlives its first token
    fake.set_token_ttl(Duration::from_secs(2));
    fake.set_boot_time(Duration::from_secs(3));
    let name = "e2e-openstack-flow";
    let foreign = "e2e-openstack-foreign";
    let _g = Cleanup(name.into());
    fake.add_foreign(foreign);
    let s = sandbox("");

    let r = deploy(&s, &fake, name, &["--ssh-timeout", "60s"]).run();
    let ip = deployed(r, &fake, name);
    let pid = node_pid(name);
    assert!(
        !s.state().join("known_hosts").exists(),
        "host key not pinned"
    );
    assert!(
        fake.tokens_issued() >= 2,
        "the token was not renewed: {:?}",
        fake.log()
    );
    let server = fake.server_named(name).unwrap();
    assert_eq!(
        server.image, "f24a3c1b-d52a-4116-91da-25b3eee8f55e",
        "ubuntu → the newest ubuntu-*"
    );
    assert_eq!(server.size, "2", "m1.small's id");
    assert_eq!(server.region, "nova");
    let meta = fake.metadata(name).unwrap();
    assert!(meta.contains_key("provision"), "{meta:?}");
    assert!(meta.contains_key("provision-created"), "{meta:?}");
    // the network was looked up by name and asked for
    assert!(fake
        .log()
        .iter()
        .any(|l| l.starts_with("GET /network/v2.0/networks")));

    let listed = cmd(&s, &fake, "list-nodes").run().code(0).stdout;
    assert!(listed.contains(&format!("{name} {ip}\n")), "{listed}");
    assert!(!listed.contains(foreign), "{listed}");
    let all = cmd(&s, &fake, "list-nodes")
        .args(["--all"])
        .run()
        .code(0)
        .stdout;
    assert!(all.contains(&format!("{foreign} ")), "{all}");

    for (flag, want) in [
        ("--images", "ubuntu-24.04"),
        ("--sizes", "m1.small"),
        ("--locations", "nova"),
    ] {
        let out = cmd(&s, &fake, "list-nodes")
            .args([flag])
            .run()
            .code(0)
            .stdout;
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{want}  ")) && l.len() > want.len() + 2),
            "{flag}:\n{out}"
        );
    }

    // gated: failing results keep it
    s.write(
        "failed.xml",
        "<testsuite tests=\"1\" failures=\"1\"><testcase name=\"x\"><failure/></testcase></testsuite>",
    );
    cmd(&s, &fake, "destroy-node")
        .args(["-t", "failed.xml", name])
        .run()
        .code(3);
    assert_eq!(fake.count_named(name), 1);
    destroy(&s, &fake, name).code(0);
    assert_eq!(fake.count_named(name), 0);
    assert_node_gone(name, Some(pid));
    // destroy is idempotent
    let listed = cmd(&s, &fake, "list-nodes").run().code(0).stdout;
    assert!(!listed.contains(name), "{listed}");
}

/// clouds.yaml in the working directory with OS_CLOUD and an application credential; the
/// server's floating address is the one connected to.
#[test]
fn openstack_clouds_yaml_app_credential_and_floating_address() {
    let fake = fake();
    fake.set_floating(true);
    let s = sandbox("address = \"floating\"\n");
    s.write(
        "clouds.yaml",
        &format!(
            "clouds:\n  fake:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: {}/v3\n      application_credential_id: {APP_CRED_ID}\n      application_credential_secret: {PASSWORD}\n    region_name: RegionOne\n",
            fake.url
        ),
    );
    let name = "e2e-openstack-cloud";
    let _g = Cleanup(name.into());
    let r = s
        .cmd("deploy-node")
        .env("OS_CLOUD", "fake")
        .args(["-c", "site", "-p", "openstack"])
        .args([
            "-i",
            "ubuntu-24.04",
            "-s",
            "m1.tiny",
            "-b",
            "hello",
            "-n",
            name,
        ])
        .args(["--ssh-timeout", "60s"])
        .run();
    let ip = deployed(r, &fake, name);
    assert!(
        !r_has_fixed(&ip),
        "connected to the fixed address instead of the floating one"
    );
    s.cmd("destroy-node")
        .env("OS_CLOUD", "fake")
        .args(["-c", "site", "-p", "openstack", "-t", "results.xml", name])
        .run()
        .code(0);
    assert_eq!(fake.count(), 0);
    assert_node_gone(name, None);
}

fn r_has_fixed(ip: &str) -> bool {
    ip == "127.255.0.1"
}

/// OS_REGION_NAME and OS_INTERFACE pick the catalog's endpoints.
#[test]
fn openstack_region_and_interface_pick_endpoints() {
    let fake = fake();
    let s = sandbox("");
    cmd(&s, &fake, "list-nodes")
        .env("OS_REGION_NAME", "RegionTwo")
        .run()
        .code(0);
    assert!(
        fake.log()
            .iter()
            .any(|l| l.starts_with("GET /r2/compute/v2.1/servers/detail")),
        "{:?}",
        fake.log()
    );
    cmd(&s, &fake, "list-nodes")
        .env("OS_INTERFACE", "internal")
        .run()
        .code(0);
    assert!(fake
        .log()
        .iter()
        .any(|l| l.starts_with("GET /internal/compute/v2.1/servers/detail")));
    cmd(&s, &fake, "list-nodes")
        .env("OS_REGION_NAME", "RegionNine")
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("RegionNine")
        .stderr_has("RegionOne (public)");
    // a project by id works as well as by name
    cmd(&s, &fake, "list-nodes")
        .env("OS_PROJECT_NAME", "")
        .env("OS_PROJECT_ID", PROJECT_ID)
        .run()
        .code(0);
}

/// Mistakes cost nothing: wrong image, flavor, zone or network, a missing variable, a wrong
/// password (never echoed), the original's `rackspace`.
#[test]
fn openstack_refusals() {
    let fake = fake();
    let s = sandbox("");
    let name = "e2e-openstack-refused";
    for (args, want) in [
        (
            ["-i", "ubuntoo-24.04", "-s", "m1.small"],
            "no image 'ubuntoo-24.04'",
        ),
        (["-i", "ubuntu", "-s", "m1.smal"], "no flavor 'm1.smal'"),
    ] {
        cmd(&s, &fake, "deploy-node")
            .args(args)
            .args(["-b", "hello", "-n", name])
            .run()
            .code(2)
            .one_line_error()
            .stderr_has(want)
            .stderr_has("did you mean")
            .stdout_empty();
    }
    cmd(&s, &fake, "deploy-node")
        .args([
            "-i", "ubuntu", "-s", "m1.small", "-l", "nowhere", "-b", "hello", "-n", name,
        ])
        .run()
        .code(2)
        .stderr_has("no availability zone 'nowhere'");
    let s2 = sandbox("network = \"privat\"\n");
    cmd(&s2, &fake, "deploy-node")
        .args(["-i", "ubuntu", "-s", "m1.small", "-b", "hello", "-n", name])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("network = \"privat\"")
        .stderr_has("private");
    s.cmd("deploy-node")
        .args([
            "-c",
            "site",
            "-p",
            "openstack",
            "-i",
            "ubuntu",
            "-s",
            "m1.small",
            "-n",
            name,
        ])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("OS_AUTH_URL");
    let r = cmd(&s, &fake, "deploy-node")
        .env("OS_PASSWORD", "wrong-password-42")
        .args(["-i", "ubuntu", "-s", "m1.small", "-b", "hello", "-n", name])
        .run()
        .code(11)
        .one_line_error()
        .stderr_has("Keystone refused")
        .stderr_has("OS_PASSWORD");
    assert!(!r.stderr.contains("wrong-password-42"), "{}", r.stderr);
    assert_eq!(creates(&fake), 0);

    let foreign = "e2e-openstack-not-ours";
    fake.add_foreign(foreign);
    destroy(&s, &fake, foreign)
        .code(1)
        .one_line_error()
        .stderr_has("--force");
    assert_eq!(fake.count_named(foreign), 1);

    s.cmd("list-nodes")
        .args(["-p", "rackspace"])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("-p openstack");
}

// ---- faults ----

/// 429 with Retry-After on create: waited, retried, one server.
#[test]
fn openstack_429_on_create_is_retried() {
    let fake = fake();
    let s = sandbox("");
    let name = "e2e-openstack-429";
    let _g = Cleanup(name.into());
    fake.fault("POST", CREATE, Fault::RetryAfter("1".into()), 1);
    let r = deploy(&s, &fake, name, &["--ssh-timeout", "60s"]).run();
    deployed(r, &fake, name);
    assert_eq!(creates(&fake), 2);
    destroy(&s, &fake, name).code(0);
    assert_eq!(fake.count(), 0);
    assert_node_gone(name, None);
}

/// 503 on every create: exit 13 after the retries, nothing created.
#[test]
fn openstack_503_forever_exits_13() {
    let fake = fake();
    let s = sandbox("");
    let name = "e2e-openstack-503";
    fake.fault("POST", CREATE, Fault::Status(503), 1000);
    deploy(&s, &fake, name, &[])
        .run()
        .code(13)
        .one_line_error()
        .stderr_has("unavailable")
        .stderr_has("503")
        .stdout_empty();
    assert_eq!(creates(&fake), 3, "retries = 2");
    assert_eq!(fake.count(), 0);
}

/// The create happened but its answer is not JSON: exit 12, and the server is found by name
/// and destroyed.
#[test]
fn openstack_garbled_create_answer_exits_12_and_destroys() {
    let fake = fake();
    let s = sandbox("");
    let name = "e2e-openstack-garbled";
    let _g = Cleanup(name.into());
    fake.fault("POST", CREATE, Fault::MalformedAfterProcessing, 1);
    deploy(&s, &fake, name, &[])
        .run()
        .code(12)
        .one_line_error()
        .stderr_has("malformed response")
        .stderr_has(&format!("{name}: created (id "))
        .stdout_empty();
    assert_eq!(creates(&fake), 1);
    assert_eq!(fake.count(), 0, "the created server leaked");
    assert_node_gone(name, None);
}

/// The create happened but the connection dropped before the answer: the driver looks up
/// the server by name and metadata before re-sending, finds it, and the deploy completes.
#[test]
fn openstack_lost_create_answer_makes_no_duplicate() {
    let fake = fake();
    let s = sandbox("");
    let name = "e2e-openstack-lost";
    let _g = Cleanup(name.into());
    fake.fault("POST", CREATE, Fault::DropAfterProcessing, 1);
    let r = deploy(&s, &fake, name, &["--ssh-timeout", "60s"]).run();
    deployed(r, &fake, name);
    assert_eq!(creates(&fake), 1, "re-sent although the server existed");
    destroy(&s, &fake, name).code(0);
    assert_eq!(fake.count(), 0);
    assert_node_gone(name, None);
}

/// A server that stays in BUILD: exit 15 at --ssh-timeout, destroyed.
#[test]
fn openstack_stuck_build_times_out_and_is_destroyed() {
    let fake = fake();
    fake.set_polls_until_active(u32::MAX);
    let s = sandbox("");
    let name = "e2e-openstack-stuck";
    let _g = Cleanup(name.into());
    let started = Instant::now();
    deploy(&s, &fake, name, &["--ssh-timeout", "5s"])
        .run()
        .code(15)
        .one_line_error()
        .stderr_has("--ssh-timeout")
        .stderr_has(&format!("{name}: never became ready; destroyed"))
        .stdout_empty();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(fake.count(), 0);
    assert_node_gone(name, None);
}

/// A server that goes to ERROR: exit 14 with Nova's fault message, destroyed.
#[test]
fn openstack_error_state_reports_novas_fault_and_is_destroyed() {
    let fake = fake();
    fake.set_status(Some("ERROR"));
    let s = sandbox("");
    let name = "e2e-openstack-fault";
    let _g = Cleanup(name.into());
    deploy(&s, &fake, name, &["--ssh-timeout", "60s"])
        .run()
        .code(14)
        .one_line_error()
        .stderr_has(FAULT)
        .stderr_has(&format!("{name}: never became ready; destroyed"))
        .stdout_empty();
    assert_eq!(creates(&fake), 1);
    assert_eq!(fake.count(), 0);
    assert_node_gone(name, None);
}

/// Ctrl-C while waiting for a server that never leaves BUILD: exit 130, destroyed.
#[test]
fn openstack_ctrl_c_exits_130_and_destroys() {
    let fake = fake();
    fake.set_polls_until_active(u32::MAX);
    let s = sandbox("");
    let name = "e2e-openstack-sigint";
    let _g = Cleanup(name.into());
    let cmd = deploy(&s, &fake, name, &["--ssh-timeout", "60s"]).cmd;
    cloudnodes::ctrl_c_while_waiting(cmd, &fake, name);
}
