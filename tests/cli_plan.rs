//! deploy-node --dry-run end to end: layered config, bundles, templates, and every bad input
//! exiting 2 with one clear line, with the real binary.

use crate::support::cli::Sandbox;

/// The one plan of `--dry-run --json`: the document is `{"format": 1, "plans": [...]}`.
pub(crate) fn plan_json(stdout: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(stdout).unwrap();
    assert_eq!(v["format"], 1, "{stdout}");
    assert_eq!(v["plans"].as_array().map(Vec::len), Some(1), "{stdout}");
    v["plans"][0].take()
}

/// Two layers: `base` defines bundles and vars, `site` overrides some of them.
fn layered() -> Sandbox {
    let s = Sandbox::new();
    s.write(
        "base/provision.toml",
        r#"
image = "debian-12"
size = "small"
default_bundles = ["tz"]
[vars]
greeting = "hello"
who = "base"
[bundles.tz]
scripts = ["tz.sh"]
[bundles.web]
scripts = ["web.sh"]
files = ["/etc/web/site.conf"]
[providers.digitalocean]
token = "SUPERSECRETTOKEN"
"#,
    );
    s.write(
        "base/scripts/tz.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho tz for {node_name} {{ok}}\n",
    );
    s.write("base/scripts/web.sh", "#!/bin/sh\necho base web\n");
    s.write("base/files/site.conf", "server base;\n");
    s.write(
        "site/provision.toml",
        r#"
size = "large"
default_bundles = ["extra"]
[vars]
who = "site"
[bundles.web]
scripts = ["web.sh"]
files = { "/etc/web/site.conf" = "site.conf", "/opt/app/run.sh" = "run.sh" }
[bundles.extra]
scripts = ["extra.sh"]
"#,
    );
    s.write("site/scripts/web.sh", "#!/bin/sh\n# provision-template-type: tera\necho {{ greeting }} from {{ who }} on {{ node_name }} size {{ size }} {{ ver }}\n");
    s.write("site/scripts/extra.sh", "#!/bin/bash\n# provision-template-type: template-string\nf() { echo \"${1:-x}\"; }\nawk '{print $2}' /etc/hosts\necho $who $$ $undefined\n");
    s.write("site/files/site.conf", "server site;\n");
    s.write("site/files/run.sh", "#!/bin/sh\n");
    s.chmod("site/files/run.sh", 0o750);
    s
}

#[test]
fn layered_dry_run_shows_the_rendered_plan() {
    let s = layered();
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            "base",
            "-c",
            "site",
            "-b",
            "web",
            "-t",
            "ver=1.4",
            "-n",
            "web-1",
            "--dry-run",
        ])
        .run()
        .code(0)
        .stdout_has("Plan for node web-1")
        .stdout_has("size:      large")
        .stdout_has("image:     debian-12")
        // lists extend: tz from base, extra from site, then -b web
        .stdout_has("tz  (default_bundles")
        .stdout_has("extra  (default_bundles")
        .stdout_has("web  (-b")
        .stdout_has("echo tz for web-1 {ok}")
        .stdout_has("echo hello from site on web-1 size large 1.4")
        .stdout_has("f() { echo \"${1:-x}\"; }")
        .stdout_has("awk '{print $2}' /etc/hosts")
        .stdout_has("echo site $ $undefined")
        .stdout_has("/etc/web/site.conf ← ")
        .stdout_has("mode 0750")
        .stdout_has("SHA256:")
        .stdout_has("tester@sandbox")
        .stdout_lacks("SUPERSECRETTOKEN")
        .stderr_has("bundle 'web' from ")
        .stderr_lacks("SUPERSECRETTOKEN");
    // run order: tz, extra, web
    let tz = r.stdout.find("01-tz.sh").unwrap();
    let extra = r.stdout.find("02-extra.sh").unwrap();
    let web = r.stdout.find("03-web.sh").unwrap();
    assert!(tz < extra && extra < web);
    // the replaced bundle's file comes from the site layer
    assert!(r.stdout.contains(&format!(
        "{}",
        s.path().join("site/files/site.conf").display()
    )));
}

