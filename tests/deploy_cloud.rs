//! End to end with the real binaries against DigitalOcean and Hetzner: the stateful loopback
//! fake of each API, behind Prism's validating proxy (both sides checked against the official
//! spec), whose create starts a REAL local node keyed and host-keyed as the cloud-init
//! user-data says. So `deploy-node -p digitalocean` creates, waits, connects with the host key
//! pinned from user-data (no trust on first use), runs a script; `list-nodes` and `destroy-node`
//! follow, and a destroyed server takes its local sshd with it.
//!
//! Faults (429, 503, garbled and lost create answers, servers that never start or stop,
//! Ctrl-C) run against a fake of their own without Prism: fault rules are per fake, and some
//! faults are not spec-valid. Each checks the exit code, one clear error line, no leaked and
//! no duplicate node.
//!
//! Nodes are isolated local nodes on their own 127.x.y.z port 22 (the cloud APIs report no
//! port): this needs root, as in CI; otherwise the tests fail saying so.

use crate::support::cloudnodes;
use crate::support::fakecloud;
use crate::support::prism;

use crate::support::cli::{Run, Sandbox};
use cloudnodes::{assert_node_gone, assert_node_started, attach_nodes, node_pid, Cleanup};
use fakecloud::{Api, FakeCloud, Fault};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const DO_TOKEN: &str = "dop_v1_e2e0123456789abcdef0123456789abcdef0123456789abcdef";
pub const HZ_TOKEN: &str = "hz-e2e-0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789ab";
const RESULTS: &str = "<testsuite tests=\"1\"><testcase name=\"works\"/></testsuite>";

/// What differs between the two clouds (also for tests/reaper.rs).
pub struct Cloud {
    pub api: Api,
    pub provider: &'static str,
    pub url_env: &'static str,
    pub token_env: &'static str,
    pub token: &'static str,
    pub spec: &'static str,
    /// -i, -s, -l
    pub image: &'static str,
    pub size: &'static str,
    pub location: &'static str,
    /// The path prefix of server creates, as the fake sees it.
    pub create_path: &'static str,
    /// A status of the spec that means "not running and not starting".
    pub off: &'static str,
}

pub const DO: Cloud = Cloud {
    api: Api::DigitalOcean,
    provider: "digitalocean",
    url_env: "PROVISION_DIGITALOCEAN_URL",
    token_env: "DIGITALOCEAN_TOKEN",
    token: DO_TOKEN,
    spec: "specs/digitalocean/DigitalOcean-public.v2.bundled.yaml",
    image: "ubuntu-24-04-x64",
    size: "s-1vcpu-1gb",
    location: "fra1",
    create_path: "/v2/droplets",
    off: "off",
};

pub const HZ: Cloud = Cloud {
    api: Api::Hetzner,
    provider: "hetzner",
    url_env: "PROVISION_HETZNER_URL",
    token_env: "HCLOUD_TOKEN",
    token: HZ_TOKEN,
    spec: "specs/hetzner/cloud.spec.json",
    image: "ubuntu-24.04",
    size: "cx22",
    location: "fsn1",
    create_path: "/servers",
    off: "off",
};

// ---- fakes ----

pub struct Shared {
    pub fake: FakeCloud,
    pub prism: prism::Prism,
}

/// The fake of `c` behind Prism, once per test binary (both start in parallel).
pub fn proxied(c: &Cloud) -> &'static Shared {
    static DO_S: OnceLock<Shared> = OnceLock::new();
    static HZ_S: OnceLock<Shared> = OnceLock::new();
    let cell = match c.api {
        Api::DigitalOcean => &DO_S,
        Api::Hetzner => &HZ_S,
        Api::OpenStack => unreachable!("OpenStack has no OpenAPI spec: tests/deploy_openstack.rs"),
    };
    cell.get_or_init(|| {
        let fake = FakeCloud::start(c.api, c.token);
        attach_nodes(&fake);
        let prism = prism::start(c.spec, &fake.url);
        Shared { fake, prism }
    })
}

