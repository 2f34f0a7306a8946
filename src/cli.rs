//! The flags of the three commands (clap derive: the doc comments are the `--help` text) and
//! the glue from parsed flags to the library. Binaries parse, call `run_*`, and exit.

use crate::config::{Config, LayerPaths};
use crate::error::Result;
use crate::plan::{Plan, Request};
use crate::provider::{self, Provider};
use crate::{deploy, destroy, output};
use clap::{Args, Parser};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
#[command(name = "deploy-node", version, max_term_width = 100)]
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
#[command(name = "list-nodes", version, max_term_width = 100)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
    SshConfig,
}

/// Destroy nodes by name — only when every test in the -t result files passed.
#[derive(Debug, Parser)]
#[command(name = "destroy-node", version, max_term_width = 100)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Names of the nodes to destroy.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
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
    let plan = Plan::build(&cfg, &args.request())?;
    for w in &plan.warnings {
        output::warn(w);
    }
    if args.dry_run {
        return output::print_plan(&plan, args.json);
    }
    let provider = provider_for(&args.common, &cfg, Some(&plan.provider.value))?;
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
    };
    deploy::install_signal_handler();
    let outcome = deploy::deploy(&plan, provider, &opts);
    if let Some(path) = &args.description_file {
        if outcome.node.is_some() {
            output::write_description(path, &outcome)?;
        }
    }
    if let Some(err) = outcome.error {
        return Err(err);
    }
    let node = outcome.node.as_ref().expect("a deployed node");
    if args.json {
        output::print_json(&output::description(&outcome))
    } else {
        crate::exit::print_stdout(&format!(
            "{} {}\n",
            node.name,
            node.public_ip.as_deref().unwrap_or("")
        ))
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
            results: args.testresults.clone(),
            dry_run: args.dry_run,
            force: args.force,
        },
    )
}
