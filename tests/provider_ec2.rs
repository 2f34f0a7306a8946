//! The EC2 driver against moto (a stateful EC2 Query API on loopback): the whole API flow,
//! the create-id lookup that keeps a retried create from making two instances, signature
//! checking with a wrong secret, and parsing libcloud's recorded EC2 answers. No test
//! connects to an address moto hands out.

use crate::support::moto;
use crate::support::prism;

use provision::provider::ec2::{
    instance_to_node, instances, parse, DescribeInstances, Ec2, RunInstances, TerminateInstances,
};
use provision::provider::{Destroyed, NodeSpec, NodeState, Provider, TAG_MANAGED};
use provision::Error;
use std::sync::OnceLock;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn shared() -> &'static moto::Moto {
    static M: OnceLock<moto::Moto> = OnceLock::new();
    M.get_or_init(|| moto::start(&[]))
}

fn driver(url: &str, id: &str, secret: &str) -> Ec2 {
    let table: toml::Table =
        toml::from_str("region = \"us-east-1\"\nssh_user = \"ubuntu\"").unwrap();
    Ec2::from_config(&table, Some(id), Some(secret))
        .unwrap()
        .with_base_url(url)
}

fn spec(name: &str, image: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        image: image.into(),
        size: "t3.micro".into(),
        location: "us-east-1a".into(),
        public_keys: vec![KEY.into()],
        tags: [("team".to_string(), "qa".to_string())].into(),
    }
}

#[test]
fn prepare_create_list_get_destroy_against_moto() {
    let d = driver(&shared().url, "AKIDEXAMPLE", SECRET);
    // the newest image whose name starts with the prefix, an instance type, an AZ
    let p = d
        .prepare(
            "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04",
            "t3.micro",
            "us-east-1a",
        )
        .unwrap();
    assert!(p.image.starts_with("ami-"), "{p:?}");
    assert_eq!(p.location, "us-east-1a");
    // mistakes are config errors with near matches, before anything is created
    let e = d
        .prepare("no-such-image", "t3.micro", "us-east-1")
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    let e = d.prepare(&p.image, "t3.mikro", "us-east-1").unwrap_err();
    assert!(e.to_string().contains("t3.micro"), "{e}");
    let e = d.prepare(&p.image, "t3.micro", "us-east-9").unwrap_err();
    assert!(e.to_string().contains("us-east-1"), "{e}");
    let e = d
        .prepare("ami-00000000", "t3.micro", "us-east-1")
        .unwrap_err();
    assert!(e.to_string().contains("--images"), "{e}");

    let node = d.create(&spec("ec2-flow-1", &p.image)).unwrap();
    assert!(node.id.starts_with("i-"));
    assert_eq!(node.name, "ec2-flow-1");
    assert!(node.is_managed());
    assert_eq!(node.ssh.user.as_deref(), Some("ubuntu"));
    assert!(node
        .ssh
        .host_key
        .as_deref()
        .unwrap()
        .starts_with("ssh-ed25519 "));
    assert_eq!(node.location.as_deref(), Some("us-east-1a"));

    let got = d.get(&node.id).unwrap().unwrap();
    assert_eq!(got.tags.get("team").map(String::as_str), Some("qa"));
    assert!(got.tags.contains_key(TAG_MANAGED));
    assert!(matches!(got.state, NodeState::Pending | NodeState::Running));
    assert_eq!(
        got.ssh.host_key, node.ssh.host_key,
        "host key pinned for get too"
    );
    let ours = d.list(false).unwrap();
    assert!(ours.iter().any(|n| n.id == node.id));
    assert!(ours.iter().all(|n| n.is_managed()));

    assert_eq!(d.destroy(&node.id).unwrap(), Destroyed::Destroyed);
    assert_eq!(d.destroy(&node.id).unwrap(), Destroyed::AlreadyGone);
    assert_eq!(
        d.destroy("i-0123456789abcdef0").unwrap(),
        Destroyed::AlreadyGone
    );
    assert!(!d.list(false).unwrap().iter().any(|n| n.id == node.id));
    assert!(d.get("not-an-id").unwrap().is_none());
}

