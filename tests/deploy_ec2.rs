//! End to end with the real binaries against EC2: moto behind a loopback proxy whose
//! RunInstances starts a REAL local node per instance (host key and keys from the user-data)
//! and whose answers carry that node's loopback address instead of moto's public IPs. So
//! `deploy-node -p ec2` creates, waits for running and an address, connects with the pinned
//! host key, runs a script; `list-nodes` and the gated `destroy-node` follow. Needs root, as
//! the other cloud end-to-end tests (isolated local nodes on 127.x.y.z port 22).

use crate::support::cloudnodes;
use crate::support::moto;
use crate::support::motoproxy;

use crate::support::cli::{Run, Sandbox};
use cloudnodes::{assert_node_gone, assert_node_started, node_pid, Cleanup};
use motoproxy::{Fault, MotoProxy};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One moto per test binary; each test has its own proxy (and faults), and its own names.
pub fn shared() -> &'static moto::Moto {
    static M: OnceLock<moto::Moto> = OnceLock::new();
    M.get_or_init(|| moto::start(&[]))
}

const RESULTS: &str = "<testsuite tests=\"1\"><testcase name=\"works\"/></testsuite>";

fn sandbox() -> Sandbox {
    let s = Sandbox::new();
    s.write(
        "site/provision.toml",
        "destroyable_prefixes = [\"e2e-\"]\n[bundles.hello]\nscripts = [\"hello.sh\"]\n\n[providers.ec2]\nregion = \"us-east-1\"\npoll_interval = 0.2\nretries = 2\ntimeout = 20\n",
    );
    s.write(
        "site/scripts/hello.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho \"hello from {node_name}\"\n",
    );
    s.write("results.xml", RESULTS);
    s
}

/// deploy-node's image, size and zone on moto.
pub const CREATE: &[&str] = &[
    "-i",
    "ubuntu/images/hvm-ssd/ubuntu-trusty",
    "-s",
    "t3.micro",
    "-l",
    "us-east-1a",
];

pub fn cmd(s: &Sandbox, url: &str, bin: &str) -> crate::support::cli::Cmd {
    s.cmd(bin)
        .env("PROVISION_EC2_URL", url)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_PROFILE", "")
        .args(["-c", "site", "-p", "ec2"])
}

#[test]
fn ec2_deploy_list_destroy_against_moto() {
    let proxy = motoproxy::start(&shared().url);
    let url = proxy.url.as_str();
    let name = "e2e-ec2-flow";
    let _g = Cleanup(name.into());
    let s = sandbox();

    let r = cmd(&s, url, "deploy-node")
        .args(CREATE)
        .args(["-b", "hello", "-n", name, "--ssh-timeout", "60s"])
        .run();
    assert_node_started(name);
    let r = r.code(0).stderr_has(&format!("[{name}] hello from {name}"));
    let (n, ip) = r.stdout.trim_end().split_once(' ').expect("NAME IP");
    assert_eq!(n, name, "{}", r.stdout);
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "{ip}");
    assert_eq!(proxy.nodes.lock().unwrap().len(), 1, "one instance");
    let pid = node_pid(name);
    assert!(
        !s.state().join("known_hosts").exists(),
        "host key pinned, not trusted on first use"
    );

    let listed = cmd(&s, url, "list-nodes").run().code(0).stdout;
    assert!(listed.contains(&format!("{name} {ip}\n")), "{listed}");

    // the gate: failing results keep the node
    s.write("failed.xml", "<testsuite tests=\"1\" failures=\"1\"><testcase name=\"x\"><failure/></testcase></testsuite>");
    cmd(&s, url, "destroy-node")
        .args(["-t", "failed.xml", name])
        .run()
        .code(3);
    assert!(cmdlist(&s, url).contains(name));

    cmd(&s, url, "destroy-node")
        .args(["-t", "results.xml", name])
        .run()
        .code(0);
    assert_node_gone(name, Some(pid));
    assert!(!cmdlist(&s, url).contains(name));
}

/// `ipv6 = true` asks EC2 for an IPv6 address (`Ipv6AddressCount=1`); with `address_family =
/// "ipv6"` deploy-node connects to the instance's `ipv6Address` (the proxy's node on `::1`).
#[test]
fn ec2_ipv6_address_is_asked_for_and_used() {
    let _port22 = cloudnodes::v6_loopback_22();
    let proxy = motoproxy::start(&shared().url);
    let name = "e2e-ec2-v6";
    let _g = Cleanup(name.into());
    let s = sandbox();
    let site = std::fs::read_to_string(s.path().join("site/provision.toml")).unwrap();
    s.write(
        "site/provision.toml",
        &format!("{site}ipv6 = true\naddress_family = \"ipv6\"\n"),
    );
    let r = deploy(&s, &proxy, name, "60s").run();
    assert_node_started(name);
    r.code(0)
        .stdout_has(&format!("{name} ::1\n"))
        .stderr_has(&format!("[{name}] hello from {name}"));
    assert_eq!(
        proxy.nodes.lock().unwrap().values().next().unwrap().1,
        "::1"
    );
    assert!(cmdlist(&s, &proxy.url).contains(&format!("{name} ::1\n")));
    cmd(&s, &proxy.url, "destroy-node")
        .args(["-t", "results.xml", name])
        .run()
        .code(0);
    assert_node_gone(name, None);
}

