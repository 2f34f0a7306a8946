//! Expiry, ownership and the reaper across runners (issue 17): ONE test body run against every
//! provider's account — the local provider (its state dir is the account), DigitalOcean and
//! Hetzner (the stateful fake behind Prism's validating proxy, so the deploy-state tag updates
//! are checked against the official specs too), EC2 (moto, through the loopback proxy),
//! OpenStack (the project's fake), and an exec provider (the local-sshd example, whose `tag`
//! action records the deploy state). Three sandboxes are three runners (own HOME, key, user, CI
//! variables, state dir: no journal is shared); the third lists and reaps what the other two
//! made from the records on the nodes alone.
//!
//! No sleeping: a node is made "long ago" by rewriting its tags right in the account (the
//! fake's state, moto through boto3, the local node's record), as another runner's old deploy
//! or a runner that died mid-deploy would have left them.

use crate::support::cli::{Cmd, Sandbox};
use crate::support::cloudnodes::Cleanup;
use crate::support::fakecloud::{Api, FakeCloud};
use crate::support::moto;
use std::path::{Path, PathBuf};

type CmdFn = Box<dyn Fn(&Sandbox, &str) -> Cmd>;
type SetTagFn = Box<dyn Fn(&str, &str, Option<&str>)>;
type ForeignFn = Box<dyn Fn(&Sandbox, &str)>;

/// One account the runners share, and how the test reaches into it.
struct Account {
    provider: &'static str,
    /// `-c site -p NAME` and where the account is (URL, credentials; the local provider's
    /// state dir), for a command of any runner.
    cmd: CmdFn,
    /// deploy-node's `-i -s -l` (nothing for local).
    create: &'static [&'static str],
    /// `[providers.NAME]` tuning for every runner's config.
    config: &'static str,
    /// Sets (`Some`) or removes (`None`) one tag of node NAME right in the account.
    set_tag: SetTagFn,
    /// Makes node NAME someone else's: no provision tag, but an expiry long past.
    foreign: ForeignFn,
    /// Whether node NAME still exists in the account.
    exists: Box<dyn Fn(&str) -> bool>,
}

