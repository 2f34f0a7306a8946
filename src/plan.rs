//! The Plan: a deployment resolved and validated from flags and config layers, before anything
//! is spent. Every user mistake (unknown bundle, missing file, bad template, bad `-t`, bad
//! name, no key) is found here, so a mistake never costs a node (an unknown provider name is
//! checked by the caller just before, where providers are built: plans know nothing of
//! providers). Each item says which layer it came from, so a user can see why a value won.

use crate::config::{value_of, Config, LayerFile, Sourced};
use crate::error::{Error, Result};
use crate::file_content::FileContent;
use crate::template::{self, Engine, Vars};
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The default node-name prefix, as the original.
pub const DEFAULT_PREFIX: &str = "deploy-test-";
/// Where scripts land on the node (root login; other logins use sudo to reach it).
pub const REMOTE_SCRIPT_DIR: &str = "/root/deploy";
/// The variables the tool sets for every script (never the user's to set).
pub const BUILTIN_VARS: &[&str] = &[
    "node_name",
    "provider",
    "image",
    "size",
    "location",
    "bundles",
    "node_index",
    "provision_run",
];

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub provider: Option<String>,
    pub image: Option<String>,
    pub size: Option<String>,
    pub location: Option<String>,
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub bundles: Vec<String>,
    /// Raw `-t KEY=VALUE` arguments, in order.
    pub subvars: Vec<String>,
    /// `PROVISION_VAR_<NAME>` environment variables (name, value): above `[vars]`, below `-t`.
    pub env: Vec<(String, String)>,
    /// Raw `-T KEY=VALUE` secret variables (VALUE may be `env:NAME` or `file:PATH`).
    pub secrets: Vec<String>,
    pub ssh_user: Option<String>,
    /// The node's 1-based index in a `--count` pool (1 for a single node): `node_index`.
    pub index: usize,
    /// Which provisioning of the node this is, 1 for its first deploy (0 counts as 1):
    /// `provision_run`.
    pub run: u32,
    /// `Some(reason)`: `bundles` is the whole bundle list (a re-provision: the node's recorded
    /// bundles, or the ones given with -b), without the config's default bundles.
    pub exact_bundles: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub node_name: String,
    pub provider: Sourced<String>,
    pub image: Option<Sourced<String>>,
    pub size: Option<Sourced<String>>,
    pub location: Option<Sourced<String>>,
    pub ssh_user: Sourced<String>,
    pub bundles: Vec<PlannedBundle>,
    pub pubkeys: Vec<PlannedKey>,
    pub files: Vec<PlannedFile>,
    pub scripts: Vec<PlannedScript>,
    pub vars: BTreeMap<String, Sourced<String>>,
    /// The jump host the node is reached through (OpenSSH's `ProxyJump` value) and where
    /// it was set (`--ssh-jump`, a file's key, or the node's record); `None`: directly. Set
    /// once the run's jump host is resolved (`cli::options`).
    pub jump: Option<Sourced<String>>,
    /// Things the user should hear about (bundle replaced, same target twice) for stderr.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Remove the placed scripts from the node after the run: they hold secret variables and
    /// no layer set `keep_scripts = true`.
    #[serde(skip)]
    pub remove_scripts: bool,
    /// Every secret variable: its name and the layer it came from (`-T` or a config layer),
    /// with its `env:`/`file:` reference when it was given as one — never its value.
    #[serde(skip)]
    pub secrets: Vec<SecretRef>,
}

/// A secret variable of the plan as a record may keep it: no value.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SecretRef {
    pub name: String,
    pub layer: String,
    /// `env:NAME` or `file:PATH` when the value was given as such a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedBundle {
    pub name: String,
    pub layer: String,
    /// Why it is in the plan: `default_bundles`, `bootstrap_bundles` or `-b`.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedKey {
    /// The authorized_keys line.
    pub line: String,
    pub fingerprint: String,
    pub comment: String,
    /// The file it was read from.
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    pub target: String,
    pub source: String,
    pub bundle: String,
    pub layer: String,
    pub size: u64,
    /// In JSON an octal string (`"0644"`), as the text plan and `ls` show it.
    #[serde(serialize_with = "octal_mode")]
    pub mode: u32,
    /// Where its bytes are: read in chunks when sent, checked against `size` and `sha256`.
    #[serde(skip)]
    pub content: FileContent,
    /// The sha256 of its content when planned (lower-case hex).
    #[serde(skip)]
    pub sha256: String,
}