#[test]
fn a_create_attempt_is_found_by_its_create_id_not_made_twice() {
    let d = driver(&shared().url, "AKIDEXAMPLE", SECRET);
    let p = d
        .prepare(
            "ubuntu/images/hvm-ssd/ubuntu-trusty",
            "t3.micro",
            "us-east-1",
        )
        .unwrap();
    let mut s = spec("ec2-token-1", &p.image);
    s.tags
        .insert("provision-create-id".into(), "attempt-7f3a".into());
    let node = d.create(&s).unwrap();
    let listed: Vec<_> = d
        .list(false)
        .unwrap()
        .into_iter()
        .filter(|n| n.tags.get("provision-create-id").map(String::as_str) == Some("attempt-7f3a"))
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, node.id);
    d.destroy(&node.id).unwrap();
}

#[test]
fn a_wrong_secret_is_one_clear_credential_error_with_signatures_checked() {
    let m = moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
    let (id, secret) = moto::iam_keys(&m);
    let good = driver(&m.url, &id, &secret);
    assert!(!good
        .catalog(provision::provider::Catalog::Locations)
        .unwrap()
        .is_empty());
    let bad = driver(&m.url, &id, SECRET);
    let e = bad.list(false).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::Config(_)), "{s}");
    assert!(s.contains("were refused") && s.contains("-u/-k"), "{s}");
    assert!(
        !s.contains(SECRET) && !s.contains(&secret),
        "secret leaked: {s}"
    );
    assert_eq!(s.lines().count(), 1, "{s}");
}

#[test]
fn libcloud_recorded_answers_parse() {
    let fx = |f: &str| {
        let p = prism::conformance_dir()
            .join("libcloud-fixtures/ec2")
            .join(f);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let d: DescribeInstances = parse(&fx("describe_instances.xml")).unwrap();
    let nodes: Vec<_> = instances(d).iter().map(instance_to_node).collect();
    assert!(nodes.len() >= 2, "{nodes:?}");
    assert_eq!(nodes[0].id, "i-4382922a");
    assert_eq!(nodes[0].state, NodeState::Stopped);
    assert_eq!(nodes[0].private_ip.as_deref(), Some("10.211.11.211"));
    assert_eq!(nodes[0].location.as_deref(), Some("us-east-1d"));
    assert!(!nodes[0].is_managed());
    let r: RunInstances = parse(&fx("run_instances.xml")).unwrap();
    assert!(format!("{r:?}").contains("i-2ba64342"));
    let t: TerminateInstances = parse(&fx("terminate_instances.xml")).unwrap();
    assert!(format!("{t:?}").contains("running"));
    let _: provision::provider::ec2::DescribeImages = parse(&fx("describe_images.xml")).unwrap();
    assert!(parse::<DescribeInstances>("<html>oops").is_err());
}

/// `regions` (issue 17): `list` covers every listed region (the instance of eu-west-1 shows
/// its zone) while `list_here`, what a deploy's polls read, stays in the current region (the
/// first listed); a tag update reaches the instance in its own region.
#[test]
fn regions_list_every_listed_region_and_tag_updates_follow_the_node() {
    let url = &shared().url;
    let west: toml::Table = toml::from_str("region = \"eu-west-1\"").unwrap();
    let west = Ec2::from_config(&west, Some("AKIDEXAMPLE"), Some(SECRET))
        .unwrap()
        .with_base_url(url);
    let p = west
        .prepare(
            "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04",
            "t3.micro",
            "eu-west-1a",
        )
        .unwrap();
    let made = west
        .create(&NodeSpec {
            location: "eu-west-1a".into(),
            ..spec("ec2-regions-west", &p.image)
        })
        .unwrap();

    let table: toml::Table = toml::from_str("regions = [\"us-east-1\", \"eu-west-1\"]").unwrap();
    let d = Ec2::from_config(&table, Some("AKIDEXAMPLE"), Some(SECRET))
        .unwrap()
        .with_base_url(url);
    assert_eq!(d.scope().as_deref(), Some("us-east-1"), "the first listed");
    assert_eq!(d.scopes(), ["us-east-1", "eu-west-1"]);
    let found = d
        .list(false)
        .unwrap()
        .into_iter()
        .find(|n| n.id == made.id)
        .expect("listed from eu-west-1");
    assert_eq!(found.location.as_deref(), Some("eu-west-1a"));
    assert!(d.list_here(false).unwrap().iter().all(|n| n.id != made.id));
    assert_eq!(
        d.scope().as_deref(),
        Some("us-east-1"),
        "the list moved nothing"
    );

    d.update_tags(&found, &[("provision-state".into(), "ready".into())].into())
        .unwrap();
    let tagged = west.get(&made.id).unwrap().unwrap();
    assert_eq!(tagged.deploy_state(), Some("ready"));
    assert_eq!(west.destroy(&made.id).unwrap(), Destroyed::Destroyed);
}
