//! End to end with the real binaries, the built-in `local` provider (a real sshd per node) and
//! the `static` provider (a test sshd): deploy → ssh in → list → gated destroy, and the
//! failure policy (script failure keeps the node, unreachable nodes are cleaned up, Ctrl-C
//! leaves nothing behind).

use crate::support::cli::{Run, Sandbox};
use crate::support::sshd::{self, Sshd};
use std::process::Command;
use std::time::{Duration, Instant};

/// A config layer with a bundle whose files land inside the sandbox (the node shares this
/// machine's filesystem unless it is isolated).
fn site(s: &Sandbox) -> String {
    let t = s.path().join("targets");
    s.write(
        "site/provision.toml",
        &format!(
            r#"
[vars]
greeting = "hi"
[bundles.app]
scripts = ["one.sh", "two.py"]
files = {{ "{t}/etc/app/app.conf" = "app.conf", "{t}/usr/local/bin/tool" = "tool", "{t}/secret/key" = "key" }}
[bundles.fails]
scripts = ["ok.sh", "bad.sh", "never.sh"]
[bundles.hangs]
scripts = ["hang.sh"]
"#,
            t = t.display()
        ),
    );
    s.write("site/files/app.conf", "listen 8080\n");
    s.write("site/files/tool", "#!/bin/sh\necho tool\n");
    s.chmod("site/files/tool", 0o755);
    s.write("site/files/key", "k\n");
    s.chmod("site/files/key", 0o600);
    s.write(
        "site/scripts/one.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho \"{greeting} from {node_name}\"\necho to-stderr >&2\ncat \"$(dirname \"$0\")\"/../nothing 2>/dev/null; date +%s%N > /tmp/provision-e2e-order-{node_name}\n",
    );
    s.write(
        "site/scripts/two.py",
        "#!/usr/bin/env python3\n# provision-template-type: tera\nimport os\nprint('python says {{ greeting }}', os.path.exists('/tmp/provision-e2e-order-{{ node_name }}'))\n",
    );
    s.write("site/scripts/ok.sh", "#!/bin/sh\necho ok ran\n");
    s.write(
        "site/scripts/bad.sh",
        "#!/bin/sh\necho about to fail\nexit 7\n",
    );
    s.write("site/scripts/never.sh", "#!/bin/sh\necho never\n");
    s.write(
        "site/scripts/hang.sh",
        "#!/bin/sh\necho hanging\nsleep 600\n",
    );
    s.path().join("site").display().to_string()
}

fn node_name(r: &Run) -> String {
    r.stdout
        .split_whitespace()
        .next()
        .expect("a node line")
        .to_string()
}

fn ssh_config(s: &Sandbox) -> std::path::PathBuf {
    let r = s
        .cmd("list-nodes")
        .args(["--format", "ssh-config"])
        .run()
        .code(0);
    s.write("ssh_config", &r.stdout)
}

fn ssh(
    s: &Sandbox,
    cfg: &std::path::Path,
    node: &str,
    extra: &[&str],
    cmd: &str,
) -> std::process::Output {
    Command::new("ssh")
        .env("HOME", s.home())
        .args(["-F"])
        .arg(cfg)
        .args(["-o", "BatchMode=yes"])
        .args(extra)
        .arg(node)
        .arg(cmd)
        .output()
        .unwrap()
}

