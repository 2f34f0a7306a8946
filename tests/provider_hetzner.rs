//! The Hetzner Cloud driver against a stateful loopback fake behind Prism's validating proxy
//! (flows, lookups, errors), against the fake alone (injected faults), and against the
//! official spec's examples (parsing).

use crate::support::fakecloud;
use crate::support::prism;

use fakecloud::{Api, FakeCloud, Fault};
use prism::{Prism, Violations};
use provision::provider::cloud::CloudCatalog;
use provision::provider::hetzner::{server_to_node, Hetzner};
use provision::provider::http::HttpConfig;
use provision::provider::{Destroyed, Node, NodeSpec, NodeState, Provider, TAG_MANAGED};
use provision::Error;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TOKEN: &str = "hcloudTOKENabcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRST";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example";
const SPEC: &str = "specs/hetzner/cloud.spec.json";

struct Shared {
    fake: FakeCloud,
    prism: Prism,
}

/// One fake and one Prism per test binary; tests keep apart by node names.
fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let fake = FakeCloud::start(Api::Hetzner, TOKEN);
        let prism = prism::start(SPEC, &fake.url);
        Shared { fake, prism }
    })
}

fn fast() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
        retries: 3,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        max_wait: Duration::from_secs(5),
    }
}

fn driver(base: &str, token: &str) -> Hetzner {
    Hetzner::from_config(&toml::Table::new(), Some(token))
        .unwrap()
        .with_base_url(base)
        .with_http_config(fast())
        .unwrap()
}

/// A driver talking to Prism, recording spec violations.
fn checked() -> (Hetzner, Violations) {
    let v = Violations::default();
    let d = driver(&shared().prism.url, TOKEN).with_inspector(v.inspector());
    (d, v)
}

fn spec(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        image: "ubuntu-24.04".into(),
        size: "cx22".into(),
        location: "fsn1".into(),
        public_keys: vec![KEY.into()],
        // a label value may not hold '/': it is encoded (provider::tags) and read back as given
        tags: [
            ("team".to_string(), "qa".to_string()),
            ("release".to_string(), "1.4".to_string()),
            ("bad".to_string(), "a/b".to_string()),
        ]
        .into(),
    }
}

/// Other tests create and destroy on the same fake meanwhile, which shifts offset pages: a
/// node may be missed by one listing, never by three in a row.
fn listed(d: &Hetzner, all: bool, ok: impl Fn(&[Node]) -> bool) -> Vec<Node> {
    (0..3)
        .map(|_| d.list(all).unwrap())
        .find(|l| ok(l))
        .expect("listed within three tries")
}

fn no_token(e: &Error) {
    let s = format!("{e} {e:?}");
    assert!(!s.contains(TOKEN), "token leaked: {s}");
}