fn octal_mode<S: serde::Serializer>(mode: &u32, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedScript {
    pub name: String,
    /// Its file name under [`REMOTE_SCRIPT_DIR`]: numbered, so run order is also name order.
    pub remote_name: String,
    pub bundle: String,
    pub layer: String,
    pub source: String,
    pub template: Option<Engine>,
    /// Later bundles that asked for the same script: it runs once, here (the original's rule).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_in: Vec<String>,
    /// The script as it will run (lossy UTF-8 for display; `content` is what is sent).
    pub rendered: String,
    #[serde(skip)]
    pub content: Vec<u8>,
}

impl Plan {
    /// Builds and validates the plan. Reads the filesystem (config layers, `~/.ssh`) but never
    /// the network.
    pub fn build(cfg: &Config, req: &Request) -> Result<Plan> {
        let mut warnings = cfg.warnings.clone();
        let provider = chosen_provider(cfg, req);
        let image = pick(&req.image, &cfg.image, "-i");
        let size = pick(&req.size, &cfg.size, "-s");
        let location = pick(&req.location, &cfg.location, "-l");
        let ssh_user = pick(&req.ssh_user, &cfg.ssh_user, "--ssh-user").unwrap_or(Sourced {
            value: "root".into(),
            layer: "built-in default".into(),
        });
        let node_name = node_name(cfg, req)?;
        let destroyable = cfg.destroyable_prefixes();
        // static hosts are only forgotten by destroy-node: the guard does not apply to them
        if req.name.is_some()
            && provider.value != "static"
            && !destroyable
                .iter()
                .any(|p| node_name.starts_with(p.as_str()))
        {
            warnings.push(format!(
                "node name '{node_name}' is outside destroyable_prefixes ({}): destroying it will need destroy-node --force",
                destroyable.join(", ")
            ));
        }
        let bundles = match &req.exact_bundles {
            Some(reason) => exact_bundles(cfg, &req.bundles, reason)?,
            None => select_bundles(cfg, image.as_ref().map(|s| s.value.as_str()), &req.bundles)?,
        };
        let pubkeys = collect_pubkeys(cfg)?;

        let mut vars: BTreeMap<String, Sourced<String>> = BTreeMap::new();
        for (k, v) in &cfg.vars {
            if BUILTIN_VARS.contains(&k.as_str()) {
                return Err(Error::config(format!(
                    "{}: [vars] {k}: '{k}' is a built-in variable and cannot be set",
                    v.layer
                )));
            }
            vars.insert(k.clone(), v.clone());
        }
        let mut typed = cfg.typed_vars.clone();
        for (env_name, value) in &req.env {
            let k = crate::vars::env_target(env_name, vars.keys().chain(cfg.required_vars.keys()));
            if BUILTIN_VARS.contains(&k.as_str()) {
                return Err(Error::usage(format!(
                    "{env_name}: '{k}' is a built-in variable and cannot be set"
                )));
            }
            typed.remove(&k);
            vars.insert(
                k,
                Sourced {
                    value: value.clone(),
                    layer: format!("env {env_name}"),
                },
            );
        }
        let mut secrets: Vec<(String, Sourced<String>)> = cfg
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for kv in &req.secrets {
            let (k, v) = parse_subvar(kv).map_err(|_| {
                Error::usage(format!(
                    "-T {}: expected KEY=VALUE with KEY a variable name other than a built-in",
                    kv.split_once('=').map(|(k, _)| k).unwrap_or("")
                ))
            })?;
            secrets.push((
                k,
                Sourced {
                    value: v,
                    layer: "-T".into(),
                },
            ));
        }
        let mut secret_names = std::collections::BTreeSet::new();
        let mut secret_refs: Vec<SecretRef> = Vec::new();
        for (k, raw) in secrets {
            if BUILTIN_VARS.contains(&k.as_str()) {
                return Err(Error::config(format!(
                    "{}: [secrets] {k}: '{k}' is a built-in variable and cannot be set",
                    raw.layer
                )));
            }
            secret_names.insert(k.clone());
            secret_refs.retain(|r| r.name != k);
            secret_refs.push(SecretRef {
                name: k.clone(),
                layer: raw.layer.clone(),
                reference: (raw.value.starts_with("env:") || raw.value.starts_with("file:"))
                    .then(|| raw.value.clone()),
            });
            if let Some(env) = vars.get(&k).filter(|v| v.layer.starts_with("env ")) {
                // the environment overrides a layer's secret, and stays secret
                if raw.layer != "-T" {
                    hideable(&k, &env.layer, &env.value)?;
                    crate::output::user_secret(&env.value);
                    continue;
                }
            }
            let value = crate::vars::secret_value(&k, &raw)?;
            hideable(&k, &raw.layer, &value)?;
            crate::output::user_secret(&value);
            typed.remove(&k);
            vars.insert(
                k,
                Sourced {
                    value,
                    layer: raw.layer,
                },
            );
        }
        for kv in &req.subvars {
            let (k, v) = parse_subvar(kv)?;
            typed.remove(&k);
            vars.insert(
                k,
                Sourced {
                    value: v,
                    layer: "-t".into(),
                },
            );
        }
        let builtin = |v: &str| Sourced {
            value: v.to_string(),
            layer: "built-in".into(),
        };
        let bundle_names: Vec<String> = bundles.iter().map(|b| b.name.clone()).collect();
        vars.insert("node_name".into(), builtin(&node_name));
        vars.insert("provider".into(), builtin(&provider.value));
        vars.insert("image".into(), builtin(&value_of(&image)));
        vars.insert("size".into(), builtin(&value_of(&size)));
        vars.insert("location".into(), builtin(&value_of(&location)));
        vars.insert("bundles".into(), builtin(&bundle_names.join(" ")));
        vars.insert("node_index".into(), builtin(&req.index.max(1).to_string()));
        vars.insert("provision_run".into(), builtin(&req.run.max(1).to_string()));
        crate::vars::check_required(&cfg.required_vars, &vars)?;
        crate::vars::resolve_references(&mut vars)?;
        // template-string scripts replace bare `$name` only for what the user defined (and
        // node_name, as the original); the built-in layer's scripts also see its own [vars]
        let user_defined = |v: &Sourced<String>| v.layer != "defaults" && v.layer != "built-in";
        let mut bare: std::collections::BTreeSet<String> = vars
            .iter()
            .filter(|(_, v)| user_defined(v))
            .map(|(k, _)| k.clone())
            .collect();
        bare.insert("node_name".into());
        let user_vars = Vars {
            strings: vars
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            bundles: bundle_names,
            bare: bare.clone(),
            typed,
        };
        let mut builtin_vars = user_vars.clone();
        builtin_vars.bare.extend(
            vars.iter()
                .filter(|(_, v)| v.layer == "defaults")
                .map(|(k, _)| k.clone()),
        );

        let mut files: Vec<PlannedFile> = Vec::new();
        let mut scripts: Vec<PlannedScript> = Vec::new();
        for b in &bundles {
            let bundle = &cfg.bundles[&b.name];
            let layer = cfg.layer_of(bundle);
            for (target, source) in bundle.def.files.pairs() {
                check_target(&b.name, &target)?;
                check_source(&b.name, &source)?;
                let f = layer.file_ref(&source)?.ok_or_else(|| {
                    Error::config(format!(
                        "bundle '{}': file '{source}' not found in {}",
                        b.name,
                        dir_of(&layer.label(), "files")
                    ))
                })?;
                if let Some(pos) = files.iter().position(|x| x.target == target) {
                    let prev = files.remove(pos);
                    warnings.push(format!(
                        "{target}: written by bundle '{}' and bundle '{}'; '{}' wins",
                        prev.bundle, b.name, b.name
                    ));
                }
                files.push(PlannedFile {
                    target,
                    source: f.display.clone(),
                    bundle: b.name.clone(),
                    layer: b.layer.clone(),
                    size: f.size,
                    mode: f.mode,
                    content: f.content,
                    sha256: f.sha256,
                });
            }
            let tvars = if b.layer == "defaults" {
                &builtin_vars
            } else {
                &user_vars
            };
            for name in &bundle.def.scripts {
                check_source(&b.name, name)?;
                let f = layer.read("scripts", name, 0o755)?.ok_or_else(|| {
                    Error::config(format!(
                        "bundle '{}': script '{name}' not found in {}",
                        b.name,
                        dir_of(&layer.label(), "scripts")
                    ))
                })?;
                // the original keyed scripts by their path on the node: a name asked for again
                // runs once, at its first position (a different source there wins, as there)
                let again = scripts.iter().position(|s| s.name == *name);
                let remote_name = match again {
                    Some(pos) => scripts[pos].remote_name.clone(),
                    None => format!("{:02}-{}", scripts.len() + 1, unnumbered(basename(name))),
                };
                let mut script = render_script(&b.name, &b.layer, name, remote_name, f, tvars)?;
                match again {
                    None => scripts.push(script),
                    Some(pos) => {
                        let first = &mut scripts[pos];
                        if first.source != script.source || first.content != script.content {
                            warnings.push(format!(
                                "script '{name}' of bundle '{}' ({}) replaces the one of bundle '{}' ({}) at its first position, as the original did",
                                b.name, script.source, first.bundle, first.source
                            ));
                            script.also_in = std::mem::take(&mut first.also_in);
                            script.also_in.push(first.bundle.clone());
                            script.bundle = first.bundle.clone();
                            *first = script;
                        } else {
                            first.also_in.push(b.name.clone());
                        }
                    }
                }
            }
        }

        // secrets reach the scripts (`content`) but nothing shown: the plan's values and texts
        for k in &secret_names {
            if let Some(v) = vars.get_mut(k) {
                v.value = "***".into();
            }
        }
        if !secret_names.is_empty() {
            for sc in &mut scripts {
                sc.rendered = crate::output::redact(&sc.rendered);
            }
        }
        let remove_scripts = !secret_names.is_empty() && cfg.keep_scripts != Some(true);
        Ok(Plan {
            remove_scripts,
            secrets: secret_refs,
            node_name,
            provider,
            image,
            size,
            location,
            ssh_user,
            bundles,
            pubkeys,
            files,
            scripts,
            vars,
            jump: None,
            warnings,
        })
    }
}

/// The provider a request names: `-p`, else the config's `provider`, else `local`. Plans know
/// nothing of providers: the caller checks the name where providers are built
/// (`provider::check_name`) before building plans.
pub fn chosen_provider(cfg: &Config, req: &Request) -> Sourced<String> {
    pick(&req.provider, &cfg.provider, "-p").unwrap_or(Sourced {
        value: "local".into(),
        layer: "built-in default".into(),
    })
}

fn pick(
    flag: &Option<String>,
    cfg: &Option<Sourced<String>>,
    flag_name: &str,
) -> Option<Sourced<String>> {
    match flag {
        Some(v) => Some(Sourced {
            value: v.clone(),
            layer: flag_name.to_string(),
        }),
        None => cfg.clone(),
    }
}

fn dir_of(layer_label: &str, sub: &str) -> String {
    if layer_label == "defaults" {
        format!("defaults/{sub}/ (built in)")
    } else {
        format!("{}/", Path::new(layer_label).join(sub).display())
    }
}

fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// A script name without its own run-order number (`01-prepare.sh` → `prepare.sh`), so the
/// plan's number is not added twice (`01-01-prepare.sh`).
fn unnumbered(name: &str) -> &str {
    match name.split_once('-') {
        Some((num, rest))
            if !num.is_empty() && !rest.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest
        }
        _ => name,
    }
}

