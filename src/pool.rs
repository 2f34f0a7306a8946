//! Many nodes from one command: `deploy-node --count N` deploys in parallel with a bound
//! (`--parallel`), sharing one provider (so one rate-limit budget per account), and
//! `destroy-node NAME... / --prefix` destroys in parallel. Failure of some nodes never
//! abandons the others; every node is reported.

use crate::deploy::{self, Options, Outcome};
use crate::error::{Error, Result};
use crate::plan::{Plan, Request};
use crate::provider::Provider;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The per-node requests for `--count N`: `-n NAME` must hold `{i}` (1-based) when N > 1;
/// without `-n` every node gets the prefix plus its own random suffix.
pub(crate) fn requests(base: &Request, count: usize) -> Result<Vec<Request>> {
    if count == 0 {
        return Err(Error::usage("--count must be at least 1"));
    }
    if let Some(name) = &base.name {
        if count > 1 && !name.contains("{i}") {
            return Err(Error::usage(format!(
                "-n {name} with --count {count}: put {{i}} in the name for the node's index (e.g. web-{{i}})"
            )));
        }
    }
    Ok((1..=count)
        .map(|i| {
            let mut r = base.clone();
            r.name = base.name.as_ref().map(|n| n.replace("{i}", &i.to_string()));
            r.index = i;
            r
        })
        .collect())
}

/// Rejects two plans with one name (random suffixes may collide; `{i}` may be missing).
pub(crate) fn check_unique(plans: &[Plan]) -> Result<()> {
    let mut names: Vec<&str> = plans.iter().map(|p| p.node_name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::usage(format!("two nodes would be named '{}'", w[0])));
    }
    Ok(())
}

/// Runs `work` on every item with at most `parallel` at once; results keep the input order.
pub(crate) fn run_bounded<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = work(item);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// Raises the soft open-file limit (often 1,024) towards the hard one when `parallel` nodes
/// need more: each node in flight holds an SSH socket and, while it talks to the cloud, an HTTP
/// connection; 64 are kept for everything else. Best effort: without it the OS error names
/// the limit.
pub(crate) fn raise_fd_limit(parallel: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = (parallel as u64).saturating_mul(2).saturating_add(64);
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
        }
    }
}

