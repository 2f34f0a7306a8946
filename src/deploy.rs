//! Orchestration of one deployment: journal the intent → create → wait until running → SSH
//! ready → provision (keys, files, scripts) → report. The failure policy lives here: a node
//! that never became reachable, or whose SSH setup failed, is destroyed unless
//! `--keep-on-failure`; a node whose script failed is kept for inspection; Ctrl-C or SIGTERM
//! destroys what was created (unless `--keep-on-failure`) and exits 130. Whenever a node stays,
//! its name is printed.

use crate::config::value_of;
use crate::error::{code, Error, Result};
use crate::journal::{self, Status};
use crate::output;
use crate::plan::Plan;
use crate::provider::{Node, NodeSpec, NodeState, Prepared, Provider, TAG_CREATED, TAG_MANAGED};
use crate::ssh::{self, HostKeyCheck, ProvisionReport, RunOptions, Target};
use crate::state;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How to deploy (the flags that are not part of the plan).
#[derive(Debug, Clone)]
pub struct Options {
    /// One deadline for running + SSH readiness.
    pub ssh_timeout: Duration,
    pub script_timeout: Option<Duration>,
    pub keep_going: bool,
    pub keep_on_failure: bool,
    pub insecure_host_key: bool,
    pub identity: Option<PathBuf>,
    /// Image/size/location as the provider resolved them (`Provider::prepare`).
    pub prepared: Option<crate::provider::Prepared>,
}

/// What happened to one node: enough for stdout, `-d` and `--junit`, even on failure.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub node: Option<Node>,
    pub report: Option<ProvisionReport>,
    pub error: Option<Error>,
    /// The node exists and was left on purpose (script failed, --keep-on-failure).
    pub kept: bool,
    pub duration: Duration,
}

/// The tags every node we create carries.
pub fn tags() -> std::collections::BTreeMap<String, String> {
    let mut t = std::collections::BTreeMap::new();
    t.insert(TAG_MANAGED.to_string(), "1".to_string());
    t.insert(TAG_CREATED.to_string(), crate::now_rfc3339());
    t
}

/// Deploys `plan` with `provider`. Never panics on failure: the error is in the outcome.
pub fn deploy(plan: &Plan, provider: Arc<dyn Provider>, opts: &Options) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        name: plan.node_name.clone(),
        node: None,
        report: None,
        error: None,
        kept: false,
        duration: Duration::ZERO,
    };
    if let Err(e) = run(plan, &provider, opts, &mut out) {
        out.error = Some(e);
    }
    out.duration = started.elapsed();
    let secs = out.duration.as_secs_f64();
    output::info(&match (&out.error, out.kept) {
        (None, _) => format!("{}: ready in {secs:.1}s", out.name),
        (Some(_), true) => format!("{}: failed after {secs:.1}s; kept", out.name),
        (Some(_), false) => format!("{}: failed after {secs:.1}s", out.name),
    });
    out
}

