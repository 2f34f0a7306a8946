//! The tolerant streaming reader: JUnit XML of any dialect to [`TestResults`].

use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{ResultsError, TestId, TestResults};

/// Reads and parses one results file.
pub fn read_results(path: &Path) -> Result<TestResults, ResultsError> {
    let bytes = std::fs::read(path).map_err(|error| ResultsError::Read {
        file: path.to_path_buf(),
        error,
    })?;
    parse_results(path, &bytes)
}

/// Parses the bytes of a results file; `name` is the file named in the results and errors.
pub fn parse_results(name: &Path, bytes: &[u8]) -> Result<TestResults, ResultsError> {
    let not_junit = |problem: String| ResultsError::NotJunit {
        file: name.to_path_buf(),
        problem,
    };
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match body.iter().position(|b| !b.is_ascii_whitespace()) {
        None if bytes.is_empty() => return Err(not_junit("the file is empty".into())),
        None => return Err(not_junit("the file holds only white space".into())),
        Some(i) if body[i] != b'<' => {
            return Err(not_junit(format!(
                "not XML, it starts with {}",
                preview(&body[i..])
            )))
        }
        Some(_) => {}
    }

    let mut reader = Reader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut parser = Parser::new(name);
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let at = line_of(body, reader.error_position());
                let problem = one_line(&format!("{e} (line {at})"));
                return Err(match parser.root {
                    Root::NotSeen => not_junit(format!("not XML: {problem}")),
                    _ => parser.malformed(problem),
                });
            }
        };
        match event {
            Event::Start(e) => parser.open(&e, false)?,
            Event::Empty(e) => parser.open(&e, true)?,
            Event::End(_) => parser.close(),
            Event::Text(t) if !t.iter().all(u8::is_ascii_whitespace) => parser.text()?,
            // quick-xml 0.38 reports `&amp;` and friends apart from the text around them
            Event::CData(_) | Event::GeneralRef(_) => parser.text()?,
            Event::Eof => break,
            // declarations, processing instructions, comments, DOCTYPE, white space
            _ => {}
        }
    }
    parser.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    NotSeen,
    Open,
    Closed,
}

/// What an open element is, as far as the gate cares.
#[derive(Debug)]
enum Open {
    /// `<testsuite>` or `<testsuites>`, the last of `Parser::suites`.
    Suite,
    Case,
    Other,
}

/// An open `<testsuite>`/`<testsuites>`.
#[derive(Debug)]
struct Suite {
    name: String,
    claimed_failures: u64,
    claimed_errors: u64,
    /// `failed + errored + flaky` recorded before the suite opened.
    bad_before: usize,
}

/// An open `<testcase>`.
#[derive(Debug, Default)]
struct Case {
    id: TestId,
    /// Index of the testcase element in `Parser::stack`.
    depth: usize,
    /// Directly under the root `<testsuites>` (where `node --test` puts whole files).
    top_level: bool,
    failed: bool,
    errored: bool,
    skipped: bool,
    skip_message: String,
    flaky: bool,
    status: String,
    result: String,
}

struct Parser<'a> {
    file: &'a Path,
    results: TestResults,
    root: Root,
    root_name: String,
    stack: Vec<(Open, String)>,
    suites: Vec<Suite>,
    case: Option<Case>,
}

impl<'a> Parser<'a> {
    fn new(file: &'a Path) -> Self {
        Parser {
            file,
            results: TestResults {
                file: file.to_path_buf(),
                ..TestResults::default()
            },
            root: Root::NotSeen,
            root_name: String::new(),
            stack: Vec::new(),
            suites: Vec::new(),
            case: None,
        }
    }

    fn malformed(&self, problem: String) -> ResultsError {
        ResultsError::Malformed {
            file: self.file.to_path_buf(),
            problem,
        }
    }

    fn not_junit(&self, problem: String) -> ResultsError {
        ResultsError::NotJunit {
            file: self.file.to_path_buf(),
            problem,
        }
    }

    fn bad_so_far(&self) -> usize {
        self.results.failed.len() + self.results.errored.len() + self.results.flaky.len()
    }

