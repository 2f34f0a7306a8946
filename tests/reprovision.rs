//! `deploy-node --reprovision` end to end on a real node (a local node here; the DigitalOcean
//! fake's node in tests/deploy_cloud.rs through [`edit_and_reprovision`]): deploy a bundle,
//! edit a file and the script in the layer and add a file, see the dry run's diff, re-provision,
//! and check on the node that exactly the changed and added files were written — the unchanged
//! file keeps its inode and ctime (a file written again is a new inode, made beside the old
//! one and renamed over it, and a rename changes ctime) — that the script saw
//! `provision_run = 2` and the recorded `-t` variable, that `-d` and `--junit` were written,
//! that `node show` tells how the node was deployed, and that a host key changed on the node
//! since the deploy is refused in one line.

use crate::support::cli::{Cmd, Run, Sandbox};

/// The secret given by reference at deploy (read again from the environment on re-provision).
const TOKEN: &str = "tok-reprov-9f8e7d6c";
const DIR: &str = "/opt/reprov";

/// Writes the `app` layer (`-c app`): a bundle with two files and a template script.
fn write_layer(s: &Sandbox, with_c: bool) {
    let c = if with_c {
        format!(", \"{DIR}/c.conf\" = \"c.conf\"")
    } else {
        String::new()
    };
    s.write(
        "app/provision.toml",
        &format!(
            "[bundles.app]\nfiles = {{ \"{DIR}/a.conf\" = \"a.conf\", \"{DIR}/b.conf\" = \"b.conf\"{c} }}\nscripts = [\"app.sh\"]\n"
        ),
    );
}

fn script(extra: &str) -> String {
    format!(
        "#!/bin/sh\n# provision-template-type: format-string\necho \"run {{provision_run}} color={{color}}\"\n{extra}"
    )
}

/// `stat -c '%i %Z'` (inode, ctime) of a file on the node, and its content.
fn on_node(cmd: &dyn Fn(&str) -> Cmd, name: &str, file: &str) -> (String, String) {
    let path = format!("{DIR}/{file}");
    let stat = cmd("node")
        .args(["exec", name, "--", "stat", "-c", "%i %Z", &path])
        .run()
        .code(0)
        .stdout;
    let content = cmd("node")
        .args(["exec", name, "--", "cat", &path])
        .run()
        .code(0)
        .stdout;
    (stat.trim().to_string(), content)
}

/// The first deploy of `name` with the `app` layer: `deploy` is the deploy-node command with
/// what the provider needs (-i, -s, -l...).
pub(crate) fn deploy_app(s: &Sandbox, deploy: Cmd, name: &str) -> Run {
    write_layer(s, false);
    s.write("app/files/a.conf", "a1\n");
    s.write("app/files/b.conf", "b1\n");
    s.write("app/files/c.conf", "c1\n");
    s.write("app/scripts/app.sh", &script(""));
    deploy
        .args(["-c", "app", "-b", "app", "-n", name])
        .args(["-t", "color=blue", "-T", "token=env:REPROV_TOKEN"])
        .env("REPROV_TOKEN", TOKEN)
        .run()
        .code(0)
        .stderr_has(&format!("[{name}] run 1 color=blue"))
}

