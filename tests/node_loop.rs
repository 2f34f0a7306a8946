//! `node` on a kept local node (a real sshd): exec passes the remote exit status through and
//! keeps stdin, stdout and stderr apart; show prints what is known, as text and JSON; a name
//! that matches no node is a usage error naming it; `node ssh` reaches the node through the
//! system OpenSSH client with the generated config.

use crate::support::cli::Sandbox;

/// Deploys one local node with no bundle and returns its name.
fn deploy(s: &Sandbox) -> String {
    let r = s
        .cmd("deploy-node")
        .args(["-n", "deploy-test-loop"])
        .run()
        .code(0);
    r.stdout
        .split_whitespace()
        .next()
        .expect("a node line")
        .to_string()
}

#[test]
fn exec_show_ssh_and_unknown() {
    let s = Sandbox::new();
    let name = deploy(&s);

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
