//! `deploy-node --reprovision -n NAME`: runs bundles again on a node that exists, on any
//! provider, creating nothing — the everyday loop of editing a bundle and applying it to a
//! node you kept. The node is found by name through the provider's list; its record
//! ([`crate::known_nodes`]) gives the host key to pin (a changed key is refused), the login
//! user and identity, and what was last applied ([`crate::applied`]): the bundles and `-t`
//! variables to use again, the run count (`provision_run`), and the hashes that let only the
//! changed files travel. Scripts all run again, as a converge does.
//!
//! Secrets are not on disk: a `-T` secret given as an `env:`/`file:` reference is read again
//! from it; one given as a literal must be given again.
//!
//! How it ended is recorded on the node's tags where the provider can update them
//! (`provision-state` = `ready`/`failed`, as a deploy does), so `list-nodes` shows a node whose
//! re-provision failed. Ctrl-C or SIGTERM stops it (exit 130) with nothing to destroy: the
//! node stays, as its scripts left it ([`interrupted`]).

use crate::applied::Applied;
use crate::deploy::{self, Outcome};
use crate::error::{Error, Result};
use crate::known_nodes::Record;
use crate::output;
use crate::plan::{Plan, Request};
use crate::provider::{Node, NodeState, Provider, DEPLOY_FAILED, DEPLOY_READY};
use crate::ssh::{HostKeyCheck, RunOptions};
use std::time::{Duration, Instant};

/// The request of a re-provision: the node's recorded bundles (or exactly the `-b` given),
/// its recorded `-t` variables before the new ones, its `-T` references read again, its
/// image/size/location as recorded, and the next run number.
pub fn request(mut req: Request, rec: &Record) -> Result<Request> {
    let name = rec.name.as_str();
    let applied = rec.applied.clone();
    // a record without what was applied comes from a run that never finished provisioning
    req.run = applied.as_ref().map_or(1, |a| a.provision_run) + 1;
    if !req.bundles.is_empty() {
        req.exact_bundles = Some("-b".into());
    }
    let Some(a) = applied else {
        return Ok(req);
    };
    if req.bundles.is_empty() {
        req.bundles = a.bundles.clone();
        req.exact_bundles = Some(format!("the node's last run ({})", a.provision_run));
    }
    let new = std::mem::take(&mut req.subvars);
    req.subvars = a.subvars.clone();
    req.subvars.extend(new);
    let given = |k: &str| {
        req.secrets
            .iter()
            .any(|kv| kv.split_once('=').is_some_and(|(n, _)| n == k))
    };
    let mut again = Vec::new();
    for s in a
        .secrets
        .iter()
        .filter(|s| s.layer == "-T" && !given(&s.name))
    {
        match &s.reference {
            Some(r) => again.push(format!("{}={r}", s.name)),
            None => {
                return Err(Error::usage(format!(
                    "{name}: secret variable '{}' was given with -T and is not kept on disk: give it again (-T {}=VALUE, or env:NAME / file:PATH)",
                    s.name, s.name
                )))
            }
        }
    }
    req.secrets.splice(0..0, again);
    let recorded = |k: &str| a.vars.get(k).filter(|v| !v.is_empty()).cloned();
    req.image = req.image.or_else(|| recorded("image"));
    req.size = req.size.or_else(|| recorded("size"));
    req.location = req.location.or_else(|| recorded("location"));
    Ok(req)
}

/// The node found by name must be the one the record was written for.
pub fn check_node(node: &Node, rec: &Record) -> Result<()> {
    if rec.is_for(node) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "{}: this node (id {}) is not the one deployed from here (id {}): nothing to re-provision; deploy it again under another name",
        node.name, node.id, rec.id
    )))
}

/// Re-provisions `node` with `plan`. Never panics on failure: the error is in the outcome,
/// and the node always stays.
pub fn run(
    plan: &Plan,
    provider: &dyn Provider,
    node: &Node,
    rec: &Record,
    opts: &deploy::Options,
) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        name: plan.node_name.clone(),
        node: Some(node.clone()),
        report: None,
        error: None,
        kept: false,
        duration: Duration::ZERO,
        phases: Default::default(),
    };
    if let Err(e) = apply(plan, provider.name(), node, rec, opts, &mut out) {
        out.error = Some(if deploy::interrupts().hit() {
            Error::Interrupted
        } else {
            e
        });
        out.kept = true;
    }
    out.duration = started.elapsed();
    if out.error.is_some() {
        out.phases.fail(None, out.duration);
    }
    let state = if out.error.is_some() {
        DEPLOY_FAILED
    } else {
        DEPLOY_READY
    };
    deploy::record_state(provider, &mut out, state);
    let secs = out.duration.as_secs_f64();
    output::status(
        &out.name,
        &match &out.error {
            None => format!("re-provisioned in {secs:.1}s"),
            Some(_) => format!("re-provision failed after {secs:.1}s; the node stays"),
        },
    );
    out
}

/// The outcome of a re-provision stopped by Ctrl-C or SIGTERM while its worker still runs
/// (a script is running): nothing to destroy, so the node stays; it is recorded `failed` on
/// its tags (where the provider can update them) and said on stderr, naming it.
pub fn interrupted(provider: &dyn Provider, node: &Node, started: Instant) -> Outcome {
    let mut out = Outcome {
        name: node.name.clone(),
        node: Some(node.clone()),
        report: None,
        error: Some(Error::Interrupted),
        kept: true,
        duration: started.elapsed(),
        phases: Default::default(),
    };
    out.phases.fail(Some("script"), out.duration);
    deploy::record_state(provider, &mut out, DEPLOY_FAILED);
    out
}

