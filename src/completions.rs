//! `--completions SHELL` on every command: the shell completion script generated from the same
//! clap definitions as `--help` and the man pages, so they cannot drift.

use crate::error::Result;

/// Prints `C`'s completion script for `shell` on stdout.
pub fn print<C: clap::CommandFactory>(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = C::command();
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    crate::exit::print_stdout(&String::from_utf8_lossy(&out))
}
