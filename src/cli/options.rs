//! deploy-node's flags turned into typed values once, before anything is spent (ripgrep's
//! `HiArgs`): the config loaded and its provider tables checked, one Plan per node built,
//! output paths probed, login credentials found. Every mistake the user can make shows up
//! here as exit 2; what runs afterwards (the provider, the deploys, the reports) takes these
//! values and never looks at a flag or a config string again.

use super::DeployArgs;
use crate::config::Config;
use crate::deploy;
use crate::error::Result;
use crate::plan::Plan;
use crate::provider::local::Isolation;
use crate::{pool, provider, state};
use std::path::PathBuf;

/// Where the results of a run go besides stdout.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// `-d FILE`: the JSON description.
    pub description: Option<PathBuf>,
    /// `--junit FILE`: the JUnit report.
    pub junit: Option<PathBuf>,
    /// `--log-dir DIR`: every script's whole output, `DIR/NODE/NN-script.{out,err}`.
    pub log_dir: Option<PathBuf>,
}

impl Outputs {
    /// Every output path must be writable before a node is created: a node whose report
    /// cannot be written is a node nobody hears about.
    pub fn check(&self) -> Result<()> {
        if let Some(p) = &self.description {
            state::check_writable("-d", p)?;
        }
        if let Some(p) = &self.junit {
            state::check_writable("--junit", p)?;
        }
        if let Some(p) = &self.log_dir {
            state::check_writable_dir("--log-dir", p)?;
        }
        Ok(())
    }
}

/// Everything deploy-node needs, typed and checked.
pub struct DeployOptions {
    pub common: super::Common,
    pub cfg: Config,
    /// One per node, in index order; never empty.
    pub plans: Vec<Plan>,
    /// For stderr before anything runs (bundle replaced, same target twice...).
    pub warnings: Vec<String>,
    /// The provider every plan uses.
    pub provider: String,
    /// `--isolation`, handed to the local driver as a value (not through its config table).
    pub isolation: Option<Isolation>,
    pub outputs: Outputs,
    pub json: bool,
    pub dry_run: bool,
    pub parallel: usize,
    /// `--ttl` or config's `ttl` was given (not the CI default): static hosts warn about it.
    pub ttl_given: bool,
    /// How many `--label`s: named when the provider's tag limit is exceeded.
    pub labels: usize,
    /// The per-node options; `prepared` is filled in once the provider resolved names.
    pub deploy: deploy::Options,
    /// `--reprovision`: the record of the node to provision again.
    pub reprovision: Option<crate::known_nodes::Record>,
}

