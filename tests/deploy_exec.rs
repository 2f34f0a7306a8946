//! The `exec` provider end to end with the real binaries: the shipped `local-sshd` example (a
//! real sshd per node, started by shell scripts) deployed, listed and destroyed through the
//! gate, as a pool and under Ctrl-C; actions that misbehave (failing, printing garbage or a
//! wrong field, hanging, missing, not executable, creating and then failing), each a clear
//! error with its exit code and no node left behind; the `hcloud` example's JSON mapping
//! against recorded CLI output; and a provider written from provision.toml(5) alone.

use crate::support::cli::{Run, Sandbox};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::procs;
use procs::{pids_with_cmdline, wait_until};

pub(crate) fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/exec")
        .join(name)
}

/// The example's actions directory.
fn ex_actions() -> String {
    example("local-sshd").join("actions").display().to_string()
}

/// A sandbox whose local-sshd nodes are destroyed when it goes, whatever the test did.
struct Site {
    s: Sandbox,
}

impl std::ops::Deref for Site {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.s
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        destroy_local_sshd_nodes(&self.s.path().join("xdg-state/provision-local-sshd"));
    }
}

/// Destroys every local-sshd node kept in `state` (its `LOCAL_SSHD_STATE`) with the example's
/// own destroy, whatever provision thinks: the cleanup of a test that failed halfway.
pub(crate) fn destroy_local_sshd_nodes(state: &Path) {
    for d in std::fs::read_dir(state).into_iter().flatten().flatten() {
        let _ = std::process::Command::new(example("local-sshd").join("actions/destroy"))
            .env("LOCAL_SSHD_STATE", state)
            .env("PROVISION_NODE_ID", d.file_name())
            .stdout(Stdio::null())
            .status();
    }
}

fn site() -> Site {
    let s = Sandbox::new();
    s.write(
        "site/provision.toml",
        // every name here may be destroyed without --force (the prefix guard is not tested here)
        "destroyable_prefixes = [\"\"]\n[bundles.app]\nscripts = [\"hello.sh\"]\n[bundles.bg]\nscripts = [\"bg.sh\"]\n[bundles.hangs]\nscripts = [\"hang.sh\"]\n",
    );
    s.write(
        "site/scripts/hello.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho \"hello from {node_name}\"\n",
    );
    s.write("site/scripts/hang.sh", "#!/bin/sh\nsleep 600\n");
    // a daemon left behind by a script: destroy must end it
    s.write(
        "site/scripts/bg.sh",
        "#!/bin/sh\nnohup sleep 555 > /dev/null 2>&1 &\necho started\n",
    );
    Site { s }
}

