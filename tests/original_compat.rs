//! Coming from the original (provision 0.9): its config directory (tests/fixtures/
//! original-secrets, after its README's example) planned field by field, the converter's
//! output giving the same plan, its long flags, `$VIRTUAL_ENV/provision_secrets`, the
//! destroyable-prefix guard, the `-d` format, completions and `--version`, with the real binaries.

use crate::support::cli::Sandbox;
use serde_json::Value;

const SECRET: &str = "somehardtoguesssecret";

fn fixture() -> String {
    format!(
        "{}/tests/fixtures/original-secrets",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn plan_json(s: &Sandbox, config: &str) -> Value {
    let r = s
        .cmd("deploy-node")
        .args(["-c", config, "-p", "local", "-b", "dev", "-b", "security"])
        .args(["-n", "deploy-test-fixture", "--dry-run", "--json"])
        .run()
        .code(0)
        .stdout_lacks(SECRET)
        .stderr_lacks(SECRET);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    doc["plans"][0].clone()
}

fn strs(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_originals_readme_directory_is_planned_field_by_field() {
    let s = Sandbox::new();
    let dir = fixture();
    let init = format!("{dir}/__init__.py");
    // as written (provider 'rackspace'): refused before anything, naming the line and openstack
    s.cmd("deploy-node")
        .args(["-c", &dir, "-b", "dev", "--dry-run"])
        .run()
        .code(2)
        .stderr_has(&format!("{init}:6: provider 'rackspace' is the original's"))
        .stderr_has("openstack")
        .stdout_lacks("Plan");
    for bin in ["list-nodes", "destroy-node"] {
        s.cmd(bin)
            .args(["-c", &dir, "deploy-test-x"][..if bin == "list-nodes" { 2 } else { 3 }].to_vec())
            .run()
            .code(2)
            .stderr_has(&format!("{init}:6: provider 'rackspace' is the original's"));
    }
    let p = plan_json(&s, &dir);
    assert_eq!(p["node_name"], "deploy-test-fixture");
    assert_eq!(p["provider"]["value"], "local");
    assert_eq!(p["provider"]["layer"], "-p");
    // bootstrap bundles from __init__.py (image not in BOOTSTRAPPED_IMAGE_NAMES), then -b
    assert_eq!(
        strs(&p["bundles"], "name"),
        ["tz", "snmpd", "dev", "security"]
    );
    assert_eq!(
        strs(&p["bundles"], "reason"),
        ["bootstrap_bundles", "bootstrap_bundles", "-b", "-b"]
    );
    assert_eq!(
        strs(&p["bundles"], "layer"),
        ["defaults", "defaults", dir.as_str(), dir.as_str()],
        "the fixture's dev replaces the built-in one"
    );
    // its pubkeys/ and the user's own key
    let keys = strs(&p["pubkeys"], "comment");
    assert_eq!(keys, ["alice@original", "tester@sandbox"]);
    assert_eq!(
        p["pubkeys"][0]["source"],
        format!("{dir}/pubkeys/alice.pub")
    );
    // add_bundle files: basename in files/; new_bundle's filemap
    assert_eq!(
        strs(&p["files"], "target"),
        ["/root/.emacs.d/init.el", "/root/.screenrc", "/etc/motd"]
    );
    assert_eq!(
        strs(&p["files"], "source"),
        [
            format!("{dir}/files/init.el"),
            format!("{dir}/files/.screenrc"),
            format!("{dir}/files/motd")
        ]
    );
    assert_eq!(strs(&p["files"], "bundle"), ["dev", "dev", "security"]);
    // SUBMAP entries are variables, each with its line
    assert_eq!(p["vars"]["ci_user_host"]["value"], "ci@ci.example.com");
    assert_eq!(p["vars"]["ci_user_host"]["layer"], format!("{init}:13"));
    assert_eq!(p["vars"]["greeting"]["value"], "hello from the original");
    assert_eq!(p["vars"]["greeting"]["layer"], format!("{init}:14"));
    // screen.sh is in dev and security: it runs once, at its first position
    assert_eq!(
        strs(&p["scripts"], "remote_name"),
        [
            "01-tz.sh",
            "02-snmpd.sh",
            "03-emacs.sh",
            "04-screen.sh",
            "05-security.sh"
        ]
    );
    let sc = &p["scripts"];
    assert_eq!(sc[3]["bundle"], "dev");
    assert_eq!(sc[3]["also_in"], serde_json::json!(["security"]));
    assert_eq!(sc[3]["template"], "template-string");
    assert_eq!(sc[2]["template"], "format-string");
    assert_eq!(sc[4]["template"], Value::Null);
    // format-string with the original's !r and :>24; template-string: only user variables
    // ($image is the script's own shell variable), built-ins as ${provision.NAME}
    assert_eq!(
        sc[2]["rendered"],
        "#!/bin/sh\n# provision-template-type: format-string\necho ''hello from the original'' > /root/.emacs-greeting\necho \"       ci@ci.example.com|\"\n"
    );
    assert_eq!(
        sc[3]["rendered"],
        "#!/bin/sh\n# provision-template-type: template-string\nimage=screen-4\necho \"$image for ci@ci.example.com on deploy-test-fixture (local) $\"\n"
    );
    assert_eq!(
        sc[4]["rendered"],
        "#!/bin/sh\necho \"no template: {ci_user_host} $ci_user_host\"\n"
    );
    // the text plan says so too
    s.cmd("deploy-node")
        .args([
            "-c",
            &dir,
            "-p",
            "local",
            "-b",
            "dev",
            "-b",
            "security",
            "--dry-run",
        ])
        .run()
        .code(0)
        .stdout_has("bundle dev; also in bundle security: runs once, here")
        .stdout_has(&format!("({init}:13)"))
        .stderr_has(&format!(
            "bundle 'dev' from {init}:17 replaces the one from defaults"
        ));
}

/// Values with their origins removed (a converted layer says `provision.toml`, not a line).
fn without_origins(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "layer" && *k != "source")
                .map(|(k, v)| (k.clone(), without_origins(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_origins).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_converted_provision_toml_gives_the_same_plan() {
    let s = Sandbox::new();
    let dir = fixture();
    let r = s
        .cmd("deploy-node")
        .args(["--convert-config", &dir])
        .run()
        .code(0)
        .stdout_lacks(SECRET)
        .stdout_has("# provider = \"rackspace\"")
        .stdout_has("[bundles.dev]  # __init__.py:17");
    let conv = s.path().join("conv");
    std::fs::create_dir_all(&conv).unwrap();
    std::fs::write(conv.join("provision.toml"), &r.stdout).unwrap();
    for sub in ["scripts", "files", "pubkeys"] {
        let from = std::path::Path::new(&dir).join(sub);
        std::fs::create_dir_all(conv.join(sub)).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), conv.join(sub).join(e.file_name())).unwrap();
        }
    }
    let original = plan_json(&s, &dir);
    let converted = plan_json(&s, conv.to_str().unwrap());
    assert_eq!(without_origins(&original), without_origins(&converted));
    assert_eq!(
        converted["vars"]["ci_user_host"]["layer"],
        conv.display().to_string()
    );
}

#[test]
fn init_py_outside_the_subset_is_exit_2_naming_file_line_and_construct() {
    let s = Sandbox::new();
    let cases: &[(&str, &str)] = &[
        (
            "def init(config):\n    config.DEFAULT_PUBKEY = open('/k.pub').read()\n",
            ":2: `open(...)` is not supported",
        ),
        (
            "import os\ndef init(config):\n    if os.getenv('X'):\n        pass\n",
            ":3: `if os.getenv(\"X\"):` is not supported",
        ),
        (
            "def init(config):\n    config.IMAGE_NAMES['x'] = 'y'\n",
            ":2: `config.IMAGE_NAMES[...] = ...` is not supported",
        ),
        (
            "def init(config):\n    config.DEFAULT_SIZE_ID = 2\n",
            ":2: config.DEFAULT_SIZE_ID = 2: the original took an index",
        ),
        (
            "def init(config):\n    config.DEFAULT_SECRET_KEY = 'zzz'\n",
            ":2: config.DEFAULT_SECRET_KEY is set but this file sets no DEFAULT_PROVIDER",
        ),
        (
            "X = 1\ndef init(config):\n    pass\n",
            ":1: `X = 1` is not supported",
        ),
        (
            "def init(config):\n    config.add_bundle('a', ['a.sh'], scriptsdir='other')\n",
            ":2: add_bundle('a', scriptsdir='other'): a bundle's scripts are read from the layer's scripts/ only",
        ),
        (
            "def init(config):\n    config.FOO = 'x'\n",
            ":2: config.FOO is not a setting provision reads",
        ),
        ("x = 'never closed\n", ":1: a string literal that is never closed"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let rel = format!("bad{i}/__init__.py");
        let path = s.write(&rel, text);
        s.cmd("deploy-node")
            .args(["-c", &format!("bad{i}"), "--dry-run"])
            .run()
            .code(2)
            .stderr_has(&format!("{}{want}", path.display()))
            .stdout_lacks("Plan");
    }
}

#[test]
fn the_originals_long_flags_are_accepted() {
    let s = Sandbox::new();
    s.write("site/provision.toml", "[bundles.b]\nscripts = [\"b.sh\"]\n");
    s.write(
        "site/scripts/b.sh",
        "# provision-template-type: template-string\necho $k\n",
    );
    for flags in [
        [
            "--config_paths",
            "site",
            "--bundles",
            "b",
            "--subvars",
            "k=v1",
        ],
        [
            "--config-paths",
            "site",
            "--bundle",
            "b",
            "--subvar",
            "k=v1",
        ],
        ["--config", "site", "--bundles", "b", "--subvars", "k=v1"],
    ] {
        s.cmd("deploy-node")
            .args(flags)
            .args(["--secret_key", "x", "--dry-run"])
            .run()
            .code(0)
            .stdout_has("echo v1")
            .stdout_lacks("--secret");
    }
    s.cmd("list-nodes")
        .args(["--config_paths", "site", "--secret_key", "x", "--user", "u"])
        .run()
        .code(0);
    s.write("r.xml", "<testsuite tests=\"1\" failures=\"1\"><testcase name=\"t\"><failure/></testcase></testsuite>");
    s.cmd("destroy-node")
        .args([
            "--config_paths",
            "site",
            "--testresults",
            "r.xml",
            "deploy-test-x",
        ])
        .run()
        .code(3);
}

#[test]
fn virtual_env_provision_secrets_is_a_layer_after_home_secrets() {
    let s = Sandbox::new();
    s.write(
        "home/.provision/secrets/provision.toml",
        "[vars]\na = \"home\"\nb = \"home\"\n",
    );
    s.write(
        "venv/provision_secrets/__init__.py",
        "def init(config):\n    config.SUBMAP['b'] = 'venv'\n",
    );
    let r = s
        .cmd("deploy-node")
        .env("VIRTUAL_ENV", s.path().join("venv"))
        .args(["--dry-run", "--json"])
        .run()
        .code(0);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    let p = &doc["plans"][0];
    assert_eq!(p["vars"]["a"]["value"], "home");
    assert_eq!(p["vars"]["b"]["value"], "venv");
    assert!(p["vars"]["b"]["layer"]
        .as_str()
        .unwrap()
        .ends_with("venv/provision_secrets/__init__.py:2"));
}

#[test]
fn names_outside_destroyable_prefixes_need_force() {
    let s = Sandbox::new();
    // deploy says so at once
    s.cmd("deploy-node")
        .args(["-n", "prod-db", "-b", "hello", "--dry-run"])
        .run()
        .code(0)
        .stderr_has("node name 'prod-db' is outside destroyable_prefixes (deploy-test-): destroying it will need destroy-node --force");
    s.cmd("deploy-node")
        .args(["-n", "deploy-test-db", "-b", "hello", "--dry-run"])
        .run()
        .code(0)
        .stderr_lacks("destroyable_prefixes");
    // destroy refuses before looking anything up
    s.cmd("destroy-node")
        .args(["prod-db"])
        .run()
        .code(1)
        .stderr_has("node 'prod-db' is outside destroyable_prefixes (deploy-test-)")
        .stderr_has("--force");
    // --force, or a prefix in config, lets it through to the lookup
    s.cmd("destroy-node")
        .args(["--force", "prod-db"])
        .run()
        .code(1)
        .stderr_has("not found");
    s.write(
        "site/provision.toml",
        "destroyable_prefixes = [\"prod-\"]\n",
    );
    s.cmd("destroy-node")
        .args(["-c", "site", "prod-db"])
        .run()
        .code(1)
        .stderr_has("not found");
    // the name prefix in effect is the default
    s.write("pre/provision.toml", "name_prefix = \"ci-\"\n");
    s.cmd("destroy-node")
        .args(["-c", "pre", "deploy-test-x"])
        .run()
        .code(1)
        .stderr_has("outside destroyable_prefixes (ci-)");
}

#[test]
fn description_file_has_the_originals_keys_and_types() {
    let s = Sandbox::new();
    let d = s.path().join("node.json");
    let r = s
        .cmd("deploy-node")
        .args(["-b", "hello", "-d"])
        .args([&d])
        .run()
        .code(0);
    let name = r.stdout.split_whitespace().next().unwrap().to_string();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&d).unwrap()).unwrap();
    s.cmd("destroy-node").args([&name]).run().code(0);
    assert_eq!(v["format"], 2);
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["state"], 0, "libcloud's RUNNING");
    assert_eq!(v["state_name"], "running");
    let ips = v["public_ip"].as_array().expect("a list, as the original");
    assert!(ips[0].as_str().unwrap().starts_with("127."), "{v}");
    assert!(v["private_ip"].is_array(), "{v}");
    assert!(v["id"].is_string(), "{v}");
    assert!(
        v.get("image_id").is_some() && v.get("image_name").is_some(),
        "{v}"
    );
    assert_eq!(v["provider"], "local");
    assert_eq!(v["scripts"][0]["name"], "hello.sh");
    assert_eq!(v["scripts"][0]["status"], 0);
}

#[test]
fn completions_and_version_on_every_binary() {
    let s = Sandbox::new();
    for bin in ["deploy-node", "list-nodes", "destroy-node"] {
        for (shell, marker) in [
            ("bash", format!("_{}()", bin.replace('-', "__"))),
            ("zsh", format!("#compdef {bin}")),
            ("fish", format!("complete -c {bin}")),
        ] {
            s.cmd(bin)
                .args(["--completions", shell])
                .run()
                .code(0)
                .stdout_has(&marker);
        }
        s.cmd(bin)
            .args(["--version"])
            .run()
            .code(0)
            .stdout_has(&format!("{bin} {}", env!("CARGO_PKG_VERSION")));
    }
}
