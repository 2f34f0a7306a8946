//! The SSH engine against a real OpenSSH sshd on loopback: connecting and host-key checks,
//! authentication failures, timeouts, and provisioning (keys, files, scripts) in one exec.

use crate::support::sshd::{client_key, free_port, other_public_key, ClientKey, Sshd};
use provision::config::Sourced;
use provision::error::Error;
use provision::file_content::FileContent;
use provision::plan::{Plan, PlannedFile, PlannedKey, PlannedScript};
use provision::ssh::{
    self, Connection, HostKeyCheck, ProvisionReport, RemotePaths, RunOptions, StepKind, Target,
};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn target(sshd: &Sshd, key: &ClientKey, host_key: HostKeyCheck) -> Target {
    Target {
        node: "test-node".into(),
        host: "127.0.0.1".into(),
        port: sshd.port,
        user: "root".into(),
        host_key,
        identities: vec![key.private.clone()],
        use_agent: false,
        jump: None,
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn connect(t: &Target) -> Result<Connection, Error> {
    ssh::connect(t, soon(), &mut || Ok(true))
}

/// A server with one authorized client key, connected with the pinned host key.
fn server() -> (Sshd, ClientKey, Connection) {
    let sshd = Sshd::start();
    let key = client_key();
    sshd.authorize("root", &key.public);
    let t = target(&sshd, &key, HostKeyCheck::Pinned(sshd.host_pub.clone()));
    let conn = connect(&t).unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    (sshd, key, conn)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn connect_and_exec_with_pinned_host_key() {
    let (_sshd, _key, mut conn) = server();
    let (status, out, err) = conn.exec("echo hello; echo oops >&2; exit 3").unwrap();
    assert_eq!(
        (status, out.as_str(), err.as_str()),
        (3, "hello\n", "oops\n")
    );
    assert_eq!(conn.exec("true").unwrap().0, 0);
    assert_eq!(conn.channels_opened(), 2);
}

#[test]
fn pinned_mismatch_is_refused_naming_both_fingerprints() {
    let sshd = Sshd::start();
    let key = client_key();
    sshd.authorize("root", &key.public);
    let wrong = other_public_key();
    let t = target(&sshd, &key, HostKeyCheck::Pinned(wrong.clone()));
    let err = connect(&t).err().expect("must refuse");
    let msg = err.to_string();
    assert!(matches!(err, Error::Deploy { .. }), "{msg}");
    assert!(msg.contains(&ssh::fingerprint(&wrong)), "{msg}");
    assert!(msg.contains(&ssh::fingerprint(&sshd.host_pub)), "{msg}");
}

#[test]
fn known_hosts_records_on_first_use_and_refuses_a_changed_key() {
    let sshd = Sshd::start();
    let key = client_key();
    sshd.authorize("root", &key.public);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state/known_hosts");
    let t = target(&sshd, &key, HostKeyCheck::KnownHosts(file.clone()));

    connect(&t).expect("first use records");
    let text = fs::read_to_string(&file).unwrap();
    let host_fields: Vec<&str> = sshd.host_pub.split_whitespace().take(2).collect();
    let expected = format!("[127.0.0.1]:{} {}\n", sshd.port, host_fields.join(" "));
    assert_eq!(text, expected);
    connect(&t).expect("known key accepted");
    assert_eq!(fs::read_to_string(&file).unwrap(), expected, "no duplicate");

    // The node was "re-created" with another key.
    let other = other_public_key();
    let other_fields: Vec<&str> = other.split_whitespace().take(2).collect();
    fs::write(
        &file,
        format!("[127.0.0.1]:{} {}\n", sshd.port, other_fields.join(" ")),
    )
    .unwrap();
    let err = connect(&t).err().expect("changed key refused");
    let msg = err.to_string();
    assert!(matches!(err, Error::Deploy { .. }), "{msg}");
    assert!(msg.contains("CHANGED"), "{msg}");
    assert!(msg.contains(&ssh::fingerprint(&other)), "{msg}");
    assert!(msg.contains(&ssh::fingerprint(&sshd.host_pub)), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
}

#[test]
fn insecure_accepts_any_host_key() {
    let sshd = Sshd::start();
    let key = client_key();
    sshd.authorize("root", &key.public);
    let mut conn = connect(&target(&sshd, &key, HostKeyCheck::Insecure)).unwrap();
    assert_eq!(conn.exec("echo ok").unwrap().1, "ok\n");
}

#[test]
fn wrong_client_key_fails_at_once() {
    let sshd = Sshd::start();
    let authorized = client_key();
    sshd.authorize("root", &authorized.public);
    let wrong = client_key();
    let t = target(&sshd, &wrong, HostKeyCheck::Pinned(sshd.host_pub.clone()));
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    let err = ssh::connect(&t, deadline, &mut || Ok(true))
        .err()
        .expect("auth must fail");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "auth failure was retried"
    );
    let msg = err.to_string();
    assert!(matches!(err, Error::Deploy { .. }), "{msg}");
    assert!(msg.contains("authentication failed"), "{msg}");
    assert!(
        msg.contains("set ssh_user"),
        "root logins name the fix: {msg}"
    );
    assert!(
        msg.contains(&format!("root@127.0.0.1:{}", sshd.port)),
        "{msg}"
    );
    assert!(msg.contains(&wrong.private.display().to_string()), "{msg}");
}

#[test]
fn closed_port_times_out_naming_phase_and_address() {
    let port = free_port();
    let key = client_key();
    let t = Target {
        node: "late-node".into(),
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        host_key: HostKeyCheck::Insecure,
        identities: vec![key.private.clone()],
        use_agent: false,
        jump: None,
    };
    let started = Instant::now();
    let mut asked = 0;
    let err = ssh::connect(
        &t,
        Instant::now() + Duration::from_millis(1500),
        &mut || {
            asked += 1;
            Ok(true)
        },
    )
    .err()
    .expect("must time out");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(asked >= 2, "still_there asked between tries ({asked})");
    let msg = err.to_string();
    assert!(matches!(err, Error::Timeout(_)), "{msg}");
    assert!(msg.contains("late-node"), "{msg}");
    assert!(msg.contains("TCP port open"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
}

#[test]
fn node_gone_stops_waiting() {
    let key = client_key();
    let t = Target {
        node: "gone-node".into(),
        host: "127.0.0.1".into(),
        port: free_port(),
        user: "root".into(),
        host_key: HostKeyCheck::Insecure,
        identities: vec![key.private.clone()],
        use_agent: false,
        jump: None,
    };
    let err = ssh::connect(&t, soon(), &mut || Ok(false)).err().unwrap();
    assert!(matches!(err, Error::Deploy { .. }), "{err}");
    assert!(err.to_string().contains("node is gone"), "{err}");
}

// ---- provision ----

fn sourced(v: &str) -> Sourced<String> {
    Sourced {
        value: v.into(),
        layer: "test".into(),
    }
}

fn plan() -> Plan {
    Plan {
        node_name: "test-node".into(),
        provider: sourced("local"),
        image: None,
        size: None,
        location: None,
        ssh_user: sourced("root"),
        bundles: vec![],
        pubkeys: vec![],
        files: vec![],
        scripts: vec![],
        vars: BTreeMap::new(),
        jump: None,
        warnings: vec![],
        remove_scripts: false,
        secrets: vec![],
    }
}

fn key(line: &str) -> PlannedKey {
    PlannedKey {
        line: line.into(),
        fingerprint: ssh::fingerprint(line),
        comment: String::new(),
        source: "test".into(),
    }
}

fn file(target: &Path, content: &[u8], mode: u32) -> PlannedFile {
    PlannedFile {
        target: target.display().to_string(),
        source: "test".into(),
        bundle: "b".into(),
        layer: "test".into(),
        size: content.len() as u64,
        mode,
        content: FileContent::memory(content),
        sha256: provision::file_content::sha256_hex(content),
    }
}

fn script(plan: &Plan, name: &str, body: &str) -> PlannedScript {
    PlannedScript {
        name: name.into(),
        remote_name: format!("{:02}-{name}", plan.scripts.len() + 1),
        bundle: "b".into(),
        layer: "test".into(),
        source: "test".into(),
        template: None,
        also_in: Vec::new(),
        rendered: body.into(),
        content: body.as_bytes().to_vec(),
    }
}

fn add_script(plan: &mut Plan, name: &str, body: &str) {
    let s = script(plan, name, body);
    plan.scripts.push(s);
}

struct Remote {
    dir: tempfile::TempDir,
}

impl Remote {
    fn new(conn: &mut Connection) -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s).display().to_string();
        conn.set_remote_paths(RemotePaths {
            login_keys: p("login/.ssh/authorized_keys"),
            root_keys: p("rootk/.ssh/authorized_keys"),
            script_dir: p("deploy"),
            user_script_dir: p("udeploy"),
        });
        Remote { dir }
    }
    fn path(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
}

type Lines = Vec<(String, bool, String, Instant)>;

fn provision(conn: &mut Connection, plan: &Plan, opts: &RunOptions) -> (ProvisionReport, Lines) {
    let mut lines = Vec::new();
    let report = conn
        .provision(plan, opts, &mut |name, err, line| {
            lines.push((name.to_string(), err, line.to_string(), Instant::now()))
        })
        .unwrap_or_else(|e| panic!("provision: {e}"));
    (report, lines)
}

#[test]
fn provision_installs_keys_files_and_runs_scripts() {
    let (_sshd, _key, mut conn) = server();
    let remote = Remote::new(&mut conn);
    let k1 = other_public_key();
    let k2 = other_public_key();
    // An existing authorized_keys without a final newline, already holding k2.
    fs::create_dir_all(remote.path("login/.ssh")).unwrap();
    fs::write(remote.path("login/.ssh/authorized_keys"), &k2).unwrap();

    let mut p = plan();
    p.pubkeys = vec![key(&k1), key(&k2)];
    let nested = remote.path("out/new/deeper/config.txt");
    let secret = remote.path("out/secret");
    p.files = vec![
        file(&nested, b"line one\nline two\n", 0o640),
        file(&secret, b"s3cret", 0o600),
    ];
    add_script(
        &mut p,
        "first.sh",
        "#!/bin/sh\necho one\necho to-stderr >&2\n",
    );
    add_script(
        &mut p,
        "second.py",
        "#!/usr/bin/env python3\nimport sys\nprint('python', sys.version_info[0])\n",
    );
    add_script(&mut p, "third", "echo \"no shebang, $(basename \"$0\")\"\n");

    let (report, lines) = provision(&mut conn, &p, &RunOptions::default());
    let kinds: Vec<StepKind> = report.steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            StepKind::Keys,
            StepKind::Files,
            StepKind::Script,
            StepKind::Script,
            StepKind::Script
        ]
    );
    assert!(
        report.steps.iter().all(|s| s.status == Some(0)),
        "{report:#?}"
    );
    assert!(report.failed_script().is_none());
    let s = &report.steps;
    assert_eq!(
        (s[2].name.as_str(), s[2].stdout.as_str()),
        ("first.sh", "one\n")
    );
    assert_eq!(s[2].stderr, "to-stderr\n");
    assert_eq!(s[3].stdout, "python 3\n");
    assert_eq!(s[4].stdout, "no shebang, 03-third\n");
    let got: Vec<(&str, bool, &str)> = lines
        .iter()
        .map(|(n, e, l, _)| (n.as_str(), *e, l.as_str()))
        .collect();
    let out_lines: Vec<_> = got.iter().filter(|l| !l.1).cloned().collect();
    assert_eq!(
        out_lines,
        [
            ("first.sh", false, "one"),
            ("second.py", false, "python 3"),
            ("third", false, "no shebang, 03-third")
        ]
    );
    assert!(got.contains(&("first.sh", true, "to-stderr")));

    // Files: content, mode, new parent dirs.
    assert_eq!(fs::read(&nested).unwrap(), b"line one\nline two\n");
    assert_eq!(mode(&nested), 0o640);
    assert_eq!(fs::read(&secret).unwrap(), b"s3cret");
    assert_eq!(mode(&secret), 0o600);
    // Scripts are left in the script dir under their remote names.
    assert!(remote.path("deploy/01-first.sh").is_file());
    assert!(remote.path("deploy/03-third").is_file());
    let leftovers: Vec<_> = fs::read_dir(remote.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".provision"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Keys: each once, twice provisioned; .ssh 0700, file 0600; both users.
    provision(&mut conn, &p, &RunOptions::default());
    for f in ["login/.ssh/authorized_keys", "rootk/.ssh/authorized_keys"] {
        let path = remote.path(f);
        let text = fs::read_to_string(&path).unwrap();
        for k in [&k1, &k2] {
            assert_eq!(text.matches(k.as_str()).count(), 1, "{f}: {text}");
        }
        assert_eq!(text.lines().count(), 2, "{f}: {text}");
        assert_eq!(mode(&path), 0o600, "{f}");
        assert_eq!(mode(path.parent().unwrap()), 0o700, "{f}");
    }
    assert_eq!(conn.channels_opened(), 2, "one exec channel per provision");
}

#[test]
fn failing_script_stops_the_rest_unless_keep_going() {
    let (_sshd, _key, mut conn) = server();
    let remote = Remote::new(&mut conn);
    let mut p = plan();
    add_script(&mut p, "ok.sh", "#!/bin/sh\necho ok\n");
    add_script(&mut p, "bad.sh", "#!/bin/sh\necho failing >&2\nexit 3\n");
    let marker = remote.path("after-ran");
    add_script(
        &mut p,
        "after.sh",
        &format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    );

    let (report, _) = provision(&mut conn, &p, &RunOptions::default());
    let failed = report.failed_script().expect("a script failed");
    assert_eq!((failed.name.as_str(), failed.status), ("bad.sh", Some(3)));
    assert_eq!(failed.stderr, "failing\n");
    let after = &report.steps[4];
    assert!(after.skipped && after.status.is_none(), "{after:?}");
    assert!(!marker.exists());

    let opts = RunOptions {
        keep_going: true,
        script_timeout: None,
        ..Default::default()
    };
    let (report, _) = provision(&mut conn, &p, &opts);
    assert_eq!(report.failed_script().unwrap().name, "bad.sh");
    assert_eq!(report.steps[4].status, Some(0));
    assert!(marker.exists());
}

#[test]
fn script_timeout_kills_the_process_group() {
    let (_sshd, _key, mut conn) = server();
    let _remote = Remote::new(&mut conn);
    let mut p = plan();
    add_script(
        &mut p,
        "hang.sh",
        "#!/bin/sh\necho started\nsleep 100.4242\necho never\n",
    );
    add_script(&mut p, "next.sh", "#!/bin/sh\necho next\n");
    let opts = RunOptions {
        keep_going: false,
        script_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let started = Instant::now();
    let (report, _) = provision(&mut conn, &p, &opts);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let hang = &report.steps[2];
    assert_eq!(hang.status, Some(ssh::TIMEOUT_STATUS), "{hang:?}");
    assert_eq!(hang.stdout, "started\n");
    assert!(hang.stderr.contains("script timeout"), "{hang:?}");
    assert!(report.steps[3].skipped);
    // The script's child (in its process group) is gone too.
    let (status, out, _) = conn.exec("pgrep -f 'sleep 100[.]4242'").unwrap();
    assert_eq!(status, 1, "sleep still running: {out}");
}

#[test]
fn output_is_streamed_live_and_large_output_does_not_deadlock() {
    let (_sshd, _key, mut conn) = server();
    let _remote = Remote::new(&mut conn);
    let mut p = plan();
    add_script(
        &mut p,
        "slow.sh",
        "#!/bin/sh\necho early\nsleep 1\necho late\n",
    );
    add_script(
        &mut p,
        "loud.sh",
        "#!/bin/sh\ni=0\nwhile [ $i -lt 20000 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done\n",
    );
    let (report, lines) = provision(&mut conn, &p, &RunOptions::default());
    let at = |text: &str| lines.iter().find(|l| l.2 == text).unwrap().3;
    assert!(
        at("late") - at("early") >= Duration::from_millis(700),
        "'early' was not delivered before the script ended"
    );
    let loud = &report.steps[3];
    assert_eq!(loud.status, Some(0));
    assert_eq!(loud.stdout.lines().count(), 20000);
    assert_eq!(loud.stderr.lines().count(), 20000);
    assert!(loud.stderr.ends_with("err 19999\n"));
}

#[test]
fn channel_count_does_not_grow_with_files() {
    let (_sshd, _key, mut conn) = server();
    let remote = Remote::new(&mut conn);
    let mut few = plan();
    for i in 0..2 {
        few.files
            .push(file(&remote.path(&format!("few/{i}")), b"x", 0o644));
    }
    add_script(&mut few, "s.sh", "#!/bin/sh\ntrue\n");
    provision(&mut conn, &few, &RunOptions::default());
    let for_two = conn.channels_opened();

    let mut many = plan();
    for i in 0..200 {
        let content = format!("file {i}\n");
        many.files.push(file(
            &remote.path(&format!("many/d{}/f{i}", i % 7)),
            content.as_bytes(),
            0o600,
        ));
    }
    for i in 0..5 {
        add_script(&mut many, &format!("s{i}.sh"), "#!/bin/sh\ntrue\n");
    }
    let (report, _) = provision(&mut conn, &many, &RunOptions::default());
    assert!(report.steps.iter().all(|s| s.status == Some(0)));
    assert_eq!(conn.channels_opened() - for_two, for_two);
    assert_eq!(for_two, 1);
    assert_eq!(
        fs::read_to_string(remote.path("many/d3/f199")).unwrap(),
        "file 199\n"
    );
}

#[test]
fn file_write_failure_is_a_deploy_error() {
    let (_sshd, _key, mut conn) = server();
    let remote = Remote::new(&mut conn);
    fs::write(remote.path("blocker"), "a file, not a dir").unwrap();
    let mut p = plan();
    let bad = remote.path("blocker/sub/file");
    p.files = vec![file(&bad, b"x", 0o644)];
    let marker = remote.path("script-ran");
    add_script(
        &mut p,
        "s.sh",
        &format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    );
    let err = conn
        .provision(&p, &RunOptions::default(), &mut |_, _, _| {})
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Deploy { .. }), "{msg}");
    assert!(msg.contains("writing files failed"), "{msg}");
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    assert!(
        !marker.exists(),
        "scripts must not run after a failed file write"
    );
}

#[test]
fn a_file_truncated_after_planning_stops_the_upload_naming_it() {
    let (_sshd, _key, mut conn) = server();
    let remote = Remote::new(&mut conn);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    fs::write(&source, vec![9u8; 3 << 20]).unwrap();
    let (identity, sha256) = provision::file_content::hash_file(&source).unwrap();
    let mut p = plan();
    let (small, big) = (remote.path("etc/small"), remote.path("data/big.bin"));
    p.files = vec![
        file(&small, b"first\n", 0o644),
        PlannedFile {
            size: identity.size,
            sha256,
            content: FileContent::Disk {
                path: source.clone(),
                identity,
            },
            source: source.display().to_string(),
            ..file(&big, b"", 0o644)
        },
    ];
    let marker = remote.path("script-ran");
    add_script(
        &mut p,
        "s.sh",
        &format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    );
    // changed between plan and send
    fs::File::options()
        .write(true)
        .open(&source)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let err = conn
        .provision(&p, &RunOptions::default(), &mut |_, _, _| {})
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::Deploy { .. }), "{msg}");
    assert_eq!(
        msg,
        format!(
            "test-node: writing files: {} (for {}): it changed since it was planned (modified or replaced)",
            source.display(),
            big.display()
        )
    );
    // the node's tar saw a cut archive: nothing moved into place, no script ran
    assert!(!big.exists() && !small.exists(), "a file was placed");
    assert!(!marker.exists(), "a script ran");
    // and the node removes what it had staged (once its tar saw the cut)
    let staged = || {
        [&small, &big].iter().any(|t| {
            fs::read_dir(t.parent().unwrap()).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".provision-"))
            })
        })
    };
    assert!(
        crate::support::procs::wait_until(Duration::from_secs(10), || !staged()),
        "staging dirs left on the node"
    );
}