/// The example's node directories (what exists, whatever provision thinks).
fn node_dirs(s: &Sandbox) -> Vec<PathBuf> {
    let d = s.path().join("xdg-state/provision-local-sshd");
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// sshd processes started for this sandbox's nodes.
fn sshds(s: &Sandbox) -> Vec<u32> {
    pids_with_cmdline(
        &s.path()
            .join("xdg-state/provision-local-sshd")
            .display()
            .to_string(),
    )
}

fn nothing_left(s: &Sandbox) {
    assert!(
        wait_until(Duration::from_secs(5), || sshds(s).is_empty()),
        "sshd still running: {:?}",
        sshds(s)
    );
    assert_eq!(node_dirs(s), Vec::<PathBuf>::new(), "node directories left");
}

fn cfg_args(s: &Sandbox) -> Vec<String> {
    vec![
        "-c".into(),
        example("local-sshd").display().to_string(),
        "-c".into(),
        s.path().join("site").display().to_string(),
        "-p".into(),
        "local-sshd".into(),
    ]
}

fn deploy(s: &Sandbox, extra: &[&str]) -> Run {
    s.cmd("deploy-node").args(cfg_args(s)).args(extra).run()
}

fn list(s: &Sandbox, extra: &[&str]) -> Run {
    s.cmd("list-nodes").args(cfg_args(s)).args(extra).run()
}

#[test]
fn deploy_list_and_gated_destroy_through_local_sshd() {
    let s = site();
    let r = deploy(&s, &["-b", "app", "-b", "bg", "-n", "ex1", "--json"]).code(0);
    let d: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let d = &d["nodes"][0];
    assert_eq!(d["name"], "ex1");
    assert!(r.stderr.contains("hello from ex1"), "{}", r.stderr);
    assert_eq!(node_dirs(&s).len(), 1);
    // the host key the action reported was pinned: nothing recorded trust-on-first-use
    let kh = std::fs::read_to_string(s.state().join("known_hosts")).unwrap_or_default();
    assert!(kh.is_empty(), "known_hosts written: {kh}");

    let l = list(&s, &[]).code(0);
    assert!(l.stdout.starts_with("ex1 127.0.0.1"), "{}", l.stdout);
    assert!(
        !pids_with_cmdline("sleep 555").is_empty(),
        "bg.sh did not run"
    );
    let j = list(&s, &["--format", "json"]).code(0);
    let nodes: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(nodes[0]["state"], "running");
    assert!(nodes[0]["tags"]["provision"].is_string());

    s.write(
        "fail.xml",
        "<testsuite tests=\"1\" failures=\"1\"><testcase name=\"t\"><failure/></testcase></testsuite>",
    );
    s.write(
        "pass.xml",
        "<testsuite tests=\"1\" failures=\"0\"><testcase name=\"t\"/></testsuite>",
    );
    s.cmd("destroy-node")
        .args(cfg_args(&s))
        .args(["-t", "fail.xml", "ex1"])
        .run()
        .code(3);
    assert!(list(&s, &[]).stdout.contains("ex1"));
    s.cmd("destroy-node")
        .args(cfg_args(&s))
        .args(["-t", "pass.xml", "ex1"])
        .run()
        .code(0);
    assert_eq!(list(&s, &["--all"]).code(0).stdout, "");
    nothing_left(&s);
    assert!(
        wait_until(Duration::from_secs(5), || pids_with_cmdline("sleep 555")
            .is_empty()),
        "the node's background job survived destroy"
    );
}

/// Writes a fixture provider `dir` in the sandbox: a layer declaring `[providers.NAME]` whose
/// actions are the given scripts (name, body); list/get/destroy not given delegate to the
/// local-sshd example, so what a misbehaving create made is visible and destroyable.
fn fixture(s: &Sandbox, dir: &str, extra_toml: &str, actions: &[(&str, &str)]) -> String {
    s.write(
        &format!("{dir}/provision.toml"),
        &format!("[providers.bad]\ntype = \"exec\"\npath = \"actions\"\n{extra_toml}\n"),
    );
    let ex = ex_actions();
    for a in ["create", "list", "get", "destroy"] {
        let body = actions
            .iter()
            .find(|(n, _)| *n == a)
            .map(|(_, b)| b.to_string())
            .unwrap_or_else(|| format!("#!/bin/sh\nexec \"{ex}/{a}\"\n"));
        s.write(&format!("{dir}/actions/{a}"), &body);
        s.chmod(&format!("{dir}/actions/{a}"), 0o755);
    }
    s.path().join(dir).display().to_string()
}

fn deploy_bad(s: &Sandbox, layer: &str, extra: &[&str]) -> Run {
    s.cmd("deploy-node")
        .args(["-c", layer, "-p", "bad", "-n", "b1"])
        .args(extra)
        .run()
}

#[test]
fn a_failing_create_is_a_clear_error_with_its_stderr() {
    let s = site();
    let l = fixture(
        &s,
        "f",
        "[providers.bad.env]\nAPI_TOKEN = \"tok-0123456789\"\n",
        &[(
            "create",
            "#!/bin/sh\necho working >&2\necho \"quota exceeded (token $API_TOKEN)\" >&2\nexit 3\n",
        )],
    );
    deploy_bad(&s, &l, &[])
        .code(11)
        .stderr_has("exec provider 'bad': create (")
        .stderr_has(
            "/f/actions/create) exited with status 3: working | quota exceeded (token <redacted>)",
        )
        .stderr_lacks("tok-0123456789");
    nothing_left(&s);
}

#[test]
fn garbage_partial_or_wrong_output_is_rejected_and_what_was_made_is_destroyed() {
    let s = site();
    let ex = ex_actions();
    // garbage: nothing was made
    let l = fixture(
        &s,
        "g",
        "",
        &[("create", "#!/bin/sh\necho 'Created server web-1!'\n")],
    );
    deploy_bad(&s, &l, &[])
        .code(12)
        .stderr_has("exec provider 'bad': malformed response: create (")
        .stderr_has("not JSON")
        .stderr_has("its output began: «Created server web-1!»");
    nothing_left(&s);

    // partial JSON after making the node: looked up by name and destroyed
    let l = fixture(
        &s,
        "p",
        "",
        &[(
            "create",
            &format!("#!/bin/sh\n\"{ex}/create\" | head -c 40\n"),
        )],
    );
    deploy_bad(&s, &l, &[])
        .code(12)
        .stderr_has("not JSON")
        .stderr_has("its output began: «{\"id\": \"node-")
        .stderr_has("though the answer was unusable: destroying it");
    nothing_left(&s);

    // a field of the wrong type: named
    let l = fixture(
        &s,
        "w",
        "",
        &[(
            "create",
            &format!("#!/bin/sh\n\"{ex}/create\" | jq -c '.ssh_port = \"22\"'\n"),
        )],
    );
    deploy_bad(&s, &l, &[])
        .code(12)
        .stderr_has("printed a node whose \"ssh_port\" is a string, not a number")
        .stderr_has("destroying it");
    nothing_left(&s);
}

#[test]
fn a_state_outside_the_table_is_unknown_named_and_times_out() {
    let s = site();
    let ex = ex_actions();
    let jq = "jq -c 'if type == \"object\" then .state = \"booting\" else . end'";
    let l = fixture(
        &s,
        "st",
        "poll_interval = 0.2\n",
        &[
            ("create", &format!("#!/bin/sh\n\"{ex}/create\" | {jq}\n")),
            ("get", &format!("#!/bin/sh\n\"{ex}/get\" | {jq}\n")),
        ],
    );
    deploy_bad(&s, &l, &["--ssh-timeout", "2s"])
        .code(15)
        .stderr_has("reported node b1 in state 'booting', which is not one of pending, running")
        .stderr_has("still unknown when the deadline passed")
        .stderr_has("destroying it");
    nothing_left(&s);
}

#[test]
fn a_hanging_create_is_killed_with_its_children_at_the_timeout() {
    let s = site();
    let pids = s.path().join("pids");
    let l = fixture(
        &s,
        "h",
        "timeout = { create = 2 }\n",
        &[(
            "create",
            &format!(
                "#!/bin/sh\necho $$ >> {p}\nsleep 300 &\necho $! >> {p}\n(setsid sleep 301 & echo $! >> {p}; wait) &\necho hanging >&2\nsleep 302\n",
                p = pids.display()
            ),
        )],
    );
    let started = Instant::now();
    deploy_bad(&s, &l, &[])
        .code(15)
        .stderr_has("exec provider 'bad': create (")
        .stderr_has("did not finish within 2s (timeout); its process group was killed: hanging");
    assert!(started.elapsed() < Duration::from_secs(20));
    let pids: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "{pids:?}");
    for p in pids {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let alive = !stat.is_empty() && !stat.rsplit_once(") ").unwrap().1.starts_with('Z');
        assert!(!alive, "pid {p} of the hung create survived: {stat}");
    }
    nothing_left(&s);
}