/// After [`deploy_app`]: the edit/dry-run/re-provision loop, `node show`, and a host key
/// changed on the node (by `change_key`) refused. `cmd(bin)` runs a binary against the
/// node's provider.
pub(crate) fn edit_and_reprovision(
    s: &Sandbox,
    cmd: &dyn Fn(&str) -> Cmd,
    name: &str,
    change_key: &dyn Fn(),
) {
    let (a_before, a1) = on_node(cmd, name, "a.conf");
    let (b_before, _) = on_node(cmd, name, "b.conf");
    assert_eq!(a1, "a1\n");
    // ctime has a one-second grain: a rewrite must land in a later second to show
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // edit a file and the script, add a file
    write_layer(s, true);
    s.write("app/files/a.conf", "a2\n");
    s.write("app/scripts/app.sh", &script("echo edited\n"));
    let reprov = || {
        cmd("deploy-node")
            .args(["-c", "app", "--reprovision", "-n", name])
            .env("REPROV_TOKEN", TOKEN)
    };

    // the dry run: the plan, then each file and script against what was applied
    let r = reprov().args(["--dry-run"]).run().code(0);
    let r = r
        .stdout_has(&format!(
            "{name}: against what was last applied (provision_run 1)"
        ))
        .stdout_has(&format!("file   changed    {DIR}/a.conf"))
        .stdout_has(&format!("file   unchanged  {DIR}/b.conf"))
        .stdout_has(&format!("file   added      {DIR}/c.conf"))
        .stdout_has("script changed    app.sh")
        .stdout_lacks(TOKEN);
    assert!(r.stdout.contains("run 2 color=blue"), "{}", r.stdout);
    let r = reprov().args(["--dry-run", "--json"]).run().code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let d = &v["diffs"][0];
    assert_eq!(d["node"], name);
    assert_eq!(d["since_run"], 1);
    let change = |kind: &str, n: &str| {
        d[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .map(|e| e["change"].as_str().unwrap().to_string())
    };
    assert_eq!(
        change("files", &format!("{DIR}/a.conf")).unwrap(),
        "changed"
    );
    assert_eq!(
        change("files", &format!("{DIR}/b.conf")).unwrap(),
        "unchanged"
    );
    assert_eq!(change("files", &format!("{DIR}/c.conf")).unwrap(), "added");
    assert_eq!(change("scripts", "app.sh").unwrap(), "changed");
    // the dry run changed nothing
    assert_eq!(on_node(cmd, name, "a.conf").1, "a1\n");

    // the re-provision: only the changed and added files travel, every script runs
    let junit = s.path().join("reprov.xml");
    let desc = s.path().join("reprov.json");
    let r = reprov()
        .args([
            "--junit",
            junit.to_str().unwrap(),
            "-d",
            desc.to_str().unwrap(),
        ])
        .run()
        .code(0)
        .stderr_has(&format!("[{name}] run 2 color=blue"))
        .stderr_has(&format!("[{name}] edited"))
        .stderr_has("1 file(s) as last applied: not sent again")
        .stderr_lacks(TOKEN);
    assert!(
        r.stdout.starts_with(&format!("{name} 127.")),
        "{}",
        r.stdout
    );
    let (a_after, a2) = on_node(cmd, name, "a.conf");
    let (b_after, b1) = on_node(cmd, name, "b.conf");
    assert_eq!(a2, "a2\n");
    assert_ne!(a_after, a_before, "a.conf was not written again");
    assert_eq!(b_after, b_before, "b.conf was written again");
    assert_eq!(b1, "b1\n");
    assert_eq!(on_node(cmd, name, "c.conf").1, "c1\n");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("app.sh"), "{xml}");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&desc).unwrap()).unwrap();
    assert_eq!(d["name"], name);

    // node show: how it was deployed, without the secret
    let r = cmd("node").args(["show", name]).run().code(0);
    let r = r
        .stdout_has("bundles     app\n")
        .stdout_has("color=blue")
        // the built-in variables apart from the user's
        .stdout_has(&format!("node_name={name}"))
        .stdout_has("secrets     token (not kept)")
        .stdout_has("run         2\n")
        .stdout_has("last run    ok at ")
        .stdout_lacks(TOKEN);
    assert!(!r.stdout.contains("token="), "{}", r.stdout);
    let vars = r.stdout.lines().find(|l| l.starts_with("vars ")).unwrap();
    assert!(!vars.contains("node_name="), "{}", r.stdout);
    let builtin = r
        .stdout
        .lines()
        .find(|l| l.starts_with("built-in "))
        .unwrap();
    assert!(
        builtin.contains(&format!("node_name={name}")),
        "{}",
        r.stdout
    );
    let r = cmd("node").args(["show", name, "--json"]).run().code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let dep = &v["deployed"];
    assert_eq!(dep["provision_run"], 2);
    assert_eq!(dep["bundles"], serde_json::json!(["app"]));
    assert_eq!(dep["vars"]["color"], "blue");
    assert!(dep["vars"].get("token").is_none(), "{dep}");
    assert_eq!(dep["secrets"][0]["reference"], "env:REPROV_TOKEN");
    assert_eq!(dep["last"]["result"], "ok");
    assert!(dep["files"][format!("{DIR}/a.conf")]["sha256"].is_string());
    // the record on disk holds no secret either
    for f in std::fs::read_dir(s.state().join("nodes")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains(TOKEN), "{text}");
    }

    // a host key changed since the deploy: refused in one line, nothing run, nothing recorded
    change_key();
    reprov()
        .run()
        .code(14)
        .one_line_error()
        .stderr_has("host key mismatch")
        .stderr_lacks("run 3");
    let r = cmd("node").args(["show", name, "--json"]).run().code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["deployed"]["provision_run"], 2);
}