#[test]
fn create_get_list_destroy_through_prism() {
    let (d, v) = checked();
    let node = d.create(&spec("hz-flow-1")).unwrap();
    assert_eq!(node.name, "hz-flow-1");
    assert_eq!(node.state, NodeState::Pending);
    assert!(node.is_managed());
    let host = node.ssh.host_key.clone().unwrap();
    assert!(host.starts_with("ssh-ed25519 "), "{host}");
    assert_eq!(node.tags.get("team").map(String::as_str), Some("qa"));
    assert_eq!(node.tags.get("release").map(String::as_str), Some("1.4"));
    assert_eq!(node.tags.get("provision").map(String::as_str), Some("1"));
    assert_eq!(node.tags.get("bad").map(String::as_str), Some("a/b"));
    assert!(node.tags.contains_key("provision-created"));

    // what the fake received: user-data pins the host key; our key is registered by id
    let server = shared().fake.server_named("hz-flow-1").unwrap();
    assert!(server.user_data.starts_with("#cloud-config\n"));
    assert!(server.user_data.contains("ed25519_private"));
    assert!(server.user_data.contains(host.split(' ').nth(1).unwrap()));
    assert!(server
        .user_data
        .contains("AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0"));
    assert_eq!(server.ssh_keys.len(), 1);
    let keys = shared().fake.keys();
    assert!(keys
        .iter()
        .any(|k| serde_json::json!(k.name) == server.ssh_keys[0]));
    let registered = keys.len();

    // polling until running with a loopback IP
    let mut got = d.get(&node.id).unwrap().unwrap();
    for _ in 0..5 {
        if got.state == NodeState::Running {
            break;
        }
        got = d.get(&node.id).unwrap().unwrap();
    }
    assert_eq!(got.state, NodeState::Running);
    assert_eq!(got.public_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(got.ssh.host_key.as_deref(), Some(host.as_str()));
    assert_eq!(got.location.as_deref(), Some("fsn1"));
    assert_eq!(got.image.as_deref(), Some("ubuntu-24.04"));

    // the key is not registered twice
    let second = d.create(&spec("hz-flow-2")).unwrap();
    assert_eq!(shared().fake.keys().len(), registered);

    // tagged only vs all
    let foreign = shared().fake.add_foreign("hz-foreign-1");
    let ours = listed(&d, false, |l| l.iter().any(|n| n.id == node.id));
    assert!(ours.iter().all(|n| n.tags.contains_key(TAG_MANAGED)));
    assert!(!ours.iter().any(|n| n.id == foreign.to_string()));
    let all = listed(&d, true, |l| l.iter().any(|n| n.id == foreign.to_string()));
    assert!(all
        .iter()
        .any(|n| n.id == foreign.to_string() && !n.is_managed()));

    // the deploy state (issue 17): replaced, never doubled, the other tags kept
    assert!(d.updates_tags());
    // a label someone else set, raw: sent back as it is, not re-encoded (`a_b` would
    // become `a_5Fb` through our decoding and encoding)
    shared().fake.set_tag(&node.name, "note", Some("a_b"));
    for state in ["deploying", "ready"] {
        let t = [("provision-state".to_string(), state.to_string())].into();
        let n = d.get(&node.id).unwrap().unwrap();
        // one PUT from the labels the get answered (issue 20), no GET first
        let before = shared().fake.log();
        d.update_tags(&n, &t).unwrap();
        let sent = shared().fake.log()[before.len()..].to_vec();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].starts_with("PUT /servers/"), "{sent:?}");
    }
    let raw = shared().fake.server_named(&node.name).unwrap().labels;
    assert_eq!(
        raw.get("provision-state").map(String::as_str),
        Some("ready")
    );
    assert_eq!(raw.get("team").map(String::as_str), Some("qa"), "{raw:?}");
    assert_eq!(raw.get("note").map(String::as_str), Some("a_b"), "{raw:?}");
    let got = d.get(&node.id).unwrap().unwrap();
    assert_eq!(got.deploy_state(), Some("ready"));

    assert_eq!(d.destroy(&node.id).unwrap(), Destroyed::Destroyed);
    assert_eq!(d.destroy(&node.id).unwrap(), Destroyed::AlreadyGone);
    assert_eq!(d.get(&node.id).unwrap(), None);
    assert_eq!(d.destroy(&second.id).unwrap(), Destroyed::Destroyed);
    v.assert_none();
}

#[test]
fn lists_follow_pages() {
    let (d, v) = checked();
    let names: Vec<String> = (1..=5).map(|i| format!("hz-page-{i}")).collect();
    for n in &names {
        d.create(&spec(n)).unwrap();
    }
    let listed = listed(&d, false, |l| {
        names.iter().all(|n| l.iter().any(|x| &x.name == n))
    });
    assert!(shared()
        .fake
        .log()
        .iter()
        .any(|l| l.starts_with("GET /servers?") && l.contains("page=3")));
    for node in listed.iter().filter(|n| n.name.starts_with("hz-page-")) {
        d.destroy(&node.id).unwrap();
    }
    v.assert_none();
}

