//! IPv6-only nodes on loopback `::1` (issue 16 item 3): a local node whose sshd listens on `::1`
//! alone and a static host `[::1]:port` deploy, list in every format with the address as
//! written by OpenSSH (`[::1]:port` where a port follows), and `ssh -F <(list-nodes --format
//! ssh-config)` reaches them. And the Hetzner driver against its fake behind Prism with
//! `ipv4 = false`: the fake answers with the server's /64 (`::/64`), whose `::1` — the
//! loopback, where the server's local node listens — is what deploy-node connects to. Every
//! address used is `::1`.

use crate::support::cli::{Cmd, Sandbox};
use crate::support::cloudnodes::{self, Cleanup};
use crate::support::fakecloud::{Api, FakeCloud};
use crate::support::prism;
use crate::support::sshd::{self, Sshd};

/// A layer with a bundle whose one script says where it runs.
fn site(s: &Sandbox, provider_lines: &str) -> String {
    s.write(
        "site/provision.toml",
        &format!("{provider_lines}\n[bundles.hello]\nscripts = [\"hello.sh\"]\n"),
    );
    s.write("site/scripts/hello.sh", "#!/bin/sh\necho hello over v6\n");
    s.path().join("site").display().to_string()
}

/// `ssh -F` with the ssh-config `list` (a list-nodes command) prints, running `cmd` on `node`:
/// its stdout.
fn ssh_via_config(s: &Sandbox, list: Cmd, node: &str, cmd: &str) -> String {
    let cfg = list.args(["--format", "ssh-config"]).run().code(0).stdout;
    assert!(cfg.contains("HostName ::1\n"), "{cfg}");
    s.ssh_with_config(&cfg, node, cmd)
}

#[test]
fn a_local_ipv6_only_node_deploys_lists_and_takes_ssh() {
    let s = Sandbox::new();
    let site = site(&s, "[providers.local]\nipv4 = false\nisolation = \"off\"");
    let r = s
        .cmd("deploy-node")
        .args(["-c", &site, "-b", "hello", "-d", "node.json", "--json"])
        .run()
        .code(0)
        .stderr_has("hello over v6")
        .stderr_lacks("127.0.0.1");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let node = &doc["nodes"][0];
    let name = node["name"].as_str().unwrap().to_string();
    assert_eq!(node["public_ip"], "::1", "{}", r.stdout);
    let desc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("node.json")).unwrap())
            .unwrap();
    assert_eq!(desc["public_ip"][0], "::1");

    // sshd listens on ::1 alone
    let conf =
        std::fs::read_to_string(s.state().join("local").join(&name).join("sshd_config")).unwrap();
    let listen: Vec<&str> = conf
        .lines()
        .filter(|l| l.starts_with("ListenAddress"))
        .collect();
    assert_eq!(listen.len(), 1, "{conf}");
    assert!(listen[0].starts_with("ListenAddress [::1]:"), "{conf}");
    let port = listen[0].rsplit(':').next().unwrap().to_string();

    // every listing format
    s.cmd("list-nodes")
        .run()
        .code(0)
        .stdout_has(&format!("{name} ::1\n"));
    let table = s
        .cmd("list-nodes")
        .args(["--format", "table"])
        .run()
        .code(0)
        .stdout;
    let row = table.lines().find(|l| l.starts_with(&name)).unwrap();
    assert!(row.split_whitespace().any(|c| c == "::1"), "{table}");
    let json = s.cmd("list-nodes").args(["--format", "json"]).run().code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["public_ip"], "::1", "{}", json.stdout);
    assert_eq!(
        ssh_via_config(&s, s.cmd("list-nodes"), &name, "echo in"),
        "in\n"
    );
    // the pinned key is written for OpenSSH under `[::1]:port`
    let kh = std::fs::read_to_string(s.state().join("known_hosts.d").join(&name)).unwrap();
    assert!(
        kh.starts_with(&format!("[::1]:{port} ssh-ed25519 ")),
        "{kh}"
    );

    // `node exec` through the engine, and `node ssh` through OpenSSH, over IPv6
    s.cmd("node")
        .args(["exec", &name, "--", "echo", "exec"])
        .run()
        .code(0)
        .stdout_has("exec\n");
    s.cmd("node")
        .args(["ssh", &name, "--", "-o", "BatchMode=yes", "echo viassh"])
        .run()
        .code(0)
        .stdout_has("viassh\n");

    s.cmd("destroy-node").args([&name]).run().code(0);
}