/// Waits (up to 30 s) until list-nodes shows `name`: the node exists and deploy-node is busy.
fn wait_listed(s: &Sandbox, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !list(s).contains(name) {
        assert!(Instant::now() < deadline, "{name} never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn list(s: &Sandbox) -> String {
    s.cmd("list-nodes").run().code(0).stdout
}

/// The names list-nodes shows; every address must be a loopback one.
fn names(s: &Sandbox) -> Vec<String> {
    list(s)
        .lines()
        .map(|l| {
            let (name, ip) = l.split_once(' ').expect("NAME IP");
            assert!(ip.starts_with("127."), "{l}");
            name.to_string()
        })
        .collect()
}

#[test]
fn deploy_list_ssh_destroy() {
    let s = Sandbox::new();
    let site = site(&s);
    // a second key pair: installing it is what lets its owner log in
    let team = sshd::client_key();
    s.write("site/pubkeys/team", &team.public);
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            &site,
            "-b",
            "app",
            "-t",
            "greeting=hello",
            "--junit",
            "deploy.xml",
            "-d",
            "node.json",
        ])
        .run()
        .code(0);
    let name = node_name(&r);
    assert!(
        r.stdout.starts_with(&format!("{name} 127.")) && r.stdout.lines().count() == 1,
        "{}",
        r.stdout
    );
    let r = r
        .stderr_has(&format!("[{name}] hello from {name}"))
        .stderr_has(&format!("[{name}] to-stderr"))
        .stderr_has(&format!("[{name}] python says hello True"));
    assert!(r.stderr.find("hello from").unwrap() < r.stderr.find("python says").unwrap());

    // listed, and reachable with ssh using the node's new keys and its pinned host key
    assert_eq!(names(&s), std::slice::from_ref(&name));
    let cfg = ssh_config(&s);
    let out = ssh(&s, &cfg, &name, &[], "echo in");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let team_key = team.private.display().to_string();
    let out = ssh(
        &s,
        &cfg,
        &name,
        &["-o", "IdentitiesOnly=yes", "-i", &team_key],
        "echo team",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "team\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // files with content and mode, on the node
    let t = s.path().join("targets").display().to_string();
    let cmd = format!("cat {t}/etc/app/app.conf; stat -c %a {t}/usr/local/bin/tool {t}/secret/key");
    let out = ssh(&s, &cfg, &name, &[], &cmd);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "listen 8080\n755\n600\n"
    );
    // an isolated node (root on Linux) leaves the host untouched
    if sshd::is_root() {
        assert!(
            !s.path().join("targets").exists(),
            "the node wrote to the host"
        );
    }

    // the description file and the JUnit report
    let desc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("node.json")).unwrap())
            .unwrap();
    assert_eq!(desc["name"], name.as_str());
    assert!(desc["public_ip"][0].as_str().unwrap().starts_with("127."));
    assert_eq!(desc["scripts"][1]["name"], "two.py");
    assert_eq!(desc["scripts"][1]["status"], 0);
    let report = provision::junit::read_results(&s.path().join("deploy.xml")).unwrap();
    assert_eq!(
        (report.passed, report.failed.len()),
        (4 + 7 + 2, 0),
        "keys, files, two scripts; then 7 phases and the two scripts' phases"
    );

    // a passing test report lets destroy-node destroy it
    s.write("results.xml", "<testsuites><testsuite name=\"t\" tests=\"1\"><testcase name=\"works\"/></testsuite></testsuites>");
    s.cmd("destroy-node")
        .args(["-t", "results.xml", &name])
        .run()
        .code(0)
        .stderr_has("1 passed")
        .stderr_has(&format!("{name}: destroyed"));
    assert_eq!(list(&s), "");
    // again: destroyed from here before, so "already gone" (exit 0, as documented)
    s.cmd("destroy-node")
        .args([&name])
        .run()
        .code(0)
        .stderr_has("already gone");
    let _ = std::fs::remove_file(format!("/tmp/provision-e2e-order-{name}"));
}

#[test]
fn a_failing_script_keeps_the_node_and_exits_14() {
    let s = Sandbox::new();
    let site = site(&s);
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            &site,
            "-b",
            "fails",
            "-n",
            "failing-node",
            "--junit",
            "deploy.xml",
        ])
        .run()
        .code(14);
    let r = r
        .stderr_has("[failing-node] ok ran")
        .stderr_has("[failing-node] about to fail")
        .stderr_has("bad.sh failed (exit status 7); node kept for inspection: destroy it with `destroy-node -p local failing-node`")
        .stderr_lacks("never");
    assert!(r.stdout.is_empty());
    assert_eq!(names(&s), ["failing-node"]);
    let report = provision::junit::read_results(&s.path().join("deploy.xml")).unwrap();
    // the step bad.sh, and its phase: where the failed deploy ended
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
    assert_eq!(report.skipped, 1);
    // a JUnit consumer other than ours reads the same report: the node's suite (5 steps, 1
    // failure), then its phases suite (7 phases and the 2 scripts that ran, bad.sh failed)
    let consumer = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, xml.etree.ElementTree as ET\n\
             r = ET.parse(sys.argv[1]).getroot()\n\
             s = r.findall('testsuite')\n\
             c = r.findall('.//testcase')\n\
             print(len(s), s[0].get('name'), len(c), len(r.findall('.//failure')), len(r.findall('.//skipped')), [x.get('name') for x in c])",
        )
        .arg(s.path().join("deploy.xml"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&consumer.stdout),
        "2 failing-node 14 2 1 ['keys', 'files', 'ok.sh', 'bad.sh', 'never.sh', 'create', 'running', 'tcp', 'banner', 'auth', 'upload', 'cloud-init', 'script ok.sh', 'script bad.sh']\n",
        "{}",
        String::from_utf8_lossy(&consumer.stderr)
    );
    // kept on purpose: not an orphan
    assert_eq!(
        s.cmd("list-nodes").args(["--orphans"]).run().code(0).stdout,
        ""
    );
    // failing tests keep it too; then it goes
    s.write("results.xml", "<testsuite tests=\"2\"><testcase name=\"a\"/><testcase name=\"b\"><failure message=\"no\"/></testcase></testsuite>");
    s.cmd("destroy-node")
        .args(["-t", "results.xml", "failing-node"])
        .run()
        .code(3)
        .stderr_has("failed: b")
        .stderr_has("node failing-node kept");
    assert_eq!(names(&s), ["failing-node"]);
    s.cmd("destroy-node")
        .args(["--force", "failing-node"])
        .run()
        .code(0);
    assert_eq!(list(&s), "");
}

