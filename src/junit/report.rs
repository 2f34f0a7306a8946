//! `deploy-node --junit FILE`: the deployment itself as a JUnit report (quick-junit), one suite
//! per node and one test case per step — keys, files, and each script — so CI pages show
//! provisioning next to the tests, then a suite `NODE phases` with one passing test case per
//! phase the deployment finished (`create`, `running`, `tcp`, ..., `script NAME`) and its
//! time — and, for a failed deployment, a failing one for the phase it was stuck in. Script
//! output is trimmed to its tail.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

/// How much of a script's stdout/stderr goes into the report (the tail is kept).
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// One step of one node's deployment.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub name: String,
    pub duration: Duration,
    pub stdout: String,
    pub stderr: String,
    /// `Some(message)` when the step failed.
    pub failure: Option<String>,
    /// Not run (an earlier step failed).
    pub skipped: bool,
    /// `--log-dir`: the files holding the whole stdout and stderr, named in the report.
    pub log: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// One node's deployment.
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub node: String,
    pub steps: Vec<StepResult>,
    /// `<property>`s of the node's suite: its expiry, owner and CI job, as recorded on it.
    pub properties: Vec<(String, String)>,
    /// Each phase ([`crate::phases`]), in order.
    pub phases: Vec<PhaseResult>,
}

/// One phase of one node's deployment: a test case of the `NODE phases` suite.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// `create`, ..., `script NAME`.
    pub label: String,
    pub duration: Duration,
    /// `Some(message)` for the phase a failed deployment was stuck in.
    pub failure: Option<String>,
}

/// Keeps the last `limit` bytes (on a char boundary), saying how much was cut.
pub fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {start} bytes cut ...]\n{}", &text[start..])
}

/// Builds the report.
pub fn build(nodes: &[NodeResult]) -> Report {
    let mut report = Report::new("deploy-node");
    for n in nodes {
        let mut suite = TestSuite::new(n.node.as_str());
        for (k, v) in &n.properties {
            suite.add_property(quick_junit::Property::new(k.as_str(), v.as_str()));
        }
        for step in &n.steps {
            let status = if step.skipped {
                TestCaseStatus::skipped()
            } else if let Some(msg) = &step.failure {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(msg.as_str());
                s
            } else {
                TestCaseStatus::success()
            };
            let mut case = TestCase::new(step.name.as_str(), status);
            case.set_classname(format!("provision.{}", n.node));
            case.set_time(step.duration);
            let whole = |file: Option<&std::path::PathBuf>| {
                file.map(|f| format!("[whole output: {}]\n", f.display()))
                    .unwrap_or_default()
            };
            let (out_log, err_log) = match &step.log {
                Some((o, e)) => (whole(Some(o)), whole(Some(e))),
                None => (String::new(), String::new()),
            };
            if !step.stdout.is_empty() || !out_log.is_empty() {
                case.set_system_out(out_log + &tail(&step.stdout, OUTPUT_LIMIT));
            }
            if !step.stderr.is_empty() || !err_log.is_empty() {
                case.set_system_err(err_log + &tail(&step.stderr, OUTPUT_LIMIT));
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
        if !n.phases.is_empty() {
            let mut phases = TestSuite::new(format!("{} phases", n.node));
            for p in &n.phases {
                let status = match &p.failure {
                    Some(msg) => {
                        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        s.set_message(msg.as_str());
                        s
                    }
                    None => TestCaseStatus::success(),
                };
                let mut case = TestCase::new(p.label.as_str(), status);
                case.set_classname(format!("provision.{}.phases", n.node));
                case.set_time(p.duration);
                phases.add_test_case(case);
            }
            report.add_test_suite(phases);
        }
    }
    report
}

/// The report as XML text.
pub fn to_xml(nodes: &[NodeResult]) -> String {
    build(nodes).to_string().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, failure: Option<&str>, skipped: bool) -> StepResult {
        StepResult {
            name: name.into(),
            duration: Duration::from_millis(1500),
            stdout: "out\n".into(),
            stderr: String::new(),
            failure: failure.map(str::to_string),
            skipped,
            log: None,
        }
    }

    fn phase(label: &str, ms: u64, failure: Option<&str>) -> PhaseResult {
        PhaseResult {
            label: label.into(),
            duration: Duration::from_millis(ms),
            failure: failure.map(str::to_string),
        }
    }

    #[test]
    fn the_gate_reads_back_what_we_write() {
        let ok = NodeResult {
            node: "n1".into(),
            steps: vec![step("keys", None, false), step("01-a.sh", None, false)],
            properties: vec![("provision-expires-at".into(), "2026-12-01T08:00:00Z".into())],
            phases: vec![
                phase("create", 250, None),
                phase("script 01-a.sh", 1500, None),
            ],
        };
        let xml = to_xml(std::slice::from_ref(&ok));
        let r = crate::junit::parse_results(std::path::Path::new("deploy.xml"), xml.as_bytes())
            .unwrap();
        assert_eq!((r.passed, r.failed.len()), (4, 0), "two steps, two phases");
        assert!(xml.contains("time=\"1.500\""), "{xml}");
        assert!(
            xml.contains(r#"<property name="provision-expires-at" value="2026-12-01T08:00:00Z"/>"#)
                && xml.contains("<testsuite name=\"n1 phases\"")
                && xml.contains(
                    "<testcase name=\"create\" classname=\"provision.n1.phases\" time=\"0.250\">"
                ),
            "{xml}"
        );

        let bad = NodeResult {
            node: "n2".into(),
            steps: vec![
                step("keys", None, false),
                step("01-a.sh", Some("exit status 3"), false),
                step("02-b.sh", None, true),
            ],
            properties: vec![],
            phases: vec![],
        };
        // a deploy that timed out waiting for SSH: its stuck phase is a failing test case
        let stuck = NodeResult {
            node: "n3".into(),
            steps: vec![],
            properties: vec![],
            phases: vec![
                phase("create", 100, None),
                phase("tcp", 9000, Some("n3: SSH not ready")),
            ],
        };
        let xml = to_xml(&[ok, bad, stuck]);
        let r = crate::junit::parse_results(std::path::Path::new("deploy.xml"), xml.as_bytes())
            .unwrap();
        assert_eq!((r.passed, r.failed.len(), r.skipped), (6, 2, 1));
        assert!(xml.contains("exit status 3"));
        assert!(xml.contains("n3: SSH not ready"), "{xml}");
        assert!(
            xml.contains(r#"<testcase name="tcp" classname="provision.n3.phases" time="9.000">"#),
            "{xml}"
        );
    }

    #[test]
    fn output_keeps_the_tail() {
        let long = "x".repeat(100) + "END";
        let t = tail(&long, 10);
        assert!(t.ends_with("xxxxxxxEND"), "{t}");
        assert!(t.starts_with("[... 93 bytes cut ...]"), "{t}");
        assert_eq!(tail("short", 10), "short");
    }
}