#[test]
fn resolve_images_sizes_regions() {
    let (d, v) = checked();
    let r = d.resolve("ubuntu-22.04", "cx22", "fsn1").unwrap();
    assert_eq!(r.image, "ubuntu-22.04");
    // prefix: newest by natural sort (24 > 22 > 9)
    assert_eq!(
        d.resolve("ubuntu", "cx22", "fsn1").unwrap().image,
        "ubuntu-24.04"
    );
    assert_eq!(
        d.resolve("ubuntu-9", "cx22", "fsn1").unwrap().image,
        "ubuntu-9.04"
    );
    // a snapshot without a name is found by its description and sent by id
    assert_eq!(
        d.resolve("my-snapshot", "cx22", "fsn1").unwrap().image,
        "5005"
    );

    let e = d.resolve("ubuntu-24.4", "cx22", "fsn1").unwrap_err();
    assert_eq!(e.code(), 2, "{e}");
    assert!(e.to_string().contains("ubuntu-24.04"), "{e}");
    let e = d.resolve("ubuntu", "cx23", "fsn1").unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("cx22"),
        "{e}"
    );
    let e = d.resolve("ubuntu", "cx22", "fsn2").unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("fsn1"),
        "{e}"
    );

    // ubuntu-24.04 exists for x86 and arm: one entry
    assert_eq!(d.images().unwrap().len(), 5);
    assert_eq!(d.sizes().unwrap().len(), 3);
    let locs = d.locations().unwrap();
    assert!(locs
        .iter()
        .any(|(n, d)| n == "hel1" && d.contains("Helsinki")));
    v.assert_none();
}

#[test]
fn unauthorized_names_the_source_not_the_value() {
    let wrong = "hcloudWRONGwrongwrongwrongwrongwrong";
    let d = driver(&shared().prism.url, wrong);
    let e = d.list(false).unwrap_err();
    let s = e.to_string();
    // a refused credential is a configuration error (exit 2), naming where it came from
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert_eq!(e.code(), 2);
    assert!(s.contains("credential refused"), "{s}");
    assert!(s.contains("401") && s.contains("flag -k"), "{s}");
    assert!(s.contains("unable to authenticate"), "{s}");
    assert!(!s.contains(wrong), "{s}");

    let table: toml::Table = toml::from_str(&format!("token = \"{wrong}\"")).unwrap();
    let d = Hetzner::from_config(&table, Some("")).map(|d| d.with_base_url(&shared().prism.url));
    // an empty flag falls through to the environment or the config file
    if std::env::var_os("HCLOUD_TOKEN").is_none() {
        let e = d.unwrap().list(false).unwrap_err();
        assert!(
            e.to_string()
                .contains("config file ([providers.hetzner] token)"),
            "{e}"
        );
        assert!(!e.to_string().contains(wrong));
    }
}

#[test]
fn missing_token_is_a_config_error() {
    if std::env::var_os("HCLOUD_TOKEN").is_some() {
        return; // the environment provides one: nothing to check here
    }
    let e = Hetzner::from_config(&toml::Table::new(), None).unwrap_err();
    assert_eq!(e.code(), 2);
    assert!(e.to_string().contains("HCLOUD_TOKEN"), "{e}");
}

/// Every `examples` value in the spec's responses under `/servers`, as JSON.
fn spec_examples() -> Vec<serde_json::Value> {
    let path = prism::conformance_dir().join(SPEC);
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for (p, item) in spec["paths"].as_object().unwrap() {
        if !p.starts_with("/servers") {
            continue;
        }
        for op in item.as_object().unwrap().values() {
            for resp in op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|r| r.1)
            {
                let ex = &resp["content"]["application/json"]["examples"];
                for e in ex.as_object().into_iter().flatten().map(|e| e.1) {
                    out.push(e["value"].clone());
                }
            }
        }
    }
    out
}