/// An hour ago, as a tag value.
fn hour_ago() -> String {
    (now_secs() - 3600).to_string()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A runner: its own HOME, key and state dir, with the account's config.
fn runner(a: &Account) -> Sandbox {
    let s = Sandbox::new();
    s.write(
        "site/provision.toml",
        &format!(
            "[bundles.fails]\nscripts = [\"fail.sh\"]\n\n[providers.{}]\n{}",
            a.provider, a.config
        ),
    );
    s.write("site/scripts/fail.sh", "#!/bin/sh\nexit 7\n");
    s
}

fn reap_across_runners(a: &Account) {
    let p = a.provider;
    let name = |n: &str| format!("deploy-test-{p}-{n}");
    let (fresh, old, stuck, forever, ci, foreign, failed) = (
        name("fresh"),
        name("old"),
        name("stuck"),
        name("forever"),
        name("ci"),
        name("foreign"),
        name("failed"),
    );
    let _cleanup: Vec<Cleanup> = [&fresh, &old, &stuck, &forever, &ci, &foreign, &failed]
        .into_iter()
        .map(|n| Cleanup(n.clone()))
        .collect();
    let (alice, ci_runner, reaper) = (runner(a), runner(a), runner(a));
    let deploy = |s: &Sandbox, user: &str, node: &str, args: &[&str]| {
        (a.cmd)(s, "deploy-node")
            .env("USER", user)
            .args(a.create)
            .args(["-n", node, "--ssh-timeout", "60s"])
            .args(args)
    };
    for (node, args) in [
        (
            &fresh,
            &["--ttl", "1h", "--label", "team=web", "--junit", "fresh.xml"][..],
        ),
        (&old, &["--ttl", "2h"]),
        (&stuck, &["--ttl", "never"]),
        (&forever, &["--ttl", "never"]),
    ] {
        // a clean deploy warns about nothing: the deploy state was recorded
        deploy(&alice, "alice", node, args)
            .run()
            .code(0)
            .stderr_lacks("warning");
    }
    // a failed script: the node is kept, its deploy recorded as failed (not stuck)
    deploy(&alice, "alice", &failed, &["--ttl", "1h", "-b", "fails"])
        .run()
        .code(14)
        .stderr_has("node kept for inspection")
        .stderr_lacks("warning");
    // the report records the expiry, read back from the node as the provider stores it
    let junit = std::fs::read_to_string(alice.path().join("fresh.xml")).unwrap();
    let expiry = junit
        .split(r#"<property name="provision-expires-at" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no expiry property in {junit}"));
    let at = time::OffsetDateTime::parse(expiry, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp() as u64;
    assert!(at.abs_diff(now_secs() + 3600) < 300, "{expiry}");
    assert!(
        junit.contains(r#"<property name="provision-owner" value="alice@"#),
        "{junit}"
    );
    // a CI runner: the 4h default, the job recorded, the reap hint printed once
    let ci_run = deploy(&ci_runner, "runner", &ci, &[])
        .env("CI", "true")
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_JOB", "e2e")
        .env("GITHUB_REPOSITORY", "org/repo")
        .run()
        .code(0);
    assert_eq!(
        ci_run
            .stderr
            .matches("destroy-node --label ci_job=4242-e2e")
            .count(),
        1,
        "{}",
        ci_run.stderr
    );
    (a.foreign)(&alice, &foreign);

    // long ago: expired an hour ago (well past the skew margin)
    (a.set_tag)(&old, "provision-expires-at", Some(&hour_ago()));
    // a runner that died mid-deploy 5 hours ago: still `deploying`, no expiry
    let five_hours_ago = (now_secs() - 5 * 3600).to_string();
    (a.set_tag)(&stuck, "provision-state", Some("deploying"));
    (a.set_tag)(&stuck, "provision-created", Some(&five_hours_ago));

    let table = (a.cmd)(&reaper, "list-nodes")
        .args(["--format", "table"])
        .run()
        .code(0)
        .stdout;
    let row = |n: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("{n} in\n{table}"))
            .to_string()
    };
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        row(&old).contains("EXPIRED") && row(&old).contains("alice@"),
        "{table}"
    );
    assert!(
        row(&fresh).contains("in 59m") || row(&fresh).contains("in 1h"),
        "{table}"
    );
    assert!(
        row(&ci).contains("in 3h59m") || row(&ci).contains("in 4h"),
        "{table}"
    );
    assert!(
        row(&ci).contains("runner@") && row(&ci).contains("ci_job=4242-e2e"),
        "{table}"
    );
    assert!(row(&forever).contains("  -  "), "{table}");
    assert!(
        row(&stuck).contains("/deploying") && row(&stuck).contains("STUCK"),
        "{table}"
    );
    assert!(!row(&fresh).contains("/"), "a finished deploy: {table}");
    assert!(
        row(&failed).contains("/failed") && row(&failed).contains("in "),
        "{table}"
    );
    // the untagged node is not ours: never EXPIRED, whatever its tags say (the clouds do not
    // even list it without --all)
    assert!(
        table
            .lines()
            .find(|l| l.starts_with(&format!("{foreign} ")))
            .map_or(true, |l| !l.contains("EXPIRED")),
        "{table}"
    );

    let json: serde_json::Value = serde_json::from_str(
        &(a.cmd)(&reaper, "list-nodes")
            .args(["--format", "json"])
            .run()
            .code(0)
            .stdout,
    )
    .unwrap();
    let node = |n: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {json}"))
            .clone()
    };
    let ci_node = node(&ci);
    assert_eq!(ci_node["ci_job"], "4242-e2e", "{ci_node}");
    assert_eq!(ci_node["tags"]["ci_project"], "org/repo", "{ci_node}");
    assert_eq!(ci_node["expired"], false);
    assert_eq!(ci_node["deploy_state"], "ready", "{ci_node}");
    assert!(ci_node["age_seconds"].as_u64().unwrap() < 600, "{ci_node}");
    assert_eq!(node(&stuck)["stuck"], true);
    // its age is the one its runner recorded: 5h, in JSON and the table
    let age = node(&stuck)["age_seconds"].as_u64().unwrap();
    assert!(age.abs_diff(5 * 3600) < 300, "{age}");
    assert!(row(&stuck).contains(" 5h "), "{table}");
    assert_eq!(node(&old)["expired"], true);

    let listed = |args: &[&str]| {
        let out = (a.cmd)(&reaper, "list-nodes")
            .args(args)
            .run()
            .code(0)
            .stdout;
        let mut names: Vec<String> = out
            .lines()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    let mut expired = vec![old.clone(), stuck.clone()];
    expired.sort();
    assert_eq!(listed(&["--expired"]), expired);
    assert_eq!(
        listed(&["--label", "team=web"]),
        std::slice::from_ref(&fresh)
    );

    // the dry run only names them; the run destroys exactly them
    for (args, said, left) in [
        (&["--expired", "--dry-run"][..], "would destroy {n}", true),
        (&["--expired"], "{n}: destroyed", false),
    ] {
        let r = (a.cmd)(&reaper, "destroy-node").args(args).run().code(0);
        for n in [&old, &stuck] {
            let said = said.replace("{n}", n);
            assert!(r.stderr.contains(&said), "{args:?}: {}", r.stderr);
            assert_eq!((a.exists)(n), left, "{n} after {args:?}");
        }
    }
    // again: nothing expired left is success
    (a.cmd)(&reaper, "destroy-node")
        .args(["--expired"])
        .run()
        .code(0)
        .stderr_has("0 expired node(s)");
    for kept in [&fresh, &foreign, &forever, &ci, &failed] {
        assert!((a.exists)(kept), "{kept} must survive the reaper");
    }
    // one CI job's nodes, by the label the deploy printed
    (a.cmd)(&reaper, "destroy-node")
        .args(["--label", "ci_job=4242-e2e"])
        .run()
        .code(0)
        .stderr_has(&format!("{ci}: destroyed"));
    assert!(!(a.exists)(&ci));
    for n in [&fresh, &forever, &failed] {
        (a.cmd)(&reaper, "destroy-node").args([n]).run().code(0);
    }
    (a.cmd)(&reaper, "destroy-node")
        .args(["--force", &foreign])
        .run()
        .code(0);
}

/// Rewrites one tag of a local node's record.
fn set_local_tag(account: &Path, node: &str, key: &str, value: Option<&str>) {
    let p = account.join("local").join(node).join("node.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let tags = v["tags"].as_object_mut().unwrap();
    match value {
        Some(x) => tags.insert(key.into(), x.into()),
        None => tags.remove(key),
    };
    std::fs::write(&p, v.to_string()).unwrap();
}

#[test]
fn a_third_runner_reaps_exactly_the_expired_local_nodes() {
    // the account: a state dir of its own, shared by every runner
    let dir = tempfile::tempdir().unwrap();
    let account: PathBuf = dir.path().to_path_buf();
    let acc = account.clone();
    let set_tag = move |n: &str, k: &str, v: Option<&str>| set_local_tag(&acc, n, k, v);
    let acc = account.clone();
    let exists = move |n: &str| acc.join("local").join(n).exists();
    let acc = account.clone();
    let a = Account {
        provider: "local",
        cmd: Box::new(move |s, bin| {
            s.cmd(bin)
                .env("PROVISION_STATE_DIR", &account)
                .args(["-c", "site", "-p", "local"])
        }),
        create: &[],
        config: "",
        set_tag: Box::new(set_tag.clone()),
        foreign: Box::new(move |s, n| {
            s.cmd("deploy-node")
                .env("PROVISION_STATE_DIR", &acc)
                .args(["-c", "site", "-p", "local", "-n", n, "--ttl", "1h"])
                .run()
                .code(0);
            set_tag(n, "provision", None);
            set_tag(n, "provision-expires-at", Some(&hour_ago()));
        }),
        exists: Box::new(exists),
    };
    reap_across_runners(&a);
}

/// An account kept by the project's fake: tags and foreign servers written in its state.
fn fake_account(
    fake: &'static FakeCloud,
    provider: &'static str,
    cmd: CmdFn,
    create: &'static [&'static str],
    config: &'static str,
) -> Account {
    Account {
        provider,
        cmd,
        create,
        config,
        set_tag: Box::new(move |n, k, v| fake.set_tag(n, k, v)),
        foreign: Box::new(move |_, n| {
            fake.add_foreign(n);
            fake.set_tag(n, "provision-expires-at", Some(&hour_ago()));
        }),
        exists: Box::new(move |n| fake.count_named(n) > 0),
    }
}

const TUNING: &str = "poll_interval = 0.1\nretries = 2\ntimeout = 10\nconnect_timeout = 2\n";

/// DigitalOcean or Hetzner: the shared fake behind Prism.
fn cloud_account(c: &'static crate::deploy_cloud::Cloud) -> Account {
    let sh = crate::deploy_cloud::proxied(c);
    let url = sh.prism.url.clone();
    let cmd: CmdFn = Box::new(move |s, bin| {
        s.cmd(bin)
            .env(c.url_env, &url)
            .env(c.token_env, c.token)
            .args(["-c", "site", "-p", c.provider])
    });
    let create: &'static [&'static str] = match c.api {
        Api::DigitalOcean => &["-i", "ubuntu-24-04-x64", "-s", "s-1vcpu-1gb", "-l", "fra1"],
        _ => &["-i", "ubuntu-24.04", "-s", "cx22", "-l", "fsn1"],
    };
    fake_account(&sh.fake, c.provider, cmd, create, TUNING)
}