fn render_script(
    bundle: &str,
    layer: &str,
    name: &str,
    remote_name: String,
    f: LayerFile,
    vars: &Vars,
) -> Result<PlannedScript> {
    let text = String::from_utf8_lossy(&f.bytes).into_owned();
    let at = |e: template::TemplateError| {
        let line = e.line.map(|l| format!(":{l}")).unwrap_or_default()
            + &e.column.map(|c| format!(":{c}")).unwrap_or_default();
        Error::config(format!(
            "{}{line}: {} (bundle '{bundle}')",
            f.display, e.message
        ))
    };
    let engine = template::detect(&text).map_err(at)?;
    let (rendered, content) = match engine {
        None => (text, f.bytes.clone()),
        Some(engine) => {
            if std::str::from_utf8(&f.bytes).is_err() {
                return Err(Error::config(format!(
                    "{}: a template must be UTF-8 text",
                    f.display
                )));
            }
            let out = template::render(engine, &text, vars).map_err(at)?;
            (out.clone(), out.into_bytes())
        }
    };
    Ok(PlannedScript {
        name: name.to_string(),
        remote_name,
        bundle: bundle.to_string(),
        layer: layer.to_string(),
        source: f.display,
        template: engine,
        also_in: Vec::new(),
        rendered,
        content,
    })
}

