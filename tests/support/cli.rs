//! A builder for running the real binaries in a sandboxed HOME and checking stdout, stderr
//! and exit status together (after just's `Test`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    /// A fresh HOME with an ed25519 key pair in ~/.ssh, no user config, its own state dir.
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join("home/.ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let st = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "tester@sandbox",
                "-f",
            ])
            .arg(ssh.join("id_ed25519"))
            .status()
            .unwrap();
        assert!(st.success());
        Sandbox { dir }
    }

    /// A sandbox whose HOME has no key at all.
    pub fn without_key() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes `rel` under the sandbox (creating parents) and returns its path.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// The real `ssh -F` with the ssh-config text `cfg` (as `list-nodes --format ssh-config`
    /// writes it), strict host-key checking and no prompts, running `cmd` on `node`: asserts it
    /// succeeded and returns its stdout.
    pub fn ssh_with_config(&self, cfg: &str, node: &str, cmd: &str) -> String {
        let path = self.write("ssh_config", cfg);
        let out = Command::new("ssh")
            .env("HOME", self.home())
            .arg("-F")
            .arg(&path)
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .args(["-o", "ConnectTimeout=10", node, cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh -F: {}\n{cfg}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn chmod(&self, rel: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.dir.path().join(rel);
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A command for one of the binaries with a clean environment pointed at the sandbox.
    pub fn cmd(&self, bin: &str) -> Cmd {
        let exe = match bin {
            "deploy-node" => env!("CARGO_BIN_EXE_deploy-node"),
            "list-nodes" => env!("CARGO_BIN_EXE_list-nodes"),
            "destroy-node" => env!("CARGO_BIN_EXE_destroy-node"),
            "node" => env!("CARGO_BIN_EXE_node"),
            other => panic!("unknown binary {other}"),
        };
        let mut c = Command::new(exe);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .env("XDG_STATE_HOME", self.dir.path().join("xdg-state"))
            .env("PROVISION_STATE_DIR", self.state())
            .env("USER", whoami())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        Cmd { cmd: c }
    }
}

/// Destroys every local node the sandbox still has, so a failing test leaks no sshd.
impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.state().join("local").is_dir() {
            return;
        }
        let listed = self.cmd("list-nodes").run();
        for name in listed
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
        {
            let _ = self.cmd("destroy-node").args(["--force", name]).run();
        }
    }
}

pub fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

pub struct Cmd {
    pub cmd: Command,
}

impl Cmd {
    /// The same command run under `script`, so it gets a real pseudo-terminal (stdin, stdout,
    /// stderr); `script`'s stdout carries what the terminal showed.
    pub fn in_terminal(self) -> Command {
        let inner = self.cmd;
        let line: Vec<String> = std::iter::once(inner.get_program())
            .chain(inner.get_args())
            .map(|a| shlex::try_quote(&a.to_string_lossy()).unwrap().into_owned())
            .collect();
        let mut tty = Command::new("script");
        tty.args(["-qec", &line.join(" "), "/dev/null"]);
        if let Some(dir) = inner.get_current_dir() {
            tty.current_dir(dir);
        }
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => tty.env(k, v),
                None => tty.env_remove(k),
            };
        }
        tty
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cmd {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn run(mut self) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.cmd.output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, printing both streams on mismatch.
    pub fn code(self, want: i32) -> Self {
        assert_eq!(
            self.code, want,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn stdout_lacks(self, needle: &str) -> Self {
        assert!(
            !self.stdout.contains(needle),
            "stdout has {needle:?}\n{}",
            self.stdout
        );
        self
    }

    pub fn stderr_lacks(self, needle: &str) -> Self {
        assert!(
            !self.stderr.contains(needle),
            "stderr has {needle:?}\n{}",
            self.stderr
        );
        self
    }

    pub fn stdout_empty(self) -> Self {
        assert!(self.stdout.is_empty(), "stdout not empty:\n{}", self.stdout);
        self
    }

    /// An error must be a single line on stderr.
    pub fn one_line_error(self) -> Self {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.contains("error"))
            .collect();
        assert_eq!(lines.len(), 1, "expected one error line:\n{}", self.stderr);
        self
    }
}
