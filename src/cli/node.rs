//! `node`'s flags: one binary for the everyday loop on a kept node (`node show NAME`,
//! `node exec NAME -- CMD...`, `node ssh NAME`), parsed here and run by [`crate::node`].

use super::{provider_for, Common};
use crate::error::{Error, Result};
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Read};

const NODE_STATUS: &str = concat!(
    "EXIT STATUS:\n",
    "  exec and ssh: the remote command's exit status (ssh: 255 when OpenSSH failed to\n",
    "  connect); cp: the remote tar's; show: 0. 2: usage or config error, or NAME matches no node or several nodes of the\n",
    "  provider; 14 SSH failed (refused host key, login); 15 SSH not ready in 30 s; 130\n",
    "  interrupted\n\n",
    "WHY TWO SSH CLIENTS:\n",
    "  exec uses the built-in SSH engine (the one deploy-node uses: the pinned host key, stdout\n",
    "  and stderr kept apart, stdin forwarded). ssh runs the system OpenSSH client with a\n",
    "  generated config (STATE/ssh_config.d/NAME) for a real terminal: pty, resizes, escapes,\n",
    "  agent forwarding with -A.\n\n",
);

/// Work on one node by name: show it, run a command on it, or open a shell.
#[derive(Debug, Parser)]
#[command(name = "node", version, max_term_width = 100, after_long_help = format!("{NODE_STATUS}{}", super::providers_help()))]
pub struct NodeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Reach the node through this bastion, [USER@]HOST[:PORT] (exec and cp: the built-in
    /// engine's tunnel; ssh: `ssh -J`), on its private address; `none`: directly [default: the
    /// jump host the node was deployed through, else config ssh_jump].
    #[arg(long = "ssh-jump", value_name = "[USER@]HOST[:PORT]", global = true)]
    pub ssh_jump: Option<String>,
    #[command(subcommand)]
    pub action: Option<NodeAction>,
}

#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Everything known about the node: provider id, state, addresses, size, image, location,
    /// tags, created, login user, host key, the ssh command line, and how it was deployed from
    /// here (bundles, variables without secrets, provision_run, last result).
    Show {
        /// The node's name.
        name: String,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run one command on the node through the built-in SSH engine; its exit status becomes
    /// node's, its stdout and stderr stay apart, and node's stdin (when not a terminal) is sent.
    Exec {
        /// The node's name.
        name: String,
        /// The command and its arguments (after `--`), quoted for the remote shell.
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Copy a file or directory to or from a node (`NAME:/path`, as scp), modes kept, as one tar
    /// stream through the built-in SSH engine.
    Cp {
        /// Source: a local path or NAME:/path.
        src: String,
        /// Destination: a local path or NAME:/path (an existing directory receives SRC by name).
        dst: String,
    },
    /// An interactive shell on the node through the system `ssh` (extra arguments go to ssh).
    Ssh {
        /// The node's name.
        name: String,
        /// Arguments passed on to ssh after the host (a command, say).
        #[arg(last = true, value_name = "ARG")]
        args: Vec<String>,
    },
}

/// node: the chosen action; the exit status for [`crate::exit::run_status`].
pub fn run_node(args: NodeArgs) -> Result<i32> {
    if let Some(shell) = args.common.completions {
        crate::completions::print::<NodeArgs>(shell)?;
        return Ok(0);
    }
    let Some(action) = args.action else {
        return Err(Error::usage("node: name an action: show, exec, cp or ssh"));
    };
    let cfg = args.common.load_config()?;
    let provider = provider_for(&args.common, &cfg, None)?;
    let configured = crate::bastion::resolve(&cfg, provider.name(), args.ssh_jump.as_deref())?;
    // the flag, else the jump host the node was deployed through, else the config's
    let jump_of = |node: &crate::provider::Node| {
        crate::bastion::for_node(
            configured.as_ref(),
            args.ssh_jump.is_some(),
            provider.name(),
            node,
        )
    };
    match action {
        NodeAction::Show { name, json } => {
            let node = crate::node::find(provider.as_ref(), &name)?;
            crate::node::show(provider.name(), &node, json, jump_of(&node).as_ref())?;
            Ok(0)
        }
        NodeAction::Exec { name, command } => {
            let node = crate::node::find(provider.as_ref(), &name)?;
            let mut stdin = Vec::new();
            if !std::io::stdin().is_terminal() {
                std::io::stdin()
                    .read_to_end(&mut stdin)
                    .map_err(|e| Error::io("stdin", e))?;
            }
            crate::node::exec(&node, &command, &stdin, jump_of(&node).as_ref())
        }
        NodeAction::Cp { src, dst } => {
            crate::node::cp::copy(provider.as_ref(), &src, &dst, &jump_of)
        }
        NodeAction::Ssh { name, args } => {
            let node = crate::node::find(provider.as_ref(), &name)?;
            crate::node::interactive(&node, &args, jump_of(&node).as_ref())
        }
    }
}