/// `-t KEY=VALUE`: the key must be a variable name; the value may contain `=`.
pub fn parse_subvar(kv: &str) -> Result<(String, String)> {
    let Some((k, v)) = kv.split_once('=') else {
        return Err(Error::usage(format!("-t {kv}: expected KEY=VALUE")));
    };
    let valid = !k.is_empty()
        && k.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !k.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(Error::usage(format!(
            "-t {kv}: '{k}' is not a variable name (letters, digits, _)"
        )));
    }
    if BUILTIN_VARS.contains(&k) {
        return Err(Error::usage(format!(
            "-t {kv}: '{k}' is a built-in variable and cannot be set"
        )));
    }
    Ok((k.to_string(), v.to_string()))
}

/// The original's bundle selection: `default_bundles` for images in `bootstrapped_images`,
/// otherwise `bootstrap_bundles` (falling back to `default_bundles` when no layer sets
/// `bootstrap_bundles`), then every `-b` in order; duplicates dropped, first kept.
pub fn select_bundles(
    cfg: &Config,
    image: Option<&str>,
    requested: &[String],
) -> Result<Vec<PlannedBundle>> {
    let bootstrapped = image.is_some_and(|i| cfg.bootstrapped_images.iter().any(|b| b == i));
    let (base, reason) = if bootstrapped || cfg.bootstrap_bundles.is_empty() {
        (&cfg.default_bundles, "default_bundles")
    } else {
        (&cfg.bootstrap_bundles, "bootstrap_bundles")
    };
    let mut out: Vec<PlannedBundle> = Vec::new();
    let wanted = base
        .iter()
        .map(|n| (n, reason))
        .chain(requested.iter().map(|n| (n, "-b")));
    for (name, reason) in wanted {
        add_bundle(cfg, &mut out, name, reason)?;
    }
    Ok(out)
}

