//! The destroy gate against JUnit XML written by real tools.
//!
//! tests/fixtures/junit/expected.tsv lists every file of the corpus with the decision the gate
//! must reach (and, optionally, the counts). collected.tsv does the same for reports collected
//! from public repositories, which are read in place from the shared conformance folder and
//! skipped when it is absent: the collection states no licences, and the conformance folder's
//! rule is "test against them, never copy them into the project".

use std::path::{Path, PathBuf};

use provision::junit::{gate, read_results, GateDecision, ResultsError, TestResults};

struct Row {
    line: usize,
    path: String,
    expected: String,
    /// passed, skipped, failed, errors, flaky
    counts: Vec<usize>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/junit")
}

fn rows(tsv: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(tsv).unwrap_or_else(|e| panic!("{}: {e}", tsv.display()));
    let rows: Vec<Row> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(
                cols.len() >= 2,
                "{}:{}: want path<TAB>expected",
                tsv.display(),
                i + 1
            );
            Row {
                line: i + 1,
                path: cols[0].to_string(),
                expected: cols[1].to_string(),
                counts: cols[2..]
                    .iter()
                    .filter(|c| !c.is_empty())
                    .map(|c| {
                        c.parse()
                            .unwrap_or_else(|_| panic!("line {}: count {c:?}", i + 1))
                    })
                    .collect(),
            }
        })
        .collect();
    assert!(!rows.is_empty(), "{} lists no files", tsv.display());
    rows
}

/// Reads every listed file and returns the problems found; the readable results are kept.
fn check(dir: &Path, rows: &[Row], readable: &mut Vec<TestResults>) -> Vec<String> {
    let mut problems = Vec::new();
    for row in rows {
        let file = dir.join(&row.path);
        let at = format!("line {} {}", row.line, row.path);
        match (read_results(&file), row.expected.as_str()) {
            (Err(e), "unreadable") => {
                let shown = e.to_string();
                if !shown.starts_with(&format!("{}: ", file.display())) || shown.contains('\n') {
                    problems.push(format!(
                        "{at}: error must name the file on one line: {shown}"
                    ));
                }
                if matches!(e, ResultsError::Read { .. }) {
                    problems.push(format!("{at}: the file could not even be read: {shown}"));
                }
            }
            (Err(e), want) => problems.push(format!("{at}: want {want}, got unreadable: {e}")),
            (Ok(r), want) => {
                let got = match gate(std::slice::from_ref(&r)) {
                    GateDecision::Destroy { summaries } => {
                        assert_eq!(summaries, [r.summary_line()]);
                        "destroy"
                    }
                    GateDecision::Keep { reason } => {
                        for id in r.failed.iter().chain(&r.errored).take(20) {
                            if !reason.contains(&id.to_string()) {
                                problems.push(format!("{at}: {id} not listed in:\n{reason}"));
                            }
                        }
                        "keep"
                    }
                };
                if got != want {
                    problems.push(format!(
                        "{at}: want {want}, got {got}: {}",
                        r.summary_line()
                    ));
                }
                let counts = [
                    r.passed,
                    r.skipped,
                    r.failed.len(),
                    r.errored.len(),
                    r.flaky.len(),
                ];
                if counts[..row.counts.len()] != row.counts[..] {
                    problems.push(format!(
                        "{at}: want counts {:?} (passed skipped failed errors flaky), got {:?}: {r:?}",
                        row.counts, counts
                    ));
                }
                readable.push(r);
            }
        }
    }
    problems
}

fn xml_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(xml_files(&path));
        } else if path.extension().is_some_and(|x| x == "xml") {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn every_corpus_file_gets_its_expected_decision() {
    let dir = fixtures();
    let rows = rows(&dir.join("expected.tsv"));
    let mut readable = Vec::new();
    let problems = check(&dir, &rows, &mut readable);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // every decision is represented, and no file is left out of expected.tsv
    for decision in ["destroy", "keep", "unreadable"] {
        assert!(
            rows.iter().any(|r| r.expected == decision),
            "no {decision} case"
        );
    }
    let listed: Vec<String> = rows
        .iter()
        .map(|r| dir.join(&r.path).display().to_string())
        .collect();
    let unlisted: Vec<String> = xml_files(&dir)
        .into_iter()
        .filter(|f| !listed.contains(f))
        .collect();
    assert!(unlisted.is_empty(), "not in expected.tsv: {unlisted:?}");
}

#[test]
fn all_passing_files_together_destroy_and_one_failing_file_keeps() {
    let dir = fixtures();
    let rows = rows(&dir.join("expected.tsv"));
    let read = |want: &str| -> Vec<TestResults> {
        rows.iter()
            .filter(|r| r.expected == want)
            .map(|r| read_results(&dir.join(&r.path)).unwrap())
            .collect()
    };
    let mut passing = read("destroy");
    match gate(&passing) {
        GateDecision::Destroy { summaries } => assert_eq!(summaries.len(), passing.len()),
        d => panic!("{d:?}"),
    }
    let failing = read("keep");
    passing.push(failing[0].clone());
    match gate(&passing) {
        GateDecision::Keep { reason } => {
            assert!(reason.starts_with("not all tests passed: "), "{reason}")
        }
        d => panic!("{d:?}"),
    }
    // every failing test of every keep file, in one gate: 20 listed, then a count
    let all: usize = failing
        .iter()
        .map(|r| r.failed.len() + r.errored.len())
        .sum();
    assert!(
        all > 20,
        "the corpus should have more than 20 failing tests, has {all}"
    );
    match gate(&failing) {
        GateDecision::Keep { reason } => {
            assert!(
                reason.ends_with(&format!("\n  and {} more", all - 20)),
                "{reason}"
            );
            assert_eq!(reason.lines().count(), 1 + 20 + 1, "{reason}");
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn collected_reports_get_their_expected_decision() {
    let dir = std::env::var_os("PROVISION_JUNIT_COLLECTED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/junit-collected")
        });
    if !dir.is_dir() {
        eprintln!(
            "skipped: {} is absent (set PROVISION_JUNIT_COLLECTED)",
            dir.display()
        );
        return;
    }
    let rows = rows(&fixtures().join("collected.tsv"));
    let problems = check(&dir, &rows, &mut Vec::new());
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The collection's own MANIFEST says whether each tool run passed (pass/fail, column 3):
    // the gate must agree, and every file it lists must be in collected.tsv.
    if let Ok(manifest) = std::fs::read_to_string(dir.join("MANIFEST.tsv")) {
        for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
            let cols: Vec<&str> = line.split('\t').collect();
            let row = rows.iter().find(|r| r.path == cols[0]);
            let row = row.unwrap_or_else(|| panic!("{} is not in collected.tsv", cols[0]));
            let want = match cols[2] {
                "pass" => "destroy",
                "fail" => "keep",
                other => panic!("MANIFEST.tsv: {}: unknown outcome {other}", cols[0]),
            };
            assert_eq!(row.expected, want, "{}: MANIFEST says {}", cols[0], cols[2]);
        }
    }
}