#[test]
fn a_third_runner_reaps_exactly_the_expired_digitalocean_droplets() {
    reap_across_runners(&cloud_account(&crate::deploy_cloud::DO));
}

#[test]
fn a_third_runner_reaps_exactly_the_expired_hetzner_servers() {
    reap_across_runners(&cloud_account(&crate::deploy_cloud::HZ));
}

/// boto3 against moto itself: tags set or removed on the live instances named `name`, a
/// foreign instance, or how many live instances are named `name`.
const BOTO3: &str = r#"
import boto3, sys
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="x", aws_secret_access_key="x")
op, name = sys.argv[2], sys.argv[3]
live = [i["InstanceId"]
        for r in ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
        for i in r["Instances"] if i["State"]["Name"] not in ("terminated", "shutting-down")]
if op == "set":
    ec2.create_tags(Resources=live, Tags=[{"Key": sys.argv[4], "Value": sys.argv[5]}])
elif op == "unset":
    ec2.delete_tags(Resources=live, Tags=[{"Key": sys.argv[4]}])
elif op == "foreign":
    ami = ec2.describe_images(Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-trusty*"]}])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                      TagSpecifications=[{"ResourceType": "instance", "Tags": [
                          {"Key": "Name", "Value": name}, {"Key": "provision-expires-at", "Value": sys.argv[4]}]}])