#[test]
fn keep_going_runs_the_rest() {
    let s = Sandbox::new();
    let site = site(&s);
    s.cmd("deploy-node")
        .args([
            "-c",
            &site,
            "-b",
            "fails",
            "-n",
            "going-node",
            "--keep-going",
        ])
        .run()
        .code(14)
        .stderr_has("[going-node] never");
    s.cmd("destroy-node")
        .args(["--force", "going-node"])
        .run()
        .code(0);
}

#[test]
fn script_timeout_ends_a_hanging_script() {
    let s = Sandbox::new();
    let site = site(&s);
    let started = Instant::now();
    s.cmd("deploy-node")
        .args([
            "-c",
            &site,
            "-b",
            "hangs",
            "-n",
            "hang-node",
            "--script-timeout",
            "1s",
        ])
        .run()
        .code(14)
        .stderr_has("[hang-node] hanging")
        .stderr_has("hang.sh failed (exit status 124)");
    assert!(started.elapsed() < Duration::from_secs(60));
    s.cmd("destroy-node")
        .args(["--force", "hang-node"])
        .run()
        .code(0);
}

/// A test sshd on a free port that takes the sandbox user's key for root, and a layer
/// declaring it as the static host `box1`: (server, port, the user's public key, layer dir).
fn static_box1(s: &Sandbox) -> (Sshd, u16, String, String) {
    let port = sshd::free_port();
    let server = Sshd::start_with(port, true);
    let own = std::fs::read_to_string(s.home().join(".ssh/id_ed25519.pub")).unwrap();
    server.authorize("root", &own);
    s.write(
        "static/provision.toml",
        &format!(
            "provider = \"static\"\n[providers.static.hosts]\nbox1 = \"root@127.0.0.1:{port}\"\n"
        ),
    );
    let st = s.path().join("static").display().to_string();
    (server, port, own, st)
}

#[test]
fn a_static_host_deployed_again_pins_the_key_its_record_holds() {
    let s = Sandbox::new();
    let site = site(&s);
    let (server, port, own, st) = static_box1(&s);
    let deploy = || {
        s.cmd("deploy-node")
            .args(["-c", &site, "-c", &st, "-n", "box1", "-b", "app"])
            .run()
    };
    deploy().code(0);
    // the tool's known_hosts lost (a new runner image, a cleared state): the record still pins
    let kh = s.state().join("known_hosts");
    std::fs::remove_file(&kh).unwrap();
    deploy().code(0).stderr_lacks("has CHANGED");
    assert!(!kh.exists(), "trust-on-first-use recorded the host again");
    // same address, another host key: refused in one line naming the node, nothing run
    drop(server);
    let server = Sshd::start_with(port, true);
    server.authorize("root", &own);
    std::fs::remove_file(s.path().join("targets/etc/app/app.conf")).unwrap();
    let refused = deploy().code(14).one_line_error();
    let line = refused
        .stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap();
    assert!(
        line.contains("box1") && line.contains("host key mismatch"),
        "{line}"
    );
    assert!(!s.path().join("targets/etc/app/app.conf").exists());
}