fn run(plan: &Plan, provider: &Arc<dyn Provider>, opts: &Options, out: &mut Outcome) -> Result<()> {
    let name = &plan.node_name;
    let pname = provider.name().to_string();
    let mut entry = journal::begin(&pname, name)?;
    // what Provider::prepare resolved, else the plan's values as given
    let wanted = opts.prepared.clone().unwrap_or_else(|| Prepared {
        image: value_of(&plan.image),
        size: value_of(&plan.size),
        location: value_of(&plan.location),
    });
    let spec = NodeSpec {
        name: name.clone(),
        image: wanted.image,
        size: wanted.size,
        location: wanted.location,
        public_keys: plan.pubkeys.iter().map(|k| k.line.clone()).collect(),
        tags: tags(),
    };
    output::info(&format!("{name}: creating on {pname}"));
    let guard = interrupts().creating();
    let created = provider.create(&spec);
    let node = match created {
        Ok(node) => node,
        Err(e) => {
            // The create may have happened though its answer was unusable: find it by name
            // and destroy it, so a garbled response never leaks a node.
            let kept = outcome_unknown(&e) && !clean_unknown_create(provider.as_ref(), name, opts);
            guard.done(None);
            if !kept {
                journal::clear(&pname, name);
            }
            return Err(e);
        }
    };
    entry.id = Some(node.id.clone());
    entry.status = Status::Created;
    journal::write(&entry)?;
    guard.done(Some((provider.clone(), node.clone(), opts.keep_on_failure)));
    out.node = Some(node.clone());

    let deadline = Instant::now() + opts.ssh_timeout;
    let ready = wait_running(provider.as_ref(), node, deadline).and_then(|node| {
        out.node = Some(node.clone());
        let target = target(plan, &node, opts);
        let p = provider.clone();
        let id = node.id.clone();
        let mut still_there = move || {
            Ok(p.get(&id)?
                .is_some_and(|n| n.state != NodeState::Terminated))
        };
        ssh::connect(&target, deadline, &mut still_there)
    });
    let mut conn = match ready {
        Ok(c) => c,
        Err(e) => return Err(fail_and_clean(provider.as_ref(), out, opts, &mut entry, e)),
    };
    let run_opts = RunOptions {
        keep_going: opts.keep_going,
        script_timeout: opts.script_timeout,
    };
    let mut on_line = |_script: &str, _stderr: bool, line: &str| output::node_line(name, line);
    let report = match conn.provision(plan, &run_opts, &mut on_line) {
        Ok(r) => r,
        Err(e) => return Err(fail_and_clean(provider.as_ref(), out, opts, &mut entry, e)),
    };
    let failed = report.failed_script().map(|s| (s.name.clone(), s.status));
    out.report = Some(report);
    if let Some((script, status)) = failed {
        out.kept = true;
        entry.status = Status::Kept;
        journal::write(&entry)?;
        interrupts().forget(name);
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "none".into());
        return Err(Error::deploy(
            name,
            format!(
                "script {script} failed (exit status {status}); node kept for inspection: destroy it with `destroy-node -p {pname} {name}`"
            ),
        ));
    }
    journal::clear(&pname, name);
    interrupts().forget(name);
    Ok(())
}

/// Errors after which the create may have happened on the provider's side.
fn outcome_unknown(e: &Error) -> bool {
    matches!(e, Error::Malformed { .. } | Error::Unexpected(_))
}

/// After a create whose outcome is unknown: destroys our node named `name` if it exists
/// (unless --keep-on-failure). False when a node stays (kept or not destroyable); its name and
/// id are then on stderr and the journal keeps it for `list-nodes --orphans`.
fn clean_unknown_create(provider: &dyn Provider, name: &str, opts: &Options) -> bool {
    let found = match provider.list(false) {
        Ok(nodes) => nodes.into_iter().find(|n| n.name == name),
        Err(e) => {
            output::warn(&format!(
                "{name}: the create's outcome is unknown and the node list failed ({e}); check with `list-nodes -p {} --orphans`",
                provider.name()
            ));
            return false;
        }
    };
    let Some(node) = found else {
        return true;
    };
    if opts.keep_on_failure {
        output::warn(&format!(
            "{name}: created (id {}) though the answer was unusable; kept (--keep-on-failure)",
            node.id
        ));
        return false;
    }
    output::info(&format!(
        "{name}: created (id {}) though the answer was unusable: destroying it",
        node.id
    ));
    match provider.destroy(&node.id) {
        Ok(_) => true,
        Err(e) => {
            output::warn(&format!(
                "{name}: could not be destroyed ({e}); it still exists: id {}",
                node.id
            ));
            false
        }
    }
}

