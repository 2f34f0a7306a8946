//! The destroy decision over the results of every `-t` file.

use super::TestResults;

/// How many failing tests a [`GateDecision::Keep`] reason lists before "and N more".
pub(crate) const LISTED: usize = 20;

/// Whether `destroy-node` may destroy the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// Every file had at least one test that ran, and none failed or errored.
    /// One [`TestResults::summary_line`] per file, in the order given.
    Destroy { summaries: Vec<String> },
    /// Keep the node. `reason` is several lines: a first line saying why
    /// (`not all tests passed: 2 failed; no test ran in b.xml`), then the failing tests,
    /// one per line and indented, the first `LISTED` then `and N more`.
    Keep { reason: String },
}

/// Destroy only when every file has at least one test that ran (skipped tests did not run)
/// and no test in any file failed or errored; no files at all means keep.
pub fn gate(results: &[TestResults]) -> GateDecision {
    if results.is_empty() {
        return GateDecision::Keep {
            reason: "not all tests passed: no test results were given".into(),
        };
    }
    if results.iter().all(TestResults::all_passed) {
        return GateDecision::Destroy {
            summaries: results.iter().map(TestResults::summary_line).collect(),
        };
    }

    let failed: usize = results.iter().map(|r| r.failed.len()).sum();
    let errored: usize = results.iter().map(|r| r.errored.len()).sum();
    let mut causes = Vec::new();
    if failed > 0 {
        causes.push(format!("{failed} failed"));
    }
    match errored {
        0 => {}
        1 => causes.push("1 error".into()),
        n => causes.push(format!("{n} errors")),
    }
    for r in results.iter().filter(|r| r.ran() == 0) {
        causes.push(match r.skipped {
            0 => format!("no test ran in {}", r.file.display()),
            n => format!("no test ran in {} ({n} skipped)", r.file.display()),
        });
    }

    let several = results.len() > 1;
    let mut entries = results.iter().flat_map(|r| {
        let failed = r.failed.iter().map(|t| ("failed", t));
        let errored = r.errored.iter().map(|t| ("error", t));
        failed.chain(errored).map(move |(kind, id)| {
            if several {
                format!("  {kind}: {id} ({})", r.file.display())
            } else {
                format!("  {kind}: {id}")
            }
        })
    });
    let mut lines = vec![format!("not all tests passed: {}", causes.join("; "))];
    lines.extend(entries.by_ref().take(LISTED));
    let more = entries.count();
    if more > 0 {
        lines.push(format!("  and {more} more"));
    }
    GateDecision::Keep {
        reason: lines.join("\n"),
    }
}
