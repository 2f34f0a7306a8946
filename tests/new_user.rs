//! What a new user hit (issue 11), each as the user did it, with the real binaries and the
//! local provider: a node is never forgotten (unwritable reports, --json on failure, -q with
//! several kept nodes, a closed stdout), and mistakes are caught before a node is created
//! (--count, login keys, durations, pubkeys/, provider tables, [vars]).

use crate::support::cli::Sandbox;

fn list(s: &Sandbox) -> String {
    s.cmd("list-nodes").run().code(0).stdout
}

/// Nothing was created: no local node, nothing in the journal.
fn nothing_created(s: &Sandbox) {
    assert_eq!(list(s), "", "a node was created");
    assert_eq!(
        s.cmd("list-nodes").args(["--orphans"]).run().code(0).stdout,
        ""
    );
}

/// A layer whose `flaky` script fails on the nodes whose index is listed in `fail_on`.
fn flaky(s: &Sandbox, fail_on: &str) -> String {
    s.write(
        "flaky/provision.toml",
        "[bundles.flaky]\nscripts = [\"maybe.sh\"]\n",
    );
    s.write(
        "flaky/scripts/maybe.sh",
        &format!(
            "#!/bin/sh\n# provision-template-type: tera\ncase \" {fail_on} \" in *\" {{{{ node_index }}}} \"*) echo failing; exit 5;; esac\necho fine {{{{ node_index }}}}\n"
        ),
    );
    s.path().join("flaky").display().to_string()
}

fn destroy_all(s: &Sandbox) {
    let names: Vec<String> = list(s)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    if !names.is_empty() {
        // custom names are outside destroyable_prefixes (issue 15): --force
        s.cmd("destroy-node")
            .args(["--force"])
            .args(&names)
            .run()
            .code(0);
    }
}

// ---- a node is never forgotten ----

#[test]
fn unwritable_report_paths_are_refused_before_create() {
    let s = Sandbox::new();
    let dir = s.path().join("adir");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.display().to_string();
    for (flag, path) in [
        ("-d", "/proc/version"),
        ("-d", dir.as_str()),
        ("--junit", dir.as_str()),
        ("--junit", "/proc/self/nope/x.xml"),
    ] {
        for dry in [false, true] {
            let mut args = vec!["-b", "hello", "-n", "dw-8", flag, path];
            if dry {
                args.push("--dry-run");
            }
            let r = s.cmd("deploy-node").args(&args).run().code(2);
            assert!(
                r.stderr.contains(&format!("{flag} {path}")),
                "the line names the flag and path: {}",
                r.stderr
            );
            assert!(r.stdout.is_empty());
        }
        nothing_created(&s);
    }
    // a missing parent is fine: it is made when the report is written
    let r = s
        .cmd("deploy-node")
        .args(["-b", "hello", "-n", "dw-9", "-d", "new/sub/d.json"])
        .run()
        .code(0);
    assert!(r.stdout.starts_with("dw-9 "));
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("new/sub/d.json")).unwrap())
            .unwrap();
    assert_eq!(d["name"], "dw-9");
    destroy_all(&s);
}

#[test]
fn json_lists_every_node_with_its_error_and_q_names_every_kept_node() {
    let s = Sandbox::new();
    let layer = flaky(&s, "2 3");
    let r = s
        .cmd("deploy-node")
        .args([
            "-q", "-c", &layer, "-b", "flaky", "--count", "3", "-n", "jn-{i}", "--json",
        ])
        .run()
        .code(14);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["format"], 1);
    let nodes = v["nodes"].as_array().unwrap();
    let got: Vec<(&str, bool, bool)> = nodes
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap(),
                n["kept"].as_bool().unwrap(),
                n["error"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("jn-1", false, false),
            ("jn-2", true, true),
            ("jn-3", true, true)
        ]
    );
    assert!(nodes[1]["error"]
        .as_str()
        .unwrap()
        .contains("maybe.sh failed (exit status 5)"));
    // -q: still every kept node on stderr
    r.stderr_has("jn-2")
        .stderr_has("jn-3")
        .stderr_has("destroy-node -p local jn-2 jn-3");
    destroy_all(&s);

    // one node: the same document, not a bare object and not nothing
    let layer = flaky(&s, "1");
    let r = s
        .cmd("deploy-node")
        .args(["-c", &layer, "-b", "flaky", "-n", "jn-2", "--json"])
        .run()
        .code(14);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["format"], 1);
    assert_eq!(v["nodes"][0]["name"], "jn-2");
    assert_eq!(v["nodes"][0]["kept"], true);
    destroy_all(&s);
}