/// The SSH target for a running node: the driver's port, user and pinned key when it knows
/// them; otherwise port 22, the plan's user, and trust-on-first-use in our known_hosts.
pub fn target(plan: &Plan, node: &Node, opts: &Options) -> Target {
    let user = if plan.ssh_user.layer == "built-in default" {
        node.ssh
            .user
            .clone()
            .unwrap_or_else(|| plan.ssh_user.value.clone())
    } else {
        plan.ssh_user.value.clone()
    };
    let host_key = if opts.insecure_host_key {
        HostKeyCheck::Insecure
    } else if let Some(k) = &node.ssh.host_key {
        HostKeyCheck::Pinned(k.clone())
    } else {
        HostKeyCheck::KnownHosts(state::state_dir().join("known_hosts"))
    };
    let mut identities: Vec<PathBuf> = opts.identity.iter().cloned().collect();
    identities.extend(node.ssh.identity.iter().map(PathBuf::from));
    Target {
        node: node.name.clone(),
        host: node.public_ip.clone().unwrap_or_default(),
        port: node.ssh.port.unwrap_or(22),
        user,
        host_key,
        identities,
        use_agent: true,
    }
}

/// Polls in a row that may find a new node stopped before that counts as a failure: some
/// clouds (Hetzner) show a new server `off` between its create and start actions.
const STOPPED_POLLS: u32 = 3;

/// Polls `get` (backing off) until the node runs with a public address. A node in error,
/// terminated, or stopped for [`STOPPED_POLLS`] polls in a row will not run: a deploy error.
fn wait_running(provider: &dyn Provider, mut node: Node, deadline: Instant) -> Result<Node> {
    let base = provider.poll_interval();
    let mut delay = base;
    let mut announced = false;
    let mut stopped = 0;
    loop {
        stopped = if node.state == NodeState::Stopped {
            stopped + 1
        } else {
            0
        };
        match node.state {
            NodeState::Running if node.public_ip.is_some() => return Ok(node),
            NodeState::Error | NodeState::Terminated => {
                return Err(Error::deploy(
                    &node.name,
                    format!("the provider reports the node as {}", node.state),
                ))
            }
            NodeState::Stopped if stopped >= STOPPED_POLLS => {
                return Err(Error::deploy(
                    &node.name,
                    "the provider reports the node as stopped instead of starting it",
                ))
            }
            _ => {}
        }
        if !announced {
            output::info(&format!(
                "{}: waiting until it runs ({})",
                node.name, node.state
            ));
            announced = true;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout(format!(
                "{}: still {} when the deadline passed (--ssh-timeout)",
                node.name, node.state
            )));
        }
        std::thread::sleep(delay.min(deadline - now));
        delay = (delay * 3 / 2).min(base * 8);
        node = provider
            .get(&node.id)?
            .ok_or_else(|| Error::deploy(&node.name, "the node disappeared while starting"))?;
    }
}

/// A node that never became ready is destroyed unless --keep-on-failure; either way the user
/// hears what stays.
fn fail_and_clean(
    provider: &dyn Provider,
    out: &mut Outcome,
    opts: &Options,
    entry: &mut journal::Entry,
    err: Error,
) -> Error {
    let name = out.name.clone();
    interrupts().forget(&name);
    let Some(node) = out.node.clone() else {
        return err;
    };
    if opts.keep_on_failure {
        out.kept = true;
        entry.status = Status::Kept;
        let _ = journal::write(entry);
        output::warn(&format!(
            "{name}: kept (--keep-on-failure); destroy it with `destroy-node -p {} {name}`",
            provider.name()
        ));
        return err;
    }
    match provider.destroy(&node.id) {
        Ok(how) => {
            journal::clear(provider.name(), &name);
            output::info(&match how {
                crate::provider::Destroyed::Forgotten => format!(
                    "{name}: never became ready; forgotten (the machine itself was not touched)"
                ),
                _ => format!("{name}: never became ready; destroyed"),
            });
        }
        Err(e) => {
            out.kept = true;
            output::warn(&format!(
                "{name}: could not be destroyed ({e}); it still exists: id {}",
                node.id
            ));
        }
    }
    err
}

