//! Test results in JUnit XML, read for the destroy gate.
//!
//! `destroy-node -t results.xml NODE` destroys a node only when every test in every results
//! file passed; otherwise the node is kept for inspection. Losing a node whose tests failed
//! loses the evidence, so the gate must never take a failing report for a passing one.
//!
//! "JUnit XML" is not one format but a family of dialects (pytest xunit1/xunit2,
//! unittest-xml-reporting, jest-junit, mocha-junit-reporter, `node --test`, cargo-nextest,
//! Maven Surefire/Failsafe, Gradle, go-junit-report, gotestsum, PHPUnit, ctest, Robot
//! Framework, Bazel, ...). They disagree on the root element, nesting, which count attributes
//! exist and whether they are right, how retries are recorded, and even on what "skipped"
//! means. quick-junit only reads its own dialect, so this module has its own tolerant
//! streaming reader on top of quick-xml, which follows these rules:
//!
//! - The root element is `<testsuites>` or `<testsuite>`; anything else (HTML, JSON, empty,
//!   truncated XML) is unreadable, and nothing is destroyed.
//! - Each `<testcase>` element is one test; its child elements decide its outcome, not the
//!   count attributes: `<failure>`/`<rerunFailure>` fail it, `<error>`/`<rerunError>` make it
//!   an error (also when the suite's counts say 0), `<skipped>` skips it. A test with only
//!   `<flakyFailure>`/`<flakyError>` failed, then passed on a retry: it passed, and is
//!   reported as flaky. A failing `status` attribute (ctest, Bazel) also fails a test.
//! - Counts are only believed in one direction: a suite whose `failures`/`errors` attributes
//!   claim failures while nothing inside it failed, errored or was flaky (for example a
//!   suite with no test cases at all) counts as one failing entry.
//! - `<failure>`/`<error>` directly under a `<testsuite>` (a suite-level error such as a
//!   collection error) counts as a failing entry.
//! - Repeated test cases (retried packages, repetitions) are counted one by one: any failed
//!   attempt that is not marked flaky keeps the node.
//!
//! Dialect quirks handled here, found by running the tools (see tests/fixtures/junit/):
//! ctest writes a test whose executable is missing as `status="notrun"` with `<skipped>`
//! although ctest counts it as failed, and disabled tests as `status="disabled"` with no
//! child; `node --test` writes a test file that defines no tests as one passing
//! `<testcase>` named by the file's path.
//!
//! The gate ([`gate`]) destroys only when every file has at least one test that ran (skipped
//! tests did not run) and no failing or erroring test.

mod gate;
mod read;
pub mod report;
pub use report::PhaseResult;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use gate::{gate, GateDecision};
pub use read::{parse_results, read_results};

/// The identity of one test: its class (or suite) and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TestId {
    pub classname: String,
    pub name: String,
}

impl TestId {
    pub fn new(classname: impl Into<String>, name: impl Into<String>) -> TestId {
        TestId {
            classname: classname.into(),
            name: name.into(),
        }
    }
}

/// `classname::name`; just one of them when the other is empty or they are equal.
impl fmt::Display for TestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, n) = (self.classname.trim(), self.name.trim());
        if c.is_empty() || c == n {
            f.write_str(n)
        } else if n.is_empty() {
            f.write_str(c)
        } else {
            write!(f, "{c}::{n}")
        }
    }
}

/// What one results file says.
///
/// Every `<testcase>` element lands in exactly one of `passed`, `skipped`, `failed` or
/// `errored`; `failed` and `errored` may also hold suite-level entries (a suite-level
/// `<error>`, or counts claiming failures that no test case shows). `flaky` names tests that
/// are counted in `passed` but failed before passing on a retry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestResults {
    pub file: PathBuf,
    pub passed: usize,
    pub skipped: usize,
    pub failed: Vec<TestId>,
    pub errored: Vec<TestId>,
    pub flaky: Vec<TestId>,
}

impl TestResults {
    /// All tests: passed, skipped, failed and errored.
    pub fn total(&self) -> usize {
        self.ran() + self.skipped
    }

    /// Tests that ran: all but the skipped ones.
    pub fn ran(&self) -> usize {
        self.passed + self.failed.len() + self.errored.len()
    }

    /// True when at least one test ran and none failed or errored.
    pub fn all_passed(&self) -> bool {
        self.ran() > 0 && self.failed.is_empty() && self.errored.is_empty()
    }

    /// One line for stderr, e.g. `results.xml: 42 passed, 1 skipped, 1 failed, 2 errors`.
    ///
    /// `failed` is always shown; errors and flaky tests (by name) only when there are any.
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "{}: {} passed, {} skipped, {} failed",
            self.file.display(),
            self.passed,
            self.skipped,
            self.failed.len()
        );
        match self.errored.len() {
            0 => {}
            1 => line.push_str(", 1 error"),
            n => line.push_str(&format!(", {n} errors")),
        }
        if !self.flaky.is_empty() {
            const SHOWN: usize = 5;
            let names: Vec<String> = self
                .flaky
                .iter()
                .take(SHOWN)
                .map(|t| t.to_string())
                .collect();
            line.push_str(&format!(
                ", {} flaky: {}",
                self.flaky.len(),
                names.join(", ")
            ));
            if self.flaky.len() > SHOWN {
                line.push_str(&format!(" and {} more", self.flaky.len() - SHOWN));
            }
        }
        line
    }
}

/// A results file that cannot be used: nothing may be destroyed.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// Missing, unreadable, a directory, ...
    #[error("{}: cannot read test results: {error}", file.display())]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    /// Empty, not XML, or XML whose root is not `<testsuites>`/`<testsuite>`.
    #[error("{}: not a JUnit XML report: {problem}", file.display())]
    NotJunit { file: PathBuf, problem: String },
    /// Starts like JUnit XML but is broken: truncated, mismatched tags, bad syntax.
    #[error("{}: broken JUnit XML: {problem}", file.display())]
    Malformed { file: PathBuf, problem: String },
}

impl ResultsError {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ResultsError::Read { file, .. }
            | ResultsError::NotJunit { file, .. }
            | ResultsError::Malformed { file, .. } => file,
        }
    }
}
