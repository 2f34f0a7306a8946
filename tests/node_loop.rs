//! `node` on a kept local node (a real sshd): exec passes the remote exit status through and
//! keeps stdin, stdout and stderr apart; show prints what is known, as text and JSON, for a
//! running and a stopped node; list-nodes --format table lines up its columns; a name
//! that matches no node is a usage error naming it; `node ssh` reaches the node through the
//! system OpenSSH client with the generated config.

use crate::support::cli::Sandbox;

/// Deploys one local node with no bundle and returns its name.
fn deploy(s: &Sandbox, name: &str) -> String {
    let r = s.cmd("deploy-node").args(["-n", name]).run().code(0);
    r.stdout
        .split_whitespace()
        .next()
        .expect("a node line")
        .to_string()
}

#[test]
fn exec_show_ssh_and_unknown() {
    let s = Sandbox::new();
    let name = deploy(&s, "deploy-test-loop-exec");

    // exec: stdout and stderr apart, the remote status is node's, stdin is forwarded
    let r = s
        .cmd("node")
        .args([
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ])
        .run()
        .code(7);
    assert_eq!(r.stdout, "out\n");
    assert!(r.stderr.ends_with("err\n"), "{}", r.stderr);
    assert!(!r.stderr.contains("out"), "{}", r.stderr);
    let input = s.write("input.txt", "line one\nline two\n");
    let mut c = s.cmd("node").args(["exec", &name, "--", "wc", "-l"]);
    c.cmd.stdin(std::fs::File::open(&input).unwrap());
    let r = c.run().code(0);
    assert_eq!(r.stdout.trim(), "2");
    // arguments keep their spaces and quotes through the remote shell
    let r = s
        .cmd("node")
        .args(["exec", &name, "--", "printf", "%s|", "a b", "it's"])
        .run()
        .code(0);
    assert_eq!(r.stdout, "a b|it's|");

    // show: text and JSON
    let r = s.cmd("node").args(["show", &name]).run().code(0);
    let r = r
        .stdout_has("state       running")
        .stdout_has("public ip   127.");
    assert!(r.stdout.contains("ssh -F "), "{}", r.stdout);
    let r = s.cmd("node").args(["show", &name, "--json"]).run().code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["node"]["name"], name.as_str());
    assert_eq!(v["node"]["state"], "running");
    assert_eq!(v["provider"], "local");
    assert!(v["record"]["host_key"]
        .as_str()
        .unwrap()
        .starts_with("ssh-"));

    // ssh: the system client, with the generated config and the pinned key
    let r = s
        .cmd("node")
        .args([
            "ssh",
            &name,
            "--",
            "-o",
            "BatchMode=yes",
            "echo via-openssh; exit 3",
        ])
        .run()
        .code(3);
    assert_eq!(r.stdout, "via-openssh\n");

    // list-nodes --format table: a header, the node running, its loopback address, the provider
    let r = s
        .cmd("list-nodes")
        .args(["--format", "table"])
        .run()
        .code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", r.stdout);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], name);
    assert_eq!(row[1], "running");
    assert!(row[3].starts_with("127."), "{}", r.stdout);
    assert_eq!(row[4], "local");

    // a stopped node (its sshd killed): shown as stopped, no ssh line; exec fails with one line
    let p = provision::provider::local::LocalProvider::with_state_dir(&s.state());
    let pid = p.record(&name).unwrap().unwrap().pid;
    // SAFETY: kill(2) on the node's sshd, which this test created.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(crate::support::procs::wait_until(
        std::time::Duration::from_secs(10),
        || s.cmd("node")
            .args(["show", &name])
            .run()
            .stdout
            .contains("state       stopped")
    ));
    let r = s.cmd("node").args(["show", &name, "--json"]).run().code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["node"]["state"], "stopped");

    // an unknown name: exit 2, one line naming it
    s.cmd("node")
        .args(["show", "deploy-test-nosuch"])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("deploy-test-nosuch: no such node on provider local");
    s.cmd("node")
        .args(["exec", "deploy-test-nosuch", "--", "true"])
        .run()
        .code(2)
        .stderr_has("no such node");

    s.cmd("destroy-node").args([&name]).run().code(0);
    s.cmd("node").args(["show", &name]).run().code(2);
}