print(len(live))
"#;

#[test]
fn a_third_runner_reaps_exactly_the_expired_ec2_instances() {
    let m = crate::deploy_ec2::shared();
    let proxy = crate::support::motoproxy::start(&m.url);
    let url = proxy.url.clone();
    let a = Account {
        provider: "ec2",
        cmd: Box::new(move |s, bin| crate::deploy_ec2::cmd(s, &url, bin)),
        create: crate::deploy_ec2::CREATE,
        config: "region = \"us-east-1\"\npoll_interval = 0.2\nretries = 2\ntimeout = 20\n",
        set_tag: Box::new(move |n, k, v| {
            match v {
                Some(v) => moto::python(m, BOTO3, &["set", n, k, v]),
                None => moto::python(m, BOTO3, &["unset", n, k]),
            };
        }),
        foreign: Box::new(move |_, n| {
            moto::python(m, BOTO3, &["foreign", n, &(now_secs() - 3600).to_string()]);
        }),
        exists: Box::new(move |n| moto::python(m, BOTO3, &["count", n]).trim() != "0"),
    };
    reap_across_runners(&a);
}

#[test]
fn a_third_runner_reaps_exactly_the_expired_openstack_servers() {
    let fake: &'static FakeCloud = Box::leak(Box::new(crate::deploy_openstack::fake()));
    let env = fake.os_env(crate::deploy_openstack::PASSWORD);
    let cmd: CmdFn = Box::new(move |s, bin| {
        let mut c = s.cmd(bin);
        for (k, v) in &env {
            c = c.env(k, v);
        }
        c.args(["-c", "site", "-p", "openstack"])
    });
    let create = &["-i", "ubuntu", "-s", "m1.small", "-l", "nova"];
    let config = "poll_interval = 0.1\nretries = 2\ntimeout = 10\nconnect_timeout = 2\nnetwork = \"private\"\n";
    reap_across_runners(&fake_account(fake, "openstack", cmd, create, config));
}

/// The local-sshd node directory of node NAME in an exec account, if any.
fn exec_node_dir(account: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(account).ok()?.flatten().find_map(|d| {
        let n = std::fs::read_to_string(d.path().join("name")).ok()?;
        (n.trim() == name).then(|| d.path())
    })
}

/// Rewrites one tag of an exec node (the example's `tags` file of key=value lines).
fn set_exec_tag(account: &Path, node: &str, key: &str, value: Option<&str>) {
    let p = exec_node_dir(account, node)
        .unwrap_or_else(|| panic!("no exec node {node}"))
        .join("tags");
    let mut lines: Vec<String> = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && l.split('=').next() != Some(key))
        .map(str::to_string)
        .collect();
    lines.extend(value.map(|v| format!("{key}={v}")));
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
}