// ---- Ctrl-C / SIGTERM ----

type Tracked = (Arc<dyn Provider>, Node, bool);

/// Nodes that exist but are not finished, so a signal can clean them up.
#[derive(Default)]
pub struct Interrupts {
    inner: Mutex<(usize, Vec<Tracked>)>,
    hit: AtomicBool,
}

pub struct CreatingGuard<'a> {
    owner: &'a Interrupts,
}

impl Interrupts {
    fn creating(&self) -> CreatingGuard<'_> {
        self.inner.lock().unwrap().0 += 1;
        CreatingGuard { owner: self }
    }

    fn forget(&self, name: &str) {
        self.inner
            .lock()
            .unwrap()
            .1
            .retain(|(_, n, _)| n.name != name);
    }

    /// The signal handler's work: wait for creates in flight, destroy (or keep and name)
    /// every unfinished node, exit 130.
    fn handle(&self) -> ! {
        self.hit.store(true, Ordering::SeqCst);
        output::warn("interrupted: cleaning up");
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            let guard = self.inner.lock().unwrap();
            if guard.0 == 0 || Instant::now() > give_up {
                for (provider, node, keep) in &guard.1 {
                    if *keep {
                        output::warn(&format!("{}: kept (--keep-on-failure)", node.name));
                        continue;
                    }
                    match provider.destroy(&node.id) {
                        Ok(_) => {
                            journal::clear(provider.name(), &node.name);
                            output::info(&format!("{}: destroyed", node.name));
                        }
                        Err(e) => output::warn(&format!(
                            "{}: could not be destroyed ({e}); it still exists",
                            node.name
                        )),
                    }
                }
                std::process::exit(code::INTERRUPTED);
            }
            drop(guard);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl CreatingGuard<'_> {
    fn done(self, node: Option<Tracked>) {
        let mut g = self.owner.inner.lock().unwrap();
        g.0 -= 1;
        if let Some(t) = node {
            g.1.push(t);
        }
    }
}

/// The process-wide tracker.
pub fn interrupts() -> &'static Interrupts {
    static I: OnceLock<Interrupts> = OnceLock::new();
    I.get_or_init(Interrupts::default)
}

/// Installs the Ctrl-C / SIGTERM handler that cleans up unfinished nodes.
pub fn install_signal_handler() {
    let _ = ctrlc::set_handler(|| interrupts().handle());
}

/// The outcome as JUnit steps: keys, files and each script; a node that never got that far
/// is one failing `ready` step carrying the error.
pub fn junit_result(outcome: &Outcome) -> crate::junit::report::NodeResult {
    use crate::junit::report::{NodeResult, StepResult};
    let mut steps: Vec<StepResult> = Vec::new();
    if let Some(report) = &outcome.report {
        for s in &report.steps {
            let failure = match s.status {
                Some(0) => None,
                Some(crate::ssh::TIMEOUT_STATUS) => {
                    Some(format!("{} timed out (--script-timeout)", s.name))
                }
                Some(code) => Some(format!("{} exited with status {code}", s.name)),
                None if s.skipped => None,
                None => Some(format!("{} did not finish", s.name)),
            };
            steps.push(StepResult {
                name: s.name.clone(),
                duration: s.duration,
                stdout: s.stdout.clone(),
                stderr: s.stderr.clone(),
                failure,
                skipped: s.skipped,
                log: None,
            });
        }
    } else if let Some(err) = &outcome.error {
        steps.push(StepResult {
            name: "ready".into(),
            duration: outcome.duration,
            stdout: String::new(),
            stderr: String::new(),
            failure: Some(err.to_string()),
            skipped: false,
            log: None,
        });
    }
    NodeResult {
        node: outcome.name.clone(),
        steps,
    }
}