/// The mode bits of a local file.
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `stat -c '%a %s'` of a path on the node, through `node exec`.
fn remote_stat(s: &Sandbox, name: &str, path: &str) -> String {
    let r = s
        .cmd("node")
        .args(["exec", name, "--", "stat", "-c", "%a %s", path])
        .run()
        .code(0);
    r.stdout.trim().to_string()
}

#[test]
fn cp_both_ways_keeps_modes() {
    let s = Sandbox::new();
    let name = deploy(&s, "deploy-test-loop-cp");
    // the node may be isolated (its own /tmp): check its side through node exec
    s.write("src/tool", "#!/bin/sh\necho tool\n");
    s.chmod("src/tool", 0o751);
    s.write("src/tree/secret", "k\n");
    s.chmod("src/tree/secret", 0o600);
    s.write("src/tree/sub/readme", "r\n");
    s.chmod("src/tree/sub/readme", 0o644);
    let remote = format!("/tmp/node-cp-{}", std::process::id());
    s.cmd("node")
        .args(["exec", &name, "--", "mkdir", "-p", &remote])
        .run()
        .code(0);

    // a file, to a new name and into a directory
    let tool = s.path().join("src/tool").display().to_string();
    let to = format!("{name}:{remote}/bin-tool");
    s.cmd("node").args(["cp", &tool, &to]).run().code(0);
    assert_eq!(
        remote_stat(&s, &name, &format!("{remote}/bin-tool")),
        "751 20"
    );
    let into = format!("{name}:{remote}");
    s.cmd("node").args(["cp", &tool, &into]).run().code(0);
    assert_eq!(remote_stat(&s, &name, &format!("{remote}/tool")), "751 20");
    // a tree
    let tree = s.path().join("src/tree").display().to_string();
    s.cmd("node").args(["cp", &tree, &into]).run().code(0);
    assert_eq!(
        remote_stat(&s, &name, &format!("{remote}/tree/secret")),
        "600 2"
    );
    assert_eq!(
        remote_stat(&s, &name, &format!("{remote}/tree/sub/readme")),
        "644 2"
    );

    // back: a file to a new local name, a tree into a local directory
    let back = s.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    let from = format!("{name}:{remote}/bin-tool");
    let local = back.join("t2").display().to_string();
    s.cmd("node").args(["cp", &from, &local]).run().code(0);
    assert_eq!(mode(&back.join("t2")), 0o751);
    assert_eq!(
        std::fs::read_to_string(back.join("t2")).unwrap(),
        "#!/bin/sh\necho tool\n"
    );
    let from = format!("{name}:{remote}/tree");
    s.cmd("node")
        .args(["cp", &from, &back.display().to_string()])
        .run()
        .code(0);
    assert_eq!(mode(&back.join("tree/secret")), 0o600);
    assert_eq!(mode(&back.join("tree/sub/readme")), 0o644);

    // a missing remote file: tar's status and message, nothing written
    let missing = format!("{name}:{remote}/nothing");
    let r = s
        .cmd("node")
        .args(["cp", &missing, &back.join("n").display().to_string()])
        .run();
    assert_ne!(r.code, 0);
    assert!(!back.join("n").exists());
    // both sides local: a usage error
    s.cmd("node")
        .args(["cp", &tool, &local])
        .run()
        .code(2)
        .stderr_has("exactly one side must be NAME:/path");
    s.cmd("node")
        .args(["exec", &name, "--", "rm", "-rf", &remote])
        .run()
        .code(0);
    s.cmd("destroy-node").args([&name]).run().code(0);
}
