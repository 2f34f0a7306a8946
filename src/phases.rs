//! How long each phase of one deployment took — the API answering the create, the node
//! running, its SSH port open, the SSH banner, authentication, the upload, cloud-init, each
//! script — in the order they happened. What users compare clouds with: written to the `-d`
//! file, `--json`, `--junit` (a test case per phase) and the pool summary (the slowest phase).

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
}

impl Phase {
    pub fn new(kind: &'static str, duration: Duration) -> Phase {
        Phase {
            kind,
            script: None,
            duration,
        }
    }

    /// `create`, ..., or `script NAME`.
    pub fn label(&self) -> String {
        match &self.script {
            Some(s) => format!("{} {s}", self.kind),
            None => self.kind.to_string(),
        }
    }

    /// `{"phase": "tcp", "duration": 0.012}` (seconds) (plus `"script": NAME` for a script).
    pub fn to_json(&self) -> Value {
        let mut v = json!({"phase": self.kind, "duration": self.duration.as_secs_f64()});
        if let Some(s) = &self.script {
            v["script"] = json!(s);
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
        });
        assert_eq!(p.slowest().unwrap().label(), "running");
        assert_eq!(p.0[2].label(), "script 01-a.sh");
        let v = p.to_json();
        assert_eq!(v[0]["phase"], "create");
        assert_eq!(v[1]["duration"], 2.5);
        assert_eq!(v[2]["script"], "01-a.sh");
        assert!(v[0].get("script").is_none());
        assert_eq!(Phases::default().slowest(), None);
    }
}