#[test]
fn static_host_provisioned_and_changed_host_key_refused() {
    let s = Sandbox::new();
    let site = site(&s);
    let (server, port, own, st) = static_box1(&s);
    s.cmd("deploy-node")
        .args(["-c", &site, "-c", &st, "-n", "box1", "-b", "app"])
        .run()
        .code(0)
        .stdout_has("box1 127.0.0.1");
    // recorded on first use
    let kh = std::fs::read_to_string(s.state().join("known_hosts")).unwrap();
    assert!(kh.contains(&format!("[127.0.0.1]:{port}")), "{kh}");
    assert!(s.path().join("targets/etc/app/app.conf").exists());
    // a static host's name picks an existing machine: no name-free check, deploying again works
    // (with another key, given with --identity: remembered for the node's ssh-config)
    let team = sshd::client_key();
    server.authorize("root", &team.public);
    let team_key = team.private.display().to_string();
    // a --ttl means nothing on a machine that is never destroyed: warned once, not recorded
    let again = s
        .cmd("deploy-node")
        .args(["-c", &site, "-c", &st, "-n", "box1", "-b", "app"])
        .args(["--identity", &team_key, "--ttl", "2h"])
        .run()
        .code(0)
        .stderr_lacks("already taken");
    assert_eq!(
        again.stderr.matches("static: --ttl/ttl ignored").count(),
        1,
        "{}",
        again.stderr
    );
    let list = |format: &str| {
        s.cmd("list-nodes")
            .args(["-c", &st, "--format", format])
            .run()
            .code(0)
            .stdout
    };
    let listed: serde_json::Value = serde_json::from_str(&list("json")).unwrap();
    assert!(listed[0]["expires_at"].is_null(), "{listed}");
    assert_eq!(listed[0]["name"], "box1");
    // deploying a static host again counts its runs, and --reprovision works on it too (its
    // recorded bundles, the remembered identity and host key)
    let run = |s: &Sandbox| {
        let rec = std::fs::read_to_string(s.state().join("nodes/static--box1.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&rec).unwrap();
        v["applied"]["provision_run"].as_u64().unwrap()
    };
    assert_eq!(run(&s), 2);
    s.cmd("deploy-node")
        .args(["-c", &site, "-c", &st, "--reprovision", "-n", "box1"])
        .run()
        .code(0)
        .stdout_has("box1 127.0.0.1");
    assert_eq!(run(&s), 3);
    // the learned key is remembered for the node and pinned in the ssh-config
    let cfg = list("ssh-config");
    assert!(cfg.contains("StrictHostKeyChecking yes"), "{cfg}");
    assert!(cfg.contains(&format!("IdentityFile {team_key}\n")), "{cfg}");
    let cfg = s.write("ssh_config", &cfg);
    let out = ssh(
        &s,
        &cfg,
        "box1",
        &["-o", "StrictHostKeyChecking=yes"],
        "true",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.state().join("nodes/static--box1.json").exists());
    s.cmd("list-nodes")
        .args(["-c", &st])
        .run()
        .code(0)
        .stdout_has("box1 127.0.0.1");
    // destroying a static host only forgets it; the machine keeps running
    s.cmd("destroy-node")
        .args(["-c", &st, "box1"])
        .run()
        .code(0)
        .stderr_has("the machine itself was not touched");
    assert_eq!(
        s.cmd("list-nodes").args(["-c", &st]).run().code(0).stdout,
        ""
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(
        !s.state().join("nodes/static--box1.json").exists(),
        "forgotten"
    );
    assert!(!s.state().join("known_hosts.d/box1").exists(), "forgotten");
    drop(server);

    // same address, another host key: refused, naming both fingerprints
    let server = Sshd::start_with(port, true);
    server.authorize("root", &own);
    s.cmd("deploy-node")
        .args(["-c", &site, "-c", &st, "-n", "box1", "-b", "app"])
        .run()
        .code(14)
        .stderr_has("SHA256:")
        .stderr_has("has CHANGED");
    assert_eq!(
        s.cmd("list-nodes").args(["-c", &st]).run().code(0).stdout,
        ""
    );
    // a configured host provision never deployed is not ours to destroy
    s.cmd("destroy-node")
        .args(["-c", &st, "box1"])
        .run()
        .code(1)
        .stderr_has("--force");
    drop(server);
}

#[test]
fn unreachable_node_times_out_with_15_and_is_cleaned_up() {
    let s = Sandbox::new();
    let port = sshd::free_port();
    s.write(
        "static/provision.toml",
        &format!("provider = \"static\"\n[providers.static.hosts]\nghost = \"127.0.0.1:{port}\"\n"),
    );
    let st = s.path().join("static").display().to_string();
    s.cmd("deploy-node")
        .args(["-c", &st, "-n", "ghost", "--ssh-timeout", "2s"])
        .run()
        .code(15)
        .stderr_has("ghost")
        .stderr_has("TCP port open");
    assert_eq!(
        s.cmd("list-nodes").args(["-c", &st]).run().code(0).stdout,
        ""
    );
    assert_eq!(
        s.cmd("list-nodes")
            .args(["-c", &st, "--orphans"])
            .run()
            .code(0)
            .stdout,
        ""
    );
}

/// `sig` while a script runs: exit 130, the node destroyed by the main thread, no orphan.
fn signal_during_scripts(sig: i32, name: &str) {
    let s = Sandbox::new();
    let site = site(&s);
    let mut cmd = s
        .cmd("deploy-node")
        .args(["-c", &site, "-b", "hangs", "-n", name, "-d", "d.json"])
        .cmd;
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // wait until the script runs (the node exists and is busy)
    wait_listed(&s, name);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains(&format!("{name}: destroyed")), "{stderr}");
    assert!(out.stdout.is_empty());
    // the phases end with the script it was stopped in, marked failed
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("d.json")).unwrap()).unwrap();
    let last = d["phases"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (&last["phase"], &last["script"], &last["failed"]),
        (&"script".into(), &"hang.sh".into(), &true.into()),
        "{d}"
    );
    assert_eq!(list(&s), "");
    assert_eq!(
        s.cmd("list-nodes").args(["--orphans"]).run().code(0).stdout,
        ""
    );
}