/// Replaces the host key a node's sshd offers (sshd reads it again for each connection):
/// inside an isolated node its /etc/ssh key, else the key file in the node's directory.
pub(crate) fn new_host_key(
    cmd: &dyn Fn(&str) -> Cmd,
    name: &str,
    isolated: bool,
    dir: &std::path::Path,
) {
    let key = if isolated {
        "/etc/ssh/ssh_host_ed25519_key".to_string()
    } else {
        dir.join("ssh_host_ed25519_key").display().to_string()
    };
    let gen = format!("rm -f {key} {key}.pub && ssh-keygen -q -t ed25519 -N '' -f {key}");
    if isolated {
        cmd("node")
            .args(["exec", name, "--", "sh", "-c", &gen])
            .run()
            .code(0);
    } else {
        let st = std::process::Command::new("sh")
            .args(["-c", &gen])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

#[test]
fn local_node_edit_reprovision_and_refusals() {
    let s = Sandbox::new();
    let name = "deploy-test-reprov";
    let cmd = |bin: &str| s.cmd(bin);
    let r = deploy_app(&s, s.cmd("deploy-node"), name);
    assert!(r.stdout.starts_with(name), "{}", r.stdout);

    // deploying the name again refuses, saying how to re-provision
    s.cmd("deploy-node")
        .args(["-n", name])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has(&format!("deploy-node -p local --reprovision -n {name}"));
    // a name deployed from nowhere here: nothing to re-provision, one line, exit 2
    s.cmd("deploy-node")
        .args(["--reprovision", "-n", "deploy-test-nosuch"])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has(
            "deploy-test-nosuch: no record of a deploy from this machine on provider local",
        );

    let p = provision::provider::local::LocalProvider::with_state_dir(&s.state());
    let isolated = p.record(name).unwrap().unwrap().isolated;
    let dir = p.node_dir(name);
    edit_and_reprovision(&s, &cmd, name, &|| new_host_key(&cmd, name, isolated, &dir));

    // a stopped node (its sshd killed): one line saying so, exit 14
    let pid = p.record(name).unwrap().unwrap().pid;
    // SAFETY: kill(2) on the node's sshd, which this test created.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(crate::support::procs::wait_until(
        std::time::Duration::from_secs(10),
        || !crate::support::cloudnodes::alive(pid)
    ));
    s.cmd("deploy-node")
        .args(["-c", "app", "--reprovision", "-n", name])
        .env("REPROV_TOKEN", TOKEN)
        .run()
        .code(14)
        .one_line_error()
        .stderr_has("the provider reports the node as stopped: start it, then re-provision");
    s.cmd("destroy-node").args([name]).run().code(0);
}

/// A re-provision records how it ended on the node's tags (`provision-state`), so `list-nodes`
/// shows a node whose re-provision failed; Ctrl-C/SIGTERM while its script runs exits 130
/// naming the node, which stays (nothing to destroy), recorded failed.
#[test]
fn a_failed_or_interrupted_reprovision_shows_in_list_nodes_and_the_node_stays() {
    let s = Sandbox::new();
    let name = "deploy-test-reprov-sig";
    deploy_app(&s, s.cmd("deploy-node"), name);
    let state = || {
        let t = s
            .cmd("list-nodes")
            .args(["--format", "table"])
            .run()
            .code(0)
            .stdout;
        let row = t
            .lines()
            .find(|l| l.starts_with(name))
            .expect(&t)
            .to_string();
        row.split_whitespace().nth(1).unwrap().to_string()
    };
    let reprov = || {
        s.cmd("deploy-node")
            .args(["-c", "app", "--reprovision", "-n", name])
            .env("REPROV_TOKEN", TOKEN)
    };
    assert_eq!(state(), "running");

    // a failing script: exit 14, the node stays, recorded failed
    s.write("app/scripts/app.sh", &script("exit 3\n"));
    reprov().run().code(14);
    assert_eq!(state(), "running/failed");
    // fixed: ready again
    s.write("app/scripts/app.sh", &script(""));
    reprov().run().code(0);
    assert_eq!(state(), "running");

    // a script that hangs, and SIGTERM while it runs
    s.write(
        "app/scripts/app.sh",
        &script(&format!("touch {DIR}/started\nsleep 30\n")),
    );
    let mut c = reprov().cmd;
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let started = || {
        s.cmd("node")
            .args(["exec", name, "--", "test", "-e", &format!("{DIR}/started")])
            .run()
            .code
            == 0
    };
    assert!(crate::support::procs::wait_until(
        std::time::Duration::from_secs(30),
        started
    ));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "interrupted: {name}: re-provision stopped; nothing to destroy: the node stays"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("destroyed"), "{stderr}");
    // the node is still there, running, and shows the re-provision failed
    assert_eq!(state(), "running/failed");
    s.cmd("node")
        .args(["exec", name, "--", "true"])
        .run()
        .code(0);
    s.cmd("destroy-node").args([name]).run().code(0);
}
