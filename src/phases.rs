//! How long each phase of one deployment took — the API answering the create, the node
//! running, its SSH port open, the SSH banner, authentication, the upload, cloud-init, each
//! script — in the order they happened. What users compare clouds with: written to the `-d`
//! file, `--json`, `--junit` (a test case per phase) and the pool summary (the slowest phase).
//! A deploy that fails ends with the phase it was stuck in, marked `failed`, so a failed
//! deploy's time is accounted for too.

use serde_json::{json, Value};
use std::time::Duration;

/// One phase: what ended, and how long it took since the previous phase ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// `create`, `running`, `tcp`, `banner`, `auth`, `upload`, `cloud-init` or `script`.
    pub kind: &'static str,
    /// The script's name, for a `script` phase.
    pub script: Option<String>,
    pub duration: Duration,
    /// The deployment failed in this phase (it is the last one).
    pub failed: bool,
}

impl Phase {
    pub fn new(kind: &'static str, duration: Duration) -> Phase {
        Phase {
            kind,
            script: None,
            duration,
            failed: false,
        }
    }

    /// `create`, ..., or `script NAME`.
    pub fn label(&self) -> String {
        match &self.script {
            Some(s) => format!("{} {s}", self.kind),
            None => self.kind.to_string(),
        }
    }

    /// `{"phase": "tcp", "duration": 0.012}` (seconds) (plus `"script": NAME` for a script,
    /// and `"failed": true` for the phase a failed deploy was stuck in).
    pub fn to_json(&self) -> Value {
        let mut v = json!({"phase": self.kind, "duration": self.duration.as_secs_f64()});
        if let Some(s) = &self.script {
            v["script"] = json!(s);
        }
        if self.failed {
            v["failed"] = json!(true);
        }
        v
    }
}

/// Every phase a deployment finished, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases(pub Vec<Phase>);

impl Phases {
    pub fn push(&mut self, kind: &'static str, duration: Duration) {
        self.0.push(Phase::new(kind, duration));
    }

    /// Ends a failed deployment's phases with the one it was stuck in: `kind`, or the phase
    /// after the last one finished when `kind` is `None` (`create` first, then `running`,
    /// `tcp`, and after `auth` the provision: `upload`). Its time is what the whole deployment
    /// took less the phases finished. Nothing is added when a phase is already marked failed
    /// (a failed script).
    pub fn fail(&mut self, kind: Option<&'static str>, total: Duration) {
        if self.0.iter().any(|p| p.failed) {
            return;
        }
        let kind = kind.unwrap_or_else(|| match self.0.last().map(|p| p.kind) {
            None => "create",
            Some("create") => "running",
            Some("running") => "tcp",
            Some("tcp") => "banner",
            Some("banner") => "auth",
            Some("auth") => "upload",
            Some("upload") => "cloud-init",
            Some(_) => "script",
        });
        let done: Duration = self.0.iter().map(|p| p.duration).sum();
        let mut p = Phase::new(kind, total.saturating_sub(done));
        p.failed = true;
        self.0.push(p);
    }

    /// The phase that took longest (the first of equals).
    pub fn slowest(&self) -> Option<&Phase> {
        self.0
            .iter()
            .reduce(|a, b| if b.duration > a.duration { b } else { a })
    }

    /// The list for the `-d` file and `--json`.
    pub fn to_json(&self) -> Value {
        Value::Array(self.0.iter().map(Phase::to_json).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_phase_and_the_json() {
        let mut p = Phases::default();
        p.push("create", Duration::from_millis(300));
        p.push("running", Duration::from_millis(2500));
        p.0.push(Phase {
            kind: "script",
            script: Some("01-a.sh".into()),
            duration: Duration::from_millis(900),
            failed: false,
        });
        assert_eq!(p.slowest().unwrap().label(), "running");
        assert_eq!(p.0[2].label(), "script 01-a.sh");
        let v = p.to_json();
        assert_eq!(v[0]["phase"], "create");
        assert_eq!(v[1]["duration"], 2.5);
        assert_eq!(v[2]["script"], "01-a.sh");
        assert!(v[0].get("script").is_none());
        assert_eq!(Phases::default().slowest(), None);
        assert!(v[2].get("failed").is_none());
    }

    #[test]
    fn a_failed_deploy_ends_with_the_phase_it_was_stuck_in() {
        let mut p = Phases::default();
        p.fail(None, Duration::from_millis(40));
        assert_eq!((p.0[0].kind, p.0[0].failed), ("create", true));
        assert_eq!(p.to_json()[0]["failed"], true);

        let mut p = Phases::default();
        p.push("create", Duration::from_millis(300));
        p.push("running", Duration::from_millis(200));
        p.fail(None, Duration::from_millis(1500));
        assert_eq!(p.0.len(), 3);
        assert_eq!(p.0[2].kind, "tcp");
        assert_eq!(p.0[2].duration, Duration::from_millis(1000));
        assert!(p.0[2].failed && !p.0[1].failed);
        // once marked, nothing more is added
        p.fail(Some("auth"), Duration::from_secs(9));
        assert_eq!(p.0.len(), 3);

        let mut p = Phases::default();
        p.push("tcp", Duration::from_millis(10));
        p.fail(Some("auth"), Duration::from_millis(30));
        assert_eq!(p.0[1].kind, "auth");
    }
}