/// The line a signal prints: the node stays, and how to run it again.
pub fn interrupted_line(name: &str) -> String {
    format!(
        "interrupted: {name}: re-provision stopped; nothing to destroy: the node stays as its scripts left it (run it again with `deploy-node --reprovision -n {name}`)"
    )
}

/// The plan without the files that are on the node as the plan has them.
fn changed_only(plan: &Plan, before: Option<&Applied>) -> Plan {
    let mut send = plan.clone();
    if let Some(a) = before {
        send.files.retain(|f| !a.has_file(f));
    }
    send
}

fn apply(
    plan: &Plan,
    provider: &str,
    node: &Node,
    rec: &Record,
    opts: &deploy::Options,
    out: &mut Outcome,
) -> Result<()> {
    let name = &plan.node_name;
    if node.state != NodeState::Running || node.public_ip.is_none() {
        return Err(Error::deploy(
            name,
            format!(
                "the provider reports the node as {}: start it, then re-provision",
                node.state
            ),
        ));
    }
    let mut target = deploy::target(plan, node, opts);
    if !opts.insecure_host_key {
        // the key the node showed when it was deployed: a changed key is refused
        target.host_key = HostKeyCheck::Pinned(rec.host_key.clone());
    }
    if plan.ssh_user.layer == "built-in default" {
        target.user = rec.user.clone();
    }
    if opts.identity.is_none() {
        if let Some(id) = &rec.identity {
            target.identities.insert(0, id.clone());
        }
    }
    let deadline = Instant::now() + opts.ssh_timeout;
    let mut still_there = || deploy::interrupts().check().map(|_| true);
    let mut conn = deploy::connect_recording(&target, deadline, &mut still_there, &mut out.phases)?;
    deploy::interrupts().check()?;
    let send = changed_only(plan, rec.applied.as_ref());
    let same = plan.files.len() - send.files.len();
    if same > 0 {
        output::status(
            name,
            &format!("{same} file(s) as last applied: not sent again"),
        );
    }
    let run_opts = RunOptions {
        keep_going: opts.keep_going,
        remove_scripts: plan.remove_scripts,
        script_timeout: opts.script_timeout,
        cloud_init: None,
    };
    let mut on_line = |_script: &str, _stderr: bool, line: &str| output::node_line(name, line);
    let report = deploy::provision_recording(
        &mut conn,
        provider,
        (plan, &send),
        &run_opts,
        &mut on_line,
        &mut out.phases,
    )?;
    let failed = report.failed_script().map(|s| (s.name.clone(), s.status));
    out.report = Some(report);
    if let Some((script, status)) = failed {
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "none".into());
        return Err(Error::deploy(
            name,
            format!("script {script} failed (exit status {status}); the node stays as the script left it"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SecretRef;

    fn record(secrets: Vec<SecretRef>) -> Record {
        Record {
            provider: "local".into(),
            name: "web".into(),
            id: "1".into(),
            create_id: None,
            host_key: "ssh-ed25519 AAAA".into(),
            user: "root".into(),
            identity: None,
            jump: None,
            jump_host_key: None,
            location: None,
            applied: Some(Applied {
                bundles: vec!["app".into(), "tz".into()],
                vars: [("image".to_string(), "debian-12".to_string())].into(),
                subvars: vec!["color=blue".into()],
                secrets,
                provision_run: 3,
                ..Applied::default()
            }),
        }
    }

    fn secret(name: &str, reference: Option<&str>) -> SecretRef {
        SecretRef {
            name: name.into(),
            layer: "-T".into(),
            reference: reference.map(String::from),
        }
    }

    #[test]
    fn the_request_takes_what_was_recorded_and_new_flags_win() {
        let base = Request {
            subvars: vec!["color=red".into()],
            ..Request::default()
        };
        let rec = record(vec![secret("token", Some("env:TOKEN"))]);
        let r = request(base, &rec).unwrap();
        assert_eq!(r.run, 4);
        assert_eq!(r.bundles, ["app", "tz"]);
        assert!(r.exact_bundles.is_some());
        // recorded first, so the new -t wins
        assert_eq!(r.subvars, ["color=blue", "color=red"]);
        assert_eq!(r.secrets, ["token=env:TOKEN"]);
        assert_eq!(r.image.as_deref(), Some("debian-12"));

        // -b given: exactly those
        let given = Request {
            bundles: vec!["tz".into()],
            ..Request::default()
        };
        let r = request(given, &rec).unwrap();
        assert_eq!(r.bundles, ["tz"]);
        assert_eq!(r.exact_bundles.as_deref(), Some("-b"));
    }

    #[test]
    fn a_literal_secret_must_be_given_again() {
        let rec = record(vec![secret("token", None)]);
        let e = request(Request::default(), &rec).unwrap_err().to_string();
        assert!(e.contains("secret variable 'token'"), "{e}");
        assert!(e.contains("give it again"), "{e}");
        let again = Request {
            secrets: vec!["token=new".into()],
            ..Request::default()
        };
        assert_eq!(request(again, &rec).unwrap().secrets, ["token=new"]);
    }
}
