//! destroy-node: the test-results gate, looking nodes up by name, and destroying them. A node
//! is destroyed only when every `-t` file reads as JUnit, at least one test ran and none failed;
//! otherwise it is kept and the user is told why. Nodes provision did not make need `--force`.

use crate::error::{Error, Result};
use crate::journal::{self, Status};
use crate::junit::{self, GateDecision};
use crate::output;
use crate::provider::{Destroyed, Node, Provider};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct Request {
    pub names: Vec<String>,
    /// `--prefix`: every tagged node whose name starts with it.
    pub prefix: Option<String>,
    /// `--expired`: every tagged node past its expiry.
    pub expired: bool,
    /// `--label KEY=VALUE`: every tagged node carrying all of them.
    pub labels: Vec<(String, String)>,
    pub parallel: usize,
    pub results: Vec<PathBuf>,
    pub dry_run: bool,
    pub force: bool,
    /// Names destroy-node destroys without `--force` (config `destroyable_prefixes`).
    pub destroyable: Vec<String>,
}

/// Runs the gate, then destroys every named node; the worst failure decides the exit code.
pub fn run(provider: &dyn Provider, req: &Request) -> Result<()> {
    let kept = || match &req.prefix {
        Some(prefix) => format!("nodes named {prefix}* kept"),
        None => format!(
            "node{} {} kept",
            if req.names.len() > 1 { "s" } else { "" },
            req.names.join(", ")
        ),
    };
    if !req.results.is_empty() {
        let mut all = Vec::new();
        for path in &req.results {
            let r = junit::read_results(path)
                .map_err(|e| Error::Results(format!("{e}; nothing destroyed")))?;
            output::info(&r.summary_line());
            for f in &r.flaky {
                output::warn(&format!("flaky: {f} failed, then passed on rerun"));
            }
            all.push(r);
        }
        match junit::gate(&all) {
            GateDecision::Destroy { .. } if req.dry_run => {
                output::info("all tests passed: would destroy (dry run)")
            }
            GateDecision::Destroy { .. } => output::info("all tests passed: destroying"),
            GateDecision::Keep { reason } => {
                return Err(Error::TestsFailed(format!("{reason}\n{}", kept())));
            }
        }
    }
    let selected = req.expired || !req.labels.is_empty();
    let groups = match &req.prefix {
        _ if selected => regroup(
            provider,
            vec![(
                None,
                crate::expiry::select(provider, req.expired, &req.labels)?,
            )],
        ),
        Some(prefix) => regroup(provider, vec![(None, by_prefix(provider, prefix)?)]),
        None => {
            if !req.force && provider.name() != "static" {
                check_destroyable(&req.names, &req.destroyable)?;
            }
            // a multi-scope list may find a name in a scope its record does not say
            regroup(provider, find_where_made(provider, &req.names, req.force)?)
        }
    };
    if req.dry_run {
        for n in groups.iter().flat_map(|(_, nodes)| nodes) {
            output::info(&format!(
                "would destroy {} (id {}, {})",
                n.name,
                n.id,
                provider.name()
            ));
        }
        return Ok(());
    }
    let home = provider.scope();
    let mut failures = Vec::new();
    for (scope, nodes) in &groups {
        if let Some(s) = scope {
            provider.enter_scope(s);
        }
        failures.extend(destroy_all(provider, req, nodes));
        if let (Some(_), Some(h)) = (scope, &home) {
            provider.enter_scope(h);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::NotDestroyed(failures.join("; ")))
    }
}

/// Destroys `nodes`, at most `--parallel` at once; every node is tried whatever happens to
/// the others. One line per node that could not be destroyed.
fn destroy_all(provider: &dyn Provider, req: &Request, nodes: &[Node]) -> Vec<String> {
    crate::pool::raise_fd_limit(req.parallel.min(nodes.len()));
    let results = crate::pool::run_bounded(nodes, req.parallel, |node| {
        let how = provider.destroy(&node.id)?;
        journal::clear(provider.name(), &node.name);
        crate::known_nodes::forget(provider.name(), &node.name);
        crate::destroyed::record(provider.name(), &node.name);
        output::info(&match how {
            Destroyed::Destroyed => format!("{}: destroyed", node.name),
            Destroyed::AlreadyGone => format!("{}: already gone", node.name),
            Destroyed::Forgotten => {
                format!(
                    "{}: forgotten; the machine itself was not touched",
                    node.name
                )
            }
        });
        Ok::<(), Error>(())
    });
    nodes
        .iter()
        .zip(results)
        .filter_map(|(node, r)| {
            r.err()
                .map(|e| format!("{}: could not destroy: {e}", node.name))
        })
        .collect()
}