#[test]
fn a_create_that_makes_the_node_and_then_fails_leaves_nothing() {
    let s = site();
    let ex = ex_actions();
    let l = fixture(
        &s,
        "m",
        "",
        &[(
            "create",
            &format!("#!/bin/sh\n\"{ex}/create\" > /dev/null\necho 'API timeout while waiting' >&2\nexit 1\n"),
        )],
    );
    deploy_bad(&s, &l, &[])
        .code(11)
        .stderr_has("exited with status 1: API timeout while waiting")
        .stderr_has("b1: created (id node-")
        .stderr_has("destroying it");
    nothing_left(&s);
}

#[test]
fn config_mistakes_are_exit_2_before_anything_is_created() {
    let s = site();
    let made = s.path().join("made");
    let create = format!("#!/bin/sh\ntouch {}\nexit 1\n", made.display());
    // a missing action
    let l = fixture(&s, "miss", "", &[("create", &create)]);
    std::fs::remove_file(s.path().join("miss/actions/destroy")).unwrap();
    deploy_bad(&s, &l, &[])
        .code(2)
        .stderr_has("[providers.bad]: ")
        .stderr_has("miss/actions/destroy is missing")
        .one_line_error();
    // list-nodes and destroy-node check too
    s.cmd("list-nodes")
        .args(["-c", &l, "-p", "bad"])
        .run()
        .code(2);
    // an action without the run bit
    let l = fixture(&s, "nox", "", &[("create", &create)]);
    s.chmod("nox/actions/list", 0o644);
    deploy_bad(&s, &l, &[])
        .code(2)
        .stderr_has("nox/actions/list is not executable (chmod +x ");
    // path not a directory
    s.write(
        "nodir/provision.toml",
        "[providers.bad]\ntype = \"exec\"\npath = \"file\"\n",
    );
    s.write("nodir/file", "");
    deploy_bad(&s, &s.path().join("nodir").display().to_string(), &[])
        .code(2)
        .stderr_has("path = \"file\" (in ")
        .stderr_has("is not a directory");
    // an unknown key
    let l = fixture(&s, "key", "tiemout = 3\n", &[("create", &create)]);
    deploy_bad(&s, &l, &[])
        .code(2)
        .stderr_has("unknown key 'tiemout'");
    assert!(!made.exists(), "create ran");
}