/// A fake of its own (no Prism), for fault injection.
fn bare(c: &Cloud) -> FakeCloud {
    let fake = FakeCloud::start(c.api, c.token);
    attach_nodes(&fake);
    fake
}

// ---- the binaries ----

/// A sandbox with a `greet` bundle (its own name: replacing a built-in bundle warns) and quick polling/retries for both clouds.
fn sandbox() -> Sandbox {
    let s = Sandbox::new();
    let tuning = "poll_interval = 0.1\nretries = 2\ntimeout = 10\nconnect_timeout = 2\n";
    s.write(
        "site/provision.toml",
        &format!(
            "destroyable_prefixes = [\"e2e-\"]\n\n[bundles.greet]\nscripts = [\"hello.sh\"]\n\n[providers.digitalocean]\n{tuning}\n[providers.hetzner]\n{tuning}"
        ),
    );
    s.write(
        "site/scripts/hello.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho \"hello from {node_name}\"\n",
    );
    s.write("results.xml", RESULTS);
    s
}

fn cmd(s: &Sandbox, c: &Cloud, url: &str, bin: &str) -> crate::support::cli::Cmd {
    s.cmd(bin)
        .env(c.url_env, url)
        .env(c.token_env, c.token)
        .args(["-c", "site", "-p", c.provider])
}

fn deploy(
    s: &Sandbox,
    c: &Cloud,
    url: &str,
    name: &str,
    extra: &[&str],
) -> crate::support::cli::Cmd {
    deploy_image(s, c, url, name, c.image, extra)
}

fn deploy_image(
    s: &Sandbox,
    c: &Cloud,
    url: &str,
    name: &str,
    image: &str,
    extra: &[&str],
) -> crate::support::cli::Cmd {
    cmd(s, c, url, "deploy-node")
        .args([
            "-i", image, "-s", c.size, "-l", c.location, "-b", "greet", "-n", name,
        ])
        .args(extra)
}

fn destroy(s: &Sandbox, c: &Cloud, url: &str, name: &str) -> Run {
    cmd(s, c, url, "destroy-node")
        .args(["-t", "results.xml", name])
        .run()
}

/// deploy → exit 0, `NAME IP` on stdout, the script's output streamed; returns the IP.
fn deployed(r: Run, fake: &FakeCloud, name: &str) -> String {
    assert_node_started(name);
    let r = r.code(0).stderr_has(&format!("[{name}] hello from {name}"));
    let (n, ip) = r.stdout.trim_end().split_once(' ').expect("NAME IP");
    assert_eq!(n, name, "{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "{ip}");
    assert_eq!(fake.server_named(name).unwrap().ip, ip);
    assert_eq!(fake.count_named(name), 1, "duplicate servers");
    ip.to_string()
}

// ---- the whole flow, through Prism ----

fn whole_flow(c: &Cloud) {
    let sh = proxied(c);
    let (fake, url) = (&sh.fake, sh.prism.url.as_str());
    let name = format!("e2e-{}-flow", c.provider);
    let foreign = format!("e2e-{}-foreign", c.provider);
    let _g = Cleanup(name.clone());
    fake.add_foreign(&foreign);
    let s = sandbox();

    let r = deploy(&s, c, url, &name, &["--ssh-timeout", "60s"]).run();
    // a clean deploy warns about nothing (it once warned about its own tags)
    let r = r.stderr_lacks("warning");
    let ip = deployed(r, fake, &name);
    let pid = node_pid(&name);
    // the host key came pinned from the user-data: nothing was trusted on first use
    assert!(!s.state().join("known_hosts").exists());
    ssh_config_pins_the_host_key(&s, c, url, &name);

    let listed = cmd(&s, c, url, "list-nodes").run().code(0).stdout;
    assert!(listed.contains(&format!("{name} {ip}\n")), "{listed}");
    assert!(!listed.contains(&foreign), "{listed}");
    let all = cmd(&s, c, url, "list-nodes")
        .args(["--all"])
        .run()
        .code(0)
        .stdout;
    assert!(all.contains(&format!("{name} {ip}\n")), "{all}");
    assert!(all.contains(&format!("{foreign} ")), "{all}");

    for (flag, want) in [
        ("--images", c.image),
        ("--sizes", c.size),
        ("--locations", c.location),
    ] {
        let out = cmd(&s, c, url, "list-nodes")
            .args([flag])
            .run()
            .code(0)
            .stdout;
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{want}  ")) && l.len() > want.len() + 2),
            "{flag}:\n{out}"
        );
    }

    destroy(&s, c, url, &name).code(0);
    assert_eq!(fake.count_named(&name), 0);
    assert_node_gone(&name, Some(pid));
    let listed = cmd(&s, c, url, "list-nodes").run().code(0).stdout;
    assert!(!listed.contains(&name), "{listed}");
    // the remembered host key went with the node
    let record = s.state().join(format!("nodes/{}--{name}.json", c.provider));
    assert!(!record.exists(), "{}", record.display());
    assert!(!s.state().join("known_hosts.d").join(&name).exists());
}