/// Adds bundle `name` to `out` unless it is there already; an unknown name is a config error
/// saying where it came from.
fn add_bundle(
    cfg: &Config,
    out: &mut Vec<PlannedBundle>,
    name: &String,
    reason: &str,
) -> Result<()> {
    if out.iter().any(|b| &b.name == name) {
        return Ok(());
    }
    let Some(bundle) = cfg.bundles.get(name) else {
        let known: Vec<&str> = cfg.bundles.keys().map(String::as_str).collect();
        return Err(Error::config(format!(
            "unknown bundle '{name}' (from {reason}; known: {})",
            known.join(", ")
        )));
    };
    out.push(PlannedBundle {
        name: name.clone(),
        layer: cfg.layer_of(bundle).label(),
        reason: reason.to_string(),
    });
    Ok(())
}

/// A re-provision's bundles: exactly `names`, in order (duplicates dropped), each known.
fn exact_bundles(cfg: &Config, names: &[String], reason: &str) -> Result<Vec<PlannedBundle>> {
    let mut out: Vec<PlannedBundle> = Vec::new();
    for name in names {
        add_bundle(cfg, &mut out, name, reason)?;
    }
    Ok(out)
}

fn check_target(bundle: &str, target: &str) -> Result<()> {
    let p = Path::new(target);
    if !p.is_absolute() {
        return Err(Error::config(format!(
            "bundle '{bundle}': file target '{target}' is not an absolute path"
        )));
    }
    if target.ends_with('/') {
        return Err(Error::config(format!(
            "bundle '{bundle}': file target '{target}' ends in '/': give the file's whole path \
             (e.g. '{target}NAME')"
        )));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(Error::config(format!(
            "bundle '{bundle}': file target '{target}' must be a file path without '..'"
        )));
    }
    Ok(())
}

