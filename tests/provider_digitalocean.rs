//! The DigitalOcean driver against a stateful loopback fake behind Prism's validating proxy
//! (flows, lookups, errors), against the fake alone (injected faults), and against libcloud's
//! recorded responses (parsing).

use crate::support::fakecloud;
use crate::support::prism;

use fakecloud::{Api, FakeCloud, Fault};
use prism::{Prism, Violations};
use provision::provider::cloud::CloudCatalog;
use provision::provider::digitalocean::{droplet_to_node, DigitalOcean};
use provision::provider::http::HttpConfig;
use provision::provider::{Destroyed, Node, NodeSpec, NodeState, Provider, TAG_MANAGED};
use provision::Error;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TOKEN: &str = "dop_v1_0123456789abcdef0123456789abcdef0123456789abcdef";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example";
const SPEC: &str = "specs/digitalocean/DigitalOcean-public.v2.bundled.yaml";

struct Shared {
    fake: FakeCloud,
    prism: Prism,
}

/// One fake and one Prism per test binary; tests keep apart by node names.
fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let fake = FakeCloud::start(Api::DigitalOcean, TOKEN);
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

fn driver(base: &str, token: &str) -> DigitalOcean {
    DigitalOcean::from_config(&toml::Table::new(), Some(token))
        .unwrap()
        .with_base_url(base)
        .with_http_config(fast())
        .unwrap()
}

/// A driver talking to Prism, recording spec violations.
fn checked() -> (DigitalOcean, Violations) {
    let v = Violations::default();
    let d = driver(&shared().prism.url, TOKEN).with_inspector(v.inspector());
    (d, v)
}

fn spec(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        image: "ubuntu-24-04-x64".into(),
        size: "s-1vcpu-1gb".into(),
        location: "fra1".into(),
        public_keys: vec![KEY.into()],
        // DigitalOcean's tag charset has no '.': that one is skipped with a warning
        tags: [
            ("team".to_string(), "qa".to_string()),
            ("release".to_string(), "1.4".to_string()),
        ]
        .into(),
    }
}

