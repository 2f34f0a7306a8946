//! End to end with the real binaries against EC2: moto behind a loopback proxy whose
//! RunInstances starts a REAL local node per instance (host key and keys from the user-data)
//! and whose answers carry that node's loopback address instead of moto's public IPs. So
//! `deploy-node -p ec2` creates, waits for running and an address, connects with the pinned
//! host key, runs a script; `list-nodes` and the gated `destroy-node` follow. Needs root, as
//! the other cloud end-to-end tests (isolated local nodes on 127.x.y.z port 22).

#[path = "support/cloudnodes.rs"]
mod cloudnodes;
#[path = "support/fakecloud/mod.rs"]
mod fakecloud;
#[path = "support/moto.rs"]
mod moto;
#[path = "support/motoproxy.rs"]
mod motoproxy;
mod support;

use cloudnodes::{assert_node_gone, assert_node_started, node_pid, Cleanup};
use support::cli::Sandbox;

const RESULTS: &str = "<testsuite tests=\"1\"><testcase name=\"works\"/></testsuite>";

fn sandbox() -> Sandbox {
    let s = Sandbox::new();
    s.write(
        "site/provision.toml",
        "[bundles.hello]\nscripts = [\"hello.sh\"]\n\n[providers.ec2]\nregion = \"us-east-1\"\npoll_interval = 0.2\nretries = 2\ntimeout = 20\n",
    );
    s.write(
        "site/scripts/hello.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho \"hello from {node_name}\"\n",
    );
    s.write("results.xml", RESULTS);
    s
}

fn cmd(s: &Sandbox, url: &str, bin: &str) -> support::cli::Cmd {
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
    let m = moto::start(&[]);
    let proxy = motoproxy::start(&m.url);
    let url = proxy.url.as_str();
    let name = "e2e-ec2-flow";
    let _g = Cleanup(name.into());
    let s = sandbox();

    let r = cmd(&s, url, "deploy-node")
        .args([
            "-i",
            "ubuntu/images/hvm-ssd/ubuntu-trusty",
            "-s",
            "t3.micro",
            "-l",
            "us-east-1a",
            "-b",
            "hello",
            "-n",
            name,
            "--ssh-timeout",
            "60s",
        ])
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

fn cmdlist(s: &Sandbox, url: &str) -> String {
    cmd(s, url, "list-nodes").run().code(0).stdout
}
