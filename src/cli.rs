//! The flags of the three commands (clap derive: the doc comments are the `--help` text) and
//! the glue from parsed flags to the library. Binaries parse, call `run_*`, and exit.

use crate::config::{Config, LayerPaths};
use crate::error::Result;
use crate::plan::Request;
use crate::provider::{self, Provider};
use crate::{deploy, destroy, output, pool};
use clap::{Args, Parser};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod logs;
mod node;
mod options;
mod report;

pub use node::{run_node, NodeAction, NodeArgs};
pub use options::{DeployOptions, Outputs};
pub use report::{json_document, JSON_FORMAT};

/// Providers, credentials and environment: the tail of every command's `--help` and man
/// page, from the provider registry.
fn providers_help() -> String {
    provider::registry::help()
}

/// The nodes deploy-node is tested against (issue 19; tests/node_matrix.rs).
macro_rules! nodes_help {
    () => {
        "\
NODES:
  Tested end to end (tests/node_matrix.rs): Debian/Ubuntu with OpenSSH; BusyBox userland behind
  Dropbear (Alpine, OpenWrt); OpenSSH limited to modern algorithms, or with an RSA host key
  (rsa-sha2-512); root's shell tcsh, a fish user; noexec /tmp; PermitRootLogin no with
  passwordless sudo; MaxSessions 1. Exit 14 at once, saying what to change: a server whose key
  exchange, host key, cipher or MAC lists share nothing with deploy-node's (both lists named);
  sudo that needs a password or a tty (falls back to the login user); a full disk (file named,
  nothing half-written).

"
    };
}

const LIST_STATUS: &str = concat!(
    "EXIT STATUS:\n",
    "  0 success; 2 usage or config error; 11 unexpected error; 12 malformed provider\n",
    "  response; 13 provider unavailable (5xx/429 after retries)\n\n",
);

const DEPLOY_STATUS: &str = concat!(
    nodes_help!(),
    "EXIT STATUS:\n",
    "  0 success; 2 usage or config error, nothing created; 11 unexpected error;\n",
    "  12 malformed provider response; 13 provider unavailable; 14 deployment error (a failing\n",
    "  script keeps the node); 15 timeout; 130 interrupted (what was created is destroyed;\n",
    "  a re-provision's node stays)\n\n",
    "DESCRIPTION FILE (-d FILE), format 2:\n",
    "  The original's keys with its types, then today's additions; --count N writes a JSON\n",
    "  array of such objects. state is libcloud's integer (0 running, 2 terminated, 3 pending,\n",
    "  4 unknown, 5 stopped, 7 error); state_name says it in words. Nodes that were never\n",
    "  created are left out. Example:\n",
    "    {\"format\": 2, \"id\": \"4f1c2a\", \"name\": \"deploy-test-k3x9qa\", \"state\": 0,\n",
    "     \"public_ip\": [\"127.0.0.5\"], \"private_ip\": [], \"image_id\": \"debian-12\",\n",
    "     \"image_name\": \"debian-12\", \"state_name\": \"running\", \"provider\": \"local\",\n",
    "     \"size\": null, \"location\": null, \"ssh_port\": 22, \"kept\": false, \"error\": null,\n",
    "     \"scripts\": [{\"name\": \"tz.sh\", \"status\": 0, \"duration\": 0.41}],\n",
    "     \"phases\": [{\"phase\": \"create\", \"duration\": 0.02}, ..., {\"phase\": \"script\",\n",
    "      \"script\": \"tz.sh\", \"duration\": 0.41}], \"duration\": 1.93}\n",
    "  phases: seconds in each phase the deployment finished, in order: create (the API\n",
    "  answered), running, tcp (port open), banner, auth, upload, cloud-init, then each script\n",
    "  that ran; duration: the whole deployment. A failed deployment ends with the phase it was\n",
    "  stuck in, marked \"failed\": true. --json carries the same two fields, --junit a suite\n",
    "  \"NODE phases\" with a test case per phase (the stuck one failing), and a pool's summary\n",
    "  the slowest phase.\n",
    "  IPv6 addresses are written bare here (\"::1\"), as [::1]:PORT where a port follows.\n\n",
    "COMING FROM PROVISION 0.9:\n",
    "  A config directory with the original's __init__.py is read statically (never run);\n",
    "  --convert-config DIR prints it as provision.toml. The original's long flags still work:\n",
    "  --bundles, --subvars, --config_paths/--config-paths, --secret_key, --description (and\n",
    "  list-nodes/destroy-node: --config_paths, --secret_key, --testresults). -v counts here and\n",
    "  takes no value. -l/-s take names, not the original's list indexes.\n\n",
    "SHELL COMPLETIONS:\n",
    "  deploy-node --completions bash > /etc/bash_completion.d/deploy-node (also zsh, fish;\n",
    "  likewise for list-nodes and destroy-node).\n\n",
);