#[test]
fn path_resolves_against_the_layer_that_set_it() {
    let s = site();
    let made = s.path().join("made");
    let l = fixture(
        &s,
        "base",
        "",
        &[(
            "create",
            &format!("#!/bin/sh\ntouch {}\nexit 1\n", made.display()),
        )],
    );
    // a later layer overriding another key keeps `path` relative to the first
    s.write("over/provision.toml", "[providers.bad]\ntimeout = 30\n");
    s.write("over/actions/README", "not the actions");
    let over = s.path().join("over").display().to_string();
    s.cmd("deploy-node")
        .args(["-c", &l, "-c", &over, "-p", "bad", "-n", "b1"])
        .run()
        .code(11);
    assert!(made.exists());
}

#[test]
fn a_pool_creates_in_parallel_and_one_failure_abandons_no_other() {
    let s = site();
    let ex = ex_actions();
    let starts = s.path().join("starts");
    std::fs::create_dir_all(&starts).unwrap();
    // every create waits until all three have started: serial creates would give up
    let create = format!(
        "#!/bin/sh\ntouch {st}/$PROVISION_NODE_NAME\ni=0\nwhile [ \"$(ls {st} | wc -l)\" -lt 3 ]; do\n  i=$((i + 1)); [ $i -lt 200 ] || {{ echo 'not parallel' >&2; exit 1; }}\n  sleep 0.05\ndone\nif [ \"$PROVISION_NODE_NAME\" = p-2 ]; then \"{ex}/create\" > /dev/null; echo 'p-2 broke' >&2; exit 1; fi\nexec \"{ex}/create\"\n",
        st = starts.display()
    );
    let l = fixture(&s, "pool", "", &[("create", &create)]);
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            &l,
            "-p",
            "bad",
            "-n",
            "p-{i}",
            "--count",
            "3",
            "--parallel",
            "3",
        ])
        .run()
        .code(11);
    assert!(r.stdout.contains("p-1 127.0.0.1"), "{}", r.stdout);
    assert!(r.stdout.contains("p-3 127.0.0.1"), "{}", r.stdout);
    assert!(!r.stdout.contains("p-2"), "{}", r.stdout);
    assert!(r.stderr.contains("p-2 broke"), "{}", r.stderr);
    assert!(!r.stderr.contains("not parallel"), "{}", r.stderr);
    let listed = s
        .cmd("list-nodes")
        .args(["-c", &l, "-p", "bad"])
        .run()
        .code(0);
    let mut names: Vec<&str> = listed
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["p-1", "p-3"]);
    s.cmd("destroy-node")
        .args(["-c", &l, "-p", "bad", "--prefix", "p-"])
        .run()
        .code(0);
    nothing_left(&s);
}

#[test]
fn count_3_through_local_sshd() {
    let s = site();
    let r = deploy(&s, &["-n", "c-{i}", "--count", "3"]).code(0);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    assert_eq!(list(&s, &[]).stdout.lines().count(), 3);
    assert_eq!(sshds(&s).len(), 3);
    s.cmd("destroy-node")
        .args(cfg_args(&s))
        .args(["c-1", "c-2", "c-3"])
        .run()
        .code(0);
    nothing_left(&s);
}

