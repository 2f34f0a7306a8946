//! Phase timings (issue 16 item 5) of real local deployments: the `-d` file, `--json` and
//! `--junit` list every phase — create, running, tcp, banner, auth, upload, cloud-init, each
//! script — in order, each non-negative, adding up to no more than the whole deployment; the
//! JUnit phases suite reads back with the project's reader; a pool's summary names each
//! node's slowest phase.

use crate::support::cli::Sandbox;
use serde_json::Value;

/// The phases before the scripts, in order (also read by tests/ipv6.rs for a cloud deploy).
pub const ORDER: [&str; 7] = [
    "create",
    "running",
    "tcp",
    "banner",
    "auth",
    "upload",
    "cloud-init",
];

fn site(s: &Sandbox) -> String {
    s.write(
        "site/provision.toml",
        "[bundles.two]\nscripts = [\"a.sh\", \"b.sh\"]\n",
    );
    s.write("site/scripts/a.sh", "#!/bin/sh\necho a\n");
    // the slowest phase of a local node, by far
    s.write("site/scripts/b.sh", "#!/bin/sh\nsleep 2\necho b\n");
    s.path().join("site").display().to_string()
}

/// Checks one description's `phases` against its `duration`; returns the phase labels.
fn checked_phases(d: &Value) -> Vec<String> {
    let phases = d["phases"].as_array().expect("phases");
    let mut sum = 0.0;
    let mut labels = Vec::new();
    for p in phases {
        let secs = p["duration"].as_f64().expect("duration");
        assert!(secs >= 0.0, "{p}");
        sum += secs;
        labels.push(match p["script"].as_str() {
            Some(s) => format!("script {s}"),
            None => p["phase"].as_str().unwrap().to_string(),
        });
    }
    let total = d["duration"].as_f64().expect("duration");
    assert!(
        sum <= total,
        "phases add up to {sum}s, more than the {total}s total: {d}"
    );
    labels
}

fn expected() -> Vec<String> {
    ORDER
        .iter()
        .map(|s| s.to_string())
        .chain(["script a.sh".into(), "script b.sh".into()])
        .collect()
}

#[test]
fn a_local_deploy_records_every_phase_in_order() {
    let s = Sandbox::new();
    let site = site(&s);
    let r = s
        .cmd("deploy-node")
        .args(["-c", &site, "-b", "two", "-n", "timed"])
        .args(["-d", "d.json", "--json", "--junit", "deploy.xml"])
        .run()
        .code(0);
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(checked_phases(&json["nodes"][0]), expected());
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("d.json")).unwrap()).unwrap();
    assert_eq!(checked_phases(&d), expected());
    // the script that sleeps took at least that long
    let b = d["phases"].as_array().unwrap().last().unwrap();
    assert!(b["duration"].as_f64().unwrap() >= 2.0, "{b}");

    // JUnit: the node's steps, then its phases suite, read back by our reader
    let report = provision::junit::read_results(&s.path().join("deploy.xml")).unwrap();
    assert_eq!(
        (report.passed, report.failed.len()),
        (4 + expected().len(), 0),
        "keys, files, two scripts, and the phases"
    );
    let xml = std::fs::read_to_string(s.path().join("deploy.xml")).unwrap();
    let suite = xml.find("<testsuite name=\"timed phases\"").expect(&xml);
    let mut at = suite;
    for label in expected() {
        let p = xml[at..]
            .find(&format!(
                "<testcase name=\"{label}\" classname=\"provision.timed.phases\" time=\""
            ))
            .unwrap_or_else(|| panic!("{label} missing or out of order: {xml}"));
        at += p + 1;
    }
    s.cmd("destroy-node")
        .args(["--force", "timed"])
        .run()
        .code(0);
}

#[test]
fn a_pools_summary_names_each_nodes_slowest_phase() {
    let s = Sandbox::new();
    let site = site(&s);
    let r = s
        .cmd("deploy-node")
        .args(["-c", &site, "-b", "two", "--count", "2", "-n", "slow-{i}"])
        .run()
        .code(0);
    let summary = &r.stderr[r.stderr.find("summary:").expect(&r.stderr)..];
    assert!(summary.contains("SLOWEST PHASE"), "{summary}");
    for n in ["slow-1", "slow-2"] {
        let row = summary
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n}: {summary}"));
        let secs: f64 = row
            .split_once(" script b.sh ")
            .and_then(|(_, rest)| rest.split_once('s'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("no slowest phase: {row}"));
        assert!(secs >= 2.0, "{row}");
    }
    s.cmd("destroy-node")
        .args(["--force", "slow-1", "slow-2"])
        .run()
        .code(0);
}

/// A deploy that fails while waiting for SSH (a static host whose port nobody listens on)
/// ends its phases with the one it was stuck in, `tcp`, marked failed — in `-d`, `--json` and
/// as a failing test case of the JUnit phases suite.
#[test]
fn a_failed_deploy_records_the_phase_it_was_stuck_in() {
    let s = Sandbox::new();
    let port = crate::support::sshd::free_port();
    s.write(
        "static/provision.toml",
        &format!("provider = \"static\"\n[providers.static.hosts]\nghost = \"127.0.0.1:{port}\"\n"),
    );
    let st = s.path().join("static").display().to_string();
    let r = s
        .cmd("deploy-node")
        .args(["-c", &st, "-n", "ghost", "--ssh-timeout", "2s"])
        .args(["-d", "d.json", "--json", "--junit", "deploy.xml"])
        .run()
        .code(15);
    let json: Value = serde_json::from_str(&r.stdout).unwrap();
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("d.json")).unwrap()).unwrap();
    for desc in [&json["nodes"][0], &d] {
        assert_eq!(checked_phases(desc), ["create", "running", "tcp"], "{desc}");
        let last = desc["phases"].as_array().unwrap().last().unwrap();
        assert_eq!(last["failed"], true, "{desc}");
        // it waited there until the deadline
        assert!(last["duration"].as_f64().unwrap() >= 1.5, "{last}");
        assert!(desc["phases"][0].get("failed").is_none(), "{desc}");
    }
    let xml = std::fs::read_to_string(s.path().join("deploy.xml")).unwrap();
    let suite = &xml[xml.find("<testsuite name=\"ghost phases\"").expect(&xml)..];
    let tcp = &suite[suite
        .find("<testcase name=\"tcp\" classname=\"provision.ghost.phases\"")
        .expect(suite)..];
    let tcp = &tcp[..tcp.find("</testcase>").expect(tcp)];
    assert!(
        tcp.contains("<failure") && tcp.contains("TCP port open"),
        "{tcp}"
    );
    let report = provision::junit::read_results(&s.path().join("deploy.xml")).unwrap();
    assert!(
        report
            .failed
            .iter()
            .any(|f| f.to_string() == "provision.ghost.phases::tcp"),
        "{:?}",
        report.failed
    );
}