const DESTROY_STATUS: &str = concat!(
    "EXIT STATUS:\n",
    "  0 destroyed, or already gone (destroyed earlier from this machine, within 30 days, or\n",
    "  vanished while being destroyed); 1 could not destroy, not found, or refused (untagged\n",
    "  without --force); 2 usage or config error, or test results unreadable: nothing destroyed;\n",
    "  3 not every test passed (or none ran), nothing destroyed; 130 interrupted\n\n",
);

/// Flags shared by deploy-node, list-nodes and destroy-node.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Config layer directory (provision.toml, pubkeys/, scripts/, files/); repeatable, later wins.
    #[arg(short = 'c', long = "config-path", value_name = "DIR", aliases = ["config_paths", "config-paths", "config_path", "config"])]
    pub config_path: Vec<PathBuf>,
    /// Provider driver to use (default: config `provider`, else `local`).
    #[arg(short = 'p', long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Provider user/account id, for drivers that take one besides the secret (openstack: the
    /// user name; ec2: the access key id); overrides env and config.
    #[arg(short = 'u', long, value_name = "ID", alias = "user")]
    pub userid: Option<String>,
    /// Provider secret (API token or secret key); overrides env and config. Never printed.
    #[arg(
        short = 'k',
        long = "secret-key",
        aliases = ["secret_key", "secret"],
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// More detail on stderr: -v ours, -vv also the HTTP client's (tokens redacted), -vvv its trace.
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short = 'q', long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print the shell completion script for SHELL (bash, zsh, fish) on stdout and exit.
    #[arg(long, value_name = "SHELL", value_enum)]
    pub completions: Option<clap_complete::Shell>,
}

impl Common {
    pub fn layer_paths(&self) -> LayerPaths {
        LayerPaths {
            cli: self.config_path.clone(),
        }
    }

