//! Orchestration of one deployment: journal the intent → create → wait until running → SSH
//! ready → provision (keys, files, scripts) → report. The failure policy lives here: a node
//! that never became reachable, or whose SSH setup failed, is destroyed unless
//! `--keep-on-failure`; a node whose script failed is kept for inspection; Ctrl-C or SIGTERM
//! destroys what was created (unless `--keep-on-failure`) and exits 130. Whenever a node stays,
//! its name is printed.
//!
//! Every create is one attempt with a random id (the `provision-create-id` tag), journaled
//! before the request is sent: after a create whose outcome is unknown only a node carrying
//! that id is adopted or destroyed, never one that merely has the same name.
//!
//! Signals: the handler only raises a flag ([`Interrupts`]); workers stop at phase boundaries
//! and while waiting, and the main thread ([`Interrupts::supervise`]) destroys what was
//! created. A second signal exits at once, naming what may be left.

use crate::config::value_of;
use crate::error::{code, Error, Result};
use crate::journal::{self, Status};
use crate::known_nodes;
use crate::output;
use crate::plan::Plan;
use crate::provider::{
    Node, NodeSpec, NodeState, Prepared, Provider, DEPLOYING, DEPLOY_FAILED, DEPLOY_READY,
    TAG_CREATED, TAG_CREATE_ID, TAG_MANAGED, TAG_STATE,
};
use crate::ssh::{self, HostKeyCheck, ProvisionReport, RunOptions, Target};
use crate::state;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How to deploy (the flags that are not part of the plan).
#[derive(Debug, Clone)]
pub struct Options {
    /// One deadline for running + SSH readiness.
    pub ssh_timeout: Duration,
    pub script_timeout: Option<Duration>,
    pub keep_going: bool,
    /// Wait for cloud-init before the first script, within the SSH deadline.
    pub wait_for_cloud_init: bool,
    pub keep_on_failure: bool,
    pub insecure_host_key: bool,
    pub identity: Option<PathBuf>,
    /// The bastion every node is reached through (one connection, shared by the pool).
    pub jump: Option<Arc<ssh::Jump>>,
    /// Image/size/location as the provider resolved them (`Provider::prepare`).
    pub prepared: Option<crate::provider::Prepared>,
    /// Expiry, owner, CI job and labels recorded on every node ([`crate::expiry::records`]).
    pub records: std::collections::BTreeMap<String, String>,
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
    /// How long each phase it finished took, in order ([`crate::phases`]).
    pub phases: crate::phases::Phases,
}

/// The tags every node we create carries: ours, when, and the create attempt's id.
pub fn tags(create_id: &str) -> std::collections::BTreeMap<String, String> {
    let mut t = std::collections::BTreeMap::new();
    t.insert(TAG_MANAGED.to_string(), "1".to_string());
    t.insert(TAG_CREATED.to_string(), crate::now_rfc3339());
    t.insert(TAG_CREATE_ID.to_string(), create_id.to_string());
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
        phases: Default::default(),
    };
    if let Err(e) = run(plan, &provider, opts, &mut out) {
        // after a signal, whatever broke (the node destroyed under a script) is the signal
        out.error = Some(if interrupts().hit() {
            Error::Interrupted
        } else {
            e
        });
    }
    out.duration = started.elapsed();
    if out.error.is_some() {
        out.phases.fail(None, out.duration);
    }
    let secs = out.duration.as_secs_f64();
    output::status(
        &out.name,
        &match (&out.error, out.kept) {
            (None, _) => format!("ready in {secs:.1}s"),
            (Some(_), true) => format!("failed after {secs:.1}s; kept"),
            (Some(_), false) => format!("failed after {secs:.1}s"),
        },
    );
    out
}