    fn open(&mut self, e: &BytesStart, empty: bool) -> Result<(), ResultsError> {
        let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        match self.root {
            Root::NotSeen if name == "testsuites" || name == "testsuite" => {
                self.root = Root::Open;
                self.root_name = name.clone();
            }
            Root::NotSeen => {
                return Err(self.not_junit(format!(
                    "the root element is <{name}>, not <testsuites> or <testsuite>"
                )))
            }
            Root::Closed => {
                return Err(self.malformed(format!(
                    "element <{name}> after the end of the root element"
                )))
            }
            Root::Open => {}
        }
        let depth = self.stack.len();
        let kind = if let Some(case) = &mut self.case {
            if case.depth + 1 == depth {
                match name.as_str() {
                    "failure" | "rerunFailure" => case.failed = true,
                    "error" | "rerunError" => case.errored = true,
                    "flakyFailure" | "flakyError" => case.flaky = true,
                    "skipped" => {
                        case.skipped = true;
                        case.skip_message = attr(e, "message");
                    }
                    _ => {}
                }
            }
            Open::Other
        } else {
            match name.as_str() {
                "testsuite" | "testsuites" => {
                    self.suites.push(Suite {
                        name: attr(e, "name"),
                        claimed_failures: count(e, "failures"),
                        claimed_errors: count(e, "errors"),
                        bad_before: self.bad_so_far(),
                    });
                    Open::Suite
                }
                "testcase" => {
                    let suite = self.suites.last().map(|s| s.name.as_str()).unwrap_or("");
                    let mut classname = attr(e, "classname");
                    if classname.is_empty() {
                        classname = attr(e, "class"); // PHPUnit
                    }
                    if classname.is_empty() {
                        classname = suite.to_string();
                    }
                    self.case = Some(Case {
                        id: TestId::new(classname, attr(e, "name")),
                        depth,
                        top_level: depth == 1 && self.root_name == "testsuites",
                        status: attr(e, "status").to_ascii_lowercase(),
                        result: attr(e, "result").to_ascii_lowercase(),
                        ..Case::default()
                    });
                    Open::Case
                }
                "failure" | "error" if matches!(self.stack.last(), Some((Open::Suite, _))) => {
                    self.suite_level(&name, &attr(e, "message"));
                    Open::Other
                }
                _ => Open::Other,
            }
        };
        if empty {
            self.end(kind);
        } else {
            self.stack.push((kind, name));
        }
        Ok(())
    }

    fn close(&mut self) {
        // quick-xml checks that end tags match, so there is always an open element here.
        if let Some((kind, _)) = self.stack.pop() {
            self.end(kind);
        }
    }

    fn end(&mut self, kind: Open) {
        match kind {
            Open::Case => {
                if let Some(case) = self.case.take() {
                    self.end_case(case);
                }
            }
            Open::Suite => {
                if let Some(suite) = self.suites.pop() {
                    self.end_suite(suite);
                }
            }
            Open::Other => {}
        }
        if self.stack.is_empty() {
            self.root = Root::Closed;
        }
    }

    fn end_case(&mut self, case: Case) {
        let r = &mut self.results;
        let status = case.status.as_str();
        if case.failed || matches!(status, "fail" | "failed" | "failure" | "timeout") {
            r.failed.push(case.id);
        } else if case.errored || matches!(status, "error" | "errored" | "crashed" | "aborted") {
            r.errored.push(case.id);
        } else if status == "notrun" {
            // ctest: "notrun" is a skip only for SKIP_RETURN_CODE / SKIP_REGULAR_EXPRESSION;
            // otherwise (executable missing, fixture failed, ...) ctest counts it as failed.
            // absl/googletest: notrun + result="suppressed" is a skipped or disabled test.
            let ctest_not_run = case.skipped
                && !case.skip_message.starts_with("SKIP_")
                && case.result != "suppressed";
            if ctest_not_run {
                r.errored.push(case.id);
            } else {
                r.skipped += 1;
            }
        } else if case.skipped
            || matches!(status, "disabled" | "skipped" | "skip")
            || matches!(case.result.as_str(), "skipped" | "suppressed")
        {
            r.skipped += 1;
        } else if case.top_level && case.id.classname == "test" && is_script_path(&case.id.name) {
            // `node --test`: a test file that defines no tests is reported as one passing
            // test named by the file's path. Nothing was tested; it is not counted.
        } else {
            r.passed += 1;
            if case.flaky {
                r.flaky.push(case.id);
            }
        }
    }