#[test]
fn parses_the_spec_examples() {
    // parsed only: the addresses in them are public, nothing connects to them
    let examples = spec_examples();
    let servers: Vec<_> = examples
        .iter()
        .flat_map(|e| {
            let one = e.get("server").filter(|s| s.is_object()).cloned();
            let many = e
                .get("servers")
                .and_then(|s| s.as_array())
                .cloned()
                .unwrap_or_default();
            one.into_iter().chain(many)
        })
        .collect();
    assert!(!servers.is_empty(), "no server examples in the spec");
    for s in &servers {
        let n = server_to_node(s).unwrap_or_else(|e| panic!("{e}: {s}"));
        assert!(!n.name.is_empty());
        assert_ne!(n.state, NodeState::Unknown, "{s}");
    }
    let created = examples
        .iter()
        .find_map(|e| e.get("server").filter(|s| s.is_object()))
        .unwrap();
    let n = server_to_node(created).unwrap();
    assert_eq!(n.id, "42");
    assert_eq!(n.state, NodeState::Pending);
    assert_eq!(n.public_ip.as_deref(), Some("1.2.3.4"));
    assert!(n.size.is_some() && n.location.is_some());
}

// ---- faults, against the fake alone (one per test) ----

fn faulty() -> (FakeCloud, Hetzner) {
    let fake = FakeCloud::start(Api::Hetzner, TOKEN);
    let d = driver(&fake.url, TOKEN);
    (fake, d)
}

#[test]
fn retry_after_is_honoured() {
    let (fake, d) = faulty();
    fake.fault("GET", "/servers", Fault::RetryAfter("1".into()), 1);
    let t = Instant::now();
    d.list(false).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(fake.count_requests("GET", "/servers"), 2);
}

#[test]
fn server_errors_are_retried_then_unavailable() {
    let (fake, d) = faulty();
    fake.fault("GET", "/servers", Fault::Status(500), 1);
    fake.fault("GET", "/servers", Fault::Status(503), 1);
    d.list(false).unwrap();
    assert_eq!(fake.count_requests("GET", "/servers"), 3);

    fake.fault("GET", "/locations", Fault::Status(503), 100);
    let e = d.locations().unwrap_err();
    assert_eq!(e.code(), 13, "{e}");
    assert!(
        e.to_string().contains("503") && e.to_string().contains("4 attempts"),
        "{e}"
    );
    assert_eq!(fake.count_requests("GET", "/locations"), 4);
    no_token(&e);
}

#[test]
fn slow_answers_time_out_and_are_retried() {
    let (fake, d) = faulty();
    let d = d
        .with_http_config(HttpConfig {
            timeout: Duration::from_millis(400),
            retries: 1,
            ..fast()
        })
        .unwrap();
    fake.fault(
        "GET",
        "/server_types",
        Fault::Slow(Duration::from_secs(2)),
        1,
    );
    assert_eq!(d.sizes().unwrap().len(), 3);
    fake.fault(
        "GET",
        "/server_types",
        Fault::Slow(Duration::from_secs(2)),
        2,
    );
    let e = d.sizes().unwrap_err();
    assert_eq!(e.code(), 13, "{e}");
    assert!(e.to_string().contains("no answer within"), "{e}");
}

#[test]
fn malformed_json_is_malformed() {
    let (fake, d) = faulty();
    fake.fault("GET", "/servers", Fault::Malformed, 1);
    let e = d.list(true).unwrap_err();
    assert_eq!(e.code(), 12, "{e}");
    fake.serve(
        "GET",
        "/images",
        "",
        200,
        r#"{"links": {}, "meta": {"total": 0}}"#,
    );
    let e = d.images().unwrap_err();
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
}

