//! Issue 21: template variables from the environment (`PROVISION_VAR_<NAME>`), references
//! between variables (`{{ name }}`), required variables, and typed values for tera — each
//! through the real `deploy-node --dry-run`.

use crate::cli_plan::plan_json;
use crate::support::cli::Sandbox;

/// `base` sets defaults and references; `site` overrides some; a tera script shows them.
fn layered(s: &Sandbox) {
    s.write(
        "base/provision.toml",
        "[vars]\ntimezone = \"Europe/Paris\"\nlayer_only = \"base\"\nfrom_env = \"base\"\nfrom_t = \"base\"\n\
         host = \"db.internal\"\nport = 5432\nurl = \"postgres://{{ host }}:{{port}}/{{ name }}\"\nname = \"app\"\n\
         packages = [\"curl\", \"jq\", \"git\"]\nworkers = 4\ndebug = true\n\
         [bundles.app]\nscripts = [\"app.sh\"]\n",
    );
    s.write(
        "base/scripts/app.sh",
        "#!/bin/sh\n# provision-template-type: tera\n{% for p in packages %}install {{ p }}\n{% endfor %}\
         workers {{ workers + 1 }}\n{% if debug %}debug on{% endif %}\nurl {{ url }}\n",
    );
    s.write(
        "site/provision.toml",
        "[vars]\nname = \"{{ node_name }}-db\"\n",
    );
}

#[test]
fn precedence_is_defaults_then_layers_then_env_then_t() {
    let s = Sandbox::new();
    layered(&s);
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            "base",
            "-c",
            "site",
            "-b",
            "app",
            "-n",
            "deploy-test-v1",
        ])
        .args(["-t", "from_t=cli", "--dry-run", "--json"])
        .env("PROVISION_VAR_FROM_ENV", "env")
        .env("PROVISION_VAR_FROM_T", "env")
        .env("PROVISION_VAR_RELEASE", "r7")
        .run()
        .code(0);
    let v = plan_json(&r.stdout);
    let base = s.path().join("base").display().to_string();
    let vars = &v["vars"];
    // a built-in default no layer touches
    assert_eq!(vars["relayhost"]["value"], "");
    assert_eq!(vars["relayhost"]["layer"], "defaults");
    // a built-in default a layer overrides
    assert_eq!(vars["timezone"]["value"], "Europe/Paris");
    assert_eq!(vars["timezone"]["layer"], base);
    assert_eq!(vars["layer_only"]["value"], "base");
    // the environment over the layers, -t over the environment
    assert_eq!(vars["from_env"]["value"], "env");
    assert_eq!(vars["from_env"]["layer"], "env PROVISION_VAR_FROM_ENV");
    assert_eq!(vars["from_t"]["value"], "cli");
    assert_eq!(vars["from_t"]["layer"], "-t");
    // an environment variable no layer defines is a new variable, lower-cased
    assert_eq!(vars["release"]["value"], "r7");
    assert_eq!(vars["release"]["layer"], "env PROVISION_VAR_RELEASE");
    let text = s
        .cmd("deploy-node")
        .args(["-c", "base", "-b", "app", "--dry-run"])
        .env("PROVISION_VAR_FROM_ENV", "env")
        .run()
        .code(0);
    assert!(
        text.stdout.contains("env PROVISION_VAR_FROM_ENV"),
        "{}",
        text.stdout
    );
}

#[test]
fn references_resolve_across_layers_after_t() {
    let s = Sandbox::new();
    layered(&s);
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            "base",
            "-c",
            "site",
            "-b",
            "app",
            "-n",
            "deploy-test-v2",
        ])
        .args(["-t", "host=db.example", "--dry-run", "--json"])
        .run()
        .code(0);
    let v = plan_json(&r.stdout);
    // url (base) refers to host (-t), port (base, a number) and name (site, which refers to
    // the built-in node_name)
    assert_eq!(
        v["vars"]["url"]["value"],
        "postgres://db.example:5432/deploy-test-v2-db"
    );
    let rendered = v["scripts"][0]["rendered"].as_str().unwrap();
    assert!(
        rendered.contains("url postgres://db.example:5432/deploy-test-v2-db"),
        "{rendered}"
    );
}

