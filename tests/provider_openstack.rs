//! The OpenStack driver as a library against the OpenStack fake: a token that expires between
//! calls is renewed, and a create whose answer was lost is matched to the server of THIS create
//! attempt (its create-id metadata), never to an older server of the same name.

use crate::support::fakecloud::{Api, FakeCloud, Fault};
use provision::provider::openstack::{resolve_settings, OpenStack};
use provision::provider::{NodeSpec, Provider};
use std::collections::BTreeMap;
use std::time::Duration;

const PASSWORD: &str = "os-lib-password-0123456789";

fn driver(fake: &FakeCloud) -> OpenStack {
    let env: BTreeMap<&str, String> = fake.os_env(PASSWORD).into_iter().collect();
    let mut table = toml::Table::new();
    table.insert("retries".into(), toml::Value::Integer(2));
    table.insert("timeout".into(), toml::Value::Integer(5));
    let settings = resolve_settings(&table, None, None, &|k| env.get(k).cloned()).unwrap();
    OpenStack::with_settings(&table, settings).unwrap()
}

#[test]
fn openstack_token_expiring_between_calls_is_renewed() {
    let fake = FakeCloud::start(Api::OpenStack, PASSWORD);
    fake.set_token_ttl(Duration::from_millis(800));
    let d = driver(&fake);
    d.list(true).unwrap();
    assert_eq!(fake.tokens_issued(), 1);
    d.list(true).unwrap();
    assert_eq!(fake.tokens_issued(), 1, "a valid token was not reused");
    std::thread::sleep(Duration::from_millis(900));
    d.list(true).expect("the expired token was sent");
    assert_eq!(fake.tokens_issued(), 2);
}

#[test]
fn openstack_lost_create_is_matched_by_create_id() {
    let fake = FakeCloud::start(Api::OpenStack, PASSWORD);
    let old = fake.add_foreign("lib-same-name");
    {
        let mut st = fake.inner.state.lock().unwrap();
        let s = st.servers.get_mut(&old).unwrap();
        s.labels = [
            ("provision".to_string(), "1".to_string()),
            (
                "provision-create-id".to_string(),
                "an-earlier-run".to_string(),
            ),
        ]
        .into();
    }
    fake.fault(
        "POST",
        "/compute/v2.1/servers",
        Fault::DropAfterProcessing,
        1,
    );
    let d = driver(&fake);
    let p = d.prepare("ubuntu", "m1.tiny", "").unwrap();
    let spec = NodeSpec {
        name: "lib-same-name".into(),
        image: p.image,
        size: p.size,
        location: p.location,
        public_keys: vec![],
        tags: [("provision-create-id".to_string(), "this-run".to_string())].into(),
    };
    let node = d.create(&spec).unwrap();
    assert_eq!(
        fake.count_requests("POST", "/compute/v2.1/servers"),
        1,
        "re-sent"
    );
    assert_eq!(fake.count_named("lib-same-name"), 2);
    assert_eq!(
        node.tags.get("provision-create-id").map(String::as_str),
        Some("this-run")
    );
    let found = d.get(&node.id).unwrap().unwrap();
    assert_eq!(
        found.tags.get("provision-create-id").map(String::as_str),
        Some("this-run"),
        "matched the older server of the same name"
    );
}