fn run(plan: &Plan, provider: &Arc<dyn Provider>, opts: &Options, out: &mut Outcome) -> Result<()> {
    let name = &plan.node_name;
    let pname = provider.name().to_string();
    let create_id = crate::provider::new_create_id();
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
        tags: {
            let mut t = opts.records.clone();
            t.extend(tags(&create_id));
            if provider.updates_tags() {
                t.insert(TAG_STATE.into(), DEPLOYING.into());
            }
            t
        },
    };
    // raised before the flag is read, so the main thread's clean-up waits for this create
    let guard = interrupts().creating(&pname);
    interrupts().check()?;
    let mut entry = journal::begin(&pname, name, &create_id)?;
    output::status(name, &format!("creating on {pname}"));
    let asked = Instant::now();
    let created = provider.create(&spec);
    out.phases.push("create", asked.elapsed());
    let node = match created {
        Ok(node) => node,
        Err(e) => {
            // The create may have happened though its answer was unusable: find the node this
            // attempt made (by its create id) and destroy it, so a garbled response never
            // leaks a node — and never touches another node of that name.
            let kept = outcome_unknown(&e) && !clean_unknown_create(provider.as_ref(), &spec, opts);
            drop(guard);
            if !kept {
                journal::clear(&pname, name);
            }
            return Err(e);
        }
    };
    interrupts().track(provider.clone(), node.clone(), opts.keep_on_failure);
    drop(guard);
    out.node = Some(node.clone());
    entry.id = Some(node.id.clone());
    entry.location = node.location.clone();
    entry.status = Status::Created;
    if let Err(e) = journal::write(&entry).and_then(|_| interrupts().check()) {
        return Err(fail_and_clean(provider.as_ref(), out, opts, &mut entry, e));
    }

    let deadline = Instant::now() + opts.ssh_timeout;
    let waiting = Instant::now();
    let ready =
        wait_running(provider.as_ref(), node, opts.jump.is_some(), deadline).and_then(|node| {
            out.phases.push("running", waiting.elapsed());
            let node = pin_recorded_key(provider.as_ref(), node);
            out.node = Some(node.clone());
            let target = target(plan, &node, opts);
            let p = provider.clone();
            let id = node.id.clone();
            let mut still_there = move || {
                interrupts().check()?;
                Ok(p.get(&id)?
                    .is_some_and(|n| n.state != NodeState::Terminated))
            };
            let conn = connect_recording(&target, deadline, &mut still_there, &mut out.phases)?;
            remember(&pname, &node, &target, &conn, opts);
            Ok(conn)
        });
    let mut conn = match ready.and_then(|c| interrupts().check().map(|_| c)) {
        Ok(c) => c,
        Err(e) => return Err(fail_and_clean(provider.as_ref(), out, opts, &mut entry, e)),
    };
    let run_opts = RunOptions {
        keep_going: opts.keep_going,
        remove_scripts: plan.remove_scripts,
        script_timeout: opts.script_timeout,
        cloud_init: opts
            .wait_for_cloud_init
            .then(|| deadline.saturating_duration_since(Instant::now())),
    };
    let mut on_line = |_script: &str, _stderr: bool, line: &str| output::node_line(name, line);
    let provisioned = provision_recording(
        &mut conn,
        &pname,
        (plan, plan),
        &run_opts,
        &mut on_line,
        &mut out.phases,
    );
    let report = match provisioned {
        Ok(r) => r,
        Err(e) => return Err(fail_and_clean(provider.as_ref(), out, opts, &mut entry, e)),
    };
    let failed = report.failed_script().map(|s| (s.name.clone(), s.status));
    out.report = Some(report);
    if interrupts().hit() || !interrupts().take(name) {
        // after a signal the main thread cleans it up
        return Err(Error::Interrupted);
    }
    if let Some((script, status)) = failed {
        out.kept = true;
        entry.status = Status::Kept;
        record_state(provider.as_ref(), out, DEPLOY_FAILED);
        journal::write(&entry)?;
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
    record_state(provider.as_ref(), out, DEPLOY_READY);
    journal::clear(&pname, name);
    Ok(())
}