/// Kills the sshd of every exec node left in the account, however the test ended.
struct ExecCleanup(PathBuf);

impl Drop for ExecCleanup {
    fn drop(&mut self) {
        crate::deploy_exec::destroy_local_sshd_nodes(&self.0);
    }
}

#[test]
fn a_third_runner_reaps_exactly_the_expired_exec_nodes() {
    // the account: the local-sshd example's node directories, shared by every runner; its
    // `tag` action records the deploy state as the clouds' tags do
    let dir = tempfile::tempdir().unwrap();
    let account: PathBuf = dir.path().join("nodes");
    let _cleanup = ExecCleanup(account.clone());
    let example = crate::deploy_exec::example("local-sshd")
        .display()
        .to_string();
    let cmd = {
        let account = account.clone();
        move |s: &Sandbox, bin: &str| {
            s.cmd(bin).env("LOCAL_SSHD_STATE", &account).args([
                "-c",
                &example,
                "-c",
                "site",
                "-p",
                "local-sshd",
            ])
        }
    };
    let acc = account.clone();
    let set_tag = move |n: &str, k: &str, v: Option<&str>| set_exec_tag(&acc, n, k, v);
    let acc = account.clone();
    let foreign_cmd = cmd.clone();
    let a = Account {
        provider: "local-sshd",
        cmd: Box::new(cmd),
        create: &[],
        config: "",
        set_tag: Box::new(set_tag.clone()),
        foreign: Box::new(move |s, n| {
            foreign_cmd(s, "deploy-node")
                .args(["-n", n, "--ttl", "1h"])
                .run()
                .code(0);
            set_tag(n, "provision", None);
            set_tag(n, "provision-expires-at", Some(&hour_ago()));
        }),
        exists: Box::new(move |n| exec_node_dir(&acc, n).is_some()),
    };
    reap_across_runners(&a);
}

/// boto3 in one region of a moto of its own: `make REGION NAME EXPIRES [KEY=VALUE...]` (an
/// instance as a runner's deploy leaves it: `Name`, `provision`, `provision-expires-at`, CI
/// labels), or `count REGION
/// NAME` (how many live instances are named NAME there).
const BOTO3_REGION: &str = r#"
import boto3, sys
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name=sys.argv[3],
                   aws_access_key_id="x", aws_secret_access_key="x")
op, name = sys.argv[2], sys.argv[4]
if op == "make":
    ami = ec2.describe_images(Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-trusty*"]}])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                      TagSpecifications=[{"ResourceType": "instance", "Tags": [
                          {"Key": "Name", "Value": name}, {"Key": "provision", "Value": ""},
                          {"Key": "provision-expires-at", "Value": sys.argv[5]}]
                          + [{"Key": kv.split("=")[0], "Value": kv.split("=")[1]} for kv in sys.argv[6:]]}])
live = [i["InstanceId"]
        for r in ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
        for i in r["Instances"] if i["State"]["Name"] not in ("terminated", "shutting-down")]
print(len(live))
"#;

