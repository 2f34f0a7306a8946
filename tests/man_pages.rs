//! The man pages in man/ are generated from the clap definitions; this test fails when they
//! drift. Regenerate with `PROVISION_UPDATE_MAN=1 cargo test --test integration man_pages`.

use clap::CommandFactory;
use provision::cli::{DeployArgs, DestroyArgs, ListArgs};

fn render(cmd: clap::Command) -> String {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out).unwrap();
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
fn every_flag_has_help_text() {
    for cmd in [
        DeployArgs::command(),
        ListArgs::command(),
        DestroyArgs::command(),
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
