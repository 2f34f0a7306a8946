//! A private OpenSSH server for tests: `/usr/sbin/sshd -D -e -f CONFIG` on 127.0.0.1 and a free
//! port, with its own ed25519 host key and authorized_keys files in a temp dir (so the host's
//! real `~/.ssh` is never read or written), killed on drop. Plus client key pairs in a temp HOME.
//! A real server, never a mock: the tests exercise what a node will do.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; killed when dropped.
pub struct Sshd {
    pub dir: TempDir,
    /// The one address it listens on.
    pub addr: String,
    pub port: u16,
    /// The server's host public key line (`ssh-ed25519 AAAA... comment`).
    pub host_pub: String,
    child: Child,
    /// Listening inside a network namespace: readiness is read from its log.
    in_netns: bool,
}

impl Sshd {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Sshd {
        Sshd::start_with(free_port(), false)
    }

    /// Starts a server on `port`; with `private_root` (as root only), sshd runs in its own
    /// mount namespace with a tmpfs over /root, so what a deployment writes to root's home
    /// (authorized_keys, /root/deploy) never reaches the host's.
    pub fn start_with(port: u16, private_root: bool) -> Sshd {
        Sshd::launch(None, "127.0.0.1", port, private_root, "VERBOSE")
    }

    /// [`Sshd::start_with`] listening only on the loopback address `addr` (`::1`: a host
    /// reachable over IPv6 alone).
    pub fn start_on(addr: &str, port: u16, private_root: bool) -> Sshd {
        Sshd::launch(None, addr, port, private_root, "VERBOSE")
    }

    /// [`Sshd::start_on`] with sshd's `log_level` (DEBUG1 logs each direct-tcpip channel).
    pub fn start_on_logging(addr: &str, port: u16, log_level: &str) -> Sshd {
        Sshd::launch(None, addr, port, true, log_level)
    }

    /// Starts a server on 127.0.0.1 and a free port, with sshd's `log_level`.
    pub fn start_logging(log_level: &str) -> Sshd {
        Sshd::launch(None, "127.0.0.1", free_port(), false, log_level)
    }

    /// Starts a server inside network namespace `netns` (made by the test, see
    /// [`super::netns`]) on `addr:port`, with a private /root and sshd's `log_level` (DEBUG1
    /// logs each direct-tcpip channel a client opens through it).
    pub fn start_in(netns: &str, addr: &str, port: u16, log_level: &str) -> Sshd {
        Sshd::launch(Some(netns), addr, port, true, log_level)
    }

    fn launch(
        netns: Option<&str>,
        addr: &str,
        port: u16,
        private_root: bool,
        log_level: &str,
    ) -> Sshd {
        ensure_sshd();
        let dir = tempfile::Builder::new().prefix("sshd-").tempdir().unwrap();
        let host_key = dir.path().join("host_ed25519");
        keygen(&host_key, "test-host");
        let host_pub = fs::read_to_string(host_key.with_extension("pub")).unwrap();
        fs::create_dir_all(dir.path().join("auth")).unwrap();
        // sshd refuses to start as root without its privilege-separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let config = dir.path().join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {addr}\nHostKey {hk}\n\
                 AuthorizedKeysFile {d}/auth/%u_keys\nPidFile {d}/sshd.pid\n\
                 UsePAM no\nStrictModes no\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nMaxStartups 100\nMaxSessions 20\n\
                 AllowTcpForwarding yes\nLogLevel {log_level}\n",
                hk = host_key.display(),
                d = dir.path().display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("sshd.log")).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]);
                c
            }
            None => Command::new("env"),
        };
        if private_root && is_root() {
            cmd.args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
                .arg(format!(
                    "mount -t tmpfs tmpfs /root && exec {SSHD} -D -e -f '{}'",
                    config.display()
                ));
        } else {
            cmd.arg(SSHD).args(["-D", "-e", "-f"]).arg(&config);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let mut sshd = Sshd {
            dir,
            addr: addr.to_string(),
            port,
            host_pub: host_pub.trim().to_string(),
            child,
            in_netns: netns.is_some(),
        };
        sshd.wait_ready();
        sshd
    }

    fn wait_ready(&mut self) {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited ({status}):\n{}", self.log());
            }
            let up = if self.in_netns {
                self.log().contains("Server listening on")
            } else {
                TcpStream::connect((self.addr.as_str(), self.port)).is_ok()
            };
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "sshd did not listen on {} within 10s:\n{}",
            self.port,
            self.log()
        );
    }

    /// The authorized_keys file sshd reads for `user`.
    pub fn keys_file(&self, user: &str) -> PathBuf {
        self.dir.path().join("auth").join(format!("{user}_keys"))
    }

    /// Lets `pubkey_line` log in as `user`.
    pub fn authorize(&self, user: &str, pubkey_line: &str) {
        let path = self.keys_file(user);
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(pubkey_line.trim());
        text.push('\n');
        fs::write(path, text).unwrap();
    }

    /// The server's log (sshd -e), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client key pair in a temp HOME: `home/.ssh/id_ed25519` and `.pub`.
pub struct ClientKey {
    /// Keeps the temp HOME (and so the key files) alive as long as the key.
    _home: TempDir,
    pub private: PathBuf,
    /// The public key line.
    pub public: String,
}

/// Generates an unencrypted ed25519 client key pair in a fresh temp HOME.
pub fn client_key() -> ClientKey {
    let home = tempfile::Builder::new().prefix("home-").tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    let private = ssh.join("id_ed25519");
    keygen(&private, "test-client");
    let public = fs::read_to_string(private.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    ClientKey {
        _home: home,
        private,
        public,
    }
}

/// A fresh public key line nobody has the server side of (for mismatch tests).
pub fn other_public_key() -> String {
    let k = client_key();
    k.public.clone()
}

/// A loopback port nothing listens on (right now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn keygen(path: &Path, comment: &str) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

/// Installs sshd through the project's setup script when it is missing.
fn ensure_sshd() {
    if Path::new(SSHD).exists() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-test-deps.sh");
    let st = Command::new("bash")
        .arg(script)
        .status()
        .expect("run setup-test-deps.sh");
    assert!(
        st.success() && Path::new(SSHD).exists(),
        "sshd is not installed"
    );
}

/// Running as root (namespaces and /root are ours to use).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