#[test]
fn json_plan_says_where_each_value_came_from() {
    let s = layered();
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            "base",
            "-c",
            "site",
            "-b",
            "web",
            "-t",
            "who=cli",
            "-t",
            "ver=2",
            "--dry-run",
            "--json",
        ])
        .run()
        .code(0)
        .stdout_lacks("SUPERSECRETTOKEN");
    let v = plan_json(&r.stdout);
    let site = s.path().join("site").display().to_string();
    let base = s.path().join("base").display().to_string();
    assert_eq!(v["size"]["value"], "large");
    assert_eq!(v["size"]["layer"], site);
    assert_eq!(v["image"]["layer"], base);
    assert_eq!(v["vars"]["who"]["value"], "cli");
    assert_eq!(v["vars"]["who"]["layer"], "-t");
    assert_eq!(v["vars"]["greeting"]["layer"], base);
    assert!(v["node_name"].as_str().unwrap().starts_with("deploy-test-"));
    let files = v["files"].as_array().unwrap();
    let run = files
        .iter()
        .find(|f| f["target"] == "/opt/app/run.sh")
        .unwrap();
    assert_eq!(
        run["mode"], "0750",
        "modes are octal strings, as in the text plan"
    );
    assert_eq!(run["bundle"], "web");
    assert_eq!(run["layer"], site);
    let scripts = v["scripts"].as_array().unwrap();
    assert_eq!(scripts[0]["template"], "format-string");
    assert_eq!(scripts[0]["layer"], base);
}

#[test]
fn env_layers_come_between_home_and_cli() {
    let s = Sandbox::new();
    s.write(
        "home/.provision/secrets/provision.toml",
        "size = \"from-secrets\"\nimage = \"img-secrets\"\nlocation = \"loc-secrets\"\n",
    );
    s.write(
        "xdg-config/provision/provision.toml",
        "size = \"from-xdg\"\nimage = \"img-xdg\"\n",
    );
    s.write("envlayer/provision.toml", "size = \"from-env\"\n");
    let envpath = s.path().join("envlayer");
    let r = s
        .cmd("deploy-node")
        .args(["--dry-run", "--json"])
        .env("PROVISION_CONFIG_PATH", &envpath)
        .run()
        .code(0);
    let v = plan_json(&r.stdout);
    assert_eq!(v["size"]["value"], "from-env");
    assert_eq!(v["image"]["value"], "img-xdg");
    assert_eq!(v["location"]["value"], "loc-secrets");
    s.write("cli/provision.toml", "size = \"from-cli\"\n");
    let r = s
        .cmd("deploy-node")
        .args(["-c", "cli", "--dry-run", "--json"])
        .env("PROVISION_CONFIG_PATH", &envpath)
        .run()
        .code(0);
    let v = plan_json(&r.stdout);
    assert_eq!(v["size"]["value"], "from-cli");
}

