//! The flags of the three commands (clap derive: the doc comments are the `--help` text) and
//! the glue from parsed flags to the library. Binaries parse, call `run_*`, and exit.

use crate::config::{Config, LayerPaths};
use crate::error::Result;
use crate::plan::{Plan, Request};
use crate::provider::{self, Provider};
use crate::{deploy, destroy, output, pool};
use clap::{Args, Parser};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Providers, credentials and environment: the tail of every command's `--help` and man
/// page, from the provider registry.
fn providers_help() -> String {
    provider::registry::help()
}

const DEPLOY_STATUS: &str = concat!(
    "EXIT STATUS:\n",
    "  0 success; 2 usage or config error, nothing created; 11 unexpected error;\n",
    "  12 malformed provider response; 13 provider unavailable; 14 deployment error (a failing\n",
    "  script keeps the node); 15 timeout; 130 interrupted (what was created is destroyed)\n\n",
);

const DESTROY_STATUS: &str = concat!(
    "EXIT STATUS:\n",
    "  0 destroyed (or already gone); 1 could not destroy, not found, or refused (untagged without\n",
    "  --force); 2 test results unreadable, nothing destroyed; 3 not every test passed (or none\n",
    "  ran), nothing destroyed; 130 interrupted\n\n",
);

/// Flags shared by deploy-node, list-nodes and destroy-node.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Config layer directory (provision.toml, pubkeys/, scripts/, files/); repeatable, later wins.
    #[arg(short = 'c', long = "config-path", value_name = "DIR")]
    pub config_path: Vec<PathBuf>,
    /// Provider driver to use (default: config `provider`, else `local`).
    #[arg(short = 'p', long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Provider user/account id (AWS access key id, OpenStack user); overrides env and config.
    #[arg(short = 'u', long, value_name = "ID")]
    pub userid: Option<String>,
    /// Provider secret (API token or secret key); overrides env and config. Never printed.
    #[arg(
        short = 'k',
        long = "secret-key",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// More detail on stderr (repeat for more).
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short = 'q', long, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl Common {
    pub fn layer_paths(&self) -> LayerPaths {
        LayerPaths {
            cli: self.config_path.clone(),
        }
    }

    /// Sets the stderr verbosity and loads the config layers, printing their warnings.
    pub fn load_config(&self) -> Result<Config> {
        output::set_verbosity(if self.quiet { -1 } else { self.verbose as i8 });
        let cfg = Config::load(&self.layer_paths())?;
        for layer in &cfg.layers {
            output::debug(&format!("config layer: {}", layer.label()));
        }
        Ok(cfg)
    }
}