#[test]
fn a_static_host_on_ipv6_loopback_deploys_and_its_errors_bracket_the_address() {
    let s = Sandbox::new();
    let port = sshd::free_port();
    let server = Sshd::start_on("::1", port, true);
    let own = std::fs::read_to_string(s.home().join(".ssh/id_ed25519.pub")).unwrap();
    server.authorize("root", &own);
    let site = site(
        &s,
        &format!("provider = \"static\"\n[providers.static.hosts]\nv6box = \"root@[::1]:{port}\""),
    );
    s.cmd("deploy-node")
        .args(["-c", &site, "-n", "v6box", "-b", "hello"])
        .run()
        .code(0)
        .stdout_has("v6box ::1\n")
        .stderr_has("hello over v6");
    // recorded on first use as OpenSSH writes it
    let kh = std::fs::read_to_string(s.state().join("known_hosts")).unwrap();
    assert!(kh.contains(&format!("[::1]:{port} ssh-ed25519 ")), "{kh}");
    assert_eq!(
        ssh_via_config(
            &s,
            s.cmd("list-nodes").args(["-c", &site]),
            "v6box",
            "echo static"
        ),
        "static\n"
    );
    s.cmd("destroy-node")
        .args(["-c", &site, "v6box"])
        .run()
        .code(0);
    drop(server);

    // nothing listens there any more: the timeout names [::1]:port
    s.cmd("deploy-node")
        .args(["-c", &site, "-n", "v6box", "--ssh-timeout", "2s"])
        .run()
        .code(15)
        .stderr_has(&format!("on [::1]:{port}"));
}

/// A fake cloud behind Prism whose servers are local nodes on `::1` port 22 alone; hold
/// [`cloudnodes::v6_loopback_22`] while it has one.
fn v6_fake(api: Api, token: &str, spec: &str) -> (FakeCloud, prism::Prism) {
    let fake = FakeCloud::start(api, token);
    fake.on_create(Box::new(|name, user_data| {
        cloudnodes::start_v6_node(name, user_data).unwrap_or_else(|e| {
            cloudnodes::hook_errors()
                .lock()
                .unwrap()
                .insert(name.into(), e);
            ("::1".into(), None)
        })
    }));
    fake.on_delete(Box::new(|name| {
        use provision::provider::Provider;
        let _ = cloudnodes::local().destroy(name);
    }));
    let prism = prism::start(spec, &fake.url);
    (fake, prism)
}

/// A droplet always has IPv4 (the fake's is 127.0.0.1, where nothing of it listens): with
/// `address_family = "ipv6"` deploy-node asks for IPv6 and connects to the droplet's v6
/// address, the local node on `::1`.
#[test]
fn a_droplet_is_reached_over_ipv6_when_the_family_says_so() {
    const TOKEN: &str = "dop_v1_v60123456789abcdef0123456789abcdef0123456789abcdef01";
    let _port22 = cloudnodes::v6_loopback_22();
    let (fake, prism) = v6_fake(
        Api::DigitalOcean,
        TOKEN,
        "specs/digitalocean/DigitalOcean-public.v2.bundled.yaml",
    );
    let name = "e2e-do-v6";
    let _g = Cleanup(name.into());
    let s = Sandbox::new();
    let site = site(
        &s,
        "[providers.digitalocean]\naddress_family = \"ipv6\"\npoll_interval = 0.1\nretries = 2",
    );
    let r = s
        .cmd("deploy-node")
        .env("PROVISION_DIGITALOCEAN_URL", &prism.url)
        .env("DIGITALOCEAN_TOKEN", TOKEN)
        .args(["-c", &site, "-p", "digitalocean", "-i", "ubuntu-24-04-x64"])
        .args(["-s", "s-1vcpu-1gb", "-l", "fra1", "-b", "hello", "-n", name])
        .args(["--ssh-timeout", "60s"])
        .run();
    cloudnodes::assert_node_started(name);
    r.code(0)
        .stdout_has(&format!("{name} ::1\n"))
        .stderr_has("hello over v6");
    assert_eq!(fake.server_named(name).unwrap().ip, "::1");
}