/// Records how the deploy ended on the node's tags ([`TAG_STATE`]), where the provider can
/// update them, so any runner's reaper tells a finished deploy from one whose runner died.
/// A failure only warns: the node is what it is either way.
pub(crate) fn record_state(provider: &dyn Provider, out: &mut Outcome, state: &str) {
    let Some(node) = out.node.as_mut() else {
        return;
    };
    if !provider.updates_tags() {
        return;
    }
    let t = std::collections::BTreeMap::from([(TAG_STATE.to_string(), state.to_string())]);
    match provider.update_tags(node, &t) {
        Ok(()) => {
            node.tags.extend(t);
        }
        Err(e) => output::warn(&format!(
            "{}: its deploy state '{state}' could not be recorded on the node ({e}); \
             a reaper takes it for a deploy that never completed once it is {} old",
            node.name,
            crate::expiry::short(crate::expiry::STUCK_AFTER.as_secs())
        )),
    }
}

/// Connects to `target`, adding to `phases` the connect phases it finished — and, when it
/// fails, the one it was stuck in.
pub(crate) fn connect_recording(
    target: &ssh::Target,
    deadline: Instant,
    still_there: &mut dyn FnMut() -> Result<bool>,
    phases: &mut crate::phases::Phases,
) -> Result<ssh::Connection> {
    let mut reached = Vec::new();
    let conn = ssh::connect_timed(target, deadline, still_there, &mut reached)
        .inspect_err(|_| phases.0.append(&mut reached))?;
    for (phase, took) in conn.phases() {
        phases.push(phase, took);
    }
    Ok(conn)
}

/// Provisions `sent` (the plan, or the part of it a re-provision sends), records `plan` as
/// applied on the node's record, and adds the upload, cloud-init and script phases to
/// `phases` — as far as they got when it fails.
pub(crate) fn provision_recording(
    conn: &mut ssh::Connection,
    provider: &str,
    (plan, sent): (&Plan, &Plan),
    run_opts: &RunOptions,
    on_line: &mut dyn FnMut(&str, bool, &str),
    phases: &mut crate::phases::Phases,
) -> Result<ProvisionReport> {
    let mut reached = Vec::new();
    let provisioned = conn.provision_timed(sent, run_opts, on_line, &mut reached);
    record_applied(provider, plan, &provisioned);
    let report = provisioned.inspect_err(|_| phases.0.append(&mut reached))?;
    record_provision_phases(phases, &report);
    Ok(report)
}

/// The upload, cloud-init and script phases of a provision: each script that ran.
fn record_provision_phases(phases: &mut crate::phases::Phases, report: &ProvisionReport) {
    if let Some(d) = report.upload {
        phases.push("upload", d);
    }
    if let Some(d) = report.cloud_init {
        phases.push("cloud-init", d);
    }
    for s in &report.steps {
        if s.kind == ssh::StepKind::Script && s.status.is_some() {
            phases.0.push(crate::phases::Phase {
                kind: "script",
                script: Some(s.name.clone()),
                duration: s.duration,
                failed: s.status != Some(0),
            });
        }
    }
}

/// Remembers the host key the node showed (pinned or learned), the login user and
/// `--identity`, for every later connection ([`known_nodes`]). A failure only warns: the node
/// is ready.
fn remember(provider: &str, node: &Node, target: &Target, conn: &ssh::Connection, opts: &Options) {
    let Some(host_key) = conn.host_key_line() else {
        return;
    };
    let rec = known_nodes::Record {
        provider: provider.to_string(),
        name: node.name.clone(),
        id: node.id.clone(),
        create_id: node.create_id().map(String::from),
        host_key,
        user: target.user.clone(),
        identity: opts.identity.clone(),
        applied: None,
        jump: target.jump.as_ref().map(|j| j.label()),
        jump_host_key: target.jump.as_ref().and_then(|j| j.pinned_key()),
        location: node.location.clone(),
    };
    if let Err(e) = known_nodes::remember(&rec) {
        output::warn(&format!(
            "{}: its host key could not be remembered ({e})",
            node.name
        ));
    }
}