impl DeployOptions {
    /// Loads the config and checks everything that can be checked without the network.
    pub fn from_args(args: DeployArgs) -> Result<DeployOptions> {
        let cfg = args.common.load_config()?;
        let mut request = args.request();
        let reprovision = match &args.name {
            Some(name) if args.reprovision => {
                let rec = reprovision_record(&cfg, &request, name)?;
                request = crate::reprovision::request(request, &rec)?;
                Some(rec)
            }
            Some(name) => {
                // a static host deployed again counts its runs too
                if crate::plan::chosen_provider(&cfg, &request).value == "static" {
                    request.run = crate::known_nodes::load("static", name)
                        .and_then(|r| r.applied)
                        .map_or(1, |a| a.provision_run + 1);
                }
                None
            }
            None => None,
        };
        if args.interactive {
            crate::prompt::ask_missing(&cfg, &mut request)?;
        }
        let requests = pool::requests(&request, usize::from(args.count))?;
        // plans know nothing of providers: the name is checked here, before any plan is built
        provider::check_chosen(&cfg, &crate::plan::chosen_provider(&cfg, &requests[0]))?;
        let plans = requests
            .iter()
            .map(|r| Plan::build(&cfg, r))
            .collect::<Result<Vec<Plan>>>()?;
        pool::check_unique(&plans)?;
        if plans[0].provider.value == "static" && args.name.is_none() {
            let hosts = provider::static_hosts::parse_hosts(&cfg.provider_table("static"))?;
            let names: Vec<&str> = hosts.keys().map(String::as_str).collect();
            return Err(crate::Error::usage(format!(
                "static needs -n NAME, one of the configured hosts ({})",
                if names.is_empty() {
                    "none: add them under [providers.static.hosts]".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        // a re-provision goes through the jump host the node was deployed through, unless
        // --ssh-jump says otherwise
        let recorded_jump = reprovision
            .as_ref()
            .filter(|_| args.ssh_jump.is_none())
            .and_then(crate::bastion::recorded);
        let jump = match recorded_jump {
            Some(j) => Some(j),
            None => {
                crate::bastion::resolve(&cfg, &plans[0].provider.value, args.ssh_jump.as_deref())?
                    .map(|j| j.default_user(&plans[0].ssh_user.value))
            }
        };
        // the plans (and so --dry-run) say which jump host is in effect and where it was set
        let mut plans = plans;
        for p in &mut plans {
            p.jump = jump.as_ref().map(|j| crate::config::Sourced {
                value: j.proxy_jump(),
                layer: j.source.clone(),
            });
        }
        let jump = jump.map(|j| j.connect_on_use(args.insecure_host_key, args.identity.clone()));
        let warnings = plans[0].warnings.clone();
        let outputs = Outputs {
            description: args.description_file.clone(),
            junit: args.junit.clone(),
            // absolute, so the paths -d and JUnit name work from any directory
            log_dir: args
                .log_dir
                .clone()
                .map(|d| std::path::absolute(&d).unwrap_or(d)),
        };
        outputs.check()?;
        crate::ssh::login::check(args.identity.as_deref())?;
        let wait_for_cloud_init = cfg.wait_for_cloud_init.unwrap_or(true);
        let config_ttl = match &cfg.ttl {
            Some(t) => Some(
                crate::expiry::parse_ttl(&t.value)
                    .map_err(|e| crate::Error::config(format!("{}: {e}", t.layer)))?,
            ),
            None => None,
        };
        let ttl_given = args.ttl.is_some_and(|t| t.0.is_some()) || config_ttl.flatten().is_some();
        let ttl = crate::expiry::effective_ttl(args.ttl.map(|t| t.0), config_ttl);
        let records = crate::expiry::records(ttl, &args.labels);
        Ok(DeployOptions {
            provider: plans[0].provider.value.clone(),
            common: args.common,
            cfg,
            plans,
            warnings,
            isolation: args.isolation,
            outputs,
            json: args.json,
            dry_run: args.dry_run,
            parallel: usize::from(args.parallel),
            reprovision,
            ttl_given,
            labels: args.labels.len(),
            deploy: deploy::Options {
                ssh_timeout: args.ssh_timeout,
                script_timeout: args.script_timeout,
                keep_going: args.keep_going,
                wait_for_cloud_init,
                keep_on_failure: args.keep_on_failure,
                insecure_host_key: args.insecure_host_key,
                identity: args.identity,
                jump,
                prepared: None,
                records,
            },
        })
    }

    /// More than one node.
    pub fn many(&self) -> bool {
        self.plans.len() > 1
    }
}

/// The record of the node `--reprovision` names: without one (a node not deployed from this
/// machine, or destroyed) there is no pinned host key and nothing to compare with.
fn reprovision_record(
    cfg: &Config,
    request: &crate::plan::Request,
    name: &str,
) -> Result<crate::known_nodes::Record> {
    let chosen = crate::plan::chosen_provider(cfg, request);
    provider::check_chosen(cfg, &chosen)?;
    crate::known_nodes::load(&chosen.value, name).ok_or_else(|| {
        crate::Error::usage(format!(
            "{name}: no record of a deploy from this machine on provider {} (state directory: {}): nothing to re-provision (see list-nodes -p {})",
            chosen.value,
            state::state_dir().join("nodes").display(),
            chosen.value
        ))
    })
}
