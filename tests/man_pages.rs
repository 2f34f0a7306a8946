//! The man pages in man/ are generated from the clap definitions; this test fails when they
//! drift. Regenerate with `PROVISION_UPDATE_MAN=1 cargo test --test integration man_pages`.
//!
//! clap_mangen renders the title, name, description, options and version; this generator adds
//! what it lacks: no hyphenation (`.nh`, so "token" is never split as "to- ken"), a SYNOPSIS
//! with every option's argument and repeatable arguments marked `...`, and the long help's
//! tail as real sections (EXIT STATUS, PROVIDERS, ENVIRONMENT, SEE ALSO) kept as written
//! (`.nf`), instead of one EXTRA section reflowed into a paragraph.

use clap::{ArgAction, CommandFactory};
use provision::cli::{DeployArgs, DestroyArgs, ListArgs, NodeArgs};

/// Text for roff: backslashes and hyphens escaped, no line starting a request.
fn esc(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// `[-c|--config-path DIR]...` for every option, then the positionals, as `--help` shows them.
fn synopsis(cmd: &clap::Command) -> String {
    let mut parts = vec![format!("\\fB{}\\fR", esc(cmd.get_name()))];
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let repeat = matches!(arg.get_action(), ArgAction::Append | ArgAction::Count);
        let value = arg
            .get_value_names()
            .map(|v| v.join(" "))
            .unwrap_or_else(|| arg.get_id().to_string());
        let takes_value = matches!(arg.get_action(), ArgAction::Set | ArgAction::Append);
        if arg.is_positional() {
            let v = format!("\\fI{}\\fR", esc(&value));
            let v = if arg.is_required_set() {
                v
            } else {
                format!("[{v}]")
            };
            parts.push(if repeat { format!("{v}...") } else { v });
            continue;
        }
        let names: Vec<String> = arg
            .get_short()
            .map(|c| format!("-{c}"))
            .into_iter()
            .chain(arg.get_long().map(|l| format!("--{l}")))
            .map(|n| format!("\\fB{}\\fR", esc(&n)))
            .collect();
        let mut one = format!("[{}", names.join("|"));
        if takes_value {
            one.push_str(&format!(" \\fI{}\\fR", esc(&value)));
        }
        one.push(']');
        if repeat {
            one.push_str("...");
        }
        parts.push(one);
    }
    format!(".SH SYNOPSIS\n{}\n", parts.join(" "))
}

/// The long help's tail: each `HEADING:` line starts a section; text kept as written.
fn sections(cmd: &clap::Command) -> String {
    let Some(text) = cmd.get_after_long_help().map(|t| t.to_string()) else {
        return String::new();
    };
    let mut out = String::new();
    let mut open = false;
    for line in text.lines() {
        let heading = line
            .strip_suffix(':')
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_uppercase() || c == ' '));
        let top_level_prose = !line.is_empty() && !line.starts_with(' ') && heading.is_none();
        if let Some(h) = heading
            .map(str::to_string)
            .or(top_level_prose.then(|| "SEE ALSO".into()))
        {
            if open {
                out.push_str(".fi\n");
            }
            out.push_str(&format!(".SH {h}\n.nf\n"));
            open = true;
            if heading.is_some() {
                continue;
            }
        }
        out.push_str(&esc(line));
        out.push('\n');
    }
    if open {
        out.push_str(".fi\n");
    }
    out
}

fn render(cmd: clap::Command) -> String {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    out.extend_from_slice(b".nh\n");
    man.render_name_section(&mut out).unwrap();
    out.extend_from_slice(synopsis(&cmd).as_bytes());
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out).unwrap();
    }
    out.extend_from_slice(sections(&cmd).as_bytes());
    man.render_version_section(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn man_pages_match_the_flags() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("PROVISION_UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for (name, cmd) in [
        ("deploy-node", DeployArgs::command()),
        ("list-nodes", ListArgs::command()),
        ("destroy-node", DestroyArgs::command()),
        ("node", NodeArgs::command()),
    ] {
        let path = dir.join(format!("{name}.1"));
        let want = render(cmd);
        if update {
            std::fs::write(&path, &want).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale man pages {stale:?}: run PROVISION_UPDATE_MAN=1 cargo test --test integration man_pages"
    );
}

#[test]
fn man_pages_have_synopsis_arguments_sections_and_no_hyphenation() {
    let deploy = render(DeployArgs::command());
    assert!(deploy.contains(".nh\n"), "no hyphenation");
    assert!(deploy.contains("[\\fB\\-c\\fR|\\fB\\-\\-config\\-path\\fR \\fIDIR\\fR]..."));
    assert!(deploy.contains(".SH EXIT STATUS\n.nf\n"));
    assert!(!deploy.contains(".SH EXTRA"));
    let destroy = render(DestroyArgs::command());
    assert!(
        destroy.contains("[\\fINAME\\fR]..."),
        "NAME is repeatable, as in --help"
    );
    let list = render(ListArgs::command());
    assert!(list.contains(".SH EXIT STATUS"));
    assert!(list.contains(".SH SEE ALSO"));
    for page in [&deploy, &destroy, &list] {
        assert!(
            !page.contains("AWS access key"),
            "-u names no provider that does not exist"
        );
        assert!(page.contains("$XDG_STATE_HOME/provision"));
    }
}

#[test]
fn every_flag_has_help_text() {
    for cmd in [
        DeployArgs::command(),
        ListArgs::command(),
        DestroyArgs::command(),
        NodeArgs::command(),
    ] {
        for arg in cmd.get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                !help.trim().is_empty(),
                "{}: --{} has no help",
                cmd.get_name(),
                arg.get_id()
            );
        }
    }
}