#[test]
fn a_closed_stdout_does_not_turn_a_failure_into_success() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let s = Sandbox::new();
    let layer = flaky(&s, "2");
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fds[0] is the read end just made and owned by nobody else.
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is the write end just made; OwnedFd takes sole ownership.
    let writer = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    let mut cmd = s
        .cmd("deploy-node")
        .args(["-c", &layer, "-b", "flaky", "--count", "2", "-n", "cs-{i}"])
        .cmd;
    cmd.stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(14), "{stderr}");
    assert!(stderr.contains("cs-2"), "{stderr}");
    destroy_all(&s);
}

#[test]
fn count_and_parallel_are_bounded_with_exit_2() {
    let s = Sandbox::new();
    for args in [
        ["--count", "100000000000"],
        ["--count", "1001"],
        ["--count", "0"],
        ["--parallel", "0"],
    ] {
        let r = s
            .cmd("deploy-node")
            .args(["-b", "hello", "--dry-run"])
            .args(args)
            .run()
            .code(2);
        assert!(r.stderr.contains("1..=1000"), "{}", r.stderr);
        assert!(!r.stderr.contains("memory allocation"));
    }
    s.cmd("deploy-node")
        .args(["-b", "hello", "--dry-run", "--count", "1000"])
        .run()
        .code(0);
}

// ---- mistakes found before a create ----