/// `ssh -F <(list-nodes --format ssh-config) -o StrictHostKeyChecking=yes NODE true` works:
/// the host key deploy-node pinned is remembered and written as the node's known_hosts.
fn ssh_config_pins_the_host_key(s: &Sandbox, c: &Cloud, url: &str, name: &str) {
    let cfg = cmd(s, c, url, "list-nodes")
        .args(["--format", "ssh-config"])
        .run()
        .code(0)
        .stdout;
    assert!(cfg.contains(&format!("Host {name}\n")), "{cfg}");
    assert!(cfg.contains("StrictHostKeyChecking yes"), "{cfg}");
    assert!(cfg.contains("User root"), "{cfg}");
    let known = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("UserKnownHostsFile "))
        .unwrap_or_else(|| panic!("no UserKnownHostsFile:\n{cfg}"));
    let line = std::fs::read_to_string(known).unwrap();
    assert!(line.contains(" ssh-ed25519 "), "{line}");
    s.ssh_with_config(&cfg, name, "true");
}

#[test]
fn digitalocean_deploy_list_destroy() {
    whole_flow(&DO);
}

#[test]
fn hetzner_deploy_list_destroy() {
    whole_flow(&HZ);
}

/// Mistakes cost nothing: a wrong image names near matches, a missing token names its
/// variable, and a server provision did not make is refused without --force.
fn refusals(c: &Cloud) {
    let sh = proxied(c);
    let (fake, url) = (&sh.fake, sh.prism.url.as_str());
    let s = sandbox();
    let name = format!("e2e-{}-refused", c.provider);
    let _g = Cleanup(name.clone());

    let wrong = c.image.replace("24", "42");
    deploy_image(&s, c, url, &name, &wrong, &[])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has(&format!("no image '{wrong}'"))
        .stderr_has(c.image)
        .stderr_has("--images")
        .stdout_empty();
    assert_eq!(fake.count_named(&name), 0);

    s.cmd("deploy-node")
        .env(c.url_env, url)
        .args(["-c", "site", "-p", c.provider, "-b", "greet", "-n", &name])
        .args(["-i", c.image, "-s", c.size, "-l", c.location])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has(c.token_env)
        .stdout_empty();
    assert_eq!(fake.count_named(&name), 0);

    // a refused token is a configuration error naming where it came from, not exit 11
    s.cmd("deploy-node")
        .env(c.url_env, url)
        .env(c.token_env, "refused-token-0123456789")
        .args(["-c", "site", "-p", c.provider, "-b", "greet", "-n", &name])
        .args(["-i", c.image, "-s", c.size, "-l", c.location])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("credential refused")
        .stderr_has(&format!("environment variable {}", c.token_env))
        .stderr_lacks("refused-token-0123456789")
        .stdout_empty();
    assert_eq!(fake.count_named(&name), 0);

    let foreign = format!("e2e-{}-not-ours", c.provider);
    fake.add_foreign(&foreign);
    destroy(&s, c, url, &foreign)
        .code(1)
        .one_line_error()
        .stderr_has("--force");
    assert_eq!(fake.count_named(&foreign), 1);
}

#[test]
fn digitalocean_refusals() {
    refusals(&DO);
}

