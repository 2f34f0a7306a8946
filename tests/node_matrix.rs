//! The compatibility matrix (issue 19): each row is a real node built here on loopback — an
//! OpenSSH sshd or a Dropbear server in its own mount namespace, with its own /root (tmpfs), its
//! own users, shells, sudoers and mounts — and deployed to end to end by the real `deploy-node`
//! through the static provider. Every row that works runs the same bundle: files in nested
//! directories with modes 0600/0644/0755, a name with a space and one with a UTF-8 character,
//! two scripts (one a template) and a script whose output is binary with no final newline.
//! Rows that cannot work must fail at once with one line saying what to change. The tests need
//! root (namespaces, mounts; CI runs them as root) and skip, saying so, without.

use crate::support::cli::{Run, Sandbox};
use crate::support::sshd::{free_port, is_root};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> bool {
    let ok = is_root();
    if !ok {
        eprintln!("skipped: the node matrix needs root (CI runs these tests as root)");
    }
    ok
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    OpenSsh,
    /// Dropbear with BusyBox's applets as the node's whole /usr/bin.
    DropbearBusybox,
}

/// One matrix row's node.
struct Spec {
    server: Server,
    /// Extra sshd_config lines.
    sshd: &'static str,
    /// `ssh-keygen -t` of the host key.
    host_key: &'static str,
    /// Login user; `root` or a user made in the node.
    user: &'static str,
    /// The user's login shell (root's too when the user is root).
    shell: &'static str,
    /// A line for /etc/sudoers.d/ (empty: none).
    sudoers: &'static str,
    /// Shell run in the node's namespace before the server starts (mounts).
    setup: String,
}

impl Spec {
    fn openssh() -> Spec {
        Spec {
            server: Server::OpenSsh,
            sshd: "",
            host_key: "ed25519",
            user: "root",
            shell: "/bin/sh",
            sudoers: "",
            setup: String::new(),
        }
    }
}