/// The look-up after an unknown create outcome matches the attempt's create id, never the
/// name: an existing server of the same name (ours or not) is never adopted as the new one.
/// (Hetzner refuses a second server of one name; DigitalOcean makes it.)
#[test]
fn lost_create_answer_never_adopts_a_node_by_name() {
    let (fake, d) = faulty();
    let old = d.create(&spec("hz-same")).unwrap();
    let foreign = fake.add_foreign("hz-same-foreign");
    for (name, old_id) in [
        ("hz-same", old.id.clone()),
        ("hz-same-foreign", foreign.to_string()),
    ] {
        fake.fault("POST", "/servers", Fault::DropAfterProcessing, 1);
        match d.create(&spec(name)) {
            Ok(new) => panic!("a second server named {name}: {new:?} (old id {old_id})"),
            Err(e) => assert!(e.to_string().contains("409"), "{e}"),
        }
        assert_eq!(fake.count_named(name), 1);
        assert_eq!(fake.server_named(name).unwrap().id.to_string(), old_id);
    }
}

#[test]
fn lost_create_response_makes_no_duplicate() {
    let (fake, d) = faulty();
    fake.fault("POST", "/servers", Fault::DropAfterProcessing, 1);
    let node = d.create(&spec("hz-lost-1")).unwrap();
    assert_eq!(fake.count_named("hz-lost-1"), 1);
    assert_eq!(fake.count_requests("POST", "/servers"), 1);
    assert!(node.ssh.host_key.is_some());

    // a 5xx after the server made it: same, found rather than re-sent
    fake.fault("POST", "/servers", Fault::DropAfterProcessing, 1);
    fake.fault("GET", "/servers", Fault::Status(502), 1);
    d.create(&spec("hz-lost-2")).unwrap();
    assert_eq!(fake.count_named("hz-lost-2"), 1);

    // a 5xx before anything was made: looked for, not found, sent again
    fake.fault("POST", "/servers", Fault::Status(500), 1);
    d.create(&spec("hz-lost-3")).unwrap();
    assert_eq!(fake.count_named("hz-lost-3"), 1);
}

#[test]
fn token_and_user_data_never_appear_in_errors() {
    let (fake, d) = faulty();
    fake.fault(
        "GET",
        "/servers",
        Fault::Message(400, format!("bad token {TOKEN} given")),
        1,
    );
    let e = d.list(false).unwrap_err();
    assert!(e.to_string().contains("<redacted>"), "{e}");
    no_token(&e);
    assert!(!format!("{d:?}").contains(TOKEN));

    // a provider echoing the user-data (with the private host key) back in an error
    fake.fault("POST", "/servers", Fault::Message(422, "x".into()), 1);
    let _ = d.create(&spec("hz-secret-1")).unwrap_err();
    let made = d.create(&spec("hz-secret-2")).unwrap();
    let ud = fake.server_named("hz-secret-2").unwrap().user_data;
    let private_line = ud
        .lines()
        .find(|l| l.contains("PRIVATE KEY"))
        .unwrap()
        .to_string();
    fake.fault(
        "GET",
        "/servers/",
        Fault::Message(409, format!("conflict: {ud}")),
        1,
    );
    let e = d.get(&made.id).unwrap_err();
    assert!(
        !e.to_string().contains("OPENSSH PRIVATE KEY-----\\n"),
        "{e}"
    );
    assert!(!e.to_string().contains(private_line.trim()), "{e}");
    assert!(!serde_json::to_string(&made).unwrap().contains("PRIVATE"));
    no_token(&e);
}

#[test]
fn prism_rejects_what_breaks_the_spec() {
    // proof that the proxy checks both sides, so the clean runs above mean something
    let s = shared();
    s.fake.serve(
        "GET",
        "/server_types",
        "per_page=7",
        200,
        r#"{"server_types": [{"name": 5}], "meta": {}}"#,
    );
    let http = reqwest::blocking::Client::new();
    let r = http
        .get(format!("{}/server_types?per_page=7", s.prism.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 500, "a bad response must be refused");
    assert!(r.headers().contains_key("sl-violations"));
    let r = http
        .post(format!("{}/servers", s.prism.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "hz-bad", "server_type": 5}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422, "a bad request must be refused");
    assert_eq!(s.fake.count_named("hz-bad"), 0);
}
