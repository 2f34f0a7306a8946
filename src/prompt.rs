//! `deploy-node --interactive`: asks on the terminal for every required variable that no layer,
//! `PROVISION_VAR_<NAME>` or flag set (as OpenSVC's `--interactive` does), before anything is
//! planned, so a person at a terminal is not sent away with an exit 2. What is typed for a
//! variable declared `secret = true` is not echoed and becomes a secret variable (`-T`), so it
//! is never printed either. Without a terminal on stdin nothing is asked: the plan then lists
//! what is missing (exit 2), as in CI.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::plan::Request;
use nix::sys::termios::{self, LocalFlags, SetArg};
use std::io::{BufRead, IsTerminal, Write};

/// Asks for each missing required variable and adds the answers to `req` (`-t`, or `-T` for
/// secret ones). An empty answer leaves the variable missing.
pub(crate) fn ask_missing(cfg: &Config, req: &mut Request) -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(());
    }
    let set = |k: &str, kvs: &[String]| {
        kvs.iter()
            .any(|kv| kv.split_once('=').is_some_and(|(name, _)| name == k))
    };
    for (k, description) in &cfg.required_vars {
        let upper = format!("PROVISION_VAR_{}", k.to_ascii_uppercase());
        if cfg.vars.contains_key(k)
            || cfg.secrets.contains_key(k)
            || req.env.iter().any(|(name, _)| *name == upper)
            || set(k, &req.subvars)
            || set(k, &req.secrets)
        {
            continue;
        }
        let secret = cfg.secret_required.contains(k);
        let answer = ask(&format!("{k} ({}): ", description.value), secret)?;
        if answer.is_empty() {
            continue;
        }
        let kv = format!("{k}={answer}");
        if secret {
            req.secrets.push(kv);
        } else {
            req.subvars.push(kv);
        }
    }
    Ok(())
}

/// Prints `prompt` on stderr and reads one line from the terminal, with echo off when `hidden`
/// (turned off before the prompt is shown, and restored whatever happens).
fn ask(prompt: &str, hidden: bool) -> Result<String> {
    let stdin = std::io::stdin();
    let saved = if hidden {
        let saved = termios::tcgetattr(&stdin)
            .map_err(|e| Error::unexpected(format!("--interactive: terminal settings: {e}")))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
            .map_err(|e| Error::unexpected(format!("--interactive: echo off: {e}")))?;
        Some(saved)
    } else {
        None
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        let _ = writeln!(err);
    }
    read.map_err(|e| Error::io("--interactive: reading the terminal", e))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