fn check_source(bundle: &str, source: &str) -> Result<()> {
    let p = Path::new(source);
    if source.is_empty()
        || p.is_absolute()
        || !p.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(Error::config(format!(
            "bundle '{bundle}': '{source}' must be a relative name inside the layer (no '..')"
        )));
    }
    Ok(())
}

/// `-n NAME`, else prefix + 6 random lowercase letters/digits; a valid DNS label either way.
fn node_name(cfg: &Config, req: &Request) -> Result<String> {
    let name = match &req.name {
        Some(n) => n.clone(),
        None => {
            let prefix = req
                .prefix
                .clone()
                .or_else(|| cfg.name_prefix.as_ref().map(|s| s.value.clone()))
                .unwrap_or_else(|| DEFAULT_PREFIX.to_string());
            format!("{prefix}{}", random_suffix())
        }
    };
    check_dns_label(&name)?;
    Ok(name)
}

pub fn random_suffix() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..6)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// Node names are DNS labels: 1–63 letters, digits and hyphens, not starting or ending with one.
pub fn check_dns_label(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "node name '{name}' is not a valid DNS label (1-63 letters, digits, '-'; no leading or trailing '-')"
        )))
    }
}

/// Every key in every layer's `pubkeys/`, then the user's own key; duplicates dropped.
fn collect_pubkeys(cfg: &Config) -> Result<Vec<PlannedKey>> {
    let mut files: Vec<LayerFile> = Vec::new();
    for layer in &cfg.layers {
        files.extend(layer.pubkey_files()?);
    }
    if let Some(own) = own_public_key() {
        let bytes =
            std::fs::read(&own).map_err(|e| Error::config(format!("{}: {e}", own.display())))?;
        files.push(LayerFile {
            display: own.display().to_string(),
            bytes,
            mode: 0o644,
        });
    }
    for (i, k) in cfg.pubkeys.iter().enumerate() {
        files.push(LayerFile {
            display: format!("{} (pubkeys[{i}])", k.layer),
            bytes: k.value.clone().into_bytes(),
            mode: 0o644,
        });
    }
    let mut keys: Vec<PlannedKey> = Vec::new();
    for f in files {
        let text = String::from_utf8_lossy(&f.bytes);
        if text.contains("PRIVATE KEY-----") {
            return Err(Error::config(format!(
                "{}: this is a private key; put only public keys (.pub) in pubkeys/, and move \
                 this file out of the config layer",
                f.display
            )));
        }
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry: ssh_key::authorized_keys::Entry = line.parse().map_err(|e| {
                Error::config(format!(
                    "{}:{}: not an OpenSSH public key ({e})",
                    f.display,
                    i + 1
                ))
            })?;
            let fingerprint = entry
                .public_key()
                .fingerprint(ssh_key::HashAlg::Sha256)
                .to_string();
            if keys.iter().any(|k| k.fingerprint == fingerprint) {
                continue;
            }
            keys.push(PlannedKey {
                line: line.to_string(),
                fingerprint,
                comment: entry.public_key().comment().to_string(),
                source: f.display.clone(),
            });
        }
    }
    if keys.is_empty() {
        return Err(Error::config(
            "no public key for the node: put one in a layer's pubkeys/ or create ~/.ssh/id_ed25519.pub (ssh-keygen -t ed25519)",
        ));
    }
    Ok(keys)
}

/// `~/.ssh/id_ed25519.pub`, else `id_ecdsa.pub`, else `id_rsa.pub`.
pub fn own_public_key() -> Option<PathBuf> {
    let ssh = dirs::home_dir()?.join(".ssh");
    ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
        .iter()
        .map(|n| ssh.join(n))
        .find(|p| p.is_file())
}

/// A secret variable's value must be long enough to hide in output (an empty one hides nothing
/// and is allowed): `Err` names the variable and where it was set.
fn hideable(name: &str, layer: &str, value: &str) -> Result<()> {
    let n = value.trim().chars().count();
    if n == 0 || n >= crate::output::MIN_USER_SECRET {
        return Ok(());
    }
    Err(Error::config(format!(
        "{layer}: secret {name} is {n} character(s) long: too short to hide in output (every \
         occurrence of it would be hidden); give it at least {} characters",
        crate::output::MIN_USER_SECRET
    )))
}