/// Records in the node's record what `plan` applied and how it ended ([`crate::applied`]).
pub(crate) fn record_applied(provider: &str, plan: &Plan, provisioned: &Result<ProvisionReport>) {
    let error = match provisioned {
        Ok(report) => report.failed_script().map(|s| {
            format!(
                "script {} failed (exit status {})",
                s.name,
                s.status
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into())
            )
        }),
        Err(e) => Some(e.to_string()),
    };
    let mut applied = crate::applied::Applied::of(plan, error);
    if provisioned.is_err() {
        // the files may be half written: only those already on the node as planned count
        let before = known_nodes::load(provider, &plan.node_name)
            .and_then(|r| r.applied)
            .map(|a| a.files)
            .unwrap_or_default();
        applied.files.retain(|t, h| before.get(t) == Some(h));
    }
    known_nodes::record_applied(provider, &plan.node_name, applied);
}

/// Errors after which the create may have happened on the provider's side (an exec provider's
/// create that failed or timed out may have made the machine before it gave up).
fn outcome_unknown(e: &Error) -> bool {
    matches!(
        e,
        Error::Malformed { .. } | Error::Unexpected(_) | Error::Timeout(_)
    )
}

/// After a create whose outcome is unknown: destroys the node this attempt made — the one
/// carrying `spec`'s create id — if it exists (unless --keep-on-failure). A node of the same
/// name without that id is never touched. False when a node stays (kept or not destroyable);
/// its name and id are then on stderr and the journal keeps it for `list-nodes --orphans`.
fn clean_unknown_create(provider: &dyn Provider, spec: &NodeSpec, opts: &Options) -> bool {
    let name = spec.name.as_str();
    let found = match provider.list(false) {
        Ok(nodes) => nodes.into_iter().find(|n| {
            n.name == name && n.create_id().is_some() && n.create_id() == spec.create_id()
        }),
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
    output::status(
        name,
        &format!(
            "created (id {}) though the answer was unusable: destroying it",
            node.id
        ),
    );
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

/// A machine that existed before this deploy (a static host deployed again) keeps the host
/// key its node record pinned ([`known_nodes`]), rather than trust-on-first-use in the tool's
/// known_hosts: a changed key is refused even where known_hosts never saw the host (another
/// address for it, a cleared known_hosts). The record is for the same machine when name and
/// id match; the create id differs on every deploy, so it is not compared. New machines, and
/// nodes whose driver reports a key, are left as they are.
fn pin_recorded_key(provider: &dyn Provider, mut node: Node) -> Node {
    if provider.names_must_be_free() || node.ssh.host_key.is_some() {
        return node;
    }
    if let Some(rec) = known_nodes::load(provider.name(), &node.name).filter(|r| r.id == node.id) {
        output::debug(&format!(
            "{}: pinning the host key recorded when it was deployed",
            node.name
        ));
        node.ssh.host_key = Some(rec.host_key);
    }
    node
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
        host: address(node, opts.jump.is_some()).unwrap_or_default(),
        port: node.ssh.port.unwrap_or(22),
        user,
        host_key,
        identities,
        use_agent: true,
        jump: opts.jump.clone(),
    }
}

/// The address SSH connects to: behind a jump host the node's private address (the bastion
/// is on its network), else — or when the provider reports none (local, static: the given
/// address) — its public one.
pub fn address(node: &Node, jump: bool) -> Option<String> {
    jump.then(|| node.private_ip.clone())
        .flatten()
        .or_else(|| node.public_ip.clone())
}

/// Polls in a row that may find a new node stopped before that counts as a failure: some
/// clouds (Hetzner) show a new server `off` between its create and start actions.
const STOPPED_POLLS: u32 = 3;

/// Polls `get` (backing off) until the node runs with an address to connect to ([`address`]). A node in error,
/// terminated, or stopped for [`STOPPED_POLLS`] polls in a row will not run: a deploy error.
fn wait_running(
    provider: &dyn Provider,
    mut node: Node,
    jump: bool,
    deadline: Instant,
) -> Result<Node> {
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
            NodeState::Running if address(&node, jump).is_some() => return Ok(node),
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
            output::status(
                &node.name,
                &format!("waiting until it runs ({})", node.state),
            );
            announced = true;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout(format!(
                "{}: still {} when the deadline passed (--ssh-timeout)",
                node.name, node.state
            )));
        }
        // in a pool every waiting node wakes for the next shared list (issue 20); alone, the
        // node backs off
        match provider.next_poll_in() {
            Some(shared) => interrupts().sleep(shared.min(deadline - now))?,
            None => {
                interrupts().sleep(delay.min(deadline - now))?;
                delay = (delay * 3 / 2).min(base * 8);
            }
        }
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
    let Some(node) = out.node.clone() else {
        return err;
    };
    if interrupts().hit() || !interrupts().take(&name) {
        return err; // after a signal the main thread cleans it up
    }
    if opts.keep_on_failure {
        out.kept = true;
        entry.status = Status::Kept;
        record_state(provider, out, DEPLOY_FAILED);
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
            known_nodes::forget(provider.name(), &name);
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

/// A node that exists but is not finished, so a signal can clean it up.
struct Tracked {
    provider: Arc<dyn Provider>,
    node: Node,
    keep: bool,
    /// The main thread is cleaning it up: the worker must leave it alone.
    claimed: bool,
}

/// What a signal must know: how many signals came, how many creates are in flight, and the
/// nodes that exist but are not finished. The handler only counts (see
/// [`install_signal_handler`]); workers read the count at phase boundaries and while waiting,
/// and the main thread cleans up ([`Interrupts::supervise`]). Exactly one side owns a tracked
/// node's clean-up: whoever removes or claims it first under the lock.
#[derive(Default)]
pub struct Interrupts {
    hits: AtomicUsize,
    creating: AtomicUsize,
    tracked: Mutex<Vec<Tracked>>,
    provider: OnceLock<String>,
}

/// A create in flight; dropping it (also by a panic inside `create`) lowers the count.
pub struct CreatingGuard<'a> {
    owner: &'a Interrupts,
}

