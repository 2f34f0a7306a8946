//! Expiry, ownership and the reaper across runners (issue 17), with the local provider: its
//! state dir is the "account". Three sandboxes are three runners (own HOME, key, user, CI
//! variables); the third one's state dir is the account the other two deploy to, and it lists
//! and reaps what they made from the records on the nodes alone.

use crate::support::cli::Sandbox;
use std::path::Path;

/// Rewrites one tag of a local node's record, as if the node had been deployed long ago
/// (`Some`) or by something else than provision (`None` removes it).
fn set_tag(account: &Path, node: &str, key: &str, value: Option<&str>) {
    let p = account.join("local").join(node).join("node.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let tags = v["tags"].as_object_mut().unwrap();
    match value {
        Some(x) => tags.insert(key.into(), x.into()),
        None => tags.remove(key),
    };
    std::fs::write(&p, v.to_string()).unwrap();
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_third_runner_lists_owners_and_reaps_exactly_the_expired_nodes() {
    let reaper = Sandbox::new();
    let account = reaper.state();
    let (alice, ci) = (Sandbox::new(), Sandbox::new());
    let deploy = |s: &Sandbox, user: &str, args: &[&str]| {
        s.cmd("deploy-node")
            .env("PROVISION_STATE_DIR", &account)
            .env("USER", user)
            .args(args)
    };
    deploy(
        &alice,
        "alice",
        &[
            "-n",
            "deploy-test-fresh",
            "--ttl",
            "1h",
            "--label",
            "team=web",
        ],
    )
    .run()
    .code(0);
    deploy(&alice, "alice", &["-n", "deploy-test-old", "--ttl", "2h"])
        .run()
        .code(0);
    deploy(
        &alice,
        "alice",
        &["-n", "deploy-test-foreign", "--ttl", "1h"],
    )
    .run()
    .code(0);
    deploy(
        &alice,
        "alice",
        &["-n", "deploy-test-forever", "--ttl", "never"],
    )
    .run()
    .code(0);
    // a CI runner: the 4h default, the job recorded, the reap hint printed once
    let ci_run = deploy(&ci, "runner", &["-n", "deploy-test-ci"])
        .env("CI", "true")
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_JOB", "e2e")
        .env("GITHUB_REPOSITORY", "org/repo")
        .run()
        .code(0);
    assert_eq!(
        ci_run
            .stderr
            .matches("destroy-node --label ci_job=4242-e2e")
            .count(),
        1,
        "{}",
        ci_run.stderr
    );
    // long ago: expired an hour ago (well past the skew margin); one not ours though expired
    let past = (now_secs() - 3600).to_string();
    set_tag(
        &account,
        "deploy-test-old",
        "provision-expires-at",
        Some(&past),
    );
    set_tag(
        &account,
        "deploy-test-foreign",
        "provision-expires-at",
        Some(&past),
    );
    set_tag(&account, "deploy-test-foreign", "provision", None);

    let table = reaper
        .cmd("list-nodes")
        .args(["--format", "table"])
        .run()
        .code(0)
        .stdout;
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in\n{table}"))
            .to_string()
    };
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        row("deploy-test-old").contains("EXPIRED") && row("deploy-test-old").contains("alice@"),
        "{table}"
    );
    assert!(
        row("deploy-test-fresh").contains("in 59m") || row("deploy-test-fresh").contains("in 1h"),
        "{table}"
    );
    assert!(
        row("deploy-test-ci").contains("in 3h59m") || row("deploy-test-ci").contains("in 4h"),
        "{table}"
    );
    assert!(
        row("deploy-test-ci").contains("runner@")
            && row("deploy-test-ci").contains("ci_job=4242-e2e"),
        "{table}"
    );
    assert!(row("deploy-test-forever").contains("  -  "), "{table}");
    // the untagged node is not ours: never EXPIRED, whatever its tags say
    assert!(!row("deploy-test-foreign").contains("EXPIRED"), "{table}");

    let json: serde_json::Value = serde_json::from_str(
        &reaper
            .cmd("list-nodes")
            .args(["--format", "json"])
            .run()
            .code(0)
            .stdout,
    )
    .unwrap();
    let ci_node = json
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "deploy-test-ci")
        .unwrap();
    assert_eq!(ci_node["ci_job"], "4242-e2e");
    assert_eq!(ci_node["tags"]["ci_project"], "org/repo");
    assert_eq!(ci_node["expired"], false);
    assert!(ci_node["age_seconds"].as_u64().unwrap() < 600);

    let expired = reaper
        .cmd("list-nodes")
        .args(["--expired"])
        .run()
        .code(0)
        .stdout;
    assert_eq!(
        expired
            .lines()
            .map(|l| l.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        ["deploy-test-old"]
    );
    let labelled = reaper
        .cmd("list-nodes")
        .args(["--label", "team=web"])
        .run()
        .code(0)
        .stdout;
    assert!(
        labelled.starts_with("deploy-test-fresh ") && labelled.lines().count() == 1,
        "{labelled}"
    );

    reaper
        .cmd("destroy-node")
        .args(["--expired", "--dry-run"])
        .run()
        .code(0)
        .stderr_has("would destroy deploy-test-old");
    assert!(account.join("local/deploy-test-old").exists());
    reaper
        .cmd("destroy-node")
        .args(["--expired"])
        .run()
        .code(0)
        .stderr_has("deploy-test-old: destroyed");
    // again: nothing expired left is success
    reaper
        .cmd("destroy-node")
        .args(["--expired"])
        .run()
        .code(0)
        .stderr_has("0 expired node(s)");
    let all = reaper
        .cmd("list-nodes")
        .args(["--all"])
        .run()
        .code(0)
        .stdout;
    for kept in [
        "deploy-test-fresh",
        "deploy-test-foreign",
        "deploy-test-forever",
        "deploy-test-ci",
    ] {
        assert!(all.contains(kept), "{kept} must survive the reaper:\n{all}");
    }
    assert!(!all.contains("deploy-test-old"), "{all}");
    // one CI job's nodes, by the label the deploy printed
    reaper
        .cmd("destroy-node")
        .args(["--label", "ci_job=4242-e2e"])
        .run()
        .code(0)
        .stderr_has("deploy-test-ci: destroyed");
    for name in ["deploy-test-fresh", "deploy-test-forever"] {
        reaper.cmd("destroy-node").args([name]).run().code(0);
    }
    reaper
        .cmd("destroy-node")
        .args(["--force", "deploy-test-foreign"])
        .run()
        .code(0);
}