#[test]
fn bundle_selection_follows_bootstrapped_images() {
    let s = Sandbox::new();
    s.write(
        "c/provision.toml",
        r#"
default_bundles = ["a"]
bootstrap_bundles = ["boot", "a"]
bootstrapped_images = ["golden-1"]
[bundles.a]
[bundles.boot]
[bundles.b]
"#,
    );
    let names = |image: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["-c", "c", "-i", image, "--dry-run", "--json"];
        for b in extra {
            args.extend(["-b", b]);
        }
        let r = s.cmd("deploy-node").args(args).run().code(0);
        let v = plan_json(&r.stdout);
        v["bundles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("golden-1", &["b", "a"]), ["a", "b"]);
    assert_eq!(names("debian-12", &["b", "boot", "b"]), ["boot", "a", "b"]);
}

#[test]
fn pubkeys_from_every_layer_plus_own_key() {
    let s = Sandbox::new();
    let other = Sandbox::new();
    let pubkey = std::fs::read_to_string(other.home().join(".ssh/id_ed25519.pub")).unwrap();
    let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDkLDbSlTG1Ch/UL6O3Gw6TT8c3y16Nr2JAa0uK2pI5gTf4kyK2zGjZQwOHN5oD5hr0DjpVvTgb7PSTSDp0hvm9bdD9vXjOLiwdH1rNv1dUFRp5xuxH+WjJyNqA98XPVbG8M7UyO8xgTvYcW8N7rSFNJqlqyQ5P2dzKTWzQkR1ExQ== ops@team";
    s.write("c/pubkeys/team", &format!("# team keys\n{pubkey}\n{rsa}\n"));
    let r = s
        .cmd("deploy-node")
        .args(["-c", "c", "--dry-run", "--json"])
        .run()
        .code(0);
    let v = plan_json(&r.stdout);
    let keys = v["pubkeys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys[1]["comment"], "ops@team");
    assert!(keys[2]["source"]
        .as_str()
        .unwrap()
        .ends_with(".ssh/id_ed25519.pub"));
}

#[test]
fn random_names_use_the_prefix() {
    let s = Sandbox::new();
    let r = s
        .cmd("deploy-node")
        .args(["-x", "ci-", "--dry-run", "--json"])
        .run()
        .code(0);
    let v = plan_json(&r.stdout);
    let name = v["node_name"].as_str().unwrap();
    assert_eq!(name.len(), 9);
    assert!(name.starts_with("ci-"));
    assert!(name[3..]
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
}

fn bad(s: &Sandbox, args: &[&str], needle: &str) {
    s.cmd("deploy-node")
        .args(args)
        .run()
        .code(2)
        .one_line_error()
        .stderr_has(needle)
        .stdout_empty();
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_thing() {
    let s = layered();
    bad(&s, &["-c", "base", "-b", "nope", "--dry-run"], "unknown bundle 'nope' (from -b; known: apt-update, dev, git, hello, mta, nginx, snmpd, tz, web)");
    bad(
        &s,
        &["-c", "base", "-t", "novalue", "--dry-run"],
        "-t novalue: expected KEY=VALUE",
    );
    bad(
        &s,
        &["-c", "base", "-t", "node_name=x", "--dry-run"],
        "built-in variable",
    );
    bad(
        &s,
        &["-c", "base", "-p", "nocloud", "--dry-run"],
        "unknown provider 'nocloud'",
    );
    bad(
        &s,
        &["-c", "base", "-n", "bad_name", "--dry-run"],
        "node name 'bad_name' is not a valid DNS label",
    );
    bad(
        &s,
        &["-c", "missing-dir", "--dry-run"],
        "config path missing-dir",
    );

    s.write(
        "m1/provision.toml",
        "[bundles.x]\nscripts = [\"gone.sh\"]\n",
    );
    bad(
        &s,
        &["-c", "m1", "-b", "x", "--dry-run"],
        &format!(
            "script 'gone.sh' not found in {}/",
            s.path().join("m1/scripts").display()
        ),
    );
    s.write(
        "m2/provision.toml",
        "[bundles.x]\nfiles = [\"/etc/gone.conf\"]\n",
    );
    bad(
        &s,
        &["-c", "m2", "-b", "x", "--dry-run"],
        "bundle 'x': file 'gone.conf' not found in",
    );
    s.write(
        "m3/provision.toml",
        "[bundles.x]\nfiles = { \"etc/rel.conf\" = \"a\" }\n",
    );
    bad(
        &s,
        &["-c", "m3", "-b", "x", "--dry-run"],
        "file target 'etc/rel.conf' is not an absolute path",
    );
    s.write(
        "m4/provision.toml",
        "[bundles.x]\nfiles = { \"/etc/../x\" = \"a\" }\n",
    );
    bad(&s, &["-c", "m4", "-b", "x", "--dry-run"], "without '..'");
    s.write(
        "m5/provision.toml",
        "size = \"a\"\n[bundles.x\nscripts = []\n",
    );
    bad(
        &s,
        &["-c", "m5", "--dry-run"],
        &format!("{}:2:", s.path().join("m5/provision.toml").display()),
    );
    s.write("m6/provision.toml", "bundle = 1\n");
    bad(
        &s,
        &["-c", "m6", "--dry-run"],
        "provision.toml:1:1: unknown field `bundle`",
    );
    s.write("m7/provision.toml", "[bundles.x]\nscripts = [\"t.sh\"]\n");
    s.write(
        "m7/scripts/t.sh",
        "#!/bin/sh\n# provision-template-type: tera\necho ok\necho {{ undefined_thing }}\n",
    );
    bad(&s, &["-c", "m7", "-b", "x", "--dry-run"], "t.sh:4: ");
    s.write(
        "m7/scripts/t.sh",
        "#!/bin/sh\n# provision-template-type: tera\n{% if %}\n",
    );
    bad(&s, &["-c", "m7", "-b", "x", "--dry-run"], "t.sh:3: ");
    s.write(
        "m7/scripts/t.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho {missing}\n",
    );
    bad(
        &s,
        &["-c", "m7", "-b", "x", "--dry-run"],
        "t.sh:3:7: undefined variable 'missing' (bundle 'x')",
    );
    s.write(
        "m7/scripts/t.sh",
        "#!/bin/sh\n# provision-template-type: mustache\n",
    );
    bad(
        &s,
        &["-c", "m7", "-b", "x", "--dry-run"],
        "unsupported template type 'mustache'",
    );
}

#[test]
fn no_key_at_all_is_a_clear_error() {
    let s = Sandbox::without_key();
    s.cmd("deploy-node")
        .args(["--dry-run"])
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("no public key for the node");
}

#[test]
fn a_bad_pubkey_file_names_file_and_line() {
    let s = Sandbox::new();
    s.write("c/pubkeys/broken", "\nnot a key\n");
    s.cmd("deploy-node")
        .args(["-c", "c", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("pubkeys/broken:2: not an OpenSSH public key");
}

#[test]
fn two_bundles_writing_one_target_warn_and_the_later_wins() {
    let s = Sandbox::new();
    s.write("c/provision.toml", "[bundles.a]\nfiles = { \"/etc/x.conf\" = \"a.conf\" }\n[bundles.b]\nfiles = { \"/etc/x.conf\" = \"b.conf\" }\n");
    s.write("c/files/a.conf", "a\n");
    s.write("c/files/b.conf", "bb\n");
    let r = s
        .cmd("deploy-node")
        .args(["-c", "c", "-b", "a", "-b", "b", "--dry-run", "--json"])
        .run()
        .code(0)
        .stderr_has("/etc/x.conf: written by bundle 'a' and bundle 'b'; 'b' wins");
    let v = plan_json(&r.stdout);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["bundle"], "b");
    assert_eq!(files[0]["size"], 3);
}

#[test]
fn version_and_help_on_every_binary() {
    let s = Sandbox::new();
    for bin in ["deploy-node", "list-nodes", "destroy-node"] {
        s.cmd(bin)
            .args(["--version"])
            .run()
            .code(0)
            .stdout_has(env!("CARGO_PKG_VERSION"));
        s.cmd(bin)
            .args(["--help"])
            .run()
            .code(0)
            .stdout_has("--config-path")
            .stdout_has("--secret-key");
    }
}

#[test]
fn built_in_bundles_all_plan_cleanly() {
    let s = Sandbox::new();
    let r = s
        .cmd("deploy-node")
        .args(["-b", "nosuch", "--dry-run"])
        .run()
        .code(2);
    let known = r
        .stderr
        .split("known: ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(')')
        .to_string();
    for name in known.split(", ") {
        s.cmd("deploy-node")
            .args(["-b", name, "-t", "timezone=UTC", "--dry-run"])
            .run()
            .code(0);
    }
}

#[test]
fn a_closed_stdout_is_a_quiet_success() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let s = Sandbox::new();
    // a pipe whose reader is already gone, as after `| head -0`: every write gets EPIPE
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array we own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: closing the read end we just made and use nowhere else.
    unsafe { libc::close(fds[0]) };
    // SAFETY: the write end is open and owned by nothing else.
    let writer = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    let mut cmd = s.cmd("deploy-node").args(["-b", "hello", "--dry-run"]).cmd;
    cmd.stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