/// A node made with `-l` in another region than the configured one: list-nodes (one region)
/// does not show it, but destroy-node NAME finds it where its record says it was made,
/// without AWS_REGION.
#[test]
fn ec2_destroy_finds_a_node_made_in_another_region() {
    let proxy = motoproxy::start(&shared().url);
    let url = proxy.url.as_str();
    let name = "e2e-ec2-region";
    let _g = Cleanup(name.into());
    let s = sandbox();
    let r = cmd(&s, url, "deploy-node")
        .args([
            "-i",
            "ubuntu/images/hvm-ssd/ubuntu-trusty",
            "-s",
            "t3.micro",
        ])
        .args(["-l", "eu-west-1b", "-b", "hello", "-n", name])
        .args(["--ssh-timeout", "60s"])
        .run();
    assert_node_started(name);
    r.code(0);
    let pid = node_pid(name);
    assert_eq!(live(&proxy), 1);
    // the configured region (us-east-1) does not list it, but names where it is; eu-west-1
    // lists it
    cmd(&s, url, "list-nodes")
        .run()
        .code(0)
        .stdout_lacks(name)
        .stderr_has(&format!(
            "not listed: {name} (made from this machine in eu-west-1; this listing covers us-east-1 only"
        ));
    let there = cmd(&s, url, "list-nodes")
        .env("AWS_REGION", "eu-west-1")
        .run()
        .code(0)
        .stdout;
    assert!(there.contains(name), "{there}");
    cmd(&s, url, "list-nodes")
        .env("AWS_REGION", "eu-west-1")
        .run()
        .stderr_lacks("not listed");
    cmd(&s, url, "destroy-node")
        .args(["-t", "results.xml", name])
        .run()
        .code(0)
        .stderr_has(&format!("{name}: looked up in eu-west-1"))
        .stderr_has(&format!("{name}: destroyed"));
    assert_eq!(live(&proxy), 0);
    assert_node_gone(name, Some(pid));
}

/// A node kept before it was ever reached (no node record, only the journal's entry) is found
/// in the region it was made in too.
#[test]
fn ec2_destroy_finds_a_kept_node_of_another_region_from_the_journal() {
    let p = motoproxy::start(&shared().url);
    p.faults.lock().unwrap().stuck = true;
    let (s, name) = (sandbox(), "e2e-ec2-region-kept");
    let _g = Cleanup(name.into());
    cmd(&s, &p.url, "deploy-node")
        .args([
            "-i",
            "ubuntu/images/hvm-ssd/ubuntu-trusty",
            "-s",
            "t3.micro",
        ])
        .args(["-l", "eu-west-1a", "-n", name, "--ssh-timeout", "3s"])
        .args(["--keep-on-failure"])
        .run()
        .code(15);
    assert_eq!(live(&p), 1);
    assert!(!s.state().join(format!("nodes/ec2--{name}.json")).exists());
    let journal =
        std::fs::read_to_string(s.state().join(format!("journal/ec2--{name}.json"))).unwrap();
    assert!(journal.contains("eu-west-1a"), "{journal}");
    cmd(&s, &p.url, "destroy-node")
        .args([name])
        .run()
        .code(0)
        .stderr_has(&format!("{name}: looked up in eu-west-1"))
        .stderr_has(&format!("{name}: destroyed"));
    assert_eq!(live(&p), 0);
}

fn cmdlist(s: &Sandbox, url: &str) -> String {
    cmd(s, url, "list-nodes").run().code(0).stdout
}

fn deploy(s: &Sandbox, p: &MotoProxy, name: &str, timeout: &str) -> crate::support::cli::Cmd {
    cmd(s, &p.url, "deploy-node").args([
        "-i",
        "ubuntu/images/hvm-ssd/ubuntu-trusty",
        "-s",
        "t3.micro",
        "-l",
        "us-east-1",
        "-b",
        "hello",
        "-n",
        name,
        "--ssh-timeout",
        timeout,
    ])
}

fn live(p: &MotoProxy) -> usize {
    p.nodes.lock().unwrap().len()
}

fn creates(p: &MotoProxy) -> u32 {
    p.faults.lock().unwrap().creates
}

