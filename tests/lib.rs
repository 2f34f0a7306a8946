//! The integration tests, as ONE test binary (just's layout): the crate's dependencies
//! (ssh2, reqwest, ...) are linked once instead of once per file, the support code is compiled
//! once, and shared fixtures (one Prism per run) are started once. Each file in tests/ is a
//! module declared here; `every_test_file_is_declared` keeps a new file from being skipped.

// A test binary exports nothing: its `pub` items are for its own modules.
#![allow(unreachable_pub)]

mod support;

mod big_files;
mod ci_examples;
mod cli_plan;
mod deploy_cloud;
mod deploy_ec2;
mod deploy_exec;
mod deploy_local;
mod deploy_openstack;
mod fake_openstack;
mod ipv6;
mod jump;
mod junit_corpus;
mod local_isolation;
mod man_pages;
mod new_user;
mod node_loop;
mod node_matrix;
mod original_compat;
mod phases;
mod provider_digitalocean;
mod provider_ec2;
mod provider_hetzner;
mod provider_local;
mod provider_openstack;
mod provider_static;
mod reaper;
mod reprovision;
mod scale;
mod ssh_engine;
mod template_compat;
mod variables;

/// `autotests = false` means a file in tests/ that is not declared above never runs.
#[test]
fn every_test_file_is_declared() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let lib = std::fs::read_to_string(dir.join("lib.rs")).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(m) = name.strip_suffix(".rs").filter(|m| *m != "lib") {
            assert!(
                lib.contains(&format!("\nmod {m};\n")),
                "tests/{name} is not declared in tests/lib.rs"
            );
        }
    }
}
