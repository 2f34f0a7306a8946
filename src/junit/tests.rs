//! The tricky rules, each on a minimal document. Real tool output: tests/junit_corpus.rs.

use std::path::Path;

use super::*;

fn parse(xml: &str) -> TestResults {
    parse_results(Path::new("r.xml"), xml.as_bytes()).expect("readable")
}

fn parse_err(bytes: &[u8]) -> ResultsError {
    parse_results(Path::new("bad.xml"), bytes).expect_err("unreadable")
}

fn names(ids: &[TestId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

fn keep_reason(results: &[TestResults]) -> String {
    match gate(results) {
        GateDecision::Keep { reason } => reason,
        d => panic!("expected Keep, got {d:?}"),
    }
}

#[test]
fn failure_child_fails_even_when_counts_say_zero() {
    let r = parse(
        r#"<testsuite name="s" tests="2" failures="0" errors="0">
             <testcase classname="c" name="ok"/>
             <testcase classname="c" name="bad"><failure message="boom"/></testcase>
           </testsuite>"#,
    );
    assert_eq!(
        (r.passed, names(&r.failed)),
        (1, vec!["c::bad".to_string()])
    );
    assert!(r.errored.is_empty());
    assert!(keep_reason(&[r]).contains("failed: c::bad"));
}

#[test]
fn error_child_errors_even_without_counts() {
    let r = parse(
        r#"<testsuites><testsuite name="s"><testcase classname="c" name="e">
             <error message="x">trace</error></testcase></testsuite></testsuites>"#,
    );
    assert_eq!(names(&r.errored), ["c::e"]);
    assert_eq!(r.passed, 0);
    assert!(matches!(gate(&[r]), GateDecision::Keep { .. }));
}

#[test]
fn counts_claiming_failures_with_no_test_cases_fail() {
    let r = parse(r#"<testsuite name="s" tests="5" failures="3" errors="2"></testsuite>"#);
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(r.failed[0].to_string().contains("3 failures, 2 errors"));
    let r = parse(r#"<testsuites><testsuite name="s" errors="1"/></testsuites>"#);
    assert_eq!(r.errored.len(), 1, "{r:?}");
    assert!(r.failed.is_empty());
}

#[test]
fn counts_claiming_failures_that_no_test_case_shows_fail() {
    // passing test cases cannot outvote a count of failures nothing else explains
    let r = parse(
        r#"<testsuite name="s" tests="2" failures="1"><testcase name="a"/><testcase name="b"/>
           </testsuite>"#,
    );
    assert_eq!(r.passed, 2);
    assert_eq!(
        names(&r.failed),
        ["s::(counts claim 1 failures, 0 errors, no failing test case)"]
    );
    assert!(!r.all_passed());
}

#[test]
fn counts_explained_by_children_add_nothing() {
    // outer and inner suites both count the one failure: it is listed once
    let r = parse(
        r#"<testsuites tests="2" failures="1"><testsuite name="outer" failures="1">
             <testsuite name="inner" failures="1">
               <testcase classname="k" name="bad"><failure/></testcase>
               <testcase classname="k" name="ok"/>
             </testsuite></testsuite></testsuites>"#,
    );
    assert_eq!(names(&r.failed), ["k::bad"]);
    assert_eq!(r.passed, 1);
}

#[test]
fn flaky_failure_then_pass_is_a_pass_reported_by_name() {
    // Surefire's shape: the suite still counts the flaky attempts as failures
    let r = parse(
        r#"<testsuite name="io.FlakyTest" tests="3" failures="2" errors="0">
             <testcase name="testApp" classname="io.FlakyTest">
               <flakyFailure message="1st"><stackTrace>t</stackTrace></flakyFailure>
               <flakyError message="2nd"/>
             </testcase>
             <testcase name="other" classname="io.FlakyTest"/>
           </testsuite>"#,
    );
    assert_eq!(
        (r.passed, r.failed.len(), r.errored.len()),
        (2, 0, 0),
        "{r:?}"
    );
    assert_eq!(names(&r.flaky), ["io.FlakyTest::testApp"]);
    assert_eq!(
        r.summary_line(),
        "r.xml: 2 passed, 0 skipped, 0 failed, 1 flaky: io.FlakyTest::testApp"
    );
    match gate(&[r]) {
        GateDecision::Destroy { summaries } => assert!(summaries[0].contains("flaky")),
        d => panic!("{d:?}"),
    }
}

#[test]
fn rerun_failure_means_every_run_failed() {
    let r = parse(
        r#"<testsuite name="s" tests="1" failures="0">
             <testcase classname="c" name="always"><rerunFailure message="x"/></testcase>
             <testcase classname="c" name="also"><failure/><rerunFailure/><rerunFailure/></testcase>
             <testcase classname="c" name="err"><error/><rerunError/></testcase>
             <testcase classname="c" name="err2"><rerunError/></testcase>
           </testsuite>"#,
    );
    assert_eq!(names(&r.failed), ["c::always", "c::also"]);
    assert_eq!(names(&r.errored), ["c::err", "c::err2"]);
    assert!(r.flaky.is_empty());
}

#[test]
fn failure_wins_over_flaky_and_skipped() {
    let r = parse(
        r#"<testsuite><testcase name="a"><flakyFailure/><failure/></testcase>
           <testcase name="b"><skipped/><error/></testcase></testsuite>"#,
    );
    assert_eq!(
        (r.failed.len(), r.errored.len(), r.skipped, r.passed),
        (1, 1, 0, 0)
    );
    assert!(r.flaky.is_empty());
}

#[test]
fn nested_suites_are_walked() {
    let r = parse(
        r#"<testsuite name="Suite"><testsuite name="App">
             <testcase classname="Suite.App" name="one"/>
             <testsuite name="Deeper"><testcase classname="Suite.App.Deeper" name="two">
               <failure/></testcase>
               <testcase name="three"><skipped/></testcase></testsuite>
           </testsuite></testsuite>"#,
    );
    assert_eq!((r.passed, r.skipped), (1, 1));
    assert_eq!(names(&r.failed), ["Suite.App.Deeper::two"]);
}

#[test]
fn suite_level_error_without_test_case_is_one_error() {
    let r = parse(
        r#"<testsuites><testsuite name="tests/test_x.py" errors="1" tests="0">
             <error message="collection failure&#10;ImportError">trace</error>
           </testsuite></testsuites>"#,
    );
    assert_eq!(
        names(&r.errored),
        ["tests/test_x.py::(suite-level error: collection failure)"]
    );
    assert!(r.failed.is_empty());
    let reason = keep_reason(&[r]);
    assert!(
        reason.starts_with("not all tests passed: 1 error"),
        "{reason}"
    );
}

#[test]
fn zero_tests_or_only_skipped_keeps_the_node() {
    let empty = parse(r#"<testsuites><testsuite name="s" tests="0"/></testsuites>"#);
    assert_eq!(empty.total(), 0);
    assert_eq!(
        keep_reason(&[empty]),
        "not all tests passed: no test ran in r.xml"
    );

    let skipped = parse(r#"<testsuite><testcase name="a"><skipped/></testcase></testsuite>"#);
    assert_eq!((skipped.total(), skipped.ran()), (1, 0));
    assert_eq!(
        keep_reason(&[skipped]),
        "not all tests passed: no test ran in r.xml (1 skipped)"
    );
    assert!(matches!(gate(&[]), GateDecision::Keep { .. }));
}

#[test]
fn system_output_alone_is_nothing() {
    let r = parse(
        r#"<testsuite name="s"><system-out>ok</system-out><system-err>FAILED</system-err>
           </testsuite>"#,
    );
    assert_eq!(r.total(), 0);
    assert!(r.failed.is_empty() && r.errored.is_empty());
}

#[test]
fn each_file_needs_a_test_that_ran() {
    let ok = parse(r#"<testsuite><testcase name="a"/></testsuite>"#);
    let mut empty = parse("<testsuites/>");
    empty.file = "empty.xml".into();
    let reason = keep_reason(&[ok.clone(), empty]);
    assert_eq!(reason, "not all tests passed: no test ran in empty.xml");
    assert_eq!(
        gate(&[ok.clone(), ok]),
        GateDecision::Destroy {
            summaries: vec!["r.xml: 1 passed, 0 skipped, 0 failed".to_string(); 2]
        }
    );
}

#[test]
fn keep_lists_the_first_20_failing_tests_then_a_count() {
    let cases: String = (1..=25)
        .map(|i| format!(r#"<testcase classname="c" name="t{i:02}"><failure/></testcase>"#))
        .collect();
    let r = parse(&format!(
        r#"<testsuite><testcase classname="c" name="e"><error/></testcase>{cases}</testsuite>"#
    ));
    let reason = keep_reason(&[r]);
    let lines: Vec<&str> = reason.lines().collect();
    assert_eq!(lines[0], "not all tests passed: 25 failed; 1 error");
    assert_eq!(lines[1], "  failed: c::t01");
    assert_eq!(lines[20], "  failed: c::t20");
    assert_eq!(lines[21], "  and 6 more");
    assert_eq!(lines.len(), 22);
}

#[test]
fn keep_with_several_files_names_the_file_of_each_test() {
    let a =
        parse(r#"<testsuite><testcase classname="c" name="x"><failure/></testcase></testsuite>"#);
    let mut b = a.clone();
    b.file = "b.xml".into();
    let reason = keep_reason(&[a, b]);
    assert_eq!(
        reason,
        "not all tests passed: 2 failed\n  failed: c::x (r.xml)\n  failed: c::x (b.xml)"
    );
}

#[test]
fn repeated_test_that_failed_then_passed_without_flaky_marks_fails() {
    // fastlane trainer / go-junit-report write repetitions as separate test cases
    let r = parse(
        r#"<testsuite><testcase classname="c" name="t"><failure/></testcase>
           <testcase classname="c" name="t"/></testsuite>"#,
    );
    assert_eq!((r.passed, r.failed.len()), (1, 1));
}

#[test]
fn status_attributes() {
    let r = parse(
        r#"<testsuite name="(empty)" tests="6" failures="0">
             <testcase name="run" classname="run" status="run"/>
             <testcase name="failed" classname="failed" status="fail"/>
             <testcase name="wip" classname="wip" status="disabled"><system-out>Disabled</system-out></testcase>
             <testcase name="gpu" classname="gpu" status="notrun"><skipped message="SKIP_RETURN_CODE=77"/></testcase>
             <testcase name="tool" classname="tool" status="notrun"><skipped message="Unable to find executable"/></testcase>
             <testcase name="absl" classname="A" status="notrun" result="suppressed"/>
           </testsuite>"#,
    );
    assert_eq!(r.passed, 1);
    assert_eq!(names(&r.failed), ["failed"]);
    assert_eq!(names(&r.errored), ["tool"]);
    assert_eq!(r.skipped, 3);
}

#[test]
fn node_test_file_without_tests_is_not_a_passing_test() {
    let r = parse(
        r#"<testsuites>
             <testcase name="/tmp/p/empty.test.js" time="0.1" classname="test"/>
             <testcase name="/tmp/p/broken.test.mjs" classname="test"><failure/></testcase>
             <testcase name="top level test" classname="test"/>
           </testsuites>"#,
    );
    assert_eq!(r.passed, 1, "{r:?}");
    assert_eq!(names(&r.failed), ["test::/tmp/p/broken.test.mjs"]);
}

#[test]
fn attribute_and_syntax_variants() {
    // BOM, single quotes, namespace prefix, PHPUnit's `class`, entities, PI and DOCTYPE
    let r = parse(
        "\u{feff}<?xml version='1.0'?>\n<?xml-stylesheet href='x.xsl'?><!DOCTYPE testsuites>\
         <j:testsuites xmlns:j='urn:x'><j:testsuite name='s'>\
         <j:testcase class='PhpClass' name='a &quot;b&quot;&#xD;'/>\
         <j:testcase name='c'><j:failure/></j:testcase></j:testsuite></j:testsuites>",
    );
    assert_eq!(r.passed, 1);
    assert_eq!(names(&r.failed), ["s::c"]);
    let r = parse(
        r#"<testsuite><testcase classname="PhpClass" name="a &quot;b&quot;"><failure/></testcase></testsuite>"#,
    );
    assert_eq!(names(&r.failed), ["PhpClass::a \"b\""]);
}

#[test]
fn summary_line_counts_errors_separately() {
    let r = parse(
        r#"<testsuite><testcase name="a"/><testcase name="b"/><testcase name="s"><skipped/></testcase>
           <testcase name="f"><failure/></testcase><testcase name="e"><error/></testcase>
           <testcase name="e2"><error/></testcase></testsuite>"#,
    );
    assert_eq!(
        r.summary_line(),
        "r.xml: 2 passed, 1 skipped, 1 failed, 2 errors"
    );
    assert_eq!(r.total(), 6);
}

#[test]
fn test_id_display() {
    assert_eq!(TestId::new("pkg.C", "t").to_string(), "pkg.C::t");
    assert_eq!(TestId::new("", "t").to_string(), "t");
    assert_eq!(TestId::new("same", "same").to_string(), "same");
    assert_eq!(TestId::new("c", "").to_string(), "c");
}

#[test]
fn unreadable_files_name_the_file_and_problem_on_one_line() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "not a JUnit XML report: the file is empty"),
        (b" \n\t", "only white space"),
        (
            br#"{"tests": 3}"#,
            "not XML, it starts with \"{\\\"tests\\\": 3}\"",
        ),
        (
            b"<!DOCTYPE html>\n<html><head><title>502</title></head></html>",
            "root element is <html>",
        ),
        (
            b"<testsuite><testcase name=\"a\"/>",
            "truncated: the file ends inside <testsuite>",
        ),
        (
            b"<testsuites><testsuite><testcase name=\"a",
            "broken JUnit XML",
        ),
        (b"<testsuite><testcase></testsuite>", "broken JUnit XML"),
        (
            b"<testsuite/><testsuite/>",
            "after the end of the root element",
        ),
        (
            b"<testsuite/>trailing",
            "text after the end of the root element",
        ),
        (b"<?xml version=\"1.0\"?>", "no XML element"),
        (
            b"<results><test name=\"a\"/></results>",
            "root element is <results>",
        ),
    ];
    for (bytes, expected) in cases {
        let err = parse_err(bytes);
        let shown = err.to_string();
        assert!(shown.starts_with("bad.xml: "), "{shown}");
        assert!(
            shown.contains(expected),
            "{:?}: {shown}",
            String::from_utf8_lossy(bytes)
        );
        assert!(!shown.contains('\n'), "{shown}");
        assert_eq!(err.file(), Path::new("bad.xml"));
    }
}

#[test]
fn missing_file_is_unreadable() {
    let err = read_results(Path::new("/nonexistent/results.xml")).unwrap_err();
    assert!(matches!(err, ResultsError::Read { .. }));
    let shown = err.to_string();
    assert!(
        shown.starts_with("/nonexistent/results.xml: cannot read test results: "),
        "{shown}"
    );
}