    /// Sets the stderr verbosity and loads the config layers, printing their warnings; every
    /// `[providers.NAME]` table is checked here, for all three commands.
    pub fn load_config(&self) -> Result<Config> {
        output::set_verbosity(if self.quiet { -1 } else { self.verbose as i8 });
        let cfg = Config::load(&self.layer_paths())?;
        for layer in &cfg.layers {
            output::debug(&format!("config layer: {}", layer.label()));
        }
        for w in provider::tables::check(&cfg)? {
            output::warn(&w);
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
    #[arg(short = 'b', long = "bundle", value_name = "BUNDLE", alias = "bundles")]
    pub bundle: Vec<String>,
    /// Write a JSON description of the deployed node to FILE.
    /// Checked writable before anything is created; the format is under DESCRIPTION FILE.
    #[arg(
        short = 'd',
        long = "description-file",
        value_name = "FILE",
        alias = "description"
    )]
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
    #[arg(
        short = 't',
        long = "subvar",
        value_name = "KEY=VALUE",
        alias = "subvars"
    )]
    pub subvar: Vec<String>,
    /// Secret template variable KEY=VALUE (repeatable): never printed (*** in plans, redacted
    /// elsewhere). VALUE may be env:NAME or file:PATH to keep it out of the command line.
    #[arg(short = 'T', long = "secret-var", value_name = "KEY=VALUE")]
    pub secret_var: Vec<String>,
    /// Ask on the terminal for every required variable not set by a layer, the environment or
    /// a flag (input hidden for those declared `secret = true`); without a terminal on stdin,
    /// missing ones are exit 2 as usual.
    #[arg(long)]
    pub interactive: bool,
    /// Node name prefix when -n is not given [default: config name_prefix, else deploy-test-].
    #[arg(
        short = 'x',
        long = "prefix",
        value_name = "PREFIX",
        conflicts_with = "name"
    )]
    pub prefix: Option<String>,
    /// Login user on the node [default: config ssh_user, else root].
    #[arg(long = "ssh-user", value_name = "USER")]
    pub ssh_user: Option<String>,
    /// Private key file for SSH, tried after the ssh-agent and before ~/.ssh/id_*.
    #[arg(long = "identity", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Reach the nodes through this bastion, [USER@]HOST[:PORT] (USER defaults to the
    /// --ssh-user in effect), as OpenSSH's ProxyJump: one connection to it for every node, its
    /// host key checked (ssh_jump_host_key, else known_hosts); nodes are reached on their
    /// private address. `none` turns off a configured ssh_jump [default: config ssh_jump].
    #[arg(long = "ssh-jump", value_name = "[USER@]HOST[:PORT]")]
    pub ssh_jump: Option<String>,
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
    /// Do not check the SSH host key of the node, nor of the jump host (says so on stderr). Avoid.
    #[arg(long)]
    pub insecure_host_key: bool,
    /// Write a JUnit XML report of the deployment (one test case per step) to FILE; checked
    /// writable before anything is created.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write every script's whole stdout and stderr to DIR/NODE/NN-script.out and .err (made
    /// if missing); -d, --json and --junit name the files.
    #[arg(long = "log-dir", value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Deploy N nodes, 1 to 1000 (names: PREFIX plus a random suffix each, or -n with {i} for
    /// the index; scripts see it as `node_index`). 1000 is the most one run's API calls fit in
    /// an account's hourly budget (DigitalOcean 5000, Hetzner 3600 requests per hour).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_COUNT as i64))]
    pub count: u16,
    /// At most this many nodes are deployed at once (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=MAX_COUNT as i64))]
    pub parallel: u16,
    /// Local nodes: `auto` isolates them in namespaces when possible (root on Linux) and says
    /// so when not; `required` refuses to deploy without isolation; `off` never isolates.
    #[arg(long, value_name = "MODE", value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(provider::local::Isolation::NAMES), |s: String| s.parse::<provider::local::Isolation>().expect("a listed value")))]
    pub isolation: Option<provider::local::Isolation>,
    /// How long the node lives: its absolute expiry is recorded on the node (provision-expires-at
    /// tag), and `destroy-node --expired` (a scheduled reaper) destroys it afterwards. `0` or
    /// `never`: no expiry. Default: config `ttl`, else 4h when CI=true, else none. Static hosts
    /// are never destroyed: there it is ignored, with a warning.
    #[arg(long, value_name = "DURATION", value_parser = crate::expiry::Ttl::parse)]
    pub ttl: Option<crate::expiry::Ttl>,
    /// A label recorded on the node (repeatable), for `list-nodes --label` and `destroy-node
    /// --label`. KEY: 1-63 letters, digits, _ or -; VALUE: any text, encoded to fit the provider.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::expiry::parse_label)]
    pub labels: Vec<(String, String)>,
    /// Run bundles again on the existing node -n NAME (any provider), creating nothing: its
    /// recorded bundles (or exactly the -b given), its recorded -t variables plus new ones,
    /// only the files that changed, every script (`provision_run` counts the runs); the host
    /// key pinned at deploy must match. With --dry-run: the plan and what changed since.
    #[arg(long, requires = "name", conflicts_with_all = ["count", "image", "size", "location", "ttl", "labels", "keep_on_failure", "isolation"])]
    pub reprovision: bool,
    /// Print the plan (keys, files, rendered scripts) and create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// JSON on stdout instead of text: {"format":1,"nodes":[...]} listing every node with its
    /// `error` and `kept`, for one node or many (with --dry-run: the plan).
    #[arg(long)]
    pub json: bool,
    /// Print DIR/__init__.py (an original provision 0.9 config directory) as the equivalent
    /// provision.toml on stdout and exit; nothing is deployed.
    #[arg(long, value_name = "DIR")]
    pub convert_config: Option<PathBuf>,
}