#[test]
fn a_background_process_holding_stdout_does_not_hang_provision() {
    let (_sshd, _key, mut conn) = server();
    let _remote = Remote::new(&mut conn);
    let mut p = plan();
    add_script(
        &mut p,
        "daemon.sh",
        "#!/bin/sh\nsleep 20.4343 &\necho started\n",
    );
    let started = Instant::now();
    let (report, _) = provision(&mut conn, &p, &RunOptions::default());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.steps[2].status, Some(0));
    assert_eq!(report.steps[2].stdout, "started\n");
    // The connection is still usable.
    assert_eq!(conn.exec("echo still here").unwrap().1, "still here\n");
    let _ = conn.exec("pkill -f 'sleep 20[.]4343'");
}

/// Issue 16 item 4: scripts that held secrets are mode 0700 in a 0700 directory while they
/// run, and are gone afterwards unless the plan keeps them (`keep_scripts = true`).
#[test]
fn scripts_with_secrets_are_private_and_removed_after_the_run() {
    let (_sshd, _key, mut conn) = server();
    let remote = Remote::new(&mut conn);
    let seen = remote.path("seen");
    let mut p = plan();
    let body = format!(
        "#!/bin/sh\nstat -c %a \"$0\" \"$(dirname \"$0\")\" > '{}'\n",
        seen.display()
    );
    add_script(&mut p, "secret.sh", &body);
    for (remove, left) in [(true, false), (false, true)] {
        let opts = RunOptions {
            remove_scripts: remove,
            ..Default::default()
        };
        let (report, _) = provision(&mut conn, &p, &opts);
        assert!(report.failed_script().is_none(), "{report:?}");
        let modes = std::fs::read_to_string(&seen).unwrap();
        assert_eq!(modes, "700\n700\n", "script, then its directory");
        assert_eq!(remote.path("deploy/01-secret.sh").exists(), left);
    }
}