#[test]
fn login_keys_and_durations_are_checked_in_the_plan() {
    let s = Sandbox::new();
    s.cmd("deploy-node")
        .args(["-b", "hello", "--identity", "/nonexistent/key", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("--identity /nonexistent/key: No such file");
    let public = s.home().join(".ssh/id_ed25519.pub").display().to_string();
    s.cmd("deploy-node")
        .args(["-b", "hello", "--identity", &public])
        .run()
        .code(2)
        .stderr_has("is a public key");
    for flag in ["--ssh-timeout", "--script-timeout"] {
        s.cmd("deploy-node")
            .args(["-b", "hello", flag, "0", "--dry-run"])
            .run()
            .code(2)
            .stderr_has("is zero");
    }
    nothing_created(&s);

    // no private key anywhere (the node's public key comes from a layer): exit 2, no node
    let bare = Sandbox::without_key();
    let public = std::fs::read_to_string(s.home().join(".ssh/id_ed25519.pub")).unwrap();
    bare.write("c/pubkeys/me.pub", &public);
    let c = bare.path().join("c").display().to_string();
    bare.cmd("deploy-node")
        .args(["-c", &c, "-b", "hello", "-n", "nokey"])
        .run()
        .code(2)
        .stderr_has("no private key to log in to the node with");
    nothing_created(&bare);
}

#[test]
fn pubkeys_dangling_symlinks_and_private_keys_are_errors() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.path().join("c/pubkeys")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/k.pub", s.path().join("c/pubkeys/gone.pub")).unwrap();
    s.cmd("deploy-node")
        .args(["-c", "c", "-b", "hello", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("c/pubkeys/gone.pub (a symlink to /nonexistent/k.pub)");
    std::fs::remove_file(s.path().join("c/pubkeys/gone.pub")).unwrap();
    std::fs::copy(
        s.home().join(".ssh/id_ed25519"),
        s.path().join("c/pubkeys/oops"),
    )
    .unwrap();
    let r = s
        .cmd("deploy-node")
        .args(["-c", "c", "-b", "hello", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("c/pubkeys/oops: this is a private key");
    assert!(
        !r.stderr.contains("OPENSSH PRIVATE"),
        "no key material in output"
    );
}

#[test]
fn provider_tables_are_checked_in_the_plan() {
    let s = Sandbox::new();
    s.write(
        "t/provision.toml",
        "[providers.local]\nisolaton = \"required\"\n",
    );
    s.cmd("deploy-node")
        .args(["-c", "t", "-b", "hello", "--dry-run"])
        .run()
        .code(2)
        .stderr_has(
            "t/provision.toml: [providers.local] unknown key 'isolaton' (did you mean 'isolation'?",
        );
    s.write(
        "m/provision.toml",
        "[providers.local]\nisolation = \"maybe\"\n",
    );
    s.cmd("deploy-node")
        .args(["-c", "m", "-b", "hello", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("maybe");
    s.write(
        "h/provision.toml",
        "[providers.hetzner]\ntoken = \"x\"\npoll_interval = -1\n",
    );
    s.cmd("deploy-node")
        .args(["-c", "h", "-b", "hello", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("poll_interval");
    nothing_created(&s);
}

#[test]
fn vars_arrays_and_tables_are_typed_not_refused() {
    // issue 11 refused them; issue 21 gives tera the TOML value and the other engines a
    // documented string form (array: elements joined by spaces; table: inline TOML)
    let s = Sandbox::new();
    s.write(
        "v/provision.toml",
        "[vars]\nports = [1, 2]\n[vars.db]\nhost = \"x\"\n",
    );
    s.cmd("deploy-node")
        .args(["-c", "v", "-b", "hello", "--dry-run"])
        .run()
        .code(0)
        .stdout_has("ports = \"1 2\"")
        .stdout_has("db = \"{ host = \\\"x\\\" }\"");
}

#[test]
fn node_index_is_a_variable_and_name_with_prefix_is_refused() {
    let s = Sandbox::new();
    let layer = flaky(&s, "none");
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            &layer,
            "-b",
            "flaky",
            "--count",
            "2",
            "-n",
            "ix-{i}",
            "--dry-run",
        ])
        .run()
        .code(0);
    assert!(
        r.stdout.contains("echo fine 1") && r.stdout.contains("echo fine 2"),
        "{}",
        r.stdout
    );
    s.cmd("deploy-node")
        .args(["-n", "foo", "-x", "bar-", "-b", "hello", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("cannot be used with");
    s.cmd("deploy-node")
        .args(["-b", "hello", "-t", "node_index=3", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("built-in variable");
}

// ---- output and messages ----

#[test]
fn destroying_a_destroyed_node_again_is_already_gone_and_a_typo_is_not() {
    let s = Sandbox::new();
    s.cmd("deploy-node")
        .args(["-b", "hello", "-n", "twice"])
        .run()
        .code(0);
    s.cmd("destroy-node")
        .args(["--force", "twice"])
        .run()
        .code(0);
    s.cmd("destroy-node")
        .args(["--force", "twice"])
        .run()
        .code(0)
        .stderr_has("twice: already gone");
    s.cmd("destroy-node")
        .args(["--force", "twise"])
        .run()
        .code(1)
        .stderr_has("node 'twise' not found on local");
    // usage and config errors are 2
    s.cmd("destroy-node").run().code(2);
    s.write("bad/provision.toml", "[providers.local]\nisolaton = 1\n");
    s.cmd("destroy-node")
        .args(["-c", "bad", "twice"])
        .run()
        .code(2)
        .stderr_has("unknown key 'isolaton'");
}

#[test]
fn destroy_messages_name_what_is_kept_and_what_a_dry_run_does() {
    let s = Sandbox::new();
    s.write("fail.xml", "<testsuite tests=\"1\"><testcase name=\"a\"><failure message=\"no\"/></testcase></testsuite>");
    s.write(
        "pass.xml",
        "<testsuite tests=\"1\"><testcase name=\"a\"/></testsuite>",
    );
    s.cmd("deploy-node")
        .args(["-b", "hello", "-n", "jt-1"])
        .run()
        .code(0);
    let r = s
        .cmd("destroy-node")
        .args(["-t", "fail.xml", "--prefix", "jt-"])
        .run()
        .code(3)
        .stderr_has("nodes named jt-* kept");
    assert!(!r.stderr.contains("node  kept"), "{}", r.stderr);
    let r = s
        .cmd("destroy-node")
        .args(["--dry-run", "--force", "-t", "pass.xml", "jt-1"])
        .run()
        .code(0)
        .stderr_has("would destroy");
    assert!(!r.stderr.contains("destroying"), "{}", r.stderr);
    assert!(list(&s).contains("jt-1"));
    s.cmd("destroy-node")
        .args(["--force", "jt-1"])
        .run()
        .code(0);
}

#[test]
fn static_hosts_say_what_happens() {
    let s = Sandbox::new();
    s.write(
        "st/provision.toml",
        "provider = \"static\"\n[providers.static.hosts]\nbox = \"root@127.0.0.1:1\"\n",
    );
    s.cmd("deploy-node")
        .args(["-c", "st", "-b", "hello", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("static needs -n NAME, one of the configured hosts (box)");
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            "st",
            "-b",
            "hello",
            "-n",
            "box",
            "--ssh-timeout",
            "2s",
        ])
        .run();
    assert_ne!(r.code, 0);
    let r = r.stderr_has("box: never became ready; forgotten (the machine itself was not touched)");
    assert!(!r.stderr.contains("destroying it,"), "{}", r.stderr);
}

#[test]
fn numbered_scripts_get_one_number_on_the_node() {
    let s = Sandbox::new();
    s.write(
        "n/provision.toml",
        "[bundles.num]\nscripts = [\"01-prepare.sh\", \"finish.sh\"]\n",
    );
    s.write("n/scripts/01-prepare.sh", "#!/bin/sh\necho $0\n");
    s.write("n/scripts/finish.sh", "#!/bin/sh\necho $0\n");
    let r = s
        .cmd("deploy-node")
        .args(["-c", "n", "-b", "num", "-n", "numbered"])
        .run()
        .code(0)
        .stderr_has("[numbered] /root/deploy/01-prepare.sh")
        .stderr_has("/deploy/02-finish.sh");
    assert!(!r.stderr.contains("01-01-"), "{}", r.stderr);
    destroy_all(&s);
}

/// Processes whose command line contains `needle`, with their command lines.
fn cmdlines_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
fn an_isolated_node_init_runs_from_a_file_not_an_argv() {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: local nodes are not isolated here, nothing to check");
        return;
    }
    let s = Sandbox::new();
    let r = s
        .cmd("deploy-node")
        .args(["-b", "hello", "-n", "ps-node", "--isolation", "auto"])
        .run()
        .code(0);
    if r.stderr.contains("not isolated") {
        eprintln!("isolation unavailable here: {}", r.stderr);
        destroy_all(&s);
        return;
    }
    let dir = s.state().join("local/ps-node").display().to_string();
    let lines = cmdlines_with(&format!("{dir}/launch.sh"));
    assert!(
        !lines.is_empty(),
        "the namespaces' holder runs launch.sh from the node dir"
    );
    // only this sandbox's processes: other tests on this machine run their own nodes
    let ours = s.state().display().to_string();
    for l in cmdlines_with("unshare")
        .into_iter()
        .filter(|l| l.contains(&ours))
    {
        assert!(l.len() < 1000, "a long argv: {l}");
        assert!(!l.contains("pivot_root"), "the script is in the argv: {l}");
    }
    destroy_all(&s);
}

#[test]
fn log_dir_keeps_every_byte_and_reports_name_the_files() {
    let s = Sandbox::new();
    s.write(
        "big/provision.toml",
        "[bundles.big]\nscripts = [\"big.sh\", \"small.sh\"]\n",
    );
    // 66,000 bytes of stdout (JUnit keeps the last 64 KiB), a line of stderr
    s.write(
        "big/scripts/big.sh",
        "#!/bin/sh\ni=0\nwhile [ $i -lt 1000 ]; do printf '%065d\\n' $i; i=$((i+1)); done\necho oops >&2\n",
    );
    s.write("big/scripts/small.sh", "#!/bin/sh\necho small\n");
    s.cmd("deploy-node")
        .args([
            "-c",
            "big",
            "-b",
            "big",
            "--log-dir",
            "/proc/version",
            "--dry-run",
        ])
        .run()
        .code(2)
        .stderr_has("--log-dir /proc/version");
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            "big",
            "-b",
            "big",
            "-n",
            "logged",
            "--log-dir",
            "logs",
            "-d",
            "d.json",
            "--junit",
            "j.xml",
            "--json",
        ])
        .run()
        .code(0);
    let out = s.path().join("logs/logged/01-big.sh.out");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.len(), 66_000);
    assert!(text.starts_with(&format!("{:065}\n", 0)) && text.ends_with(&format!("{:065}\n", 999)));
    assert_eq!(
        std::fs::read_to_string(s.path().join("logs/logged/01-big.sh.err")).unwrap(),
        "oops\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.path().join("logs/logged/02-small.sh.out")).unwrap(),
        "small\n"
    );
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("d.json")).unwrap()).unwrap();
    let named = d["scripts"][0]["stdout_log"].as_str().unwrap();
    assert!(named.ends_with("logs/logged/01-big.sh.out"), "{named}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["nodes"][0]["scripts"][1]["stderr_log"],
        d["scripts"][1]["stderr_log"]
    );
    let xml = std::fs::read_to_string(s.path().join("j.xml")).unwrap();
    assert!(
        xml.contains(&format!("[whole output: {named}]")),
        "{xml:.400}"
    );
    assert!(xml.contains("bytes cut"), "JUnit keeps its tail");
    destroy_all(&s);
}

#[test]
fn a_file_target_ending_in_a_slash_says_so() {
    let s = Sandbox::new();
    s.write(
        "f/provision.toml",
        "[bundles.conf]\nfiles = { \"/etc/app/\" = \"app.conf\" }\n",
    );
    s.write("f/files/app.conf", "x\n");
    let r = s
        .cmd("deploy-node")
        .args(["-c", "f", "-b", "conf", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("file target '/etc/app/' ends in '/'");
    assert!(!r.stderr.contains("without '..'"), "{}", r.stderr);
}

/// On a terminal every node, a single one too, gets a row that shows its phase and the script
/// it is running (issue 11 item 14). `script` gives deploy-node a real pseudo-terminal.
#[test]
fn a_terminal_shows_the_nodes_phase_and_script() {
    let s = Sandbox::new();
    s.write(
        "site/provision.toml",
        "[bundles.nap]\nscripts = [\"nap.sh\"]\n",
    );
    s.write("site/scripts/nap.sh", "#!/bin/sh\nsleep 1\necho napped\n");
    let mut tty = s
        .cmd("deploy-node")
        .args(["-c", "site", "-b", "nap", "-n", "deploy-test-tty"])
        .in_terminal();
    let out = tty.stdin(std::process::Stdio::null()).output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("running nap.sh"), "{screen}");
    assert!(screen.contains("[deploy-test-tty] napped"), "{screen}");
    s.cmd("destroy-node")
        .args(["deploy-test-tty"])
        .run()
        .code(0);
}