/// The most nodes one `deploy-node --count` run makes: each node costs at least a create, a
/// few polls and (later) a destroy, and above this one run exhausts a cloud account's hourly
/// API budget (DigitalOcean 5000, Hetzner 3600 requests per hour) before its nodes are ready.
pub const MAX_COUNT: usize = 1000;

/// `90`, `90s`, `10m`, `1h`, `250ms`; more than zero and at most a week (a deadline of zero
/// could never be met, and an absurd one is a typo).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = parse_any_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "'{}' is zero: give a deadline that can be met (like 90s, 10m)",
            s.trim()
        ));
    }
    if d > Duration::from_secs(7 * 24 * 3600) {
        return Err(format!("'{}' is more than a week", s.trim()));
    }
    Ok(d)
}

fn parse_any_duration(s: &str) -> std::result::Result<Duration, String> {
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
    if !secs.is_finite() {
        return Err(format!("'{s}' is not a duration (like 90s, 10m, 1h)"));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("'{s}' is not a duration (like 90s, 10m, 1h)"))
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
            env: crate::vars::env_overrides(std::env::vars()),
            secrets: self.secret_var.clone(),
            ssh_user: self.ssh_user.clone(),
            index: 1,
            run: 1,
            exact_bundles: None,
        }
    }
}

/// List nodes: `NAME PUBLIC_IP` per line.
#[derive(Debug, Parser)]
#[command(name = "list-nodes", version, max_term_width = 100, after_long_help = format!("{LIST_STATUS}{}", providers_help()))]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    /// Output format: `text` (NAME PUBLIC_IP), `json`, `ssh-config` (Host blocks for `ssh -F`
    /// with the host key deploy-node pinned or learned, `StrictHostKeyChecking yes`), or `table`
    /// (a header and aligned columns: NAME STATE AGE IP PROVIDER EXPIRES OWNER, and LOCATION
    /// when the listing covers several EC2 regions).
    #[arg(long, value_enum, default_value = "text")]
    pub format: ListFormat,
    /// Every node of the account, not only the ones provision made.
    #[arg(long)]
    pub all: bool,
    /// Nodes whose deployment never finished and were not kept on purpose (from the journal,
    /// matched on each create's id, never on the name alone).
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
    /// Only nodes of ours past their expiry (`deploy-node --ttl`; 5 minutes' margin for clock
    /// skew), or whose deploy never completed (still deploying or pending 4h after their create).
    #[arg(long)]
    pub expired: bool,
    /// Only nodes carrying this label (repeatable: all must match), e.g. `ci_job=123`.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::expiry::parse_label_filter)]
    pub labels: Vec<(String, String)>,
}

pub use crate::listing::ListFormat;