/// Create a node, install public keys, copy files and run scripts over SSH.
///
/// Prints `NAME PUBLIC_IP` on stdout when the node is ready.
#[derive(Debug, Parser)]
#[command(name = "deploy-node", version, max_term_width = 100, after_long_help = format!("{DEPLOY_STATUS}{}", providers_help()))]
pub struct DeployArgs {
    #[command(flatten)]
    pub common: Common,
    /// Bundle to install (repeatable, in order), after the config's default bundles.
    #[arg(short = 'b', long = "bundle", value_name = "BUNDLE")]
    pub bundle: Vec<String>,
    /// Write a JSON description of the deployed node to FILE.
    #[arg(short = 'd', long = "description-file", value_name = "FILE")]
    pub description_file: Option<PathBuf>,
    /// Image name (exact, or the newest whose name starts with it).
    #[arg(short = 'i', long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Location (region/datacenter) name.
    #[arg(short = 'l', long, value_name = "LOCATION")]
    pub location: Option<String>,
    /// Node name (a DNS label); default: PREFIX plus 6 random letters/digits.
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<String>,
    /// Size (plan/server type/flavor) name.
    #[arg(short = 's', long, value_name = "SIZE")]
    pub size: Option<String>,
    /// Template variable KEY=VALUE (repeatable); overrides [vars].
    #[arg(short = 't', long = "subvar", value_name = "KEY=VALUE")]
    pub subvar: Vec<String>,
    /// Node name prefix when -n is not given [default: config name_prefix, else deploy-test-].
    #[arg(short = 'x', long = "prefix", value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Login user on the node [default: config ssh_user, else root].
    #[arg(long = "ssh-user", value_name = "USER")]
    pub ssh_user: Option<String>,
    /// Private key file for SSH, tried after the ssh-agent and before ~/.ssh/id_*.
    #[arg(long = "identity", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Deadline for the node to run and accept SSH (e.g. 90s, 10m).
    #[arg(long = "ssh-timeout", value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub ssh_timeout: Duration,
    /// Kill a script that runs longer than this (e.g. 30s, 5m) and count it as failed.
    #[arg(long = "script-timeout", value_name = "DURATION", value_parser = parse_duration)]
    pub script_timeout: Option<Duration>,
    /// Run the remaining scripts after one fails (the deployment still fails).
    #[arg(long)]
    pub keep_going: bool,
    /// Keep a node whose deployment failed or was interrupted instead of destroying it.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Do not check the node's SSH host key (says so on stderr). Avoid.
    #[arg(long)]
    pub insecure_host_key: bool,
    /// Write a JUnit XML report of the deployment (one test case per step) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Deploy N nodes (names: PREFIX plus a random suffix each, or -n with {i} for the index).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: usize,
    /// At most this many nodes are deployed at once.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub parallel: usize,
    /// Local nodes: `auto` isolates them in namespaces when possible (root on Linux) and says
    /// so when not; `required` refuses to deploy without isolation; `off` never isolates.
    #[arg(long, value_name = "MODE", value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(provider::local::Isolation::NAMES), |s: String| s.parse::<provider::local::Isolation>().expect("a listed value")))]
    pub isolation: Option<provider::local::Isolation>,
    /// Print the plan (keys, files, rendered scripts) and create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `90`, `90s`, `10m`, `1h`, `250ms`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (like 90s, 10m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

impl DeployArgs {
    pub fn request(&self) -> Request {
        Request {
            provider: self.common.provider.clone(),
            image: self.image.clone(),
            size: self.size.clone(),
            location: self.location.clone(),
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            bundles: self.bundle.clone(),
            subvars: self.subvar.clone(),
            ssh_user: self.ssh_user.clone(),
        }
    }
}

/// List nodes: `NAME PUBLIC_IP` per line.
#[derive(Debug, Parser)]
#[command(name = "list-nodes", version, max_term_width = 100, after_long_help = providers_help())]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    /// Output format: `text` (NAME PUBLIC_IP), `json`, or `ssh-config` (Host blocks for `ssh -F`).
    #[arg(long, value_enum, default_value = "text")]
    pub format: ListFormat,
    /// Every node of the account, not only the ones provision made.
    #[arg(long)]
    pub all: bool,
    /// Nodes whose deployment never finished and were not kept on purpose (from the journal).
    #[arg(long)]
    pub orphans: bool,
    /// The provider's images (valid -i values) instead of nodes.
    #[arg(long, conflicts_with_all = ["sizes", "locations", "orphans"])]
    pub images: bool,
    /// The provider's sizes (valid -s values) instead of nodes.
    #[arg(long, conflicts_with_all = ["locations", "orphans"])]
    pub sizes: bool,
    /// The provider's locations (valid -l values) instead of nodes.
    #[arg(long, conflicts_with = "orphans")]
    pub locations: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
    SshConfig,
}

/// Destroy nodes by name — only when every test in the -t result files passed.
#[derive(Debug, Parser)]
#[command(name = "destroy-node", version, max_term_width = 100, after_long_help = format!("{DESTROY_STATUS}{}", providers_help()))]
pub struct DestroyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Names of the nodes to destroy.
    #[arg(value_name = "NAME", required_unless_present = "prefix")]
    pub names: Vec<String>,
    /// Destroy every node provision made whose name starts with PREFIX (prints them first).
    #[arg(long, value_name = "PREFIX", conflicts_with = "names")]
    pub prefix: Option<String>,
    /// At most this many nodes are destroyed at once.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub parallel: usize,
    /// JUnit XML test results (repeatable): destroy only if at least one test ran and all passed.
    #[arg(short = 't', long = "testresults", value_name = "FILE")]
    pub testresults: Vec<PathBuf>,
    /// Print the decision and what would be destroyed; destroy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Destroy nodes that provision did not make (untagged).
    #[arg(long)]
    pub force: bool,
}