#[test]
fn ctrl_c_during_create_exits_130_and_destroys_the_node() {
    let s = site();
    let ex = ex_actions();
    let started = s.path().join("started");
    let l = fixture(
        &s,
        "slow",
        "",
        &[(
            "create",
            &format!(
                "#!/bin/sh\ntouch {}\nsleep 2\nexec \"{ex}/create\"\n",
                started.display()
            ),
        )],
    );
    let mut cmd = s
        .cmd("deploy-node")
        .args(["-c", &l, "-p", "bad", "-n", "int1"])
        .cmd;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    assert!(wait_until(Duration::from_secs(20), || started.exists()));
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("int1: destroyed"), "{stderr}");
    nothing_left(&s);
}

#[test]
fn without_a_host_key_the_first_key_is_trusted_and_recorded() {
    let s = site();
    let ex = ex_actions();
    let strip = "jq -c 'if type == \"object\" then del(.host_key) elif type == \"array\" then map(del(.host_key)) else . end'";
    let l = fixture(
        &s,
        "tofu",
        "",
        &[
            ("create", &format!("#!/bin/sh\n\"{ex}/create\" | {strip}\n")),
            ("list", &format!("#!/bin/sh\n\"{ex}/list\" | {strip}\n")),
        ],
    );
    deploy_bad(&s, &l, &[]).code(0);
    let kh = std::fs::read_to_string(s.state().join("known_hosts")).unwrap();
    assert!(kh.contains("[127.0.0.1]:"), "{kh}");
    assert!(kh.contains("ssh-ed25519"), "{kh}");
    s.cmd("destroy-node")
        .args(["-c", &l, "-p", "bad", "--force", "b1"])
        .run()
        .code(0);
    nothing_left(&s);
}

/// A fake `hcloud` on PATH answering from the recorded CLI output, logging its arguments.
fn fake_hcloud(s: &Sandbox) -> (String, PathBuf) {
    let rec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exec/hcloud");
    let log = s.path().join("hcloud.log");
    s.write(
        "bin/hcloud",
        &format!(
            r#"#!/bin/sh
printf '%s\n' "$*" >> {log}
F={rec}
case "$1 $2" in
  "server create") cat "$F/server-create.json" ;;
  "server list") cat "$F/server-list.json" ;;
  "server describe") if [ "$3" = 42 ]; then cat "$F/server-describe.json"; else echo "hcloud: server not found: $3" >&2; exit 1; fi ;;
  "server delete") if [ "$3" = 42 ]; then echo "Server 42 deleted"; else echo "hcloud: server not found: $3" >&2; exit 1; fi ;;
  "server add-label") echo "Label(s) added to server $4" ;;
  "server-type list") cat "$F/server-type-list.json" ;;
  *) echo "fake hcloud: unexpected $*" >&2; exit 2 ;;
esac
"#,
            log = log.display(),
            rec = rec.display()
        ),
    );
    s.chmod("bin/hcloud", 0o755);
    let path = format!(
        "{}:{}",
        s.path().join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    (path, log)
}