/// EC2 `regions` (issue 17): CI jobs made nodes in two regions (and one in a third that is not
/// listed); one scheduled reaper run with `regions = ["us-east-1", "eu-west-1"]` and no
/// AWS_REGION lists all of the listed regions' nodes with their zones and destroys the expired
/// one in each, nothing fresh and nothing outside the listed regions; `--label`, `--prefix`
/// and a name reach every listed region too. Without `regions` the
/// listing is the one region, as before; a zone in `regions` is refused before any call.
#[test]
fn one_reaper_run_reaps_the_expired_ec2_instances_of_every_listed_region() {
    let m = moto::start(&[]);
    let (past, future) = (hour_ago(), (now_secs() + 86_400).to_string());
    let nodes = [
        ("us-east-1", "deploy-test-regions-old-east", &past),
        ("eu-west-1", "deploy-test-regions-old-west", &past),
        ("eu-west-1", "deploy-test-regions-fresh-west", &future),
        ("ap-southeast-2", "deploy-test-regions-old-south", &past),
    ];
    for (region, name, expires) in nodes {
        moto::python(&m, BOTO3_REGION, &["make", region, name, expires]);
    }
    let count = |region: &str, name: &str| {
        moto::python(&m, BOTO3_REGION, &["count", region, name])
            .trim()
            .to_string()
    };
    let cmd = |s: &Sandbox, bin: &str| crate::deploy_ec2::cmd(s, &m.url, bin);
    let reaper = Sandbox::new();
    reaper.write(
        "site/provision.toml",
        "[providers.ec2]\nregions = [\"us-east-1\", \"eu-west-1\"]\nretries = 2\ntimeout = 20\n",
    );

    let listed = cmd(&reaper, "list-nodes").run().code(0).stdout;
    for (_, name, _) in &nodes[..3] {
        assert!(listed.contains(name), "{name} not listed:\n{listed}");
    }
    assert!(!listed.contains(nodes[3].1), "{listed}");
    let table = cmd(&reaper, "list-nodes")
        .args(["--format", "table"])
        .run()
        .code(0)
        .stdout;
    assert!(table.contains("LOCATION"), "{table}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}:\n{table}"))
            .to_string()
    };
    assert!(row(nodes[0].1).contains("us-east-1"), "{table}");
    assert!(row(nodes[1].1).contains("eu-west-1"), "{table}");
    let json: serde_json::Value = serde_json::from_str(
        &cmd(&reaper, "list-nodes")
            .args(["--format", "json", "--expired"])
            .run()
            .code(0)
            .stdout,
    )
    .unwrap();
    let mut expired: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let location = n["location"].as_str().unwrap_or("").to_string();
            (n["name"].as_str().unwrap().to_string(), location)
        })
        .collect();
    expired.sort();
    assert_eq!(expired.len(), 2, "{json}");
    assert_eq!(expired[0].0, nodes[0].1);
    assert!(expired[0].1.starts_with("us-east-1"), "{json}");
    assert_eq!(expired[1].0, nodes[1].1);
    assert!(expired[1].1.starts_with("eu-west-1"), "{json}");
    cmd(&reaper, "destroy-node")
        .args(["--prefix", "deploy-test-regions-", "--dry-run"])
        .run()
        .code(0)
        .stderr_has(&format!("would destroy {}", nodes[2].1))
        .stderr_lacks(nodes[3].1);

    // one region only, as before: the eu-west-1 nodes are not seen
    let one = Sandbox::new();
    one.write(
        "site/provision.toml",
        "[providers.ec2]\nregion = \"us-east-1\"\nretries = 2\ntimeout = 20\n",
    );
    cmd(&one, "list-nodes")
        .run()
        .code(0)
        .stdout_has(nodes[0].1)
        .stdout_lacks(nodes[1].1);

    cmd(&reaper, "destroy-node")
        .args(["--expired"])
        .run()
        .code(0)
        .stderr_has(&format!("{}: destroyed", nodes[0].1))
        .stderr_has(&format!("{}: destroyed", nodes[1].1))
        .stderr_lacks(nodes[2].1);
    assert_eq!(count("us-east-1", nodes[0].1), "0");
    assert_eq!(count("eu-west-1", nodes[1].1), "0");
    assert_eq!(count("eu-west-1", nodes[2].1), "1", "fresh: kept");
    assert_eq!(count("ap-southeast-2", nodes[3].1), "1", "not listed: kept");

    // --label and a name reach eu-west-1 too: a CI job's node, and one made by another runner
    // (no record here says where)
    let (job, named) = (
        "deploy-test-regions-job-west",
        "deploy-test-regions-named-west",
    );
    moto::python(
        &m,
        BOTO3_REGION,
        &["make", "eu-west-1", job, &future, "ci_job=42"],
    );
    moto::python(&m, BOTO3_REGION, &["make", "eu-west-1", named, &future]);
    cmd(&reaper, "destroy-node")
        .args(["--label", "ci_job=42"])
        .run()
        .code(0)
        .stderr_has(&format!("{job}: destroyed"));
    cmd(&reaper, "destroy-node")
        .args([named])
        .run()
        .code(0)
        .stderr_has(&format!("{named}: destroyed"));
    assert_eq!(count("eu-west-1", job), "0");
    assert_eq!(count("eu-west-1", named), "0");
    assert_eq!(count("eu-west-1", nodes[2].1), "1", "fresh: kept");

    // a zone where a region belongs: refused, naming the file, before any call
    let typo = Sandbox::new();
    let file = typo.write(
        "site/provision.toml",
        "[providers.ec2]\nregions = [\"us-east-1\", \"eu-west-1a\"]\n",
    );
    cmd(&typo, "destroy-node")
        .args(["--expired"])
        .env("PROVISION_EC2_URL", "http://127.0.0.1:9")
        .run()
        .code(2)
        .one_line_error()
        .stderr_has(&file.display().to_string())
        .stderr_has("'eu-west-1a' is an availability zone; its region is eu-west-1");
}