#[test]
fn hetzner_refusals() {
    refusals(&HZ);
}

/// The everyday loop on a kept server (tests/reprovision.rs): deploy, edit, dry-run diff,
/// re-provision with only the changed files sent and provision_run = 2, node show, and a host
/// key changed on the node refused — found by name through the API, creating no server.
fn reprovision_loop(c: &Cloud) {
    let sh = proxied(c);
    let (fake, url) = (&sh.fake, sh.prism.url.as_str());
    let name = &format!("e2e-{}-reprov", c.provider);
    let _g = Cleanup(name.clone());
    let s = sandbox();
    let deploy = cmd(&s, c, url, "deploy-node").args([
        "-i",
        c.image,
        "-s",
        c.size,
        "-l",
        c.location,
        "--ssh-timeout",
        "60s",
    ]);
    crate::reprovision::deploy_app(&s, deploy, name);
    assert_node_started(name);
    let made = creates(fake, c);
    let run = |bin: &str| cmd(&s, c, url, bin);
    let local = cloudnodes::local();
    let isolated = local.record(name).unwrap().unwrap().isolated;
    let dir = local.node_dir(name);
    crate::reprovision::edit_and_reprovision(&s, &run, name, &|| {
        crate::reprovision::new_host_key(&run, name, isolated, &dir)
    });
    assert_eq!(creates(fake, c), made, "a re-provision created a server");
    assert_eq!(fake.count_named(name), 1);
    destroy(&s, c, url, name).code(0);
}

#[test]
fn digitalocean_reprovision_loop() {
    reprovision_loop(&DO);
}

#[test]
fn hetzner_reprovision_loop() {
    reprovision_loop(&HZ);
}

// ---- faults, against a fake of their own ----

fn creates(fake: &FakeCloud, c: &Cloud) -> usize {
    fake.count_requests("POST", c.create_path)
}

/// 429 with Retry-After on create: waited, retried, one server.
fn rate_limited(c: &Cloud) {
    let fake = bare(c);
    let s = sandbox();
    let name = format!("e2e-{}-429", c.provider);
    let _g = Cleanup(name.clone());
    fake.fault("POST", c.create_path, Fault::RetryAfter("1".into()), 1);
    let r = deploy(&s, c, &fake.url, &name, &["--ssh-timeout", "60s"]).run();
    deployed(r, &fake, &name);
    assert_eq!(creates(&fake, c), 2);
    destroy(&s, c, &fake.url, &name).code(0);
    assert_eq!(fake.count(), 0);
    assert_node_gone(&name, None);
}

/// 503 on every create: exit 13 after the retries, nothing created.
fn unavailable(c: &Cloud) {
    let fake = bare(c);
    let s = sandbox();
    let name = format!("e2e-{}-503", c.provider);
    let _g = Cleanup(name.clone());
    fake.fault("POST", c.create_path, Fault::Status(503), 1000);
    deploy(&s, c, &fake.url, &name, &[])
        .run()
        .code(13)
        .one_line_error()
        .stderr_has("unavailable")
        .stderr_has("503")
        .stdout_empty();
    assert_eq!(creates(&fake, c), 3, "retries = 2");
    assert_eq!(fake.count(), 0);
}

/// The create happened but its answer is not JSON: exit 12, and the server is found by name
/// and destroyed.
fn garbled(c: &Cloud) {
    let fake = bare(c);
    let s = sandbox();
    let name = format!("e2e-{}-garbled", c.provider);
    let _g = Cleanup(name.clone());
    fake.fault("POST", c.create_path, Fault::MalformedAfterProcessing, 1);
    deploy(&s, c, &fake.url, &name, &[])
        .run()
        .code(12)
        .one_line_error()
        .stderr_has("malformed response")
        .stderr_has(&format!("{name}: created (id "))
        .stdout_empty();
    assert_eq!(creates(&fake, c), 1);
    assert_eq!(fake.count(), 0, "the created server leaked");
    assert_node_gone(&name, None);
}

