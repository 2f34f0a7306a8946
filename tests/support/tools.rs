//! The external tools some tests run (Prism, python-openstackclient), found through the script
//! that installs each when it is missing and prints its path, so a fresh machine needs no step
//! by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `scripts/<script>` and returns the path it prints; panics saying what `needed_for`.
pub fn installed(script: &str, needed_for: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {needed_for}",
        script.display()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