/// A deploy that succeeded: one instance, then destroyed cleanly.
fn deployed_once(s: &Sandbox, p: &MotoProxy, name: &str, r: Run) {
    assert_node_started(name);
    r.code(0).stderr_has(&format!("[{name}] hello from {name}"));
    assert_eq!(live(p), 1, "duplicate instances");
    cmd(s, &p.url, "destroy-node")
        .args(["-t", "results.xml", name])
        .run()
        .code(0);
    assert_eq!(live(p), 0);
    assert_node_gone(name, None);
}

#[test]
fn throttled_create_is_retried_like_429() {
    let p = motoproxy::start(&shared().url);
    let (s, name) = (sandbox(), "e2e-ec2-throttled");
    let _g = Cleanup(name.into());
    p.fault("RunInstances", Fault::Throttle, 1);
    p.fault("DescribeInstances", Fault::Throttle, 1);
    let r = deploy(&s, &p, name, "60s").run();
    assert_eq!(creates(&p), 1, "the throttled create was not processed");
    deployed_once(&s, &p, name, r);
}

#[test]
fn lost_create_answer_finds_the_instance_not_a_second_one() {
    let p = motoproxy::start(&shared().url);
    let (s, name) = (sandbox(), "e2e-ec2-lost");
    let _g = Cleanup(name.into());
    p.fault("RunInstances", Fault::LoseAnswer, 1);
    let r = deploy(&s, &p, name, "60s").run();
    assert_eq!(creates(&p), 1, "re-sent although the instance existed");
    deployed_once(&s, &p, name, r);
}

#[test]
fn more_tags_than_ec2_takes_exit_2_and_create_nothing() {
    let p = motoproxy::start(&shared().url);
    let (s, name) = (sandbox(), "e2e-ec2-tags");
    // 45 labels and provision's 6 (owner, managed, created, create id, deploy state, Name)
    let labels: Vec<String> = (0..45).map(|i| format!("--label=l{i}=v")).collect();
    deploy(&s, &p, name, "60s")
        .args(&labels)
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("ec2: 45 --label and 6 tags of provision's own make 51 tags per node, over ec2's limit of 50: drop 1 --label")
        .stdout_empty();
    assert_eq!(creates(&p), 0);
    assert_eq!(live(&p), 0);
}

#[test]
fn unavailable_create_exits_13_and_creates_nothing() {
    let p = motoproxy::start(&shared().url);
    let (s, name) = (sandbox(), "e2e-ec2-503");
    let _g = Cleanup(name.into());
    p.fault("RunInstances", Fault::Status(503), 1000);
    deploy(&s, &p, name, "60s")
        .run()
        .code(13)
        .one_line_error()
        .stderr_has("RunInstances")
        .stderr_has("503")
        .stdout_empty();
    assert_eq!(creates(&p), 0);
    assert_eq!(live(&p), 0);
}

#[test]
fn garbled_create_answer_exits_12_and_leaks_nothing() {
    let p = motoproxy::start(&shared().url);
    let (s, name) = (sandbox(), "e2e-ec2-garbled");
    let _g = Cleanup(name.into());
    p.fault("RunInstances", Fault::GarbleAfterProcessing, 1);
    deploy(&s, &p, name, "60s")
        .run()
        .code(12)
        .one_line_error()
        .stderr_has("malformed")
        .stdout_empty();
    assert_eq!(creates(&p), 1);
    assert_eq!(live(&p), 0, "the created instance leaked");
    assert_node_gone(name, None);
}

#[test]
fn stuck_pending_exits_15_and_is_destroyed() {
    let p = motoproxy::start(&shared().url);
    p.faults.lock().unwrap().stuck = true;
    let (s, name) = (sandbox(), "e2e-ec2-stuck");
    let _g = Cleanup(name.into());
    deploy(&s, &p, name, "5s")
        .run()
        .code(15)
        .one_line_error()
        .stderr_has("--ssh-timeout")
        .stderr_has(&format!("{name}: never became ready; destroyed"))
        .stdout_empty();
    assert_eq!(live(&p), 0);
    assert_node_gone(name, None);
}

#[test]
fn failed_instance_exits_14_and_is_destroyed() {
    let p = motoproxy::start(&shared().url);
    p.faults.lock().unwrap().failed = true;
    let (s, name) = (sandbox(), "e2e-ec2-failed");
    let _g = Cleanup(name.into());
    deploy(&s, &p, name, "60s")
        .run()
        .code(14)
        .one_line_error()
        .stderr_has("terminated")
        .stdout_empty();
    assert_eq!(live(&p), 0);
    assert_node_gone(name, None);
}

#[test]
fn ctrl_c_while_pending_exits_130_and_destroys() {
    let p = motoproxy::start(&shared().url);
    p.faults.lock().unwrap().stuck = true;
    let (s, name) = (sandbox(), "e2e-ec2-sigint");
    let _g = Cleanup(name.into());
    let mut c = deploy(&s, &p, name, "60s").cmd;
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while live(&p) == 0 {
        assert!(Instant::now() < deadline, "the instance never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(live(&p), 0, "the instance leaked");
    assert_node_gone(name, None);
}