    /// Believes a suite's counts only when they claim failures that nothing inside the suite
    /// (no failed, errored or flaky test, no suite-level error) accounts for.
    fn end_suite(&mut self, suite: Suite) {
        if suite.claimed_failures + suite.claimed_errors == 0
            || self.bad_so_far() > suite.bad_before
        {
            return;
        }
        let name = format!(
            "(counts claim {} failures, {} errors, no failing test case)",
            suite.claimed_failures, suite.claimed_errors
        );
        let id = TestId::new(suite.name, name);
        if suite.claimed_failures > 0 {
            self.results.failed.push(id);
        } else {
            self.results.errored.push(id);
        }
    }

    /// `<failure>`/`<error>` directly under a suite, e.g. a collection or setup error.
    fn suite_level(&mut self, kind: &str, message: &str) {
        let suite = self
            .suites
            .last()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let message: String = message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(100)
            .collect();
        let name = if message.trim().is_empty() {
            format!("(suite-level {kind})")
        } else {
            format!("(suite-level {kind}: {})", message.trim())
        };
        let id = TestId::new(suite, name);
        if kind == "failure" {
            self.results.failed.push(id);
        } else {
            self.results.errored.push(id);
        }
    }

    /// Non-blank text or CDATA outside any element means this is not (only) XML.
    fn text(&self) -> Result<(), ResultsError> {
        match self.root {
            Root::NotSeen => Err(self.not_junit("text before the root element".into())),
            Root::Closed => Err(self.malformed("text after the end of the root element".into())),
            Root::Open => Ok(()),
        }
    }

    fn finish(self) -> Result<TestResults, ResultsError> {
        match self.root {
            Root::NotSeen => Err(self.not_junit("no XML element in the file".into())),
            Root::Open => {
                let open: Vec<String> = self.stack.iter().map(|(_, n)| format!("<{n}>")).collect();
                Err(self.malformed(format!(
                    "truncated: the file ends inside {}",
                    open.join(" ")
                )))
            }
            Root::Closed => Ok(self.results),
        }
    }
}

/// An attribute's unescaped value ("" when absent); the raw text when it cannot be unescaped.
fn attr(e: &BytesStart, key: &str) -> String {
    for a in e.attributes().with_checks(false).flatten() {
        if a.key.local_name().as_ref() == key.as_bytes() {
            return match a.unescape_value() {
                Ok(v) => v.into_owned(),
                Err(_) => String::from_utf8_lossy(&a.value).into_owned(),
            };
        }
    }
    String::new()
}

/// A count attribute; absent or unparsable counts are 0, "2.0" is 2.
fn count(e: &BytesStart, key: &str) -> u64 {
    let v = attr(e, key);
    let v = v.trim();
    v.parse::<u64>()
        .ok()
        .or_else(|| {
            v.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f > 0.0)
                .map(|f| f.ceil() as u64)
        })
        .unwrap_or(0)
}

/// A path to a JavaScript/TypeScript file, as `node --test` names file-level tests.
fn is_script_path(name: &str) -> bool {
    const EXTENSIONS: [&str; 8] = [".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx"];
    (name.contains('/') || name.contains('\\')) && EXTENSIONS.iter().any(|x| name.ends_with(x))
}

fn line_of(body: &[u8], pos: u64) -> usize {
    let end = usize::try_from(pos).unwrap_or(usize::MAX).min(body.len());
    body[..end].iter().filter(|b| **b == b'\n').count() + 1
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first few characters of the file, for "it starts with ..." messages.
fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]);
    let first: String = one_line(&text).chars().take(20).collect();
    format!("{first:?}")
}
