//! Stoplight Prism as a validating proxy in front of a loopback fake: every request the driver
//! sends and every answer the fake gives is checked against the provider's official OpenAPI
//! spec. Prism starts once per test binary (it takes 20–35 s); it is installed by
//! `scripts/setup-prism.sh` when missing and dies with the test process (PR_SET_PDEATHSIG).
//!
//! The specs are looked up in `$PROVISION_CONFORMANCE_DIR`, else `../shared/conformance` next
//! to the repository; when absent the tests fail saying so (they are not skipped).
#![allow(dead_code, unreachable_pub)]

use super::tools;
use provision::provider::http::{Inspector, ResponseInfo};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Prism {
    pub url: String,
    /// Prism's log lines, for failure messages.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The conformance folder, or a panic that says how to provide it.
pub fn conformance_dir() -> PathBuf {
    // $PROVISION_CONFORMANCE_DIR, else the shared folder beside the checkout, else the
    // workplace's fixed location (a clean clone may live elsewhere).
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    let dir = std::env::var_os("PROVISION_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            [beside, PathBuf::from("/work/shared/conformance")]
                .into_iter()
                .find(|d| d.join("specs").is_dir())
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"));
    assert!(
        dir.join("specs").is_dir(),
        "conformance specs not found at {}: set PROVISION_CONFORMANCE_DIR to the folder holding \
         specs/digitalocean and specs/hetzner",
        dir.display()
    );
    dir
}

fn prism_path() -> PathBuf {
    tools::installed(
        "setup-prism.sh",
        "Prism (npm @stoplight/prism-cli) is needed for the conformance tests",
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `prism proxy --errors SPEC UPSTREAM` on a free loopback port and waits until it
/// listens. `spec` is relative to the conformance folder.
pub fn start(spec: &str, upstream: &str) -> Prism {
    let spec = conformance_dir().join(spec);
    assert!(spec.is_file(), "spec {} not found", spec.display());
    let prism = prism_path();
    let port = free_port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<String>();
    let upstream = upstream.to_string();
    // The thread that spawns Prism lives as long as Prism: PDEATHSIG fires when it ends,
    // which is when the test process exits.
    std::thread::spawn(move || {
        let mut cmd = Command::new(&prism);
        cmd.args([
            "proxy",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--errors",
        ])
        .arg(&spec)
        .arg(&upstream)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        // SAFETY: the hook only calls prctl, which is async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn prism");
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let status = child.wait();
        eprintln!("prism exited: {status:?}");
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let ready = line.contains("Prism is listening");
                log.lock().unwrap().push(line);
                if ready {
                    break;
                }
            }
            Err(_) => panic!(
                "prism did not start within 120 s:\n{}",
                log.lock().unwrap().join("\n")
            ),
        }
    }
    eprintln!("prism ready on port {port} after {:?}", started.elapsed());
    let l = log.clone();
    std::thread::spawn(move || {
        for line in rx {
            let mut l = l.lock().unwrap();
            if l.len() > 2000 {
                l.drain(..1000);
            }
            l.push(line);
        }
    });
    Prism {
        url: format!("http://127.0.0.1:{port}"),
        log,
    }
}

/// Records every response that Prism flagged (an `sl-violations` header) or turned into a
/// 422/500, so a test can assert the driver and the fake both spoke the real API.
#[derive(Clone, Default)]
pub struct Violations(pub Arc<Mutex<Vec<String>>>);

impl Violations {
    pub fn inspector(&self) -> Inspector {
        let v = self.0.clone();
        Arc::new(move |r: &ResponseInfo<'_>| {
            let Some(h) = r.headers.get("sl-violations") else {
                return;
            };
            let text = h.to_str().unwrap_or("?");
            let list: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
            // Prism 5 does not match status ranges ("4xx") and warns about every 4xx answer
            // of a spec that only has ranges (Hetzner): not a violation
            let range_warning = |e: &serde_json::Value| {
                e["severity"] == "Warning"
                    && e["message"].as_str().is_some_and(|m| {
                        m.starts_with("Unable to match the returned status code")
                            && m.contains("4xx")
                    })
                    && (400..500).contains(&r.status)
            };
            if list.is_empty() || !list.iter().all(range_warning) {
                v.lock()
                    .unwrap()
                    .push(format!("{} {} -> {}: {text}", r.method, r.path, r.status));
            }
        })
    }

    pub fn assert_none(&self) {
        let v = self.0.lock().unwrap();
        assert!(v.is_empty(), "spec violations:\n{}", v.join("\n"));
    }
}