/// The create happened but the connection dropped before the answer: the driver looks
/// before re-sending, finds the server, and the deploy completes with that one.
fn lost_answer(c: &Cloud) {
    let fake = bare(c);
    let s = sandbox();
    let name = format!("e2e-{}-lost", c.provider);
    let _g = Cleanup(name.clone());
    fake.fault("POST", c.create_path, Fault::DropAfterProcessing, 1);
    let r = deploy(&s, c, &fake.url, &name, &["--ssh-timeout", "60s"]).run();
    deployed(r, &fake, &name);
    assert_eq!(creates(&fake, c), 1, "re-sent although the server existed");
    destroy(&s, c, &fake.url, &name).code(0);
    assert_eq!(fake.count(), 0);
    assert_node_gone(&name, None);
}

/// A server that never leaves new/initializing: exit 15 at --ssh-timeout, destroyed.
fn stuck(c: &Cloud) {
    let fake = bare(c);
    fake.set_polls_until_active(u32::MAX);
    let s = sandbox();
    let name = format!("e2e-{}-stuck", c.provider);
    let _g = Cleanup(name.clone());
    let started = Instant::now();
    deploy(&s, c, &fake.url, &name, &["--ssh-timeout", "5s"])
        .run()
        .code(15)
        .one_line_error()
        .stderr_has("--ssh-timeout")
        .stderr_has(&format!("{name}: never became ready; destroyed"))
        .stdout_empty();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(fake.count(), 0);
    assert_node_gone(&name, None);
}

/// A server that reports itself off instead of starting: exit 14, destroyed.
fn stopped(c: &Cloud) {
    let fake = bare(c);
    fake.set_status(Some(c.off));
    let s = sandbox();
    let name = format!("e2e-{}-off", c.provider);
    let _g = Cleanup(name.clone());
    deploy(&s, c, &fake.url, &name, &["--ssh-timeout", "60s"])
        .run()
        .code(14)
        .one_line_error()
        .stderr_has("stopped")
        .stderr_has(&format!("{name}: never became ready; destroyed"))
        .stdout_empty();
    assert_eq!(creates(&fake, c), 1);
    assert_eq!(fake.count(), 0);
    assert_node_gone(&name, None);
}

/// `sig` while waiting for a server that never starts: exit 130, destroyed.
fn signalled_while_waiting(c: &Cloud, sig: i32, what: &str) {
    let fake = bare(c);
    fake.set_polls_until_active(u32::MAX);
    let s = sandbox();
    let name = format!("e2e-{}-{what}", c.provider);
    let _g = Cleanup(name.clone());
    let child = spawn(deploy(&s, c, &fake.url, &name, &["--ssh-timeout", "60s"]));
    wait_created(&fake, &name);
    // let it get into the wait
    std::thread::sleep(Duration::from_millis(400));
    signal(&child, sig);
    cloudnodes::ended_130_and_destroyed(child, &fake, &name);
}

/// Ctrl-C while waiting.
fn interrupted(c: &Cloud) {
    signalled_while_waiting(c, libc::SIGINT, "sigint");
}

/// A name taken on the account (by our node or anyone's) is refused before anything is
/// created, whatever fault waits on the create: the existing node survives untouched.
fn taken_name(c: &Cloud) {
    let fake = bare(c);
    let s = sandbox();
    let name = format!("e2e-{}-taken", c.provider);
    let _g = Cleanup(name.clone());
    let r = deploy(&s, c, &fake.url, &name, &["--ssh-timeout", "60s"]).run();
    deployed(r, &fake, &name);
    let first = fake.server_named(&name).unwrap();
    let pid = node_pid(&name);
    for fault in [
        Fault::Status(503),
        Fault::DropAfterProcessing,
        Fault::MalformedAfterProcessing,
    ] {
        fake.fault("POST", c.create_path, fault, 1);
        deploy(&s, c, &fake.url, &name, &["--ssh-timeout", "60s"])
            .run()
            .code(2)
            .one_line_error()
            .stderr_has("already taken")
            .stderr_has(&format!("'{name}' (id {}, created ", first.id))
            .stderr_has("nothing created")
            .stdout_empty();
        assert_eq!(creates(&fake, c), 1, "a create was sent");
        assert_eq!(fake.count_named(&name), 1);
        assert_eq!(fake.server_named(&name).unwrap().id, first.id);
        assert!(cloudnodes::alive(pid), "the existing node was touched");
    }
    // not ours: the same
    let foreign = format!("e2e-{}-taken-foreign", c.provider);
    let fid = fake.add_foreign(&foreign);
    deploy(&s, c, &fake.url, &foreign, &[])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has(&format!("'{foreign}' (id {fid}, "));
    assert_eq!(creates(&fake, c), 1);
    // the first deploy's host key is still the one remembered and pinned
    let cfg = cmd(&s, c, &fake.url, "list-nodes")
        .args(["--format", "ssh-config"])
        .run()
        .code(0)
        .stdout;
    assert!(cfg.contains("StrictHostKeyChecking yes"), "{cfg}");
    destroy(&s, c, &fake.url, &name).code(0);
    assert_node_gone(&name, Some(pid));
}