#[test]
fn an_ipv6_only_hetzner_server_is_reached_on_the_1_of_its_64() {
    const TOKEN: &str = "hz-v6-0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789abcd";
    let _port22 = cloudnodes::v6_loopback_22();
    let (fake, prism) = v6_fake(Api::Hetzner, TOKEN, "specs/hetzner/cloud.spec.json");
    let name = "e2e-hetzner-v6only";
    let _g = Cleanup(name.into());
    let s = Sandbox::new();
    let site = site(
        &s,
        "destroyable_prefixes = [\"e2e-\"]\n[providers.hetzner]\nipv4 = false\npoll_interval = 0.1\nretries = 2",
    );
    let cmd = |bin: &str| {
        s.cmd(bin)
            .env("PROVISION_HETZNER_URL", &prism.url)
            .env("HCLOUD_TOKEN", TOKEN)
            .args(["-c", &site, "-p", "hetzner"])
    };
    let r = cmd("deploy-node")
        .args([
            "-i",
            "ubuntu-24.04",
            "-s",
            "cx22",
            "-l",
            "fsn1",
            "-b",
            "hello",
        ])
        .args(["-n", name, "--ssh-timeout", "60s", "-d", "d.json"])
        .run();
    cloudnodes::assert_node_started(name);
    r.code(0)
        .stdout_has(&format!("{name} ::1\n"))
        .stderr_has("hello over v6");
    // the fake answered with the network, not an address
    let server = fake.server_named(name).unwrap();
    assert_eq!(server.ip, "::1");
    // a cloud deploy's phases, as a local one's (tests/phases.rs)
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("d.json")).unwrap()).unwrap();
    assert_eq!(d["public_ip"][0], "::1");
    let phases: Vec<&str> = d["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = crate::phases::ORDER.into_iter().chain(["script"]).collect();
    assert_eq!(phases, want);
    cmd("list-nodes")
        .run()
        .code(0)
        .stdout_has(&format!("{name} ::1\n"));
    assert_eq!(
        ssh_via_config(&s, cmd("list-nodes"), name, "echo cloud"),
        "cloud\n"
    );
    cmd("destroy-node").args([name]).run().code(0);
    assert_eq!(fake.count_named(name), 0);
}

#[test]
fn address_options_a_cloud_cannot_honour_are_refused_while_planning() {
    let s = Sandbox::new();
    for (provider, table, needle) in [
        ("digitalocean", "ipv4 = false", "cannot make it IPv6-only"),
        ("ec2", "ipv4 = false", "needs subnet_id"),
        ("openstack", "ipv6 = true", "network"),
        (
            "hetzner",
            "ipv4 = false\nipv6 = false",
            "a node needs an address",
        ),
        ("local", "address_family = \"v6\"", "auto, ipv4 or ipv6"),
    ] {
        let layer = format!("l-{provider}");
        s.write(
            &format!("{layer}/provision.toml"),
            &format!("[providers.{provider}]\n{table}\n"),
        );
        s.cmd("deploy-node")
            .args([
                "-c",
                &layer,
                "-p",
                provider,
                "-i",
                "x",
                "-s",
                "y",
                "-l",
                "eu-west-1",
            ])
            .args(["--dry-run"])
            .run()
            .code(2)
            .one_line_error()
            .stderr_has(&format!("[providers.{provider}]"))
            .stderr_has(needle);
    }
}