#[test]
fn ctrl_c_during_deploy_exits_130_and_leaves_no_node() {
    signal_during_scripts(libc::SIGINT, "int-node");
}

#[test]
fn sigterm_during_scripts_exits_130_and_leaves_no_node() {
    signal_during_scripts(libc::SIGTERM, "term-node");
}

/// A name already taken exits 2 before anything is created, naming the node's id and age;
/// in a pool, every taken name is named after one list.
#[test]
fn a_taken_name_exits_2_and_creates_nothing() {
    let s = Sandbox::new();
    let site = site(&s);
    s.cmd("deploy-node")
        .args(["-c", &site, "-n", "taken-1"])
        .run()
        .code(0);
    s.cmd("deploy-node")
        .args(["-c", &site, "-n", "taken-1"])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("name already taken on local by 'taken-1' (id taken-1, created ")
        .stderr_lacks("creating")
        .stdout_empty();
    s.cmd("deploy-node")
        .args(["-c", &site, "-n", "taken-{i}", "--count", "2"])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("'taken-1'")
        .stderr_lacks("taken-2");
    assert_eq!(names(&s), ["taken-1"]);
}

#[test]
fn a_killed_deploy_leaves_an_orphan_that_list_nodes_shows() {
    let s = Sandbox::new();
    let site = site(&s);
    let mut cmd = s
        .cmd("deploy-node")
        .args(["-c", &site, "-b", "hangs", "-n", "orphan-node"])
        .cmd;
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_listed(&s, "orphan-node");
    child.kill().unwrap(); // SIGKILL: no cleanup possible
    child.wait().unwrap();
    s.cmd("list-nodes")
        .args(["--orphans"])
        .run()
        .code(0)
        .stdout_has("orphan-node 127.");
    s.cmd("destroy-node")
        .args(["--force", "orphan-node"])
        .run()
        .code(0);
    assert_eq!(
        s.cmd("list-nodes").args(["--orphans"]).run().code(0).stdout,
        ""
    );
}

#[test]
fn dry_run_creates_nothing() {
    let s = Sandbox::new();
    s.cmd("deploy-node")
        .args(["-b", "hello", "--dry-run"])
        .run()
        .code(0);
    assert_eq!(list(&s), "");
}