/// A node made by a failed attempt (garbled answer, --keep-on-failure) is found by the
/// attempt's identity and listed by `--orphans`; a journal entry never claims another node
/// of the same name.
fn failed_attempt_is_an_orphan(c: &Cloud) {
    let fake = bare(c);
    let s = sandbox();
    let name = format!("e2e-{}-orphan", c.provider);
    let _g = Cleanup(name.clone());
    fake.fault("POST", c.create_path, Fault::MalformedAfterProcessing, 1);
    deploy(&s, c, &fake.url, &name, &["--keep-on-failure"])
        .run()
        .code(12)
        .stderr_has("kept (--keep-on-failure)")
        .stdout_empty();
    assert_eq!(fake.count_named(&name), 1);
    let listed = orphans(&s, c, &fake.url);
    assert!(listed.starts_with(&format!("{name} ")), "{listed}");

    // an entry whose create id no node carries: a node of that name is not its orphan
    let foreign = format!("e2e-{}-orphan-foreign", c.provider);
    fake.add_foreign(&foreign);
    s.write(
        &format!(
            "state/journal/{}--{foreign}.json",
            c.provider
        ),
        &format!(
            r#"{{"name":"{foreign}","provider":"{}","id":null,"create_id":"00000000deadbeef","started":"2026-01-01T00:00:00Z","status":"creating"}}"#,
            c.provider
        ),
    );
    let listed = orphans(&s, c, &fake.url);
    assert!(!listed.contains(&foreign), "{listed}");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    destroy(&s, c, &fake.url, &name).code(0);
    assert_eq!(fake.count_named(&name), 0);
    assert_node_gone(&name, None);
}

/// stdout of `list-nodes --orphans`.
fn orphans(s: &Sandbox, c: &Cloud, url: &str) -> String {
    cmd(s, c, url, "list-nodes")
        .args(["--orphans"])
        .run()
        .code(0)
        .stdout
}

/// Starts a deploy of `name` whose create answers `secs` late, once the server exists.
fn slow_create(
    s: &Sandbox,
    c: &Cloud,
    fake: &FakeCloud,
    name: &str,
    secs: u64,
) -> std::process::Child {
    fake.fault(
        "POST",
        c.create_path,
        Fault::Slow(Duration::from_secs(secs)),
        1,
    );
    let child = spawn(deploy(s, c, &fake.url, name, &["--ssh-timeout", "60s"]));
    wait_created(fake, name);
    child
}