impl Drop for CreatingGuard<'_> {
    fn drop(&mut self) {
        self.owner.creating.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long the main thread waits for creates in flight before cleaning up without them.
const CREATE_GRACE: Duration = Duration::from_secs(120);
/// How long it waits, after cleaning up, for workers to stop (a kept node's script may run on).
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Interrupts {
    /// The lock, whatever a panicking holder left: the list itself is always consistent.
    fn list(&self) -> MutexGuard<'_, Vec<Tracked>> {
        self.tracked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a signal came.
    pub fn hit(&self) -> bool {
        self.hits.load(Ordering::SeqCst) > 0
    }

    /// `Err(Interrupted)` once a signal came: workers stop at the next phase boundary.
    pub fn check(&self) -> Result<()> {
        if self.hit() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Sleeps `d`, or less when a signal comes (then `Err(Interrupted)`).
    pub fn sleep(&self, d: Duration) -> Result<()> {
        let end = Instant::now() + d;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }

    /// Counts a create in flight on `provider` until the guard is dropped.
    pub fn creating(&self, provider: &str) -> CreatingGuard<'_> {
        let _ = self.provider.set(provider.to_string());
        self.creating.fetch_add(1, Ordering::SeqCst);
        CreatingGuard { owner: self }
    }

    /// A node now exists and is not finished.
    fn track(&self, provider: Arc<dyn Provider>, node: Node, keep: bool) {
        self.list().push(Tracked {
            provider,
            node,
            keep,
            claimed: false,
        });
    }

    /// The worker takes `name` back (finished, failed or kept): true when it owns it; false
    /// when the main thread claimed it to clean it up after a signal.
    fn take(&self, name: &str) -> bool {
        let mut list = self.list();
        match list.iter().position(|t| t.node.name == name) {
            Some(i) if list[i].claimed => false,
            Some(i) => {
                list.remove(i);
                true
            }
            None => true,
        }
    }

    /// The signal handler's whole work: count. The second signal exits at once, naming what
    /// may be left; it never waits for a lock.
    pub fn on_signal(&self) {
        if self.hits.fetch_add(1, Ordering::SeqCst) == 0 {
            return;
        }
        output::warn(&format!(
            "interrupted again: exiting now; {}",
            self.left_behind()
        ));
        std::process::exit(code::INTERRUPTED);
    }

    /// What may be left if we stop now, and where it will show.
    fn left_behind(&self) -> String {
        let list = match self.tracked.try_lock() {
            Ok(list) => Some(list),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let names = match list {
            Some(list) => list
                .iter()
                .map(|t| format!("{} (id {})", t.node.name, t.node.id))
                .collect::<Vec<_>>(),
            None => vec!["nodes being cleaned up".to_string()],
        };
        let creating = self.creating.load(Ordering::SeqCst);
        let mut what = names.join(", ");
        if creating > 0 {
            if !what.is_empty() {
                what.push_str(", and ");
            }
            what.push_str(&format!("{creating} node(s) being created"));
        }
        if what.is_empty() {
            return "nothing was left behind".to_string();
        }
        let p = self
            .provider
            .get()
            .map(String::as_str)
            .unwrap_or("PROVIDER");
        format!("these may be left: {what}; `list-nodes -p {p} --orphans` will show them")
    }

    /// Runs on the main thread while workers deploy, until `done()`: after a signal, waits for
    /// creates in flight, destroys (or keeps with --keep-on-failure) every unfinished node,
    /// and lets the workers stop. Exits 130 itself only when workers do not stop in time.
    pub fn supervise(&self, done: &dyn Fn() -> bool) {
        let mut stop_by: Option<Instant> = None;
        loop {
            if self.hit() && stop_by.is_none() {
                output::warn(
                    "interrupted: stopping; destroying what was created (Ctrl-C again to exit at once)",
                );
                self.clean_up();
                stop_by = Some(Instant::now() + STOP_GRACE);
            }
            if done() {
                break;
            }
            if stop_by.is_some_and(|t| Instant::now() > t) {
                output::warn(&format!(
                    "interrupted: a worker did not stop; exiting; {}",
                    self.left_behind()
                ));
                std::process::exit(code::INTERRUPTED);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.hit() {
            // creates that ended after the first pass
            self.clean_up();
        }
    }

    /// Destroys (or keeps) every unfinished node, after the creates in flight ended.
    fn clean_up(&self) {
        let give_up = Instant::now() + CREATE_GRACE;
        while self.creating.load(Ordering::SeqCst) > 0 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(20));
        }
        let todo: Vec<(Arc<dyn Provider>, Node, bool)> = self
            .list()
            .iter_mut()
            .filter(|t| !t.claimed)
            .map(|t| {
                t.claimed = true;
                (t.provider.clone(), t.node.clone(), t.keep)
            })
            .collect();
        for (provider, node, keep) in todo {
            if keep {
                output::warn(&format!(
                    "{}: kept (--keep-on-failure); destroy it with `destroy-node -p {} {}`",
                    node.name,
                    provider.name(),
                    node.name
                ));
                let _ = journal::entries()
                    .into_iter()
                    .find(|e| e.provider == provider.name() && e.name == node.name)
                    .map(|mut e| {
                        e.status = Status::Kept;
                        journal::write(&e)
                    });
            } else {
                match provider.destroy(&node.id) {
                    Ok(_) => {
                        journal::clear(provider.name(), &node.name);
                        known_nodes::forget(provider.name(), &node.name);
                        output::status(&node.name, "destroyed");
                    }
                    Err(e) => output::warn(&format!(
                        "{}: could not be destroyed ({e}); it still exists: id {}; `list-nodes -p {} --orphans` shows it",
                        node.name,
                        node.id,
                        provider.name()
                    )),
                }
            }
            self.list().retain(|t| t.node.name != node.name);
        }
    }
}

/// The process-wide tracker.
pub fn interrupts() -> &'static Interrupts {
    static I: OnceLock<Interrupts> = OnceLock::new();
    I.get_or_init(Interrupts::default)
}

/// Installs the Ctrl-C / SIGTERM handler. It only counts signals (the second exits at once);
/// the clean-up runs on the main thread in [`Interrupts::supervise`].
pub fn install_signal_handler() {
    let _ = ctrlc::set_handler(|| interrupts().on_signal());
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
        properties: outcome
            .node
            .as_ref()
            .map(crate::expiry::properties)
            .unwrap_or_default(),
        phases: outcome
            .phases
            .0
            .iter()
            .map(|p| crate::junit::PhaseResult {
                label: p.label(),
                duration: p.duration,
                failure: p.failed.then(|| {
                    outcome
                        .error
                        .as_ref()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| format!("{} failed", p.label()))
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Destroyed;

    #[test]
    fn behind_a_jump_host_the_private_address_is_used_when_reported() {
        let mut n = crate::provider::test_node("1", "web");
        n.public_ip = Some("203.0.113.5".into());
        assert_eq!(address(&n, true).as_deref(), Some("203.0.113.5"));
        n.private_ip = Some("10.0.0.5".into());
        assert_eq!(address(&n, true).as_deref(), Some("10.0.0.5"));
        assert_eq!(address(&n, false).as_deref(), Some("203.0.113.5"));
        n.public_ip = None;
        assert_eq!(address(&n, false), None);
        assert_eq!(address(&n, true).as_deref(), Some("10.0.0.5"));
    }

    /// A provider whose `create` panics and whose `destroy` counts.
    #[derive(Default)]
    struct Panicky {
        destroyed: Mutex<Vec<String>>,
    }

    impl Provider for Panicky {
        fn name(&self) -> &str {
            "panicky"
        }
        fn create(&self, _: &NodeSpec) -> Result<Node> {
            panic!("driver bug")
        }
        fn list(&self, _: bool) -> Result<Vec<Node>> {
            Ok(vec![])
        }
        fn get(&self, _: &str) -> Result<Option<Node>> {
            Ok(None)
        }
        fn destroy(&self, id: &str) -> Result<Destroyed> {
            self.destroyed.lock().unwrap().push(id.to_string());
            Ok(Destroyed::Destroyed)
        }
    }

    fn node(name: &str) -> Node {
        crate::provider::test_node(&format!("id-{name}"), name)
    }

    #[test]
    fn a_panic_in_create_lowers_the_counter() {
        let i = Interrupts::default();
        let p = Panicky::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = i.creating("panicky");
            let _ = p.create(&NodeSpec {
                name: "x".into(),
                image: String::new(),
                size: String::new(),
                location: String::new(),
                public_keys: vec![],
                tags: Default::default(),
            });
        }));
        assert!(r.is_err());
        assert_eq!(i.creating.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_poisoned_list_does_not_panic_the_clean_up() {
        // clean-up clears journal entries: keep them in a directory of this test's own
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(state::STATE_DIR_ENV, dir.path());
        let i = Arc::new(Interrupts::default());
        let p = Arc::new(Panicky::default());
        i.track(p.clone(), node("a"), false);
        let i2 = i.clone();
        let _ = std::thread::spawn(move || {
            let _held = i2.tracked.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(i.tracked.is_poisoned());
        i.hits.store(1, Ordering::SeqCst);
        i.supervise(&|| true);
        assert_eq!(*p.destroyed.lock().unwrap(), ["id-a"]);
        assert!(i.list().is_empty());
        assert_eq!(i.left_behind(), "nothing was left behind");
    }

    #[test]
    fn one_side_owns_each_node() {
        let i = Interrupts::default();
        let p: Arc<dyn Provider> = Arc::new(Panicky::default());
        i.track(p.clone(), node("mine"), false);
        i.track(p.clone(), node("main"), true);
        // the worker took it first: the main thread never sees it
        assert!(i.take("mine"));
        // the main thread claimed it: the worker must leave it alone
        i.list()[0].claimed = true;
        assert!(!i.take("main"));
        let left = i.left_behind();
        assert!(left.contains("main (id id-main)"), "{left}");
        assert!(left.contains("`list-nodes -p"), "{left}");
        assert!(i.check().is_ok());
        i.hits.store(1, Ordering::SeqCst);
        assert!(matches!(i.check(), Err(Error::Interrupted)));
        assert!(matches!(
            i.sleep(Duration::from_secs(60)),
            Err(Error::Interrupted)
        ));
    }
}