/// A running node: its server is the init of a private mount namespace; killed on drop.
struct Node {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Node {
    fn start(spec: &Spec, client_pub: &str) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("matrix-")
            .tempdir()
            .unwrap();
        let d = dir.path().display().to_string();
        let port = free_port();
        let _ = fs::create_dir_all("/run/sshd");
        // Users, shells and sudoers of the node: copies bind-mounted over the host's.
        let mut passwd = fs::read_to_string("/etc/passwd").unwrap();
        let mut shadow = fs::read_to_string("/etc/shadow").unwrap_or_default();
        let mut group = fs::read_to_string("/etc/group").unwrap();
        if spec.user == "root" {
            passwd = passwd
                .lines()
                .map(|l| match l.strip_prefix("root:") {
                    Some(rest) => {
                        let mut f: Vec<&str> = rest.split(':').collect();
                        *f.last_mut().unwrap() = spec.shell;
                        format!("root:{}\n", f.join(":"))
                    }
                    None => format!("{l}\n"),
                })
                .collect();
        } else {
            let u = spec.user;
            passwd.push_str(&format!("{u}:x:4242:4242::/home/{u}:{}\n", spec.shell));
            shadow.push_str(&format!("{u}:*:19000:0:99999:7:::\n"));
            group.push_str(&format!("{u}:x:4242:\n"));
        }
        fs::write(dir.path().join("passwd"), passwd).unwrap();
        fs::write(dir.path().join("shadow"), shadow).unwrap();
        fs::write(dir.path().join("group"), group).unwrap();
        fs::create_dir_all(dir.path().join("sudoers.d")).unwrap();
        if !spec.sudoers.is_empty() {
            let f = dir.path().join("sudoers.d/matrix");
            fs::write(&f, format!("{}\n", spec.sudoers)).unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(0o440)).unwrap();
        }
        fs::create_dir_all(dir.path().join("auth")).unwrap();
        fs::write(
            dir.path().join(format!("auth/{}_keys", spec.user)),
            format!("{client_pub}\n"),
        )
        .unwrap();
        let home = if spec.user == "root" {
            "/root".to_string()
        } else {
            format!("/home/{}", spec.user)
        };
        let mut setup = format!(
            "set -e; mount -t tmpfs tmpfs /root; mount -t tmpfs tmpfs /home; \
             for f in passwd shadow group; do mount --bind {d}/$f /etc/$f; done; \
             mount --bind {d}/sudoers.d /etc/sudoers.d; \
             mkdir -p {home}/.ssh; cp {d}/auth/{u}_keys {home}/.ssh/authorized_keys; \
             chown -R {u}: {home}; chmod 700 {home} {home}/.ssh; {extra}; ",
            u = spec.user,
            extra = if spec.setup.is_empty() {
                ":"
            } else {
                &spec.setup
            },
        );
        let server = match spec.server {
            Server::OpenSsh => {
                let hk = dir.path().join("host_key");
                keygen(&hk, spec.host_key);
                fs::write(
                    dir.path().join("sshd_config"),
                    format!(
                        "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\n\
                         AuthorizedKeysFile {d}/auth/%u_keys\nPidFile none\nUsePAM no\n\
                         StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                         PermitRootLogin prohibit-password\nLogLevel VERBOSE\n{}\n",
                        spec.sshd,
                        hk = hk.display()
                    ),
                )
                .unwrap();
                format!("exec /usr/sbin/sshd -D -e -f {d}/sshd_config")
            }
            Server::DropbearBusybox => {
                let st = Command::new("dropbearkey")
                    .args(["-t", "ed25519", "-f"])
                    .arg(dir.path().join("dropbear_key"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(st.success(), "dropbearkey failed");
                // BusyBox's applets become the node's /usr/bin (and so /bin).
                setup.push_str(&format!(
                    "mkdir {d}/bb; cp {bb} {d}/bb/busybox; {bb} --install -s {d}/bb; \
                     mount --bind {d}/bb /usr/bin; ",
                    bb = busybox()
                ));
                format!("exec /usr/sbin/dropbear -F -E -s -p 127.0.0.1:{port} -r {d}/dropbear_key")
            }
        };
        let log = fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
            .arg(format!("{setup}{server}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the node");
        let mut node = Node { dir, port, child };
        node.wait_ready();
        node
    }

    fn wait_ready(&mut self) {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the node's server exited ({st}):\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the node did not listen:\n{}", self.log());
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs `cmd` with sh inside the node's mount namespace (to see its private mounts).
    fn inside(&self, cmd: &str) -> String {
        let out = Command::new("nsenter")
            .args([
                "-t",
                &self.child.id().to_string(),
                "-m",
                "/bin/sh",
                "-c",
                cmd,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path, kind: &str) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "matrix-host", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static (scripts/setup-test-deps.sh installs it)")
}

/// The sandbox, its config (the matrix bundle and the static host) and the targets' root.
struct Site {
    s: Sandbox,
    targets: tempfile::TempDir,
    user: &'static str,
}

/// The site for a static host `user@127.0.0.1` whose port is set by [`Site::point_at`].
fn site(user: &'static str) -> Site {
    let s = Sandbox::new();
    let targets = tempfile::Builder::new()
        .prefix("targets-")
        .tempdir()
        .unwrap();
    fs::set_permissions(targets.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let t = targets.path().display().to_string();
    s.write(
        "site/provision.toml",
        &format!(
            "provider = \"static\"\n[providers.static.hosts]\nbox = \"{user}@127.0.0.1:0\"\n\
             [vars]\ngreeting = \"hi\"\n\
             [bundles.matrix]\nscripts = [\"one.sh\", \"two.sh\", \"bin.sh\"]\n\
             files = {{ \"{t}/a/b/secret\" = \"secret\", \"{t}/a/conf\" = \"conf\", \
             \"{t}/a/b/c/tool\" = \"tool\", \"{t}/a/with space\" = \"space\", \"{t}/a/café\" = \"cafe\" }}\n\
             [bundles.big]\nfiles = {{ \"{t}/full/big\" = \"big\" }}\n\
             [bundles.ci]\nscripts = [\"lock.sh\", \"one.sh\"]\n"
        ),
    );
    for (name, body, mode) in [
        ("secret", "s3cret\n", 0o600),
        ("conf", "listen 80\n", 0o644),
        ("tool", "#!/bin/sh\necho tool\n", 0o755),
        ("space", "spaced\n", 0o644),
        ("cafe", "crème\n", 0o644),
    ] {
        s.write(&format!("site/files/{name}"), body);
        s.chmod(&format!("site/files/{name}"), mode);
    }
    s.write("site/files/big", &"x".repeat(256 * 1024));
    s.write(
        "site/scripts/one.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho \"{greeting} from {node_name} as $(id -un)\"\n",
    );
    s.write(
        "site/scripts/two.sh",
        &format!("#!/bin/sh\nprintf 'two sees %s\\n' \"$(cat '{t}/a/with space')\"\n"),
    );
    // Fails while the (fake) cloud-init still holds its lock.
    s.write(
        "site/scripts/lock.sh",
        &format!(
            "#!/bin/sh
if [ -e '{t}/ci.lock' ]; then echo 'dpkg lock held'; exit 1; fi
"
        ),
    );
    s.write("noci/provision.toml", "wait_for_cloud_init = false\n");
    // Binary output and no final newline.
    s.write("site/scripts/bin.sh", "#!/bin/sh\nprintf 'raw\\377\\376'\n");
    Site { s, targets, user }
}

impl Site {
    /// Points the static host at the node's port.
    fn point_at(&self, node: &Node) {
        let p = self.s.path().join("site/provision.toml");
        let u = self.user;
        let text = fs::read_to_string(&p).unwrap().replace(
            &format!("{u}@127.0.0.1:0"),
            &format!("{u}@127.0.0.1:{}", node.port),
        );
        fs::write(p, text).unwrap();
    }

    fn public_key(&self) -> String {
        let k = fs::read_to_string(self.s.home().join(".ssh/id_ed25519.pub")).unwrap();
        k.trim().to_string()
    }

    fn deploy(&self, bundle: &str) -> Run {
        self.deploy_with(bundle, &[])
    }

    fn deploy_with(&self, bundle: &str, layers: &[&str]) -> Run {
        let site = self.s.path().join("site").display().to_string();
        let mut args = vec!["-c".to_string(), site];
        for l in layers {
            args.push("-c".into());
            args.push(self.s.path().join(l).display().to_string());
        }
        self.s
            .cmd("deploy-node")
            .args(args)
            .args([
                "-n", "box", "-b", bundle, "--junit", "r.xml", "-d", "d.json",
            ])
            .run()
    }

    /// The whole bundle reached the node and every script ran.
    fn check_bundle(&self, r: Run, user: &str) {
        let r = r
            .code(0)
            .stderr_has(&format!("[box] hi from box as {user}"))
            .stderr_has("[box] two sees spaced");
        // No cloud-init on the node: no wait, not a word about it.
        assert!(!r.stderr.contains("cloud-init"), "{}", r.stderr);
        let t = self.targets.path();
        let mode = |p: &str| fs::metadata(t.join(p)).unwrap().permissions().mode() & 0o7777;
        let read = |p: &str| fs::read_to_string(t.join(p)).unwrap();
        assert_eq!(read("a/b/secret"), "s3cret\n");
        assert_eq!(read("a/with space"), "spaced\n");
        assert_eq!(read("a/café"), "crème\n");
        assert_eq!(
            [mode("a/b/secret"), mode("a/conf"), mode("a/b/c/tool")],
            [0o600, 0o644, 0o755]
        );
        // No staging directory left beside any target.
        for d in ["a", "a/b", "a/b/c"] {
            let left: Vec<_> = fs::read_dir(t.join(d))
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect();
            assert!(left.is_empty(), "left in {d}: {left:?}");
        }
        // The binary output is kept, shown as not text, in the JUnit report.
        let junit = fs::read_to_string(self.s.path().join("r.xml")).unwrap();
        assert!(junit.contains("raw\\xFF\\xFE"), "{junit}");
        let report = provision::junit::read_results(&self.s.path().join("r.xml")).unwrap();
        // keys, files, 3 scripts; then the 7 phases and the 3 scripts' phases
        assert_eq!(
            (report.passed, report.failed.len()),
            (5 + 7 + 3, 0),
            "{}",
            r.stderr
        );
    }
}

/// Builds the row's node, deploys the matrix bundle and checks it; scripts run as `user`.
fn works(spec: Spec, user: &str) -> Option<Node> {
    if !root() {
        return None;
    }
    let site = site(spec.user);
    let node = Node::start(&spec, &site.public_key());
    site.point_at(&node);
    let r = site.deploy("matrix");
    if r.code != 0 {
        eprintln!("node log:\n{}", node.log());
    }
    site.check_bundle(r, user);
    Some(node)
}

#[test]
fn debian_openssh() {
    works(Spec::openssh(), "root");
}

#[test]
fn busybox_userland_behind_dropbear() {
    let Some(node) = works(
        Spec {
            server: Server::DropbearBusybox,
            ..Spec::openssh()
        },
        "root",
    ) else {
        return;
    };
    // The row is what it says: BusyBox's tar and sh on the node, Dropbear serving it.
    let tar = node.inside("tar --help 2>&1 | head -n 1; readlink /usr/bin/sh");
    assert!(tar.contains("BusyBox") && tar.contains("busybox"), "{tar}");
    assert!(
        node.log().contains("Pubkey auth succeeded for 'root'"),
        "{}",
        node.log()
    );
}

#[test]
fn openssh_with_modern_algorithms_only() {
    works(
        Spec {
            sshd: "KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256\n\
                   HostKeyAlgorithms ssh-ed25519\nPubkeyAcceptedAlgorithms ssh-ed25519\n\
                   Ciphers chacha20-poly1305@openssh.com",
            ..Spec::openssh()
        },
        "root",
    );
}

#[test]
fn rsa_host_key_with_rsa_sha2_512() {
    works(
        Spec {
            sshd: "HostKeyAlgorithms rsa-sha2-512",
            host_key: "rsa",
            ..Spec::openssh()
        },
        "root",
    );
}

#[test]
fn root_login_shell_tcsh() {
    let Some(node) = works(
        Spec {
            shell: "/usr/bin/tcsh",
            ..Spec::openssh()
        },
        "root",
    ) else {
        return;
    };
    assert!(node
        .inside("getent passwd root")
        .trim()
        .ends_with(":/usr/bin/tcsh"));
}

#[test]
fn fish_user_with_sudo() {
    works(
        Spec {
            user: "fishy",
            shell: "/usr/bin/fish",
            sudoers: "fishy ALL=(ALL) NOPASSWD: ALL",
            ..Spec::openssh()
        },
        "root",
    );
}

#[test]
fn noexec_tmp() {
    works(
        Spec {
            setup: "for m in /tmp /var/tmp /dev/shm; do mount --bind $m $m; mount -o remount,bind,noexec $m; done"
                .into(),
            ..Spec::openssh()
        },
        "root",
    );
}

#[test]
fn permit_root_login_no_with_passwordless_sudo() {
    works(
        Spec {
            sshd: "PermitRootLogin no",
            user: "ubuntu",
            sudoers: "ubuntu ALL=(ALL) NOPASSWD: ALL",
            ..Spec::openssh()
        },
        "root",
    );
}

#[test]
fn max_sessions_one_and_max_startups() {
    works(
        Spec {
            sshd: "MaxSessions 1\nMaxStartups 1:30:1",
            ..Spec::openssh()
        },
        "root",
    );
}

/// Builds the row's node and deploys `bundle`; returns the run, the node and the site.
fn fails(spec: Spec, bundle: &str) -> (Run, Node, Site, Duration) {
    let site = site(spec.user);
    let node = Node::start(&spec, &site.public_key());
    site.point_at(&node);
    let t0 = Instant::now();
    let r = site.deploy(bundle);
    (r, node, site, t0.elapsed())
}

#[test]
fn post_quantum_only_kex_fails_at_once_naming_both_lists() {
    if !root() {
        return;
    }
    let spec = Spec {
        sshd: "KexAlgorithms sntrup761x25519-sha512@openssh.com",
        ..Spec::openssh()
    };
    let (r, _node, _site, took) = fails(spec, "matrix");
    let r = r
        .code(14)
        .stderr_has("no common key exchange algorithm")
        .stderr_has("the server offers sntrup761x25519-sha512@openssh.com")
        .stderr_has("curve25519-sha256");
    assert!(
        took < Duration::from_secs(20),
        "took {took:?}: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("stuck at"), "{}", r.stderr);
}

#[test]
fn sudo_needing_a_password_says_so_in_one_line() {
    if !root() {
        return;
    }
    let spec = Spec {
        user: "rhel",
        sudoers: "rhel ALL=(ALL) ALL",
        ..Spec::openssh()
    };
    let (r, ..) = fails(spec, "matrix");
    r.code(14).stderr_has(
        "rhel is not root and sudo needs a password: allow rhel NOPASSWD in sudoers, or set ssh_user = \"root\"",
    );
}

#[test]
fn sudo_requiretty_says_so_in_one_line() {
    if !root() {
        return;
    }
    let spec = Spec {
        user: "rhel",
        sudoers: "Defaults:rhel requiretty\nrhel ALL=(ALL) NOPASSWD: ALL",
        ..Spec::openssh()
    };
    let (r, ..) = fails(spec, "matrix");
    r.code(14).stderr_has(
        "rhel is not root and sudo requires a terminal (Defaults requiretty): add 'Defaults:rhel !requiretty' to sudoers",
    );
}

#[test]
fn full_disk_names_the_file_and_the_node_and_leaves_nothing() {
    if !root() {
        return;
    }
    let site = site("root");
    let full = site.targets.path().join("full");
    let spec = Spec {
        setup: format!(
            "mkdir -p {f}; mount -t tmpfs -o size=64k tmpfs {f}",
            f = full.display()
        ),
        ..Spec::openssh()
    };
    let node = Node::start(&spec, &site.public_key());
    site.point_at(&node);
    let r = site.deploy("big").code(14);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap_or_else(|| panic!("no ENOSPC line:\n{}", r.stderr));
    assert!(line.contains("box") && line.contains("big"), "{line}");
    assert_eq!(node.inside(&format!("ls -A {}", full.display())), "");
}

/// A node whose fake `cloud-init` (first on PATH) holds a lock for a few seconds after boot,
/// as cloud-init and apt do on a fresh cloud image; `status --wait` exits with `rc`.
fn cloud_init_node(site: &Site, rc: i32) -> (Node, tempfile::TempDir) {
    let fake = tempfile::Builder::new()
        .prefix("fake-ci-")
        .tempdir()
        .unwrap();
    let lock = site.targets.path().join("ci.lock");
    let l = lock.display();
    let script = fake.path().join("cloud-init");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1 $2\" in\n\
             'status --wait') while [ -e '{l}' ]; do sleep 0.1; done; echo 'status: done'; exit {rc} ;;\n\
             'status --long') printf 'status: error\\nextended_status: error - done\\ndetail:\\nDataSourceNoCloud [seed=/dev/vdb]\\nerrors:\\n\\t- (package_update_upgrade_install) apt failed\\n' ;;\n\
             *) exit 2 ;;\nesac\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let spec = Spec {
        setup: format!(
            "touch '{l}'; (sleep 4; rm -f '{l}') & mount --bind {f} /usr/local/bin",
            f = fake.path().display()
        ),
        ..Spec::openssh()
    };
    let node = Node::start(&spec, &site.public_key());
    site.point_at(&node);
    (node, fake)
}

#[test]
fn waits_for_cloud_init_before_the_first_script() {
    if !root() {
        return;
    }
    let site = site("root");
    let (_node, _fake) = cloud_init_node(&site, 0);
    let r = site
        .deploy("ci")
        .code(0)
        .stderr_has("box: waiting for cloud-init")
        .stderr_has("[box] hi from box as root");
    assert!(!r.stderr.contains("dpkg lock held"), "{}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

#[test]
fn wait_for_cloud_init_false_does_not_wait() {
    if !root() {
        return;
    }
    let site = site("root");
    let (_node, _fake) = cloud_init_node(&site, 0);
    let r = site
        .deploy_with("ci", &["noci"])
        .code(14)
        .stderr_has("[box] dpkg lock held");
    assert!(!r.stderr.contains("waiting for cloud-init"), "{}", r.stderr);
}

#[test]
fn cloud_init_errors_are_a_warning_naming_the_reason() {
    if !root() {
        return;
    }
    let site = site("root");
    let (_node, _fake) = cloud_init_node(&site, 1);
    site.deploy("ci")
        .code(0)
        .stderr_has("box: cloud-init finished with errors (cloud-init status --long:")
        .stderr_has("apt failed")
        .stderr_has("[box] hi from box as root");
}