/// Destroy nodes by name — only when every test in the -t result files passed.
#[derive(Debug, Parser)]
#[command(name = "destroy-node", version, max_term_width = 100, after_long_help = format!("{DESTROY_STATUS}{}", providers_help()))]
pub struct DestroyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Names of the nodes to destroy.
    #[arg(value_name = "NAME", required_unless_present_any = ["prefix", "completions", "expired", "labels"])]
    pub names: Vec<String>,
    /// Destroy every node provision made whose name starts with PREFIX (prints them first).
    #[arg(long, value_name = "PREFIX", conflicts_with = "names")]
    pub prefix: Option<String>,
    /// Destroy every node of ours on the account past its expiry (`deploy-node --ttl`), tagged
    /// ones only, with 5 minutes' margin for clock skew, and those whose deploy never completed
    /// (still deploying or pending 4h after their create): a scheduled reaper. None expired is
    /// success; with --label, only expired nodes carrying the labels.
    #[arg(long, conflicts_with_all = ["names", "prefix"])]
    pub expired: bool,
    /// Destroy every node of ours carrying this label (repeatable: all must match), e.g. all
    /// nodes of one CI job: `--label ci_job=123`.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::expiry::parse_label_filter, conflicts_with_all = ["names", "prefix"])]
    pub labels: Vec<(String, String)>,
    /// At most this many nodes are destroyed at once (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=MAX_COUNT as i64))]
    pub parallel: u16,
    /// JUnit XML test results (repeatable): destroy only if at least one test ran and all passed.
    #[arg(
        short = 't',
        long = "testresults",
        value_name = "FILE",
        alias = "testresult"
    )]
    pub testresults: Vec<PathBuf>,
    /// Print the decision and what would be destroyed; destroy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Destroy nodes that provision did not make (untagged), or whose names are outside the
    /// config's destroyable_prefixes (default: the name prefix).
    #[arg(long)]
    pub force: bool,
}

/// deploy-node: typed options (every check), then the dry run or the run and its reports.
pub fn run_deploy(args: DeployArgs) -> Result<()> {
    if let Some(shell) = args.common.completions {
        return crate::completions::print::<DeployArgs>(shell);
    }
    if let Some(dir) = &args.convert_config {
        return crate::exit::print_stdout(&crate::config::convert::convert_dir(dir)?);
    }
    let mut opts = options::DeployOptions::from_args(args)?;
    for w in &opts.warnings {
        output::warn(w);
    }
    if let Some(rec) = opts.reprovision.clone() {
        return run_reprovision(&opts, &rec);
    }
    if opts.dry_run {
        return print_dry_run(&opts);
    }
    let provider = deploy_provider(&opts)?;
    check_records(&mut opts, provider.as_ref())?;
    let p0 = &opts.plans[0];
    let value = crate::config::value_of;
    opts.deploy.prepared =
        Some(provider.prepare(&value(&p0.image), &value(&p0.size), &value(&p0.location))?);
    pool::check_names_free(&opts.plans, provider.as_ref())?;
    crate::expiry::print_reap_hint(&opts.deploy.records);
    let outcomes = run_all(&opts, provider);
    report::finish(&opts, outcomes)
}

/// The records every node will carry, on the provider's terms, before anything is created:
/// their count within its per-node tag limit (exit 2 otherwise), and an expiry on a provider
/// that never destroys machines (static hosts) dropped with one warning.
fn check_records(opts: &mut options::DeployOptions, provider: &dyn Provider) -> Result<()> {
    if !provider.destroys_machines() && opts.deploy.records.contains_key(crate::expiry::TAG_EXPIRES)
    {
        opts.deploy.records.remove(crate::expiry::TAG_EXPIRES);
        if opts.ttl_given {
            output::warn(&format!(
                "{}: --ttl/ttl ignored: its hosts are never destroyed (destroy-node only forgets them), so nothing expires",
                provider.name()
            ));
        }
    }
    let all = opts.deploy.records.len()
        + deploy::tags("").len()
        + usize::from(provider.updates_tags())
        + provider.driver_tags();
    let labels = opts.labels.min(all);
    crate::provider::tags::check_count(provider.name(), labels, all - labels, provider.max_tags())
        .map_err(crate::Error::usage)
}

/// `--dry-run`: the plan of each node, for people, or as the versioned JSON document
/// `{"format": 1, "plans": [...]}` (one shape for one node or many, like `--json`'s nodes).
fn print_dry_run(opts: &options::DeployOptions) -> Result<()> {
    if opts.json {
        return output::print_json(&serde_json::json!({
            "format": JSON_FORMAT,
            "plans": opts.plans,
        }));
    }
    opts.plans.iter().try_for_each(output::print_plan)
}

