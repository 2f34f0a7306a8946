//! The `static` driver: host forms in provision.toml, deploy records, and destroy that only
//! forgets (the machine is never contacted).

use provision::provider::static_hosts::{parse_host, StaticHost, StaticProvider};
use provision::provider::{Destroyed, NodeSpec, NodeState, Provider};
use std::collections::BTreeMap;

fn table(text: &str) -> toml::Table {
    let doc: toml::Table = toml::from_str(text).unwrap();
    doc["providers"]["static"].as_table().unwrap().clone()
}

const CONF: &str = r#"
[providers.static]
user = "root"

[providers.static.hosts]
plain = "192.0.2.10"
full = "admin@lab2.example.com:2222"
v6 = "[2001:db8::3]:2200"
bare6 = "2001:db8::4"
tab = { address = "192.0.2.14", user = "ci", port = 2201 }
"#;

fn spec(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        image: String::new(),
        size: String::new(),
        location: String::new(),
        public_keys: vec![],
        tags: BTreeMap::from([("release".to_string(), "1.4".to_string())]),
    }
}

fn host(name: &str, address: &str, user: Option<&str>, port: Option<u16>) -> StaticHost {
    StaticHost {
        name: name.into(),
        address: address.into(),
        user: user.map(Into::into),
        port,
    }
}

#[test]
fn parses_every_host_form() {
    let tmp = tempfile::tempdir().unwrap();
    let p = StaticProvider::with_state_dir(&table(CONF), tmp.path()).unwrap();
    let h = p.hosts();
    assert_eq!(h["plain"], host("plain", "192.0.2.10", Some("root"), None));
    assert_eq!(
        h["full"],
        host("full", "lab2.example.com", Some("admin"), Some(2222))
    );
    assert_eq!(h["v6"], host("v6", "2001:db8::3", Some("root"), Some(2200)));
    assert_eq!(h["bare6"], host("bare6", "2001:db8::4", Some("root"), None));
    assert_eq!(h["tab"], host("tab", "192.0.2.14", Some("ci"), Some(2201)));
    assert_eq!(
        parse_host("x", "u@h").unwrap(),
        host("x", "h", Some("u"), None)
    );
}

#[test]
fn rejects_malformed_hosts_as_config_errors() {
    for bad in [
        r#"x = "h:notaport""#,
        r#"x = "h:0""#,
        r#"x = "@h""#,
        r#"x = "[::1""#,
        r#"x = """#,
        r#"x = 5"#,
        r#"x = { user = "u" }"#,
        r#"x = { address = "h", colour = "red" }"#,
    ] {
        let conf = format!("[providers.static.hosts]\n{bad}\n");
        let err =
            StaticProvider::with_state_dir(&table(&conf), std::path::Path::new("/nonexistent"))
                .unwrap_err();
        assert_eq!(err.code(), 2, "{bad}");
        assert!(err.to_string().contains("x"), "{err}");
    }
}

#[test]
fn create_records_a_configured_host_and_refuses_unknown_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let p = StaticProvider::with_state_dir(&table(CONF), tmp.path()).unwrap();

    let err = p.create(&spec("nothere")).unwrap_err();
    assert_eq!(err.code(), 2);
    let msg = err.to_string();
    assert!(
        msg.contains("nothere") && msg.contains("plain, tab, v6"),
        "{msg}"
    );

    let node = p.create(&spec("full")).unwrap();
    assert_eq!(node.state, NodeState::Running);
    assert_eq!(node.public_ip.as_deref(), Some("lab2.example.com"));
    assert_eq!(node.ssh.port, Some(2222));
    assert_eq!(node.ssh.user.as_deref(), Some("admin"));
    assert_eq!(node.ssh.host_key, None);
    assert!(node.is_managed());
    assert_eq!(node.tags["release"], "1.4");
    assert!(tmp.path().join("static/full.json").is_file());

    // Default list: deployed only; --all: every configured host.
    let deployed: Vec<String> = p.list(false).unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(deployed, ["full"]);
    let all = p.list(true).unwrap();
    assert_eq!(all.len(), 5);
    assert!(all
        .iter()
        .filter(|n| n.name != "full")
        .all(|n| !n.is_managed()));
    assert_eq!(p.get("full").unwrap().unwrap(), node);
    assert!(p.get("plain").unwrap().is_some());
    assert!(p.get("nothere").unwrap().is_none());

    // A fresh provider (next process) sees the record.
    let again = StaticProvider::with_state_dir(&table(CONF), tmp.path()).unwrap();
    assert_eq!(again.list(false).unwrap().len(), 1);
}

#[test]
fn destroy_only_forgets() {
    let tmp = tempfile::tempdir().unwrap();
    // The host points at a port nobody listens on: destroy must not try to reach it.
    let conf = "[providers.static.hosts]\nbox = \"root@127.0.0.1:1\"\n";
    let p = StaticProvider::with_state_dir(&table(conf), tmp.path()).unwrap();
    p.create(&spec("box")).unwrap();
    assert_eq!(p.destroy("box").unwrap(), Destroyed::Forgotten);
    assert!(!tmp.path().join("static/box.json").exists());
    assert_eq!(p.destroy("box").unwrap(), Destroyed::AlreadyGone);
    assert_eq!(p.destroy("unknown").unwrap(), Destroyed::AlreadyGone);
    assert_eq!(p.destroy("../etc/passwd").unwrap(), Destroyed::AlreadyGone);
    assert!(p.list(false).unwrap().is_empty());
    // Still configured, so it can be deployed to again.
    assert_eq!(p.list(true).unwrap().len(), 1);
}

#[test]
fn forgotten_config_entry_still_listed_from_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = "[providers.static.hosts]\nold = \"192.0.2.99\"\n";
    StaticProvider::with_state_dir(&table(conf), tmp.path())
        .unwrap()
        .create(&spec("old"))
        .unwrap();
    let p = StaticProvider::with_state_dir(&toml::Table::new(), tmp.path()).unwrap();
    let listed = p.list(false).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].public_ip.as_deref(), Some("192.0.2.99"));
    let err = p.create(&spec("old")).unwrap_err().to_string();
    assert!(err.contains("none are configured"), "{err}");
    assert_eq!(p.destroy("old").unwrap(), Destroyed::Forgotten);
}
