//! The CI examples (examples/ci) run as written: the GitHub Actions job's `run:` steps and the
//! GitLab job's `script:`/`after_script:` lines go through bash against the local provider, in
//! a sandbox HOME with no SSH key (the job makes one), with the built binaries where the job's
//! cache would have put them (so its install line finds them and skips `cargo install`). Only
//! the cloud is swapped: PROVIDER=local. Each job is run three ways: tests pass (the node is
//! destroyed), a test fails (kept and named), the bundle's script fails (exit 14: the name still
//! reaches the destroy step, which keeps the node since no test ran).

use crate::support::cli::Sandbox;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/ci")
        .join(name)
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_deploy-node"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The sandbox as a checked-out repository: `ci/` is a copy of examples/ci (with a failing
/// script when asked), the binaries are where the job's cache keeps them.
fn workspace(s: &Sandbox, cache: &Path, failing_script: bool) -> PathBuf {
    let ws = s.path().join("ws");
    let ci = ws.join("ci");
    let src = example("");
    std::fs::create_dir_all(&ws).unwrap();
    let st = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(&ci)
        .status()
        .unwrap();
    assert!(st.success());
    if failing_script {
        std::fs::write(
            ci.join("scripts/ci-ready.sh"),
            "#!/bin/sh\necho broken on purpose\nexit 9\n",
        )
        .unwrap();
    }
    let bin = cache.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for b in ["deploy-node", "list-nodes", "destroy-node"] {
        let _ = std::os::unix::fs::symlink(bin_dir().join(b), bin.join(b));
    }
    ws
}

/// The environment of a job: the sandbox's HOME and state dir, nothing of ours.
fn job_cmd(s: &Sandbox, ws: &Path, env: &BTreeMap<String, String>, path: &str) -> Command {
    let mut c = Command::new("bash");
    c.env_clear()
        .env("HOME", s.home())
        .env("PATH", path)
        .env("PROVISION_STATE_DIR", s.state())
        .env("XDG_CONFIG_HOME", s.path().join("xdg-config"))
        .env("XDG_STATE_HOME", s.path().join("xdg-state"))
        .envs(env)
        .current_dir(ws);
    c
}

struct Step {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut c: Command) -> Step {
    let o = c.output().unwrap();
    Step {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn load(file: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(example(file)).unwrap()).unwrap()
}

/// The job's variables, with the cloud swapped for the local provider.
fn job_env(vars: &Value, node_test_fail: bool) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in vars.as_mapping().unwrap() {
        env.insert(scalar(k), scalar(v));
    }
    env.insert("PROVIDER".into(), "local".into());
    if node_test_fail {
        env.insert("NODE_TEST_FAIL".into(), "1".into());
    }
    env
}

/// Resolves the `${{ ... }}` expressions the example uses; anything else fails the test, so
/// the example cannot grow a construct this harness does not check.
fn expand(
    text: &str,
    env: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${{") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find("}}").expect("closed expression") + i;
        let expr = rest[i + 3..j].trim();
        let value = if let Some(k) = expr.strip_prefix("secrets.") {
            assert_eq!(k, "DIGITALOCEAN_TOKEN");
            String::new()
        } else if let Some(k) = expr.strip_prefix("env.") {
            env.get(k).cloned().unwrap_or_default()
        } else if let Some(k) = expr.strip_prefix("steps.") {
            outputs.get(k).cloned().unwrap_or_default()
        } else {
            panic!("expression not handled by the harness: {expr}")
        };
        out.push_str(&value);
        rest = &rest[j + 2..];
    }
    out.push_str(rest);
    out
}

/// What a GitHub job run left: every step's result, by name or id.
struct GhRun {
    steps: Vec<(String, Step)>,
}

impl GhRun {
    fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

fn run_github(s: &Sandbox, node_test_fail: bool, failing_script: bool) -> GhRun {
    let doc = load("github-actions.yml");
    let job = &doc["jobs"]["node-tests"];
    let env = job_env(&job["env"], node_test_fail);
    let ws = workspace(s, &s.home().join(".cache/provision-bin"), failing_script);
    let mut path = std::env::var("PATH").unwrap_or_default();
    let mut outputs: BTreeMap<String, String> = BTreeMap::new();
    let mut failed = false;
    let mut steps = Vec::new();
    for (i, step) in job["steps"].as_sequence().unwrap().iter().enumerate() {
        if let Some(uses) = step["uses"].as_str() {
            assert!(
                [
                    "actions/checkout@v4",
                    "actions/cache@v4",
                    "actions/upload-artifact@v4"
                ]
                .contains(&uses),
                "an action the harness does not stand in for: {uses}"
            );
            continue;
        }
        let name = step["id"]
            .as_str()
            .or(step["name"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("step {i}"));
        let wanted = match step["if"].as_str() {
            None => !failed,
            Some("always() && steps.deploy.outputs.node != ''") => outputs
                .get("deploy.outputs.node")
                .is_some_and(|n| !n.is_empty()),
            Some(other) => panic!("a condition the harness does not evaluate: {other}"),
        };
        if !wanted {
            continue;
        }
        let mut step_env = env.clone();
        if let Some(m) = step["env"].as_mapping() {
            for (k, v) in m {
                step_env.insert(scalar(k), expand(&scalar(v), &env, &outputs));
            }
        }
        let out_file = s.path().join(format!("gh-output-{i}"));
        let path_file = s.path().join(format!("gh-path-{i}"));
        std::fs::write(&out_file, "").unwrap();
        std::fs::write(&path_file, "").unwrap();
        step_env.insert("GITHUB_OUTPUT".into(), out_file.display().to_string());
        step_env.insert("GITHUB_PATH".into(), path_file.display().to_string());
        let script = expand(step["run"].as_str().unwrap(), &env, &outputs);
        // GitHub's default shell for `run:` on Linux
        let mut c = job_cmd(s, &ws, &step_env, &path);
        c.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script]);
        let r = run(c);
        for line in std::fs::read_to_string(&out_file).unwrap().lines() {
            let (k, v) = line.split_once('=').expect("key=value");
            outputs.insert(format!("{name}.outputs.{k}"), v.to_string());
        }
        for dir in std::fs::read_to_string(&path_file).unwrap().lines() {
            path = format!("{dir}:{path}");
        }
        failed |= r.code != 0;
        steps.push((name, r));
    }
    GhRun { steps }
}