#[test]
fn destroy_dry_run_and_unreadable_results_destroy_nothing() {
    let s = Sandbox::new();
    let r = s
        .cmd("deploy-node")
        .args(["-b", "hello", "-n", "dry-node"])
        .run()
        .code(0);
    assert_eq!(node_name(&r), "dry-node");
    s.write(
        "results.xml",
        "<testsuite tests=\"1\"><testcase name=\"a\"/></testsuite>",
    );
    s.cmd("destroy-node")
        .args(["-t", "results.xml", "--dry-run", "--force", "dry-node"])
        .run()
        .code(0)
        .stderr_has("would destroy dry-node");
    s.write("html.xml", "<html><body>502 Bad Gateway</body></html>");
    s.cmd("destroy-node")
        .args(["-t", "html.xml", "dry-node"])
        .run()
        .code(2)
        .stderr_has("html.xml")
        .stderr_has("nothing destroyed");
    s.write("empty.xml", "<testsuite tests=\"0\"></testsuite>");
    s.cmd("destroy-node")
        .args(["-t", "empty.xml", "dry-node"])
        .run()
        .code(3)
        .stderr_has("kept");
    assert_eq!(names(&s), ["dry-node"]);
    s.cmd("destroy-node")
        .args(["-t", "results.xml", "--force", "dry-node"])
        .run()
        .code(0);
}

#[test]
fn makefile_example_runs_the_gated_flow() {
    let s = Sandbox::new();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_deploy-node"))
        .parent()
        .unwrap()
        .display()
        .to_string()
        + "/";
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    let make = |target: &str, fail: bool| {
        let mut c = Command::new("make");
        c.args(["-s", "-f"])
            .arg(example.join("Makefile"))
            .arg(target)
            .arg(format!("BIN={bin}"))
            .arg(format!("CONFIG={}", example.display()))
            .current_dir(s.path())
            .env("HOME", s.home())
            .env("PROVISION_STATE_DIR", s.state())
            .env("XDG_CONFIG_HOME", s.path().join("xdg"));
        if fail {
            c.env("NODE_TEST_FAIL", "1");
        }
        c.output().unwrap()
    };
    // passing tests: destroyed
    assert!(make("node", false).status.success());
    let t = make("test", false);
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let c = make("clean", false);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    assert_eq!(list(&s), "");
    // a failing test: the node is kept and named
    assert!(make("node", true).status.success());
    assert!(!make("test", true).status.success());
    let c = make("clean", true);
    assert!(!c.status.success());
    let err = String::from_utf8_lossy(&c.stderr);
    assert!(
        err.contains("failed: node_test.NodeTest::test_fails_on_purpose"),
        "{err}"
    );
    let name = std::fs::read_to_string(s.path().join("node.txt")).unwrap();
    let name = name.split_whitespace().next().unwrap().to_string();
    assert!(err.contains(&format!("node {name} kept")), "{err}");
    s.cmd("destroy-node").args([&name]).run().code(0);
}

#[test]
fn without_isolation_required_exits_2_and_auto_warns_once_for_a_pool() {
    let s = Sandbox::new();
    let no_iso = provision::provider::local::NO_ISOLATION_ENV;
    s.cmd("deploy-node")
        .args(["-b", "hello", "--isolation", "required"])
        .env(no_iso, "1")
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("isolation");
    assert_eq!(list(&s), "");
    let r = s
        .cmd("deploy-node")
        .args([
            "-b",
            "hello",
            "--count",
            "3",
            "--parallel",
            "2",
            "-n",
            "plain-{i}",
        ])
        .env(no_iso, "1")
        .run()
        .code(0);
    assert_eq!(
        r.stderr.matches("local nodes are not isolated").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("summary:"), "{}", r.stderr);
    let mut got: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, ["plain-1", "plain-2", "plain-3"]);
    let mut listed = names(&s);
    listed.sort();
    assert_eq!(listed, ["plain-1", "plain-2", "plain-3"]);
    s.cmd("destroy-node")
        .args(["--prefix", "plain-", "--dry-run"])
        .run()
        .code(0)
        .stderr_has("3 node(s) match plain-*");
    assert_eq!(names(&s).len(), 3);
    s.cmd("destroy-node")
        .args(["--prefix", "plain-"])
        .run()
        .code(0)
        .stderr_has("plain-2: destroyed");
    assert_eq!(list(&s), "");
}