#[test]
fn the_hcloud_example_maps_recorded_cli_output() {
    let s = Sandbox::new();
    let (path, log) = fake_hcloud(&s);
    let layer = example("hcloud").display().to_string();
    let args = ["-c", layer.as_str(), "-p", "hcloud"];
    // list: through provision's strict parser; only ours without --all
    let r = s
        .cmd("list-nodes")
        .env("PATH", &path)
        .args(args)
        .args(["--format", "json"])
        .run()
        .code(0);
    let nodes: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{}", r.stdout);
    let n = &nodes[0];
    assert_eq!(n["id"], "42");
    assert_eq!(n["name"], "web-1");
    assert_eq!(n["state"], "running");
    assert_eq!(n["public_ip"], "203.0.113.10");
    assert_eq!(n["private_ip"], "10.0.0.2");
    assert_eq!(n["size"], "cx22");
    assert_eq!(n["location"], "fsn1");
    assert_eq!(n["image"], "ubuntu-24.04");
    let all = s
        .cmd("list-nodes")
        .env("PATH", &path)
        .args(args)
        .args(["--all"])
        .run()
        .code(0);
    assert!(all.stdout.contains("db 203.0.113.20"), "{}", all.stdout);
    // catalog
    s.cmd("list-nodes")
        .env("PATH", &path)
        .args(args)
        .args(["--sizes"])
        .run()
        .code(0)
        .stdout_has("cx32");
    // destroy by name: list, then delete by id; a second time it is gone
    s.cmd("destroy-node")
        .env("PATH", &path)
        .args(args)
        .args(["--force", "web-1"])
        .run()
        .code(0);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("server delete 42"));
    let action = |name: &str, id: &str, tags: &str| {
        std::process::Command::new(example("hcloud").join("actions").join(name))
            .env("PATH", &path)
            .env("PROVISION_NODE_ID", id)
            .env("PROVISION_TAGS", tags)
            .output()
            .unwrap()
    };
    // a server that is not there any more: gone, as provision reads it
    let gone = action("destroy", "43", "");
    assert!(gone.status.success());
    assert_eq!(
        String::from_utf8_lossy(&gone.stdout).trim(),
        r#"{"gone": true}"#
    );
    // the deploy state, as labels of the server
    let tagged = action("tag", "42", "provision-state=ready\nx=a:b\n");
    assert!(
        tagged.status.success(),
        "{}",
        String::from_utf8_lossy(&tagged.stderr)
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("server add-label --overwrite 42 provision-state=ready x=a-b"));

    // create, run as provision runs it
    let ud = s.write("ud", "#cloud-config\n{}\n");
    let out = std::process::Command::new(example("hcloud").join("actions/create"))
        .current_dir(example("hcloud").join("actions"))
        .env("PATH", &path)
        .env("PROVISION_NODE_NAME", "web-1")
        .env("PROVISION_IMAGE", "ubuntu-24.04")
        .env("PROVISION_SIZE", "cx22")
        .env("PROVISION_LOCATION", "fsn1")
        .env("PROVISION_USER_DATA_FILE", &ud)
        .env(
            "PROVISION_TAGS",
            "provision=1\nprovision-created=2026-11-30T10:00:00Z\n",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let node: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(node["state"], "pending");
    assert_eq!(node["id"], "42");
    assert!(
        !stdout.contains("should-never-appear"),
        "root password leaked"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let create = calls
        .lines()
        .find(|l| l.starts_with("server create"))
        .unwrap();
    for want in [
        "--name web-1",
        "--type cx22",
        "--image ubuntu-24.04",
        "--location fsn1",
        &format!("--user-data-from-file {}", ud.display()),
        "--label provision=1",
        "--label provision-created=2026-11-30T10-00-00Z",
    ] {
        assert!(create.contains(want), "{want} not in {create}");
    }
}

#[test]
fn a_provider_written_from_the_man_page_alone_deploys_and_destroys() {
    let s = site();
    let fresh = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exec/fresh");
    let state = s.path().join("fresh-state");
    // a second layer sets only env: path keeps resolving against the fixture's layer
    s.write(
        "fresh-env/provision.toml",
        &format!(
            "[providers.fresh.env]\nFRESH_STATE = \"{}\"\n",
            state.display()
        ),
    );
    let layers = [
        "-c".to_string(),
        fresh.display().to_string(),
        "-c".into(),
        s.path().join("fresh-env").display().to_string(),
        "-c".into(),
        s.path().join("site").display().to_string(),
        "-p".into(),
        "fresh".into(),
    ];
    let r = s
        .cmd("deploy-node")
        .args(&layers)
        .args(["-n", "fr-{i}", "--count", "2", "-b", "app"])
        .run()
        .code(0);
    assert!(r.stderr.contains("hello from fr-1"), "{}", r.stderr);
    assert!(r.stderr.contains("hello from fr-2"), "{}", r.stderr);
    // the host key from the user_data was pinned: nothing trusted on first use
    let kh = std::fs::read_to_string(s.state().join("known_hosts")).unwrap_or_default();
    assert!(kh.is_empty(), "{kh}");
    let l = s.cmd("list-nodes").args(&layers).run().code(0);
    assert_eq!(l.stdout.lines().count(), 2, "{}", l.stdout);
    s.cmd("destroy-node")
        .args(&layers)
        .args(["--prefix", "fr-"])
        .run()
        .code(0);
    assert_eq!(
        s.cmd("list-nodes")
            .args(&layers)
            .args(["--all"])
            .run()
            .code(0)
            .stdout,
        ""
    );
    let state_s = state.display().to_string();
    assert!(wait_until(Duration::from_secs(5), || pids_with_cmdline(
        &state_s
    )
    .is_empty()));
}

#[test]
fn a_create_that_reports_another_name_is_rejected_and_its_node_destroyed() {
    let s = site();
    let ex = ex_actions();
    let l = fixture(
        &s,
        "rn",
        "",
        &[(
            "create",
            &format!("#!/bin/sh\n\"{ex}/create\" | jq -c '.name = \"other\"'\n"),
        )],
    );
    deploy_bad(&s, &l, &[])
        .code(12)
        .stderr_has("printed a node whose \"name\" is 'other', not 'b1' as asked (node node-")
        .stderr_has(" destroyed)");
    nothing_left(&s);
}

#[test]
fn a_wrong_type_or_a_built_in_name_is_a_config_error() {
    let s = Sandbox::new();
    s.write(
        "t/provision.toml",
        "[providers.lab]\ntype = \"exce\"\npath = \"x\"\n",
    );
    let t = s.path().join("t").display().to_string();
    s.cmd("deploy-node")
        .args(["-c", &t, "-p", "lab"])
        .run()
        .code(2)
        .stderr_has("[providers.lab] type = \"exce\": the only provider type is \"exec\"");
    s.write(
        "b/provision.toml",
        "[providers.local]\ntype = \"exec\"\npath = \"x\"\n",
    );
    let b = s.path().join("b").display().to_string();
    s.cmd("deploy-node")
        .args(["-c", &b, "--dry-run"])
        .run()
        .code(2)
        .stderr_has("'local' is a built-in provider");
}

#[test]
fn a_destroy_that_prints_gone_true_reports_already_gone() {
    let s = site();
    let ex = ex_actions();
    let snapshot = s.path().join("list.json").display().to_string();
    // a platform whose listing lags (a cached list): the node still shows after it went
    let l = fixture(
        &s,
        "f",
        &format!("[providers.bad.env]\nSNAPSHOT = \"{snapshot}\"\n"),
        &[(
            "list",
            &format!("#!/bin/sh\ncat \"$SNAPSHOT\" 2>/dev/null || exec \"{ex}/list\"\n"),
        )],
    );
    let destroy = |extra: &[&str]| {
        s.cmd("destroy-node")
            .args(["-c", &l, "-p", "bad", "--force"])
            .args(extra)
            .run()
    };
    deploy_bad(&s, &l, &[]).code(0);
    let listed = s
        .cmd("list-nodes")
        .args(["-c", &l, "-p", "bad", "--format", "json"])
        .run()
        .code(0)
        .stdout;
    assert!(listed.contains("\"b1\""), "{listed}");
    // the raw list, as the stale cache will show it
    let raw = std::process::Command::new(format!("{ex}/list"))
        .env("XDG_STATE_HOME", s.path().join("xdg-state"))
        .output()
        .unwrap();
    std::fs::write(&snapshot, raw.stdout).unwrap();
    // someone else destroys it: the example's destroy says nothing for a node it destroyed
    let id = node_dirs(&s)[0].file_name().unwrap().to_owned();
    let gone = std::process::Command::new(format!("{ex}/destroy"))
        .env("XDG_STATE_HOME", s.path().join("xdg-state"))
        .env("PROVISION_NODE_ID", &id)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&gone.stdout), "");
    nothing_left(&s);
    destroy(&["b1"])
        .code(0)
        .stderr_has("b1: already gone")
        .stderr_lacks("b1: destroyed");

    // a node it really destroys is "destroyed"
    std::fs::remove_file(&snapshot).unwrap();
    deploy_bad(&s, &l, &[]).code(0);
    destroy(&["b1"])
        .code(0)
        .stderr_has("b1: destroyed")
        .stderr_lacks("already gone");
    nothing_left(&s);
}

#[test]
fn a_destroy_whose_gone_is_not_a_boolean_is_malformed() {
    let s = site();
    let ex = ex_actions();
    let l = fixture(
        &s,
        "f",
        "",
        &[(
            "destroy",
            &format!("#!/bin/sh\n\"{ex}/destroy\" >/dev/null\necho '{{\"gone\": \"yes\"}}'\n"),
        )],
    );
    deploy_bad(&s, &l, &[]).code(0);
    s.cmd("destroy-node")
        .args(["-c", &l, "-p", "bad", "--force", "b1"])
        .run()
        .code(1)
        .stderr_has("b1: could not destroy: exec provider 'bad': malformed response: destroy (")
        .stderr_has(
            "/f/actions/destroy) printed a \"gone\" that is a string (expected true or false)",
        );
    nothing_left(&s);
}