/// Nodes grouped by where calls must go to destroy them: by the scope of each node's location
/// (EC2: the region of its zone, as a multi-region `regions` list found it), else the scope
/// it was looked up in; the current scope is `None` (first).
fn regroup(
    provider: &dyn Provider,
    groups: Vec<(Option<String>, Vec<Node>)>,
) -> Vec<(Option<String>, Vec<Node>)> {
    let home = provider.scope();
    let mut out: BTreeMap<Option<String>, Vec<Node>> = BTreeMap::new();
    for (looked_in, nodes) in groups {
        for n in nodes {
            let scope = n
                .location
                .as_deref()
                .and_then(|l| provider.scope_of(l))
                .or_else(|| looked_in.clone())
                .filter(|s| home.as_ref() != Some(s));
            out.entry(scope).or_default().push(n);
        }
    }
    out.into_iter().collect()
}

/// Named nodes grouped by where calls must go to reach them: a name this machine recorded
/// making in another scope of the provider (EC2: another region, from its node record or
/// journal entry) is looked up there, whatever region is current; the others where calls go
/// now (`None`, first). Every name is looked up before anything is destroyed.
fn find_where_made(
    provider: &dyn Provider,
    names: &[String],
    force: bool,
) -> Result<Vec<(Option<String>, Vec<Node>)>> {
    let home = provider.scope();
    let mut by_scope: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for name in names {
        let scope = crate::known_nodes::recorded_location(provider.name(), name)
            .and_then(|l| provider.scope_of(&l))
            .filter(|s| home.as_ref() != Some(s));
        by_scope.entry(scope).or_default().push(name.clone());
    }
    let mut out = Vec::new();
    for (scope, names) in by_scope {
        if let Some(s) = &scope {
            output::info(&format!(
                "{}: looked up in {s}, where this machine made {}",
                names.join(", "),
                if names.len() == 1 { "it" } else { "them" }
            ));
            provider.enter_scope(s);
        }
        let found = find(provider, &names, force);
        if let (Some(_), Some(h)) = (&scope, &home) {
            provider.enter_scope(h);
        }
        out.push((scope, found?));
    }
    Ok(out)
}

/// The original's guard: a name outside `destroyable_prefixes` is refused without `--force`,
/// before anything is looked up (static hosts are exempt: destroying one only forgets it).
fn check_destroyable(names: &[String], prefixes: &[String]) -> Result<()> {
    for name in names {
        if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            return Err(Error::NotDestroyed(format!(
                "node '{name}' is outside destroyable_prefixes ({}); nothing destroyed; use --force to destroy it anyway",
                prefixes.join(", ")
            )));
        }
    }
    Ok(())
}

/// Looks every name up; a missing name, two nodes with one name, or an untagged node without
/// `--force` stops everything before anything is destroyed.
fn find(provider: &dyn Provider, names: &[String], force: bool) -> Result<Vec<Node>> {
    let all = provider.list(true)?;
    let mut out = Vec::new();
    for name in names {
        let matches: Vec<&Node> = all.iter().filter(|n| &n.name == name).collect();
        match matches.as_slice() {
            [] if crate::destroyed::was_destroyed(provider.name(), name) => {
                output::info(&format!("{name}: already gone (destroyed earlier)"));
            }
            [] => {
                return Err(Error::NotDestroyed(format!(
                    "node '{name}' not found on {} (and not destroyed from this machine); nothing destroyed",
                    provider.name()
                )))
            }
            [one] => {
                if !one.is_managed() && !force {
                    return Err(Error::NotDestroyed(format!(
                        "node '{name}' (id {}) was not made by provision (no 'provision' tag); use --force to destroy it anyway",
                        one.id
                    )));
                }
                out.push((*one).clone());
            }
            many => {
                let ids: Vec<&str> = many.iter().map(|n| n.id.as_str()).collect();
                return Err(Error::NotDestroyed(format!(
                    "{} nodes are named '{name}' (ids {}); nothing destroyed",
                    many.len(),
                    ids.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

/// `--prefix`: the tagged nodes whose names start with `prefix`, announced before anything
/// happens. Untagged nodes are never matched by a prefix.
fn by_prefix(provider: &dyn Provider, prefix: &str) -> Result<Vec<Node>> {
    if prefix.is_empty() {
        return Err(Error::usage("--prefix must not be empty"));
    }
    let nodes: Vec<Node> = provider
        .list(false)?
        .into_iter()
        .filter(|n| n.is_managed() && n.name.starts_with(prefix))
        .collect();
    if nodes.is_empty() {
        return Err(Error::NotDestroyed(format!(
            "no node made by provision is named {prefix}* on {}",
            provider.name()
        )));
    }
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    output::info(&format!(
        "{} node(s) match {prefix}*: {}",
        nodes.len(),
        names.join(", ")
    ));
    Ok(nodes)
}

/// Journal entries of this provider whose node still exists but was never finished or kept,
/// matched on the create attempt's id (see [`journal::Entry::matches`]).
pub fn orphans(provider: &dyn Provider) -> Result<Vec<Node>> {
    let entries: Vec<journal::Entry> = journal::entries()
        .into_iter()
        .filter(|e| e.provider == provider.name() && e.status != Status::Kept)
        .collect();
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let all = provider.list(true)?;
    Ok(all
        .into_iter()
        .filter(|n| entries.iter().any(|e| e.matches(n)))
        .collect())
}
