//! Large bundles are streamed, not held (issue 20): deploy-node sends an 80 MiB bundle to a
//! local node with a peak RSS far below the bundle's size (it reads each file in chunks while
//! the channel takes them), and the files arrive intact (sha256 on the node equals sha256 of
//! the sources, computed here with `sha256sum`, not by the code under test).

use crate::support::cli::Sandbox;
use crate::support::procs::run_measured;
use rand::RngCore;
use std::process::Command;

const MIB: u64 = 1024 * 1024;
/// The bundle: a 64 MiB sparse file, 15 MiB of random bytes and a small one.
const BUNDLE: u64 = 80 * MIB;
/// deploy-node's peak RSS must stay under this (about its size without files; the bundle is
/// more than twice as big). Holding the bundle once would exceed it.
const RSS_LIMIT_KB: i64 = 40 * 1024;

fn sha256sum(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_bundle_bigger_than_memory_bound_streams_intact() {
    let s = Sandbox::new();
    let t = s.path().join("targets").display().to_string();
    s.write(
        "site/provision.toml",
        &format!(
            "[bundles.big]\nscripts = [\"sums.sh\"]\n\
             files = {{ \"{t}/data/sparse\" = \"sparse\", \"{t}/data/random\" = \"random\", \"{t}/etc/small\" = \"small\" }}\n"
        ),
    );
    s.write(
        "site/scripts/sums.sh",
        &format!("#!/bin/sh\ncd {t} && sha256sum data/sparse data/random etc/small\n"),
    );
    let sparse = s.write("site/files/sparse", "");
    std::fs::File::options()
        .write(true)
        .open(&sparse)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let mut random = vec![0u8; (15 * MIB) as usize];
    rand::thread_rng().fill_bytes(&mut random);
    let random_path = s.path().join("site/files/random");
    std::fs::write(&random_path, &random).unwrap();
    drop(random);
    let small = s.write("site/files/small", "small\n");
    let total: u64 = ["sparse", "random", "small"]
        .iter()
        .map(|f| {
            std::fs::metadata(s.path().join("site/files").join(f))
                .unwrap()
                .len()
        })
        .sum();
    assert!(total >= BUNDLE - MIB, "{total}");

    let deploy = s
        .cmd("deploy-node")
        .args(["-c", "site", "-b", "big", "-n", "big-files"]);
    let (code, used, stdout, stderr) = run_measured(deploy.cmd);
    let destroyed = s.cmd("destroy-node").args(["--force", "big-files"]).run();
    assert_eq!(code, 0, "--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert_eq!(destroyed.code, 0, "{}", destroyed.stderr);
    eprintln!(
        "big files: {total} bytes, deploy-node peak RSS {} KiB",
        used.rss_kb
    );
    assert!(
        used.rss_kb < RSS_LIMIT_KB,
        "deploy-node peaked at {} KiB RSS for a {total}-byte bundle",
        used.rss_kb
    );
    for (path, name) in [
        (sparse, "data/sparse"),
        (random_path, "data/random"),
        (small, "etc/small"),
    ] {
        let line = format!("[big-files] {}  {name}", sha256sum(&path));
        assert!(stderr.contains(&line), "{line} missing:\n{stderr}");
    }
}
