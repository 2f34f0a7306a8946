//! moto (PyPI `moto[server]`), a stateful EC2 Query API nobody here wrote, started on a free
//! loopback port for the EC2 driver's tests; installed by scripts/setup-moto.sh when missing.
//! Killed when dropped, and dies with the test process (PR_SET_PDEATHSIG).
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    pub url: String,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_path() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-moto.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(out.status.success(), "{} failed", script.display());
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts moto; `env` adds variables (e.g. `INITIAL_NO_AUTH_ACTION_COUNT` to check signatures).
pub fn start(env: &[(&str, &str)]) -> Moto {
    let port = free_port();
    let mut cmd = Command::new(moto_path());
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_ENABLE_AMI_VALIDATION", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // dies with the test process even when the Moto is in a static and never dropped
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start moto_server");
    let moto = Moto {
        url: format!("http://127.0.0.1:{port}"),
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not listen within 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

/// With signature checking on: an IAM user with an access key allowed everything, made by
/// the unauthenticated calls `INITIAL_NO_AUTH_ACTION_COUNT=3` leaves (boto3 from moto's venv).
pub fn iam_keys(m: &Moto) -> (String, String) {
    let script = r#"
import boto3, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="x", aws_secret_access_key="x")
iam.create_user(UserName="ci")
iam.put_user_policy(UserName="ci", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="ci")["AccessKey"]
print(k["AccessKeyId"], k["SecretAccessKey"])
"#;
    let s = python(m, script, &[]);
    let mut it = s.split_whitespace();
    (it.next().unwrap().into(), it.next().unwrap().into())
}

/// Runs `script` with moto's python (boto3 installed) as `python -c script URL ARGS...`,
/// talking to moto itself (not through a proxy); its stdout.
pub fn python(m: &Moto, script: &str, args: &[&str]) -> String {
    let out = Command::new(moto_path().with_file_name("python"))
        .args(["-c", script, &m.url])
        .args(args)
        .output()
        .expect("run moto's python");
    assert!(
        out.status.success(),
        "moto's python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