#[test]
fn a_cycle_and_an_unknown_reference_are_exit_2_naming_the_chain() {
    let s = Sandbox::new();
    s.write(
        "c/provision.toml",
        "[vars]\na = \"x{{ b }}\"\nb = \"{{ a }}y\"\n",
    );
    s.cmd("deploy-node")
        .args(["-c", "c", "-b", "hello", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("a -> b -> a");
    s.write(
        "u/provision.toml",
        "[vars]\nurl = \"https://{{ host }}/\"\nhost = \"{{ hostname }}\"\n",
    );
    s.cmd("deploy-node")
        .args(["-c", "u", "-b", "hello", "--dry-run"])
        .run()
        .code(2)
        .stderr_has("unknown variable 'hostname'")
        .stderr_has("host -> hostname");
    // -t fills the gap: the same layer then plans
    s.cmd("deploy-node")
        .args(["-c", "u", "-b", "hello", "--dry-run", "-t", "hostname=h1"])
        .run()
        .code(0);
}

#[test]
fn missing_required_variables_are_all_listed_before_anything_is_created() {
    let s = Sandbox::new();
    s.write(
        "r/provision.toml",
        "[required_vars]\ndb_password = \"password of the app database\"\nrelease = \"the release to deploy\"\nregion = \"where\"\n\
         [vars]\nregion = \"eu\"\n",
    );
    s.cmd("deploy-node")
        .args(["-c", "r", "-b", "hello", "-n", "deploy-test-req"])
        .run()
        .code(2)
        .stderr_has("db_password: password of the app database")
        .stderr_has("release: the release to deploy")
        .stderr_has("PROVISION_VAR_DB_PASSWORD")
        .stderr_lacks("region");
    assert_eq!(s.cmd("list-nodes").run().code(0).stdout, "");
    // set from the environment and -t: it plans
    s.cmd("deploy-node")
        .args(["-c", "r", "-b", "hello", "--dry-run", "-t", "release=1"])
        .env("PROVISION_VAR_DB_PASSWORD", "pw")
        .run()
        .code(0);
}

#[test]
fn tera_receives_toml_types_and_other_engines_their_string_form() {
    let s = Sandbox::new();
    layered(&s);
    s.write(
        "more/provision.toml",
        "[bundles.fmt]\nscripts = [\"fmt.sh\"]\n",
    );
    s.write(
        "more/scripts/fmt.sh",
        "#!/bin/sh\n# provision-template-type: format-string\necho {packages} {workers} {debug}\n",
    );
    let r = s
        .cmd("deploy-node")
        .args(["-c", "base", "-c", "more", "-b", "app", "-b", "fmt"])
        .args(["--dry-run", "--json"])
        .run()
        .code(0);
    let v = plan_json(&r.stdout);
    let tera = v["scripts"][0]["rendered"].as_str().unwrap();
    assert!(
        tera.contains("install curl\ninstall jq\ninstall git\n"),
        "{tera}"
    );
    assert!(tera.contains("workers 5\n"), "a number: {tera}");
    assert!(tera.contains("debug on"), "a boolean: {tera}");
    let fmt = v["scripts"][1]["rendered"].as_str().unwrap();
    assert!(fmt.contains("echo curl jq git 4 true\n"), "{fmt}");
    assert_eq!(v["vars"]["packages"]["value"], "curl jq git");
}

const SECRET: &str = "S3cretValue-9x";

/// Issue 16 item 4: a secret reaches the script, and neither the dry run (text, JSON), the live
/// output, a template error, the -d file nor the JUnit report shows it.
#[test]
fn a_secret_reaches_scripts_and_appears_nowhere() {
    let s = Sandbox::new();
    s.write(
        "sec/provision.toml",
        "[secrets]\ndb_password = \"env:APP_DB_PW\"\n[bundles.sec]\nscripts = [\"sec.sh\"]\n\
         [bundles.bad]\nscripts = [\"bad.sh\"]\n",
    );
    // the script checks it got the whole value, prints it and fails (so its output is in the
    // JUnit failure too)
    s.write(
        "sec/scripts/sec.sh",
        "#!/bin/sh\n# provision-template-type: tera\n\
         test \"$(printf %s '{{ db_password }}' | wc -c)\" -eq 14 || exit 9\n\
         echo \"password is {{ db_password }} and token {{ token }} and pin {{ pin }}\"\nexit 3\n",
    );
    s.write(
        "sec/scripts/bad.sh",
        "#!/bin/sh\n# provision-template-type: tera\necho {{ db_password + 1 }}\n",
    );
    let tfile = s.write("token.txt", "TokenFromFile-77\n");
    let token = format!("token=file:{}", tfile.display());
    let mut seen = String::new();
    for json in [false, true] {
        let mut args = vec![
            "-c",
            "sec",
            "-b",
            "sec",
            "-T",
            &token,
            "-T",
            "pin=Zq7x",
            "--dry-run",
        ];
        if json {
            args.push("--json");
        }
        let r = s
            .cmd("deploy-node")
            .args(args)
            .env("APP_DB_PW", SECRET)
            .run()
            .code(0)
            .stdout_has("***");
        seen += &r.stdout;
        seen += &r.stderr;
    }
    let r = s
        .cmd("deploy-node")
        .args(["-c", "sec", "-b", "bad", "--dry-run"])
        .env("APP_DB_PW", SECRET)
        .run()
        .code(2)
        .stderr_has("bad.sh");
    seen += &r.stderr;
    let d = s.path().join("d.json");
    let junit = s.path().join("junit.xml");
    let r = s
        .cmd("deploy-node")
        .args([
            "-c",
            "sec",
            "-b",
            "sec",
            "-T",
            &token,
            "-T",
            "pin=Zq7x",
            "-n",
            "deploy-test-sec1",
        ])
        .args(["-d", &d.display().to_string()])
        .args(["--junit", &junit.display().to_string()])
        .env("APP_DB_PW", SECRET)
        .run();
    assert_ne!(r.code, 0, "{}", r.stderr);
    seen += &r.stdout;
    seen += &r.stderr;
    let junit_text = std::fs::read_to_string(&junit).unwrap();
    assert!(
        junit_text.contains(
            "password is &lt;redacted&gt; and token &lt;redacted&gt; and pin &lt;redacted&gt;"
        ) || junit_text.contains("password is <redacted> and token <redacted> and pin <redacted>"),
        "the script got the whole secret and printed it, redacted: {junit_text}"
    );
    seen += &junit_text;
    seen += &std::fs::read_to_string(&d).unwrap();
    s.cmd("destroy-node")
        .args(["--force", "deploy-test-sec1"])
        .run()
        .code(0);
    assert!(seen.contains("redacted"), "{seen}");
    // a 4-character secret is hidden too (the user said it is one)
    for secret in [SECRET, "TokenFromFile-77", "Zq7x"] {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
    // a shorter one cannot be hidden without hiding every such run of characters: refused
    // before anything is made, naming it
    s.cmd("deploy-node")
        .args([
            "-c",
            "sec",
            "-b",
            "sec",
            "-T",
            "pin=ab",
            "-n",
            "deploy-test-sec2",
        ])
        .env("APP_DB_PW", SECRET)
        .run()
        .code(2)
        .one_line_error()
        .stderr_has("secret pin is 2 character(s) long");
}

/// `--interactive` on a terminal (a real pty from `script`) asks for each missing required
/// variable; what is typed for a `secret = true` one is not echoed, reaches the script, and is
/// printed nowhere. The answers are typed only once their prompt is on screen, so an echo
/// would show.
#[test]
fn interactive_asks_for_missing_required_variables_hiding_secrets() {
    use std::io::{Read, Write};
    let s = Sandbox::new();
    s.write(
        "site/provision.toml",
        "[required_vars]\nregion = \"the region\"\n\
         db_password = { description = \"password of the app database\", secret = true }\n\
         [bundles.show]\nscripts = [\"show.sh\"]\n",
    );
    s.write(
        "site/scripts/show.sh",
        "#!/bin/sh\n# provision-template-type: format-string\n\
         echo \"region={region} pw-length=$(printf %s '{db_password}' | wc -c)\"\n",
    );
    let mut tty = s
        .cmd("deploy-node")
        .args([
            "-c",
            "site",
            "-b",
            "show",
            "-n",
            "deploy-test-ask",
            "--interactive",
        ])
        .in_terminal();
    let mut child = tty
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = String::new();
    let wait_for = |what: &str, screen: &mut String| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !screen.contains(what) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "never saw {what:?} in {screen}");
            if let Ok(chunk) = rx.recv_timeout(left) {
                screen.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    // asked in name order
    wait_for("db_password (password of the app database): ", &mut screen);
    stdin.write_all(b"hunter2hunter2\n").unwrap();
    wait_for("region (the region): ", &mut screen);
    stdin.write_all(b"eu-west\n").unwrap();
    wait_for("deploy-test-ask 127.", &mut screen);
    drop(stdin);
    let status = child.wait().unwrap();
    while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_secs(2)) {
        screen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains("eu-west"),
        "the plain answer is echoed: {screen}"
    );
    assert!(
        screen.contains("region=eu-west pw-length=14"),
        "the script got both: {screen}"
    );
    assert!(
        !screen.contains("hunter2hunter2"),
        "the secret showed: {screen}"
    );
    s.cmd("destroy-node")
        .args(["deploy-test-ask"])
        .run()
        .code(0);
}