/// deploy-node.
pub fn run_deploy(args: DeployArgs) -> Result<()> {
    let cfg = args.common.load_config()?;
    let plans = pool::requests(&args.request(), args.count)?
        .iter()
        .map(|r| Plan::build(&cfg, r))
        .collect::<Result<Vec<Plan>>>()?;
    pool::check_unique(&plans)?;
    for w in &plans[0].warnings {
        output::warn(w);
    }
    let many = plans.len() > 1;
    if args.dry_run {
        return match (many, args.json) {
            (false, _) => output::print_plan(&plans[0], args.json),
            (true, true) => output::print_json(&plans),
            (true, false) => plans.iter().try_for_each(|p| output::print_plan(p, false)),
        };
    }
    let provider_name = plans[0].provider.value.clone();
    let mut cfg = cfg;
    if let Some(iso) = args.isolation {
        cfg.providers
            .entry("local".into())
            .or_default()
            .insert("isolation".into(), iso.to_string().into());
    }
    let provider = provider_for(&args.common, &cfg, Some(&provider_name))?;
    let p0 = &plans[0];
    let value = crate::config::value_of;
    let prepared = provider.prepare(&value(&p0.image), &value(&p0.size), &value(&p0.location))?;
    if args.insecure_host_key {
        output::warn("--insecure-host-key: the node's host key is not checked; a machine in the middle would not be noticed");
    }
    let opts = deploy::Options {
        ssh_timeout: args.ssh_timeout,
        script_timeout: args.script_timeout,
        keep_going: args.keep_going,
        keep_on_failure: args.keep_on_failure,
        insecure_host_key: args.insecure_host_key,
        identity: args.identity.clone(),
        prepared: Some(prepared),
    };
    deploy::install_signal_handler();
    output::start_progress(
        &plans
            .iter()
            .map(|p| p.node_name.clone())
            .collect::<Vec<_>>(),
    );
    // Many nodes wait at once: answer their polls from one shared list call per interval
    // instead of a get per node (what real APIs rate-limit).
    let provider: Arc<dyn Provider> = if many {
        Arc::new(provider::coalesce::Coalesced::new(provider))
    } else {
        provider
    };
    let outcomes = pool::deploy_all(&plans, provider, &opts, args.parallel);
    output::finish_progress();
    if many {
        output::info(&format!(
            "summary:\n{}",
            pool::summary(&outcomes).trim_end()
        ));
    }
    if let Some(path) = &args.description_file {
        let descs: Vec<serde_json::Value> = outcomes
            .iter()
            .filter(|o| o.node.is_some())
            .map(output::description)
            .collect();
        if !descs.is_empty() {
            let value = if many {
                serde_json::Value::Array(descs)
            } else {
                descs.into_iter().next().unwrap()
            };
            let text = serde_json::to_string_pretty(&value).expect("serializable") + "\n";
            crate::state::write_atomic(path, text.as_bytes(), 0o644)?;
        }
    }
    if let Some(path) = &args.junit {
        let nodes: Vec<_> = outcomes.iter().map(deploy::junit_result).collect();
        crate::state::write_atomic(path, crate::junit::report::to_xml(&nodes).as_bytes(), 0o644)?;
    }
    let ok: Vec<&deploy::Outcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
    if args.json {
        let descs: Vec<serde_json::Value> = ok.iter().map(|o| output::description(o)).collect();
        if many {
            output::print_json(&descs)?;
        } else if let Some(d) = descs.first() {
            output::print_json(d)?;
        }
    } else {
        let mut text = String::new();
        for o in &ok {
            let ip = o
                .node
                .as_ref()
                .and_then(|n| n.public_ip.as_deref())
                .unwrap_or("");
            text.push_str(&format!("{} {ip}\n", o.name));
        }
        crate::exit::print_stdout(&text)?;
    }
    match outcomes
        .into_iter()
        .filter_map(|o| o.error)
        .max_by_key(|e| e.code())
    {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The provider for a command: `-p`, else the plan's/config's, else `local`.
fn provider_for(common: &Common, cfg: &Config, chosen: Option<&str>) -> Result<Arc<dyn Provider>> {
    let name = chosen
        .map(str::to_string)
        .or_else(|| common.provider.clone())
        .or_else(|| cfg.provider.as_ref().map(|p| p.value.clone()))
        .unwrap_or_else(|| "local".into());
    let creds = provider::Credentials {
        userid: common.userid.clone(),
        secret: common.secret_key.clone(),
    };
    Ok(Arc::from(provider::build(&name, cfg, &creds)?))
}

/// list-nodes.
pub fn run_list(args: ListArgs) -> Result<()> {
    let cfg = args.common.load_config()?;
    let provider = provider_for(&args.common, &cfg, None)?;
    let catalog = [
        (args.images, provider::Catalog::Images),
        (args.sizes, provider::Catalog::Sizes),
        (args.locations, provider::Catalog::Locations),
    ]
    .into_iter()
    .find_map(|(on, kind)| on.then_some(kind));
    if let Some(kind) = catalog {
        return output::print_catalog(&provider.catalog(kind)?, args.format);
    }
    let nodes = if args.orphans {
        destroy::orphans(provider.as_ref())?
    } else {
        provider.list(args.all)?
    };
    output::print_nodes(&nodes, args.format)
}

/// destroy-node.
pub fn run_destroy(args: DestroyArgs) -> Result<()> {
    let cfg = args.common.load_config()?;
    let provider = provider_for(&args.common, &cfg, None)?;
    destroy::run(
        provider.as_ref(),
        &destroy::Request {
            names: args.names.clone(),
            prefix: args.prefix.clone(),
            parallel: args.parallel,
            results: args.testresults.clone(),
            dry_run: args.dry_run,
            force: args.force,
        },
    )
}