/// Deploys every plan, at most `parallel` at once.
pub(crate) fn deploy_all(
    plans: &[Plan],
    provider: Arc<dyn Provider>,
    opts: &Options,
    parallel: usize,
) -> Vec<Outcome> {
    raise_fd_limit(parallel.min(plans.len()));
    // the workers deploy; this thread watches for a signal and cleans up (deploy::Interrupts)
    std::thread::scope(|s| {
        let work = s.spawn(|| {
            run_bounded(plans, parallel, |plan| {
                deploy::deploy(plan, provider.clone(), opts)
            })
        });
        deploy::interrupts().supervise(&|| work.is_finished());
        work.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Refuses, before anything is created, names already taken on the account by any node
/// (ours or not), with ONE list call for all of `plans`: exit 2 naming each taken name's node
/// id and age. Providers whose names pick existing machines (static) skip it.
pub(crate) fn check_names_free(plans: &[Plan], provider: &dyn Provider) -> Result<()> {
    if !provider.names_must_be_free() {
        return Ok(());
    }
    let nodes = provider.list(true)?;
    let taken: Vec<String> = plans
        .iter()
        .filter_map(|p| nodes.iter().find(|n| n.name == p.node_name))
        .map(|n| format!("'{}' (id {}, {})", n.name, n.id, age(n.created.as_deref())))
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    let again = match plans
        .iter()
        .find(|p| nodes.iter().any(|n| n.name == p.node_name))
    {
        Some(p) if taken.len() == 1 => format!(
            "re-provision it with `deploy-node -p {} --reprovision -n {}`",
            provider.name(),
            p.node_name
        ),
        _ => "re-provision them one by one with --reprovision".to_string(),
    };
    Err(Error::usage(format!(
        "{} already taken on {} by {}; nothing created (choose another -n, {again}, or destroy it first)",
        if taken.len() == 1 { "name" } else { "names" },
        provider.name(),
        taken.join(", ")
    )))
}
/// "created 5m ago" from an RFC 3339 time; "age unknown" without one.
fn age(created: Option<&str>) -> String {
    let parsed = created.and_then(|c| {
        time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
    });
    let Some(t) = parsed else {
        return "age unknown".into();
    };
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    let ago = match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    format!("created {ago} ago")
}

/// The summary table for stderr after a multi-node run: each node's address (as wide as the
/// longest, IPv6 included), seconds, slowest phase with its seconds, and result.
pub(crate) fn summary(outcomes: &[Outcome]) -> String {
    let ip = |o: &Outcome| {
        o.node
            .as_ref()
            .and_then(|n| n.public_ip.clone())
            .unwrap_or_else(|| "-".into())
    };
    let slowest = |o: &Outcome| {
        o.phases
            .slowest()
            .map(|p| format!("{} {:.1}s", p.label(), p.duration.as_secs_f64()))
            .unwrap_or_else(|| "-".into())
    };
    let width = |head: &str, f: &dyn Fn(&Outcome) -> String| {
        outcomes
            .iter()
            .map(|o| f(o).chars().count())
            .max()
            .unwrap_or(0)
            .max(head.len())
    };
    let name_w = width("NODE", &|o| o.name.clone());
    let ip_w = width("ADDRESS", &ip);
    let slow_w = width("SLOWEST PHASE", &slowest);
    let mut s = format!(
        "{:<name_w$}  {:<ip_w$}  {:>8}  {:<slow_w$}  RESULT\n",
        "NODE", "ADDRESS", "SECONDS", "SLOWEST PHASE"
    );
    for o in outcomes {
        let result = match (&o.error, o.kept) {
            (None, _) => "ok".to_string(),
            (Some(e), true) => format!("failed, kept: {e}"),
            (Some(e), false) => format!("failed: {e}"),
        };
        s.push_str(&format!(
            "{:<name_w$}  {:<ip_w$}  {:>8.1}  {:<slow_w$}  {result}\n",
            o.name,
            ip(o),
            o.duration.as_secs_f64(),
            slowest(o),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_with_index() {
        let base = Request {
            name: Some("web-{i}".into()),
            ..Request::default()
        };
        let names: Vec<String> = requests(&base, 3)
            .unwrap()
            .into_iter()
            .map(|r| r.name.unwrap())
            .collect();
        assert_eq!(names, ["web-1", "web-2", "web-3"]);
        let base = Request {
            name: Some("web".into()),
            ..Request::default()
        };
        assert!(requests(&base, 2).unwrap_err().to_string().contains("{i}"));
        assert_eq!(requests(&base, 1).unwrap()[0].name.as_deref(), Some("web"));
        assert!(requests(&Request::default(), 2)
            .unwrap()
            .iter()
            .all(|r| r.name.is_none()));
    }

    #[test]
    fn the_summary_aligns_ipv6_and_names_the_slowest_phase() {
        let outcome = |name: &str, ip: &str, phases: &[(&'static str, u64)]| {
            let mut node = crate::provider::test_node("1", name);
            node.public_ip = Some(ip.into());
            let mut p = crate::phases::Phases::default();
            for (k, ms) in phases {
                p.push(k, Duration::from_millis(*ms));
            }
            Outcome {
                name: name.into(),
                node: Some(node),
                report: None,
                error: None,
                kept: false,
                duration: Duration::from_secs(9),
                phases: p,
            }
        };
        let s = summary(&[
            outcome(
                "a",
                "2001:db8:aaaa:bbbb::1",
                &[("create", 500), ("running", 4200)],
            ),
            outcome("bb", "192.0.2.1", &[("tcp", 800), ("auth", 100)]),
        ]);
        let lines: Vec<&str> = s.lines().collect();
        assert!(
            lines[1].contains("2001:db8:aaaa:bbbb::1") && lines[1].contains("running 4.2s"),
            "{s}"
        );
        assert!(lines[2].contains("tcp 0.8s"), "{s}");
        // every column starts where its header does
        for col in ["SECONDS", "SLOWEST PHASE", "RESULT"] {
            let at = lines[0].find(col).unwrap();
            let end = at + col.len();
            for l in &lines[1..] {
                match col {
                    "SECONDS" => assert_eq!(&l[end - 3..end], "9.0", "{s}"),
                    _ => assert_ne!(&l[at..at + 1], " ", "{col}: {s}"),
                }
            }
        }
    }

    #[test]
    fn ages_read_rfc3339() {
        assert_eq!(age(None), "age unknown");
        assert_eq!(age(Some("yesterday")), "age unknown");
        let t = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
        let s = t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        assert_eq!(age(Some(&s)), "created 5m ago");
        assert!(age(Some("2020-01-01T00:00:00Z")).ends_with("d ago"));
    }

    #[test]
    fn bounded_keeps_order_and_bound() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<usize> = (0..20).collect();
        let out = run_bounded(&items, 3, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(peak.load(Ordering::SeqCst) >= 2, "ran in parallel");
    }

    #[test]
    fn a_big_pool_raises_the_soft_open_file_limit_up_to_the_hard_one() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        // nextest runs each test in its own process: the limit changed here is this test's
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, 256.min(hard), hard).unwrap();
        raise_fd_limit(10);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap().0, 256.min(hard));
        raise_fd_limit(1000);
        assert_eq!(
            getrlimit(Resource::RLIMIT_NOFILE).unwrap().0,
            2064.min(hard)
        );
    }
}
