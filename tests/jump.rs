//! Jump hosts end to end (issue 16 item 2), against real sshd: the node's sshd runs inside a
//! network namespace the test makes, on the namespace's own loopback (the host cannot reach it),
//! and the bastion's sshd in the same namespace on the veth address the host reaches. A deploy
//! that works there went through the bastion; the node sees its SSH connection come from
//! inside the namespace, and the bastion logs the direct-tcpip channel. Refused host keys name
//! their hop; a pool of nodes makes one connection to the bastion; list-nodes' ssh-config works
//! with the real `ssh -F`.

use crate::support::cli::Sandbox;
use crate::support::cloudnodes::{assert_node_started, attach_nodes, Cleanup};
use crate::support::fakecloud::{Api, FakeCloud};
use crate::support::netns::Netns;
use crate::support::sshd::{self, Sshd};
use std::net::TcpStream;

const BASTION_PORT: u16 = 2222;

/// The bastion and the node behind it; dropped sshds first, the namespace last.
struct Private {
    bastion: Sshd,
    node: Sshd,
    ns: Netns,
}

impl Private {
    /// `root@ADDR:PORT` of the bastion.
    fn jump(&self) -> String {
        format!("root@{}:{BASTION_PORT}", self.ns.ns_addr)
    }
}

/// The layout, with the sandbox user's key authorized for root on both servers, and a config
/// layer declaring the node as static host `web` (at its address inside the namespace) with a
/// `probe` bundle printing the connection the node sees, plus `extra` lines.
fn private_node(s: &Sandbox, extra: &str) -> Private {
    let ns = Netns::new();
    // a port nothing on the host listens on: a direct connection would be refused
    let port = sshd::free_port();
    let node = Sshd::start_in(&ns.name, "127.0.0.1", port, "VERBOSE");
    let bastion = Sshd::start_in(&ns.name, &ns.ns_addr, BASTION_PORT, "DEBUG1");
    let own = std::fs::read_to_string(s.home().join(".ssh/id_ed25519.pub")).unwrap();
    node.authorize("root", &own);
    bastion.authorize("root", &own);
    let p = Private { bastion, node, ns };
    s.write(
        "xdg-config/provision/provision.toml",
        &format!(
            "provider = \"static\"\nssh_jump = \"{}\"\n{extra}\n\
             [bundles.probe]\nscripts = [\"probe.sh\"]\n\
             [providers.static.hosts]\nweb = \"root@127.0.0.1:{port}\"\n",
            p.jump()
        ),
    );
    s.write(
        "xdg-config/provision/scripts/probe.sh",
        "echo \"conn=$SSH_CONNECTION\"\n",
    );
    p
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn deploy_exec_and_ssh_config_through_the_bastion() {
    let s = Sandbox::new();
    let p = private_node(&s, "");
    let port = p.node.port;
    // unreachable from the host: only a tunnel gets there
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

    let r = s
        .cmd("deploy-node")
        .args(["-n", "web", "-b", "probe"])
        .run()
        .code(0);
    // the node saw the connection come from inside its namespace (the bastion's forward)
    assert!(
        r.stderr.contains("conn=127.0.0.1 ") && r.stderr.contains(&format!(" 127.0.0.1 {port}")),
        "{}",
        r.stderr
    );
    let blog = p.bastion.log();
    assert_eq!(count(&blog, "Accepted publickey for root"), 1, "{blog}");
    assert!(
        blog.contains(&format!("target 127.0.0.1 port {port}")),
        "the bastion forwarded nothing to the node:\n{blog}"
    );
    // the bastion's key was checked like any host's: recorded on first use in our known_hosts
    let kh = std::fs::read_to_string(s.state().join("known_hosts")).unwrap();
    assert!(
        kh.contains(&format!("[{}]:{BASTION_PORT}", p.ns.ns_addr)),
        "{kh}"
    );

    // a re-provision's dry run names the jump host the node's record keeps
    s.cmd("deploy-node")
        .args(["--reprovision", "-n", "web", "--dry-run"])
        .run()
        .code(0)
        .stdout_has(&format!("  jump host: {}  (the record of web)\n", p.jump()));

    // node exec goes through the same tunnel (its bastion key is known now)
    let r = s
        .cmd("node")
        .args([
            "-p",
            "static",
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo $SSH_CONNECTION",
        ])
        .run()
        .code(0);
    assert!(r.stdout.starts_with("127.0.0.1 "), "{}", r.stdout);
    // megabytes both ways through the bridge: its buffers fill and drain (flow control)
    let big = s.write("big.txt", &"0123456789abcdef\n".repeat(256 * 1024));
    let mut c = s.cmd("node").args([
        "-p",
        "static",
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "wc -c; head -c 3000000 /dev/zero | tr '\\0' x",
    ]);
    c.cmd.stdin(std::fs::File::open(&big).unwrap());
    let r = c.run().code(0);
    let sent = format!("{}\n", 17 * 256 * 1024);
    assert!(
        r.stdout.starts_with(&sent),
        "{}",
        &r.stdout[..40.min(r.stdout.len())]
    );
    assert_eq!(r.stdout.len(), sent.len() + 3_000_000);
    // node cp tunnels the same way
    s.cmd("node")
        .args([
            "-p",
            "static",
            "cp",
            &big.display().to_string(),
            "web:/root/",
        ])
        .run()
        .code(0);
    let r = s
        .cmd("node")
        .args([
            "-p",
            "static",
            "exec",
            "web",
            "--",
            "wc",
            "-c",
            "/root/big.txt",
        ])
        .run()
        .code(0);
    assert_eq!(r.stdout, format!("{} /root/big.txt\n", 17 * 256 * 1024));

    // ssh-config: ProxyJump, the address behind the bastion, and it works with the real ssh
    let r = s
        .cmd("list-nodes")
        .args(["-p", "static", "--format", "ssh-config"])
        .run()
        .code(0)
        .stdout_has(&format!("ProxyJump {}", p.jump()))
        .stdout_has("HostName 127.0.0.1")
        .stdout_has(&format!("Host {}\n", p.ns.ns_addr));
    let stdout = s.ssh_with_config(&r.stdout, "web", "echo via-ssh:$SSH_CONNECTION");
    assert!(
        stdout.starts_with("via-ssh:127.0.0.1 "),
        "{stdout}\n{}",
        r.stdout
    );
    // node ssh passes -J
    let r = s
        .cmd("node")
        .args(["-p", "static", "show", "web"])
        .run()
        .code(0);
    assert!(
        r.stdout.contains(&format!("-J {}", p.jump())),
        "{}",
        r.stdout
    );
}

#[test]
fn a_changed_bastion_host_key_is_refused_naming_the_jump_host() {
    let s = Sandbox::new();
    let other = sshd::other_public_key();
    let p = private_node(&s, &format!("ssh_jump_host_key = \"{other}\""));
    let r = s
        .cmd("deploy-node")
        .args(["-n", "web", "-b", "probe"])
        .run()
        .code(14)
        .stderr_has(&format!(
            "web: jump host {}: host key mismatch for [{}]:{BASTION_PORT}",
            p.jump(),
            p.ns.ns_addr
        ));
    r.one_line_error();
    // nothing reached the node
    assert_eq!(count(&p.node.log(), "Accepted publickey"), 0);
    assert!(!p.bastion.log().contains("Accepted publickey"));

    // pinned right, it goes through
    let key = p.bastion.host_pub.clone();
    let text = std::fs::read_to_string(s.path().join("xdg-config/provision/provision.toml"))
        .unwrap()
        .replace(&other, &key);
    s.write("xdg-config/provision/provision.toml", &text);
    s.cmd("deploy-node").args(["-n", "web"]).run().code(0);
}

#[test]
fn a_changed_node_host_key_behind_the_bastion_is_refused_naming_the_node_hop() {
    let s = Sandbox::new();
    let p = private_node(&s, "");
    let port = p.node.port;
    s.write(
        "state/known_hosts",
        &format!("[127.0.0.1]:{port} {}\n", sshd::other_public_key()),
    );
    let r = s
        .cmd("deploy-node")
        .args(["-n", "web", "-b", "probe"])
        .run()
        .code(14)
        .stderr_has(&format!(
            "web: through jump host {}: the host key of [127.0.0.1]:{port} has CHANGED",
            p.jump()
        ))
        .stderr_lacks("conn=");
    r.one_line_error();
    // it got there through the bastion, and was refused before logging in
    assert!(p
        .bastion
        .log()
        .contains(&format!("target 127.0.0.1 port {port}")));
    assert_eq!(count(&p.node.log(), "Accepted publickey"), 0);
}

#[test]
fn a_pool_makes_one_connection_to_the_bastion() {
    let s = Sandbox::new();
    // local nodes listen on the host's 127.x.y.z: the bastion here is on the host too, and its
    // log shows one login and one forwarded channel per node
    let bastion = Sshd::start_logging("DEBUG1");
    let own = std::fs::read_to_string(s.home().join(".ssh/id_ed25519.pub")).unwrap();
    bastion.authorize("root", &own);
    let jump = format!("root@127.0.0.1:{}", bastion.port);
    let r = s
        .cmd("deploy-node")
        .args(["--count", "3", "--ssh-jump", &jump, "--json"])
        .run()
        .code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let log = bastion.log();
    assert_eq!(count(&log, "Accepted publickey for root"), 1, "{log}");
    for n in nodes {
        let ip = n["public_ip"].as_str().unwrap();
        assert_eq!(
            count(&log, &format!("target {ip} port 22")),
            1,
            "{ip} not reached through the bastion:\n{log}"
        );
    }
    // later commands follow the record, with no flag and no config
    let first = nodes[0]["name"].as_str().unwrap();
    let ip = nodes[0]["public_ip"].as_str().unwrap();
    s.cmd("list-nodes")
        .args(["--format", "ssh-config"])
        .run()
        .code(0)
        .stdout_has(&format!("ProxyJump {jump}"));
    s.cmd("node")
        .args(["exec", first, "--", "true"])
        .run()
        .code(0);
    let log = bastion.log();
    assert_eq!(count(&log, "Accepted publickey for root"), 2, "{log}");
    assert_eq!(count(&log, &format!("target {ip} port 22")), 2, "{log}");
}

#[test]
fn bad_jump_values_are_one_line_before_anything_is_created() {
    let s = Sandbox::new();
    s.cmd("deploy-node")
        .args(["--ssh-jump", "root@bastion:99999", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("--ssh-jump: 'root@bastion:99999': port '99999' is not 1-65535")
        .one_line_error();
    let toml = s.write(
        "xdg-config/provision/provision.toml",
        "[providers.local]\nssh_jump = \"a,b\"\n",
    );
    s.cmd("deploy-node")
        .run()
        .code(2)
        .stderr_has(&format!(
            "{}: [providers.local] ssh_jump: 'a,b' names several jump hosts",
            toml.display()
        ))
        .one_line_error();
    assert!(!s.state().join("local").exists());
}

#[test]
fn a_cloud_node_with_only_a_private_address_is_reached_through_the_provider_s_jump_host() {
    const TOKEN: &str = "hz-jump-0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789ab";
    let fake = FakeCloud::start(Api::Hetzner, TOKEN);
    attach_nodes(&fake);
    fake.set_private_only(true);
    let bastion = Sshd::start_logging("DEBUG1");
    let s = Sandbox::new();
    let own = std::fs::read_to_string(s.home().join(".ssh/id_ed25519.pub")).unwrap();
    bastion.authorize("root", &own);
    // set for hetzner alone: its table holds it, and the driver does not see it
    s.write(
        "xdg-config/provision/provision.toml",
        &format!(
            "[providers.hetzner]\npoll_interval = 0.1\nssh_jump = \"root@127.0.0.1:{}\"\n",
            bastion.port
        ),
    );
    let name = "deploy-test-jump-hz";
    let _g = Cleanup(name.into());
    let r = s
        .cmd("deploy-node")
        .env("PROVISION_HETZNER_URL", &fake.url)
        .env("HCLOUD_TOKEN", TOKEN)
        .args([
            "-p",
            "hetzner",
            "-i",
            "ubuntu-24.04",
            "-s",
            "cx22",
            "-l",
            "fsn1",
        ])
        .args(["-n", name, "--json"])
        .run();
    assert_node_started(name);
    let r = r.code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let node = &v["nodes"][0];
    assert!(node["public_ip"].is_null(), "{node}");
    let private = node["private_ip"].as_str().expect("a private address");
    let log = bastion.log();
    assert!(
        log.contains(&format!("target {private} port 22")),
        "{private} not reached through the bastion:\n{log}"
    );
}

#[test]
fn a_node_the_bastion_cannot_reach_is_retried_until_the_deadline() {
    let s = Sandbox::new();
    let p = private_node(&s, "");
    // nothing listens on this port inside the namespace: every channel open is refused
    let closed = sshd::free_port();
    let text = std::fs::read_to_string(s.path().join("xdg-config/provision/provision.toml"))
        .unwrap()
        .replace(&format!(":{}\"", p.node.port), &format!(":{closed}\""));
    s.write("xdg-config/provision/provision.toml", &text);
    let r = s
        .cmd("deploy-node")
        .args(["-n", "web", "--ssh-timeout", "3s"])
        .run()
        .code(15)
        .stderr_has("web: SSH not ready after ")
        .stderr_has(&format!(
            "stuck at TCP port open on 127.0.0.1:{closed} through jump host {}",
            p.jump()
        ))
        .stderr_has("cannot reach it");
    r.one_line_error();
    // one bastion login, many tries over it
    let log = p.bastion.log();
    assert_eq!(count(&log, "Accepted publickey for root"), 1, "{log}");
    assert!(
        count(&log, &format!("target 127.0.0.1 port {closed}")) > 1,
        "{log}"
    );
}

/// `--dry-run` says which jump host is in effect and where it was set (text and JSON), an IPv6
/// bastion written as OpenSSH's ProxyJump wants it (`user@[v6]:port`); nothing is connected to.
#[test]
fn the_dry_run_names_the_jump_host_in_effect_and_its_source() {
    let s = Sandbox::new();
    let toml = s.write(
        "xdg-config/provision/provision.toml",
        "provider = \"static\"\n[providers.static]\nssh_jump = \"ops@[::1]:2222\"\n\
         [providers.static.hosts]\nweb = \"10.0.0.5\"\n",
    );
    let dry = |extra: &[&str]| {
        s.cmd("deploy-node")
            .args(["-n", "web", "--dry-run"])
            .args(extra)
            .run()
            .code(0)
    };
    dry(&[]).stdout_has(&format!(
        "  jump host: ops@[::1]:2222  ({}: [providers.static] ssh_jump)\n",
        toml.display()
    ));
    let v: serde_json::Value = serde_json::from_str(&dry(&["--json"]).stdout).unwrap();
    assert_eq!(v["plans"][0]["jump"]["value"], "ops@[::1]:2222", "{v}");
    assert_eq!(
        v["plans"][0]["jump"]["layer"],
        format!("{}: [providers.static] ssh_jump", toml.display())
    );
    // the flag wins, and its user defaults to the ssh user
    dry(&["--ssh-jump", "[2001:db8::7]"])
        .stdout_has("  jump host: root@[2001:db8::7]  (--ssh-jump)\n");
    // none turns it off: no line, null in JSON
    dry(&["--ssh-jump", "none"]).stdout_lacks("jump host");
    let v: serde_json::Value =
        serde_json::from_str(&dry(&["--ssh-jump", "none", "--json"]).stdout).unwrap();
    assert!(v["plans"][0]["jump"].is_null(), "{v}");
}

/// A bastion on IPv6 loopback alone (`[::1]:PORT`), in front of a static host: deploy-node
/// goes through it (its log shows the forwarded channel to the node), records its host key as
/// OpenSSH writes it (`[::1]:PORT`), and `ProxyJump root@[::1]:PORT` in list-nodes'
/// ssh-config works with the real `ssh -F`, as does `node ssh`'s `-J` and `node exec`.
#[test]
fn an_ipv6_bastion_is_bracketed_everywhere_and_works() {
    let s = Sandbox::new();
    let node = Sshd::start_with(sshd::free_port(), true);
    let bport = sshd::free_port();
    let bastion = Sshd::start_on_logging("::1", bport, "DEBUG1");
    let own = std::fs::read_to_string(s.home().join(".ssh/id_ed25519.pub")).unwrap();
    node.authorize("root", &own);
    bastion.authorize("root", &own);
    let jump = format!("root@[::1]:{bport}");
    s.write(
        "xdg-config/provision/provision.toml",
        &format!(
            "provider = \"static\"\nssh_jump = \"{jump}\"\n\
             [bundles.probe]\nscripts = [\"probe.sh\"]\n\
             [providers.static.hosts]\nweb = \"root@127.0.0.1:{}\"\n",
            node.port
        ),
    );
    s.write("xdg-config/provision/scripts/probe.sh", "echo probed\n");
    s.cmd("deploy-node")
        .args(["-n", "web", "-b", "probe"])
        .run()
        .code(0)
        .stderr_has("probed");
    let blog = bastion.log();
    assert!(
        blog.contains(&format!("target 127.0.0.1 port {}", node.port)),
        "the bastion forwarded nothing to the node:\n{blog}"
    );
    let kh = std::fs::read_to_string(s.state().join("known_hosts")).unwrap();
    assert!(kh.contains(&format!("[::1]:{bport} ssh-ed25519 ")), "{kh}");

    let cfg = s
        .cmd("list-nodes")
        .args(["--format", "ssh-config"])
        .run()
        .code(0)
        .stdout;
    assert!(cfg.contains(&format!("    ProxyJump {jump}\n")), "{cfg}");
    assert_eq!(
        s.ssh_with_config(&cfg, "web", "echo via-config"),
        "via-config\n"
    );
    s.cmd("node")
        .args(["ssh", "web", "--", "-o", "BatchMode=yes", "echo viassh"])
        .run()
        .code(0)
        .stdout_has("viassh\n");
    s.cmd("node")
        .args(["exec", "web", "--", "echo", "viaexec"])
        .run()
        .code(0)
        .stdout_has("viaexec\n");
    // each of the three connections went through the bastion
    assert_eq!(
        count(
            &bastion.log(),
            &format!("target 127.0.0.1 port {}", node.port)
        ),
        4,
        "{}",
        bastion.log()
    );
}