#[test]
fn a_pool_reports_every_node_and_exits_with_the_worst_code() {
    let s = Sandbox::new();
    let site = site(&s);
    s.write(
        "one/provision.toml",
        "[bundles.flaky]\nscripts = [\"maybe.sh\"]\n",
    );
    s.write("one/scripts/maybe.sh", "#!/bin/sh\n# provision-template-type: tera\n{% if node_name == \"pool-2\" %}exit 5{% else %}echo fine{% endif %}\n");
    let one = s.path().join("one").display().to_string();
    let r = s
        .cmd("deploy-node")
        .args([
            "-c", &site, "-c", &one, "-b", "flaky", "--count", "3", "-n", "pool-{i}", "--json",
            "--junit", "pool.xml",
        ])
        .run()
        .code(14);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["format"], 1);
    let ok: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["error"].is_null())
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(ok, ["pool-1", "pool-3"]);
    assert!(
        r.stderr.contains("pool-2") && r.stderr.contains("failed, kept"),
        "{}",
        r.stderr
    );
    let report = provision::junit::read_results(&s.path().join("pool.xml")).unwrap();
    // pool-2's failed script: its step and its phase
    assert_eq!(report.failed.len(), 2, "{:?}", report.failed);
    assert_eq!(
        report.passed,
        3 * 2 + 2 + 3 * 7 + 2,
        "keys+files per node, two good scripts, each node's 7 phases and the good scripts'"
    );
    let mut listed = names(&s);
    listed.sort();
    assert_eq!(
        listed,
        ["pool-1", "pool-2", "pool-3"],
        "the failed node is kept, the others stay deployed"
    );
    s.cmd("destroy-node")
        .args(["--force", "pool-1", "pool-2", "pool-3"])
        .run()
        .code(0);
    assert_eq!(list(&s), "");
}

#[test]
fn shipped_bundles_on_an_isolated_node_leave_the_host_alone() {
    if !sshd::is_root() {
        eprintln!("not root: local nodes are not isolated here; nothing to check");
        return;
    }
    let s = Sandbox::new();
    let before = |p: &str| std::fs::read(p).ok();
    let (tz, gitcfg, hello) = (
        before("/etc/timezone"),
        before("/etc/gitconfig"),
        before("/tmp/provision-hello/hello.txt"),
    );
    let r = s
        .cmd("deploy-node")
        .args([
            "-b",
            "tz",
            "-b",
            "git",
            "-b",
            "hello",
            "-t",
            "timezone=Asia/Tokyo",
            "-n",
            "iso-bundles",
            "--isolation",
            "required",
        ])
        .run()
        .code(0)
        .stderr_has("[iso-bundles] timezone: Asia/Tokyo")
        .stderr_has("[iso-bundles] hostname: iso-bundles");
    assert!(r.stdout.starts_with("iso-bundles 127."));
    let cfg = ssh_config(&s);
    let out = ssh(
        &s,
        &cfg,
        "iso-bundles",
        &[],
        "cat /etc/timezone; git config --system user.name; cat /tmp/provision-hello/hello.txt",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Asia/Tokyo\nprovision\nThis file was put here"),
        "{text}"
    );
    assert_eq!(before("/etc/timezone"), tz);
    assert_eq!(before("/etc/gitconfig"), gitcfg);
    assert_eq!(before("/tmp/provision-hello/hello.txt"), hello);
    s.cmd("destroy-node")
        .args(["--force", "iso-bundles"])
        .run()
        .code(0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&s.state().display().to_string()),
        "a mount of the node remains"
    );
}