fn spawn(cmd: crate::support::cli::Cmd) -> std::process::Child {
    let mut cmd = cmd.cmd;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn wait_created(fake: &FakeCloud, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.count_named(name) == 0 {
        assert!(Instant::now() < deadline, "the server never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ctrl-C while the create's answer is on its way: the create ends, then what it made is
/// destroyed on the main path; exit 130.
fn interrupted_create(c: &Cloud) {
    let fake = bare(c);
    let s = sandbox();
    let name = format!("e2e-{}-sigint-create", c.provider);
    let _g = Cleanup(name.clone());
    let child = slow_create(&s, c, &fake, &name, 2);
    signal(&child, libc::SIGINT);
    cloudnodes::ended_130_and_destroyed(child, &fake, &name);
    let listed = orphans(&s, c, &fake.url);
    assert_eq!(listed, "");
}

/// A second Ctrl-C exits at once, naming what may be left and `--orphans`, which then shows
/// the node the create made (journaled with its identity before the request was sent).
fn double_interrupt(c: &Cloud) {
    let fake = bare(c);
    let s = sandbox();
    let name = format!("e2e-{}-sigint-twice", c.provider);
    let _g = Cleanup(name.clone());
    let child = slow_create(&s, c, &fake, &name, 8);
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "not at once: {stderr}"
    );
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted again: exiting now"),
        "{stderr}"
    );
    assert!(stderr.contains("1 node(s) being created"), "{stderr}");
    assert!(
        stderr.contains(&format!("`list-nodes -p {} --orphans`", c.provider)),
        "{stderr}"
    );
    let listed = orphans(&s, c, &fake.url);
    assert!(listed.starts_with(&format!("{name} ")), "{listed}");
    destroy(&s, c, &fake.url, &name).code(0);
    assert_eq!(fake.count(), 0);
    assert_node_gone(&name, None);
}

/// `-vv` adds the HTTP client's own lines (reqwest, through the `log` facade) to ours, and no
/// line on stderr shows the token; `-v` alone does not show them.
fn verbose(c: &Cloud) {
    let fake = bare(c);
    let s = sandbox();
    let r = cmd(&s, c, &fake.url, "list-nodes")
        .args(["-vv"])
        .run()
        .code(0)
        .stderr_has("debug: reqwest::")
        .stderr_has("starting new connection")
        .stderr_lacks(c.token);
    assert!(!r.stdout.contains(c.token));
    cmd(&s, c, &fake.url, "list-nodes")
        .args(["-v"])
        .run()
        .code(0)
        .stderr_has("debug: config layer")
        .stderr_lacks("reqwest::");
}

/// SIGTERM while waiting: as Ctrl-C.
fn terminated(c: &Cloud) {
    signalled_while_waiting(c, libc::SIGTERM, "sigterm");
}

macro_rules! both {
    ($($f:ident => $do_test:ident, $hz_test:ident;)*) => {$(
        #[test]
        fn $do_test() {
            $f(&DO);
        }
        #[test]
        fn $hz_test() {
            $f(&HZ);
        }
    )*};
}

both! {
    rate_limited => digitalocean_429_on_create_is_retried, hetzner_429_on_create_is_retried;
    unavailable => digitalocean_503_forever_exits_13, hetzner_503_forever_exits_13;
    garbled => digitalocean_garbled_create_answer_exits_12_and_destroys, hetzner_garbled_create_answer_exits_12_and_destroys;
    lost_answer => digitalocean_lost_create_answer_makes_no_duplicate, hetzner_lost_create_answer_makes_no_duplicate;
    stuck => digitalocean_stuck_server_times_out_and_is_destroyed, hetzner_stuck_server_times_out_and_is_destroyed;
    stopped => digitalocean_stopped_server_exits_14_and_is_destroyed, hetzner_stopped_server_exits_14_and_is_destroyed;
    interrupted => digitalocean_ctrl_c_exits_130_and_destroys, hetzner_ctrl_c_exits_130_and_destroys;
    verbose => digitalocean_vv_shows_reqwest_lines_without_the_token, hetzner_vv_shows_reqwest_lines_without_the_token;
    taken_name => digitalocean_taken_name_exits_2_before_creating, hetzner_taken_name_exits_2_before_creating;
    failed_attempt_is_an_orphan => digitalocean_failed_attempt_is_found_by_identity, hetzner_failed_attempt_is_found_by_identity;
    interrupted_create => digitalocean_ctrl_c_during_create_destroys_after_it, hetzner_ctrl_c_during_create_destroys_after_it;
    double_interrupt => digitalocean_second_ctrl_c_exits_at_once_naming_orphans, hetzner_second_ctrl_c_exits_at_once_naming_orphans;
    terminated => digitalocean_sigterm_while_waiting_destroys, hetzner_sigterm_while_waiting_destroys;
}