/// Other tests create and destroy on the same fake meanwhile, which shifts offset pages: a
/// node may be missed by one listing, never by three in a row.
fn listed(d: &DigitalOcean, all: bool, ok: impl Fn(&[Node]) -> bool) -> Vec<Node> {
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
    let node = d.create(&spec("do-flow-1")).unwrap();
    assert_eq!(node.name, "do-flow-1");
    assert_eq!(node.state, NodeState::Pending);
    assert!(node.is_managed());
    let host = node.ssh.host_key.clone().unwrap();
    assert!(host.starts_with("ssh-ed25519 "), "{host}");
    assert_eq!(node.tags.get("team").map(String::as_str), Some("qa"));
    // '.' is outside DigitalOcean's tag charset: encoded (provider::tags) and read back as given
    assert_eq!(node.tags.get("release").map(String::as_str), Some("1.4"));
    assert!(node.tags.contains_key("provision-created"));

    // what the fake received: user-data pins the host key; our key is registered by id
    let server = shared().fake.server_named("do-flow-1").unwrap();
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
        .any(|k| serde_json::json!(k.id) == server.ssh_keys[0]));
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
    assert_eq!(got.location.as_deref(), Some("fra1"));
    assert_eq!(got.image.as_deref(), Some("ubuntu-24-04-x64"));

    // the key is not registered twice
    let second = d.create(&spec("do-flow-2")).unwrap();
    assert_eq!(shared().fake.keys().len(), registered);

    // tagged only vs all
    let foreign = shared().fake.add_foreign("do-foreign-1");
    let ours = listed(&d, false, |l| l.iter().any(|n| n.id == node.id));
    assert!(ours.iter().all(|n| n.tags.contains_key(TAG_MANAGED)));
    assert!(!ours.iter().any(|n| n.id == foreign.to_string()));
    let all = listed(&d, true, |l| l.iter().any(|n| n.id == foreign.to_string()));
    assert!(all
        .iter()
        .any(|n| n.id == foreign.to_string() && !n.is_managed()));

    // the deploy state (issues 17, 20): the end state is added in one request per node (the
    // tag itself made once per process), `deploying` stays beside it and the droplet reads as
    // the end state; the other tags are kept
    assert!(d.updates_tags());
    let fake = &shared().fake;
    let mut asked = Vec::new();
    for state in ["deploying", "ready"] {
        let t = [("provision-state".to_string(), state.to_string())].into();
        let n = d.get(&node.id).unwrap().unwrap();
        let before = fake.log().len();
        d.update_tags(&n, &t).unwrap();
        asked.push(fake.log().len() - before);
    }
    let raw = fake.server_named("do-flow-1").unwrap().tags;
    let mut states: Vec<&String> = raw
        .iter()
        .filter(|t| t.starts_with("provision-state"))
        .collect();
    states.sort();
    assert_eq!(
        states,
        ["provision-state:deploying", "provision-state:ready"],
        "{raw:?}"
    );
    assert!(raw.contains(&"team:qa".to_string()), "{raw:?}");
    let got = d.get(&node.id).unwrap().unwrap();
    assert_eq!(got.deploy_state(), Some("ready"));
    // the same state again: already on the droplet, nothing sent
    let t = [("provision-state".to_string(), "ready".to_string())].into();
    let before = fake.log().len();
    d.update_tags(&got, &t).unwrap();
    assert_eq!(fake.log().len(), before, "nothing to change");
    // the tag POST (first time in this process) and the resources POST, never a DELETE
    assert!(asked.iter().all(|&n| n <= 2), "{asked:?}");
    assert_eq!(
        fake.count_requests("DELETE", "/v2/tags/provision-state"),
        0,
        "the old state tag stays"
    );

    assert_eq!(d.destroy(&node.id).unwrap(), Destroyed::Destroyed);
    assert_eq!(d.destroy(&node.id).unwrap(), Destroyed::AlreadyGone);
    assert_eq!(d.get(&node.id).unwrap(), None);
    assert_eq!(d.destroy(&second.id).unwrap(), Destroyed::Destroyed);
    v.assert_none();
}

#[test]
fn lists_follow_pages() {
    let (d, v) = checked();
    let names: Vec<String> = (1..=5).map(|i| format!("do-page-{i}")).collect();
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
        .any(|l| l.starts_with("GET /v2/droplets?") && l.contains("page=3")));
    for node in listed.iter().filter(|n| n.name.starts_with("do-page-")) {
        d.destroy(&node.id).unwrap();
    }
    v.assert_none();
}

#[test]
fn resolve_images_sizes_regions() {
    let (d, v) = checked();
    let r = d
        .resolve("ubuntu-22-04-x64", "s-1vcpu-1gb", "fra1")
        .unwrap();
    assert_eq!(r.image, "ubuntu-22-04-x64");
    // prefix: newest by natural sort (24 > 22 > 9)
    assert_eq!(
        d.resolve("ubuntu", "s-1vcpu-1gb", "fra1").unwrap().image,
        "ubuntu-24-04-x64"
    );
    assert_eq!(
        d.resolve("ubuntu-9", "s-1vcpu-1gb", "fra1").unwrap().image,
        "ubuntu-9-04-x64"
    );
    // a snapshot without a slug is found by name and sent by id
    assert_eq!(
        d.resolve("my-snapshot", "s-1vcpu-1gb", "fra1")
            .unwrap()
            .image,
        "1005"
    );

    let e = d
        .resolve("ubuntu-24-04-x46", "s-1vcpu-1gb", "fra1")
        .unwrap_err();
    assert_eq!(e.code(), 2, "{e}");
    assert!(e.to_string().contains("ubuntu-24-04-x64"), "{e}");
    let e = d.resolve("ubuntu", "s-1vcpu-1g", "fra1").unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("s-1vcpu-1gb"),
        "{e}"
    );
    let e = d.resolve("ubuntu", "s-1vcpu-1gb", "fra9").unwrap_err();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("fra1"),
        "{e}"
    );

    assert_eq!(d.images().unwrap().len(), 5);
    assert_eq!(d.sizes().unwrap().len(), 3);
    let locs = d.locations().unwrap();
    assert!(locs.contains(&("ams3".to_string(), "Amsterdam 3".to_string())));
    v.assert_none();
}

