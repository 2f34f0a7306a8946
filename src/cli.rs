//! The flags of the three commands (clap derive: the doc comments are the `--help` text) and
//! the glue from parsed flags to the library. Binaries parse, call `run_*`, and exit.

use crate::config::{Config, LayerPaths};
use crate::error::Result;
use crate::output;
use crate::plan::{Plan, Request};
use clap::{Args, Parser};
use std::path::PathBuf;

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
    /// Print the plan (keys, files, rendered scripts) and create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
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
    /// Print what would be destroyed and destroy nothing.
    #[arg(long)]
    pub dry_run: bool,
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
    Err(crate::error::Error::usage(format!(
        "deploying with provider '{}' is not available in this build; use --dry-run",
        plan.provider.value
    )))
}

/// list-nodes.
pub fn run_list(args: ListArgs) -> Result<()> {
    let cfg = args.common.load_config()?;
    let provider = args
        .common
        .provider
        .clone()
        .or(cfg.provider.map(|p| p.value))
        .unwrap_or("local".into());
    crate::provider::check_name(&provider)?;
    Err(crate::error::Error::usage(format!(
        "listing provider '{provider}' is not available in this build"
    )))
}

/// destroy-node.
pub fn run_destroy(args: DestroyArgs) -> Result<()> {
    let cfg = args.common.load_config()?;
    let provider = args
        .common
        .provider
        .clone()
        .or(cfg.provider.map(|p| p.value))
        .unwrap_or("local".into());
    crate::provider::check_name(&provider)?;
    Err(crate::error::Error::usage(format!(
        "destroying {} with provider '{provider}' is not available in this build",
        args.names.join(", ")
    )))
}