/// `--reprovision`: the dry run (the plan and what changed since the last run), or the run on
/// the node found by name, reported as a deploy is.
fn run_reprovision(opts: &options::DeployOptions, rec: &crate::known_nodes::Record) -> Result<()> {
    let plan = &opts.plans[0];
    if opts.dry_run {
        let diff = rec.applied.as_ref().map(|a| crate::applied::diff(a, plan));
        if opts.json {
            return output::print_json(&serde_json::json!({
                "format": JSON_FORMAT,
                "plans": opts.plans,
                "diffs": diff.iter().collect::<Vec<_>>(),
            }));
        }
        output::print_plan(plan)?;
        return crate::exit::print_stdout(&match diff {
            Some(d) => d.text(),
            None => format!(
                "{}: nothing is recorded of what was applied: every file would be sent\n",
                plan.node_name
            ),
        });
    }
    let provider = deploy_provider(opts)?;
    let node = crate::node::find(provider.as_ref(), &plan.node_name)?;
    crate::reprovision::check_node(&node, rec)?;
    if opts.deploy.insecure_host_key {
        output::warn("--insecure-host-key: the node's host key is not checked; a machine in the middle would not be noticed");
    }
    deploy::install_signal_handler();
    output::start_progress(std::slice::from_ref(&plan.node_name));
    let started = std::time::Instant::now();
    // the worker re-provisions; this thread watches for a signal: nothing to destroy, so it
    // says the node stays and, when a script is still running, stops without waiting for it
    let worker = {
        let (plan, provider, node, rec, deploy) = (
            plan.clone(),
            provider.clone(),
            node.clone(),
            rec.clone(),
            opts.deploy.clone(),
        );
        std::thread::spawn(move || {
            crate::reprovision::run(&plan, provider.as_ref(), &node, &rec, &deploy)
        })
    };
    let interrupts = deploy::interrupts();
    while !worker.is_finished() && !interrupts.hit() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if interrupts.hit() {
        output::warn(&crate::reprovision::interrupted_line(&plan.node_name));
        // a worker between phases stops at once; one in a script is left to the exit
        let give_up = std::time::Instant::now() + REPROVISION_STOP_GRACE;
        while !worker.is_finished() && std::time::Instant::now() < give_up {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let outcome = if worker.is_finished() {
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    } else {
        crate::reprovision::interrupted(provider.as_ref(), &node, started)
    };
    output::finish_progress();
    report::finish(opts, vec![outcome])
}

/// How long a signalled re-provision waits for its worker to stop at a phase boundary before
/// it leaves a running script behind (the node stays either way).
const REPROVISION_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The provider of the run, with `--isolation` passed to the local driver as a typed value.
fn deploy_provider(opts: &options::DeployOptions) -> Result<Arc<dyn Provider>> {
    match (opts.provider.as_str(), opts.isolation) {
        ("local", Some(iso)) => Ok(Arc::new(
            provider::local::LocalProvider::from_table(&opts.cfg.provider_table("local"))?
                .with_isolation(iso),
        )),
        (name, _) => provider_for(&opts.common, &opts.cfg, Some(name)),
    }
}

/// Deploys every plan with progress on stderr and, for a pool, the summary table.
fn run_all(opts: &options::DeployOptions, provider: Arc<dyn Provider>) -> Vec<deploy::Outcome> {
    if opts.deploy.insecure_host_key {
        output::warn("--insecure-host-key: the node's host key is not checked; a machine in the middle would not be noticed");
    }
    deploy::install_signal_handler();
    let names: Vec<String> = opts.plans.iter().map(|p| p.node_name.clone()).collect();
    output::start_progress(&names);
    // Many nodes wait at once: answer their polls from one shared list call per interval
    // instead of a get per node (what real APIs rate-limit).
    let provider: Arc<dyn Provider> = if opts.many() {
        Arc::new(provider::coalesce::Coalesced::new(provider))
    } else {
        provider
    };
    let outcomes = pool::deploy_all(&opts.plans, provider, &opts.deploy, opts.parallel);
    output::finish_progress();
    if opts.many() {
        output::info(&format!(
            "summary:\n{}",
            pool::summary(&outcomes).trim_end()
        ));
    }
    outcomes
}

/// The provider for a command: `-p`, else the plan's/config's, else `local`.
fn provider_for(common: &Common, cfg: &Config, chosen: Option<&str>) -> Result<Arc<dyn Provider>> {
    let name = chosen
        .map(str::to_string)
        .or_else(|| common.provider.clone())
        .or_else(|| cfg.provider.as_ref().map(|p| p.value.clone()))
        .unwrap_or_else(|| "local".into());
    let from_flag = chosen.is_some() || common.provider.is_some();
    crate::config::original::check_provider(&crate::config::Sourced {
        value: name.clone(),
        layer: match (&cfg.provider, from_flag) {
            (Some(p), false) => p.layer.clone(),
            _ => "-p".into(),
        },
    })?;
    let creds = provider::Credentials {
        userid: common.userid.clone(),
        secret: common.secret_key.clone(),
    };
    Ok(Arc::from(provider::build(&name, cfg, &creds)?))
}

/// list-nodes.
pub fn run_list(args: ListArgs) -> Result<()> {
    if let Some(shell) = args.common.completions {
        return crate::completions::print::<ListArgs>(shell);
    }
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
        return crate::listing::print_catalog(&provider.catalog(kind)?, args.format);
    }
    let mut nodes = if args.orphans {
        destroy::orphans(provider.as_ref())?
    } else {
        provider.list(args.all)?
    };
    crate::known_nodes::annotate(provider.name(), &mut nodes);
    if !args.orphans {
        elsewhere_hint(provider.as_ref(), &nodes);
    }
    let now = crate::expiry::now_secs();
    nodes.retain(|n| {
        (!args.expired || crate::expiry::is_reapable(n, now))
            && crate::expiry::has_labels(n, &args.labels)
    });
    if args.format == ListFormat::Table {
        return crate::exit::print_stdout(&crate::listing::table_with(
            &nodes,
            provider.name(),
            provider.scopes().len() > 1,
        ));
    }
    let configured = if args.format == ListFormat::SshConfig {
        crate::bastion::resolve(&cfg, provider.name(), None)?
    } else {
        None
    };
    // the jump host each node was deployed through, else the config's
    let jump_of = |n: &provider::Node| {
        crate::bastion::for_node(configured.as_ref(), false, provider.name(), n)
    };
    crate::listing::print_nodes(&nodes, args.format, &jump_of)
}

/// list-nodes lists where the provider's calls go (EC2: one region); nodes this machine made
/// in another scope are named on stderr with that scope, so none is forgotten unseen.
fn elsewhere_hint(provider: &dyn provider::Provider, listed: &[provider::Node]) {
    let Some(home) = provider.scope() else {
        return;
    };
    let covered = provider.scopes();
    let mut by_scope: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, location) in crate::known_nodes::recorded_locations(provider.name()) {
        match provider.scope_of(&location) {
            Some(s)
                if s != home && !covered.contains(&s) && !listed.iter().any(|n| n.name == name) =>
            {
                by_scope.entry(s).or_default().push(name)
            }
            _ => {}
        }
    }
    for (scope, names) in by_scope {
        output::info(&format!(
            "not listed: {} (made from this machine in {scope}; this listing covers {} only; destroy-node NAME finds it there)",
            names.join(", "),
            if covered.is_empty() {
                "no region".to_string()
            } else {
                covered.join(", ")
            }
        ));
    }
}

/// destroy-node.
pub fn run_destroy(args: DestroyArgs) -> Result<()> {
    if let Some(shell) = args.common.completions {
        return crate::completions::print::<DestroyArgs>(shell);
    }
    let cfg = args.common.load_config()?;
    let provider = provider_for(&args.common, &cfg, None)?;
    destroy::run(
        provider.as_ref(),
        &destroy::Request {
            names: args.names.clone(),
            prefix: args.prefix.clone(),
            expired: args.expired,
            labels: args.labels.clone(),
            parallel: usize::from(args.parallel),
            results: args.testresults.clone(),
            dry_run: args.dry_run,
            force: args.force,
            destroyable: cfg.destroyable_prefixes(),
        },
    )
}