#[test]
fn unauthorized_names_the_source_not_the_value() {
    let wrong = "dop_v1_wrongwrongwrongwrongwrong";
    let d = driver(&shared().prism.url, wrong);
    let e = d.list(false).unwrap_err();
    let s = e.to_string();
    // a refused credential is a configuration error (exit 2), naming where it came from
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert_eq!(e.code(), 2);
    assert!(s.contains("credential refused"), "{s}");
    assert!(s.contains("401") && s.contains("flag -k"), "{s}");
    assert!(s.contains("Unable to authenticate you"), "{s}");
    assert!(!s.contains(wrong), "{s}");

    let table: toml::Table = toml::from_str(&format!("token = \"{wrong}\"")).unwrap();
    let d =
        DigitalOcean::from_config(&table, Some("")).map(|d| d.with_base_url(&shared().prism.url));
    // an empty flag falls through to the environment or the config file
    if std::env::var_os("DIGITALOCEAN_TOKEN").is_none()
        && std::env::var_os("DIGITALOCEAN_ACCESS_TOKEN").is_none()
    {
        let e = d.unwrap().list(false).unwrap_err();
        assert!(
            e.to_string()
                .contains("config file ([providers.digitalocean] token)"),
            "{e}"
        );
        assert!(!e.to_string().contains(wrong));
    }
}

#[test]
fn missing_token_is_a_config_error() {
    if std::env::var_os("DIGITALOCEAN_TOKEN").is_some()
        || std::env::var_os("DIGITALOCEAN_ACCESS_TOKEN").is_some()
    {
        return; // the environment provides one: nothing to check here
    }
    let e = DigitalOcean::from_config(&toml::Table::new(), None).unwrap_err();
    assert_eq!(e.code(), 2);
    assert!(e.to_string().contains("DIGITALOCEAN_TOKEN"), "{e}");
}