fn list(s: &Sandbox) -> String {
    s.cmd("list-nodes").run().code(0).stdout
}

fn node_of(s: &Sandbox) -> String {
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("ws/node.json")).unwrap())
            .unwrap();
    d["name"].as_str().unwrap().to_string()
}

#[test]
fn github_actions_job_runs_as_written() {
    // tests pass: the node goes
    let s = Sandbox::without_key();
    let r = run_github(&s, false, false);
    for (name, step) in &r.steps {
        assert_eq!(step.code, 0, "{name}\n{}\n{}", step.stdout, step.stderr);
    }
    assert!(
        s.home().join(".ssh/id_ed25519").is_file(),
        "the job made a key"
    );
    assert!(r.step("deploy").is_some() && r.step("test the node").is_some());
    assert!(r
        .step("gated destroy (keeps the node when a test failed or none ran)")
        .unwrap()
        .stderr
        .contains(": destroyed"));
    assert_eq!(list(&s), "");
    assert!(
        s.path().join("ws/logs").is_dir(),
        "whole logs for the artifact"
    );

    // a test fails: kept and named
    let s = Sandbox::without_key();
    let r = run_github(&s, true, false);
    let name = node_of(&s);
    let gate = r
        .step("gated destroy (keeps the node when a test failed or none ran)")
        .expect("the destroy step runs after a failed test");
    assert_eq!(gate.code, 1);
    assert!(
        gate.stdout
            .contains(&format!("::warning::node {name} kept")),
        "{}",
        gate.stdout
    );
    assert!(list(&s).contains(&name));
    s.cmd("destroy-node").args([&name]).run().code(0);

    // the bundle's script fails: exit 14, empty stdout, yet the destroy step gets the name
    let s = Sandbox::without_key();
    let r = run_github(&s, false, true);
    assert_eq!(r.step("deploy").unwrap().code, 14);
    assert!(
        r.step("test the node").is_none(),
        "skipped after the failed deploy"
    );
    let name = node_of(&s);
    let gate = r
        .step("gated destroy (keeps the node when a test failed or none ran)")
        .expect("the destroy step runs with the kept node's name");
    assert!(
        gate.stderr.contains("results.xml") && gate.stdout.contains(&name),
        "{}\n{}",
        gate.stdout,
        gate.stderr
    );
    assert!(list(&s).contains(&name), "kept for inspection");
    s.cmd("destroy-node").args([&name]).run().code(0);
}

/// Runs the GitLab job: `script` lines in one bash that stops at the first failure, then
/// `after_script` in a new one, as the runner does.
fn run_gitlab(s: &Sandbox, node_test_fail: bool, failing_script: bool) -> (Step, Step) {
    let doc = load("gitlab-ci.yml");
    let job = &doc["node-tests"];
    let env = job_env(&job["variables"], node_test_fail);
    let ws = workspace(s, &s.path().join("ws/.provision-bin"), failing_script);
    let path = std::env::var("PATH").unwrap_or_default();
    let lines = |key: &str| -> String {
        let body: Vec<String> = job[key]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        format!("set -eo pipefail\n{}", body.join("\n"))
    };
    let mut c = job_cmd(s, &ws, &env, &path);
    c.args(["-c", &lines("script")]);
    let script = run(c);
    let mut c = job_cmd(s, &ws, &env, &path);
    c.args(["-c", &lines("after_script")]);
    (script, run(c))
}

#[test]
fn gitlab_ci_job_runs_as_written() {
    let s = Sandbox::without_key();
    let (script, after) = run_gitlab(&s, false, false);
    assert_eq!(script.code, 0, "{}\n{}", script.stdout, script.stderr);
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert!(after.stderr.contains(": destroyed"), "{}", after.stderr);
    let name = node_of(&s);
    assert_eq!(
        std::fs::read_to_string(s.path().join("ws/node.env")).unwrap(),
        format!("NODE={name}\n")
    );
    assert_eq!(list(&s), "");

    let s = Sandbox::without_key();
    let (script, after) = run_gitlab(&s, true, false);
    assert_ne!(script.code, 0);
    let name = node_of(&s);
    assert!(
        after.stdout.contains(&format!("node {name} kept")),
        "{}\n{}",
        after.stdout,
        after.stderr
    );
    assert!(list(&s).contains(&name));
    s.cmd("destroy-node").args([&name]).run().code(0);

    let s = Sandbox::without_key();
    let (script, after) = run_gitlab(&s, false, true);
    assert!(script.stderr.contains("exit status 9"), "{}", script.stderr);
    let name = node_of(&s);
    assert!(
        after.stdout.contains(&format!("node {name} kept")),
        "{}\n{}",
        after.stdout,
        after.stderr
    );
    s.cmd("destroy-node").args([&name]).run().code(0);
}