/// A non-root login: with passwordless sudo everything that needs root goes through `sudo -n`;
/// without it, keys go to the login user only and scripts run from `~/deploy`, with a warning.
/// The users are made inside an isolated local node (its overlay keeps the host's /etc clean),
/// then reached through the static provider as an existing machine.
#[test]
fn non_root_logins_use_sudo_or_say_why_not() {
    if !sshd::is_root() || Command::new("sudo").arg("-V").output().is_err() {
        eprintln!(
            "needs root (an isolated node) and sudo (scripts/setup-test-deps.sh installs it)"
        );
        return;
    }
    let s = Sandbox::new();
    s.cmd("deploy-node")
        .args(["-n", "users-host", "-b", "hello", "--isolation", "required"])
        .run()
        .code(0);
    let cfg = ssh_config(&s);
    let setup = "useradd -m -s /bin/sh bob && useradd -m -s /bin/sh carol && usermod -p '*' bob && usermod -p '*' carol \
                 && echo 'bob ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/bob && chmod 440 /etc/sudoers.d/bob \
                 && for u in bob carol; do install -d -m 700 -o $u /home/$u/.ssh \
                    && install -m 600 -o $u /root/.ssh/authorized_keys /home/$u/.ssh/authorized_keys; done";
    let out = ssh(&s, &cfg, "users-host", &[], setup);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(
        &s.cmd("list-nodes")
            .args(["--format", "json"])
            .run()
            .code(0)
            .stdout,
    )
    .unwrap();
    let ip = v[0]["public_ip"].as_str().unwrap().to_string();
    let port = v[0]["ssh"]["port"].as_u64().unwrap();
    s.write("hosts/files/conf", "root-owned\n");
    s.write(
        "hosts/scripts/who.sh",
        "#!/bin/sh\necho \"running as $(id -un) from $(dirname \"$0\")\"\n",
    );
    s.write(
        "hosts/provision.toml",
        &format!(
            "[providers.static.hosts]\nbob-box = \"bob@{ip}:{port}\"\ncarol-box = \"carol@{ip}:{port}\"\n\
             [bundles.asroot]\nscripts = [\"who.sh\"]\nfiles = {{ \"/etc/provision-sudo/conf\" = \"conf\" }}\n\
             [bundles.asuser]\nscripts = [\"who.sh\"]\nfiles = {{ \"/tmp/carol-files/conf\" = \"conf\" }}\n"
        ),
    );
    let hosts = s.path().join("hosts").display().to_string();
    s.cmd("deploy-node")
        .args([
            "-p", "static", "-c", &hosts, "-n", "bob-box", "-b", "asroot",
        ])
        .run()
        .code(0)
        .stderr_has("[bob-box] running as root from /root/deploy");
    let check = "stat -c '%U %a' /etc/provision-sudo/conf; grep -c tester@sandbox ~bob/.ssh/authorized_keys /root/.ssh/authorized_keys";
    let out = ssh(&s, &cfg, "users-host", &[], check);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "root 644\n/home/bob/.ssh/authorized_keys:1\n/root/.ssh/authorized_keys:1\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.cmd("deploy-node")
        .args([
            "-p",
            "static",
            "-c",
            &hosts,
            "-n",
            "carol-box",
            "-b",
            "asuser",
        ])
        .run()
        .code(0)
        .stderr_has("carol is not root and sudo needs a password: allow carol NOPASSWD")
        .stderr_has("[carol-box] running as carol from /home/carol/deploy");
    let out = ssh(
        &s,
        &cfg,
        "users-host",
        &[],
        "stat -c '%U' /tmp/carol-files/conf; grep -c tester@sandbox ~carol/.ssh/authorized_keys",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "carol\n1\n");
    s.cmd("destroy-node")
        .args(["--force", "users-host"])
        .run()
        .code(0);
}

#[test]
fn static_host_checked_against_the_users_openssh_known_hosts() {
    let s = Sandbox::new();
    let site = site(&s);
    let (server, port, _, st) = static_box1(&s);
    let deploy = || {
        s.cmd("deploy-node")
            .args(["-c", &site, "-c", &st, "-n", "box1", "-b", "app"])
            .run()
    };
    let known = s.home().join(".ssh/known_hosts");
    let host_pub = server.host_pub.trim().to_string();

    // 1. hashed by OpenSSH's own ssh-keygen -H, recording another key: refused, nothing ran
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{port} {}\n", sshd::other_public_key().trim()),
    )
    .unwrap();
    let hashed = Command::new("ssh-keygen")
        .args(["-H", "-f"])
        .arg(&known)
        .output()
        .unwrap();
    assert!(hashed.status.success(), "{hashed:?}");
    let text = std::fs::read_to_string(&known).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    deploy()
        .code(14)
        .stderr_has("has CHANGED")
        .stderr_has(".ssh/known_hosts:1");
    assert!(!s.path().join("targets/etc/app/app.conf").exists());

    // 2. a wildcard pattern with the server's real key: trusted, not recorded again
    std::fs::write(&known, format!("[127.0.0.*]:*,!10.* {host_pub}\n")).unwrap();
    deploy().code(0);
    assert!(s.path().join("targets/etc/app/app.conf").exists());
    let ours = std::fs::read_to_string(s.state().join("known_hosts")).unwrap_or_default();
    assert!(!ours.contains(&format!(":{port}")), "{ours}");

    // 3. the same key revoked in the user's file: refused
    std::fs::write(
        &known,
        format!("[127.0.0.*]:* {host_pub}\n@revoked * {host_pub}\n"),
    )
    .unwrap();
    deploy().code(14).stderr_has("REVOKED");
    drop(server);
}