#[test]
fn parses_recorded_responses() {
    // Libcloud's recordings of the real API (Apache-2.0), read in place from the conformance
    // folder (never copied into the project), by the operation each one answers.
    let fx = |op: &str| {
        let file = match op {
            "list_droplets.json" => "list_nodes.json",
            "list_droplets_page_1.json" => "list_nodes_page_1.json",
            "get_droplet.json" => "list_node.json",
            "list_regions.json" => "list_locations.json",
            "list_keys.json" => "list_key_pairs.json",
            same => same, // list_images, list_sizes, error_invalid_image
        };
        let path = prism::conformance_dir()
            .join("libcloud-fixtures/digitalocean_v2")
            .join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let v: serde_json::Value = serde_json::from_str(&fx("list_droplets.json")).unwrap();
    let n = droplet_to_node(&v["droplets"][0]).unwrap();
    assert_eq!(n.state, NodeState::Running);
    assert_eq!(n.public_ip.as_deref(), Some("128.199.13.158"));
    assert_eq!(n.private_ip.as_deref(), Some("10.124.0.2"));
    assert_eq!(n.location.as_deref(), Some("sfo3"));
    assert!(!n.is_managed());
    let v: serde_json::Value = serde_json::from_str(&fx("get_droplet.json")).unwrap();
    let n = droplet_to_node(&v["droplet"]).unwrap();
    assert_eq!(n.tags.len(), 2);

    // the list calls, replayed by the fake (never connecting to the addresses in them)
    let fake = FakeCloud::start(Api::DigitalOcean, TOKEN);
    fake.serve(
        "GET",
        "/v2/droplets",
        "page=2",
        200,
        &fx("list_droplets.json"),
    );
    fake.serve(
        "GET",
        "/v2/droplets",
        "",
        200,
        &fx("list_droplets_page_1.json"),
    );
    fake.serve("GET", "/v2/images", "", 200, &fx("list_images.json"));
    fake.serve("GET", "/v2/sizes", "", 200, &fx("list_sizes.json"));
    fake.serve("GET", "/v2/regions", "", 200, &fx("list_regions.json"));
    fake.serve(
        "POST",
        "/v2/droplets",
        "",
        422,
        &fx("error_invalid_image.json"),
    );
    let d = driver(&fake.url, TOKEN);
    // both recorded pages hold droplet 3164444: it is listed once
    assert_eq!(d.list(true).unwrap().len(), 1);
    assert_eq!(fake.count_requests("GET", "/v2/droplets"), 2);
    assert_eq!(d.images().unwrap().len(), 3);
    assert_eq!(d.sizes().unwrap().len(), 2);
    assert_eq!(d.locations().unwrap().len(), 3);
    fake.serve("GET", "/v2/account/keys", "", 200, &fx("list_keys.json"));
    let e = d.create(&spec("do-fixture")).unwrap_err();
    assert!(
        e.to_string().contains("422") && e.to_string().contains("invalid image"),
        "{e}"
    );
}

// ---- faults, against the fake alone (one per test) ----

fn faulty() -> (FakeCloud, DigitalOcean) {
    let fake = FakeCloud::start(Api::DigitalOcean, TOKEN);
    let d = driver(&fake.url, TOKEN);
    (fake, d)
}

#[test]
fn retry_after_is_honoured() {
    let (fake, d) = faulty();
    fake.fault("GET", "/v2/droplets", Fault::RetryAfter("1".into()), 1);
    let t = Instant::now();
    d.list(false).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(fake.count_requests("GET", "/v2/droplets"), 2);
}

#[test]
fn server_errors_are_retried_then_unavailable() {
    let (fake, d) = faulty();
    fake.fault("GET", "/v2/droplets", Fault::Status(500), 1);
    fake.fault("GET", "/v2/droplets", Fault::Status(503), 1);
    d.list(false).unwrap();
    assert_eq!(fake.count_requests("GET", "/v2/droplets"), 3);

    fake.fault("GET", "/v2/regions", Fault::Status(503), 100);
    let e = d.locations().unwrap_err();
    assert_eq!(e.code(), 13, "{e}");
    assert!(
        e.to_string().contains("503") && e.to_string().contains("4 attempts"),
        "{e}"
    );
    assert_eq!(fake.count_requests("GET", "/v2/regions"), 4);
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
    fake.fault("GET", "/v2/sizes", Fault::Slow(Duration::from_secs(2)), 1);
    assert_eq!(d.sizes().unwrap().len(), 3);
    fake.fault("GET", "/v2/sizes", Fault::Slow(Duration::from_secs(2)), 2);
    let e = d.sizes().unwrap_err();
    assert_eq!(e.code(), 13, "{e}");
    assert!(e.to_string().contains("no answer within"), "{e}");
}

#[test]
fn malformed_json_is_malformed() {
    let (fake, d) = faulty();
    fake.fault("GET", "/v2/droplets", Fault::Malformed, 1);
    let e = d.list(true).unwrap_err();
    assert_eq!(e.code(), 12, "{e}");
    fake.serve(
        "GET",
        "/v2/images",
        "",
        200,
        r#"{"links": {}, "meta": {"total": 0}}"#,
    );
    let e = d.images().unwrap_err();
    assert!(matches!(e, Error::Malformed { .. }), "{e}");
}

/// The look-up after an unknown create outcome matches the attempt's create id, never the
/// name: an existing node of the same name (ours or not) is never adopted as the new one.
#[test]
fn lost_create_answer_never_adopts_a_node_by_name() {
    let (fake, d) = faulty();
    let old = d.create(&spec("do-same")).unwrap();
    let foreign = fake.add_foreign("do-same-foreign");
    for (name, old_id) in [
        ("do-same", old.id.clone()),
        ("do-same-foreign", foreign.to_string()),
    ] {
        fake.fault("POST", "/v2/droplets", Fault::DropAfterProcessing, 1);
        let new = d.create(&spec(name)).unwrap();
        assert_ne!(new.id, old_id, "adopted the existing {name}");
        assert!(new.create_id().is_some(), "{new:?}");
        assert_eq!(fake.count_named(name), 2);
    }
    assert_eq!(
        fake.count_requests("POST", "/v2/droplets"),
        3,
        "re-sent a create"
    );
}

#[test]
fn lost_create_response_makes_no_duplicate() {
    let (fake, d) = faulty();
    fake.fault("POST", "/v2/droplets", Fault::DropAfterProcessing, 1);
    let node = d.create(&spec("do-lost-1")).unwrap();
    assert_eq!(fake.count_named("do-lost-1"), 1);
    assert_eq!(fake.count_requests("POST", "/v2/droplets"), 1);
    assert!(node.ssh.host_key.is_some());

    // a 5xx after the server made it: same, found rather than re-sent
    fake.fault("POST", "/v2/droplets", Fault::DropAfterProcessing, 1);
    fake.fault("GET", "/v2/droplets", Fault::Status(502), 1);
    d.create(&spec("do-lost-2")).unwrap();
    assert_eq!(fake.count_named("do-lost-2"), 1);

    // a 5xx before anything was made: looked for, not found, sent again
    fake.fault("POST", "/v2/droplets", Fault::Status(500), 1);
    d.create(&spec("do-lost-3")).unwrap();
    assert_eq!(fake.count_named("do-lost-3"), 1);
}

#[test]
fn token_and_user_data_never_appear_in_errors() {
    let (fake, d) = faulty();
    fake.fault(
        "GET",
        "/v2/droplets",
        Fault::Message(400, format!("bad token {TOKEN} given")),
        1,
    );
    let e = d.list(false).unwrap_err();
    assert!(e.to_string().contains("<redacted>"), "{e}");
    no_token(&e);
    assert!(!format!("{d:?}").contains(TOKEN));

    // a provider echoing the user-data (with the private host key) back in an error
    fake.fault("POST", "/v2/droplets", Fault::Message(422, "x".into()), 1);
    let _ = d.create(&spec("do-secret-1")).unwrap_err();
    let made = d.create(&spec("do-secret-2")).unwrap();
    let ud = fake.server_named("do-secret-2").unwrap().user_data;
    let private_line = ud
        .lines()
        .find(|l| l.contains("PRIVATE KEY"))
        .unwrap()
        .to_string();
    fake.fault(
        "GET",
        "/v2/droplets/",
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
        "/v2/sizes",
        "per_page=7",
        200,
        r#"{"sizes": [{"slug": 5}], "links": {}, "meta": {"total": 1}}"#,
    );
    let http = reqwest::blocking::Client::new();
    let r = http
        .get(format!("{}/v2/sizes?per_page=7", s.prism.url))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 500, "a bad response must be refused");
    assert!(r.headers().contains_key("sl-violations"));
    let r = http
        .post(format!("{}/v2/droplets", s.prism.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "do-bad", "size": 5}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422, "a bad request must be refused");
    assert_eq!(s.fake.count_named("do-bad"), 0);
}

#[test]
fn config_user_data_is_merged() {
    let fake = FakeCloud::start(Api::DigitalOcean, TOKEN);
    let table: toml::Table = toml::from_str(
        "retries = 1\ntimeout = 5\n[user_data]\npackages = [\"htop\"]\nruncmd = [\"touch /root/ok\"]\n",
    )
    .unwrap();
    let d = DigitalOcean::from_config(&table, Some(TOKEN))
        .unwrap()
        .with_base_url(&fake.url);
    d.create(&spec("do-userdata")).unwrap();
    let ud = fake.server_named("do-userdata").unwrap().user_data;
    let doc: serde_json::Value =
        serde_json::from_str(ud.strip_prefix("#cloud-config\n").unwrap()).unwrap();
    assert_eq!(doc["packages"][0], "htop");
    assert_eq!(doc["runcmd"][0], "touch /root/ok");
    assert_eq!(doc["ssh_authorized_keys"][0], KEY);
    assert!(doc["ssh_keys"]["ed25519_public"]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519 "));
}
