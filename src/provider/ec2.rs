//! AWS EC2 driver (Query API, XML answers, SigV4): instances created by RunInstances with a
//! ClientToken (a retried create never makes two), tags marking them as ours (`Name`,
//! `provision`, `provision-created`), cloud-init user-data that pins an ed25519 host key, and
//! IMDSv2 required. Everything about EC2 is here: signing, error codes, NextToken paging,
//! throttling codes, the state table and the typed XML structs.
//!
//! Credentials and region: see [`creds`]. Endpoint: `PROVISION_EC2_URL`, then config
//! `api_url`, then `https://ec2.REGION.amazonaws.com`. `-l` is a region or an availability zone.
//! Config `regions` widens `list` (so list-nodes and destroy-node's `--expired`, `--label` and
//! `--prefix`) to every region named there besides the current one.

pub mod creds;

use super::cloud::{cloud_builders, CloudCore, DriverInfo};
use super::cloudinit::{self, HostKey};
use super::http::{self, Auth, Body, Candidate, CredentialSource, ErrorFields, Hooks};
use super::registry::Registration;
use super::{map_state, Credentials, Destroyed, Node, NodeSpec, NodeState, Provider};
use super::{Catalog, Prepared, SshEndpoint, TAG_CREATED, TAG_MANAGED};
use crate::error::{Error, Result};
use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use base64::Engine;
use creds::{AwsKeys, Profile};
use reqwest::blocking::Request;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

pub const NAME: &str = "ec2";
pub const URL_ENV: &str = "PROVISION_EC2_URL";
/// The Query API version every request names.
const VERSION: &str = "2016-11-15";
/// The per-attempt create id the deploy puts in a spec's tags: our ClientToken when present.
const TAG_CREATE_ID: &str = "provision-create-id";
/// Image owners searched by name when config sets none: the account's own, Amazon, Canonical
/// (Ubuntu), Debian, Red Hat, SUSE... the usual distributions.
const DEFAULT_OWNERS: &[&str] = &[
    "self",
    "amazon",
    "099720109477",
    "136693071363",
    "309956199498",
    "013907871322",
];

/// `instanceState.name` → [`NodeState`].
pub const STATES: &[(&str, NodeState)] = &[
    ("pending", NodeState::Pending),
    ("running", NodeState::Running),
    ("stopping", NodeState::Stopped),
    ("stopped", NodeState::Stopped),
    ("shutting-down", NodeState::Terminated),
    ("terminated", NodeState::Terminated),
];

/// This driver's registry entry.
pub const DRIVER: Registration = Registration {
    name: NAME,
    help: "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN], AWS_PROFILE, or -u/-k;\n\
           region: -l, AWS_REGION, AWS_DEFAULT_REGION, config `region`;\n\
           list-nodes and destroy-node --expired/--label/--prefix: also config `regions`",
    env: &[URL_ENV],
    declarable: false,
    build: build_driver,
};

fn build_driver(table: &toml::Table, creds: &Credentials) -> Result<Box<dyn Provider>> {
    Ok(Box::new(Ec2::from_config(
        table,
        creds.userid.as_deref(),
        creds.secret.as_deref(),
    )?))
}

const INFO: DriverInfo = DriverInfo {
    name: NAME,
    // unused: the driver signs with SigV4 ([`CloudCore::with_auth`]), it has no token
    auth: |token| Arc::new(http::Bearer(token)),
    hooks: || Arc::new(Api),
    token_envs: &[],
    url_env: URL_ENV,
    default_url: "",
    default_poll: Duration::from_secs(3),
};

// ---- signing ----

/// SigV4 for the `ec2` service in the current region (`-l` may change it before creating).
struct SigV4 {
    keys: AwsKeys,
    region: RwLock<String>,
}

thread_local! {
    /// The region this thread's calls go to while [`InRegion`] lives: a multi-region list
    /// visits each region without moving the calls other threads make (a pool's creates).
    static THREAD_REGION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Sends this thread's calls to one region until dropped (then where they went before).
struct InRegion(Option<String>);

impl InRegion {
    fn enter(region: &str) -> InRegion {
        InRegion(THREAD_REGION.with(|r| r.borrow_mut().replace(region.to_string())))
    }
}

impl Drop for InRegion {
    fn drop(&mut self) {
        THREAD_REGION.with(|r| *r.borrow_mut() = self.0.take());
    }
}

impl SigV4 {
    fn region(&self) -> String {
        if let Some(r) = THREAD_REGION.with(|r| r.borrow().clone()) {
            return r;
        }
        self.region
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Auth for SigV4 {
    fn authorize(&self, req: &mut Request) -> Result<()> {
        let k = &self.keys;
        let identity = AwsCredentials::new(
            &k.access_key_id,
            &k.secret_access_key,
            k.session_token.clone(),
            None,
            "provision",
        )
        .into();
        let region = self.region();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Error::unexpected(format!("ec2: signing: {e}")))?
            .into();
        let body = req.body().and_then(|b| b.as_bytes()).unwrap_or(&[]);
        let headers: Vec<(&str, &str)> = req
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
            .collect();
        let signable = SignableRequest::new(
            req.method().as_str(),
            req.url().as_str(),
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| Error::unexpected(format!("ec2: signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Error::unexpected(format!("ec2: signing: {e}")))?
            .into_parts();
        let (headers, _) = instructions.into_parts();
        for h in headers {
            let name = HeaderName::from_bytes(h.name().as_bytes());
            let value = HeaderValue::from_str(h.value());
            if let (Ok(n), Ok(v)) = (name, value) {
                req.headers_mut().insert(n, v);
            }
        }
        Ok(())
    }

    fn secrets(&self) -> Vec<String> {
        let mut v = vec![self.keys.secret_access_key.clone()];
        v.extend(self.keys.session_token.clone());
        v
    }

    fn refused(&self) -> String {
        format!(
            "the AWS credentials from {} were refused (wrong secret, or expired session token?)",
            self.keys.source
        )
    }
}

// ---- answers ----

/// EC2's answers: XML errors `<Response><Errors><Error><Code/><Message/>`, throttling as
/// `RequestLimitExceeded` (HTTP 503), the `Action` naming each request.
struct Api;

#[derive(Deserialize)]
struct ErrorResponse {
    #[serde(rename = "Errors")]
    errors: ErrorList,
    #[serde(rename = "RequestID", alias = "RequestId")]
    request_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorList {
    #[serde(rename = "Error", default)]
    error: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// What to tell the user besides EC2's own message, per error code.
const HINTS: &[(&str, &str)] = &[
    (
        "InvalidAMIID.NotFound",
        "no such image in this region (list-nodes -p ec2 --images)",
    ),
    (
        "InvalidAMIID.Malformed",
        "an AMI id looks like ami-0123456789abcdef0",
    ),
    (
        "UnauthorizedOperation",
        "the credentials lack the IAM permission for this call",
    ),
    ("AuthFailure", "the access key id or secret is wrong"),
    (
        "InvalidClientTokenId",
        "the access key id is not known to AWS",
    ),
    ("SignatureDoesNotMatch", "the secret access key is wrong"),
    (
        "InsufficientInstanceCapacity",
        "AWS has no capacity for this -s here: try another size or availability zone (-l)",
    ),
    (
        "InstanceLimitExceeded",
        "the account's instance quota is spent",
    ),
    ("VcpuLimitExceeded", "the account's vCPU quota is spent"),
    (
        "InvalidKeyPair.NotFound",
        "key_name in [providers.ec2] names no key pair of this region",
    ),
    (
        "InvalidSubnetID.NotFound",
        "subnet_id in [providers.ec2] names no subnet of this region",
    ),
    (
        "InvalidGroup.NotFound",
        "security_group_ids in [providers.ec2] name a group not in this region",
    ),
    ("InvalidParameterValue", "a value sent was refused"),
    (
        "OptInRequired",
        "the account is not subscribed to this region or image",
    ),
    (
        "IdempotentParameterMismatch",
        "the create token was used before with other parameters",
    ),
];

const THROTTLE_CODES: &[&str] = &["RequestLimitExceeded", "Throttling", "ThrottlingException"];

impl Hooks for Api {
    fn operation(&self, req: &Request) -> Option<String> {
        let body = req.body()?.as_bytes()?;
        let action = form_urlencoded_action(body)?;
        Some(format!("ec2 {action}"))
    }

    fn error_fields(&self, body: &[u8]) -> ErrorFields {
        let Ok(text) = std::str::from_utf8(body) else {
            return ErrorFields::default();
        };
        let Ok(r) = quick_xml::de::from_str::<ErrorResponse>(text) else {
            return ErrorFields::default();
        };
        let first = r.errors.error.into_iter().next();
        let code = first.as_ref().and_then(|e| e.code.clone());
        let mut message = first.and_then(|e| e.message);
        if let Some(hint) = code
            .as_deref()
            .and_then(|c| HINTS.iter().find(|(k, _)| *k == c))
        {
            message = Some(match message {
                Some(m) => format!("{m} ({})", hint.1),
                None => hint.1.to_string(),
            });
        }
        ErrorFields {
            message,
            code,
            request_id: r.request_id,
        }
    }

    fn throttled(&self, status: u16, fields: &ErrorFields) -> bool {
        status == 429
            || fields
                .code
                .as_deref()
                .is_some_and(|c| THROTTLE_CODES.contains(&c))
    }

    fn rate_limit(&self, _: &reqwest::header::HeaderMap) -> (Option<u64>, Option<u64>) {
        (None, None) // EC2 sends no rate-limit headers: throttling codes say it
    }
}

/// The `Action` of a form body.
fn form_urlencoded_action(body: &[u8]) -> Option<String> {
    // action names are plain letters: no decoding needed
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(String::from)
}

/// `<xSet><item>..</item></xSet>`: EC2's lists.
#[derive(Deserialize, Debug)]
struct Items<T> {
    #[serde(default = "Vec::new")]
    item: Vec<T>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Items { item: Vec::new() }
    }
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct DescribeInstances {
    #[serde(default)]
    reservation_set: Items<Reservation>,
    next_token: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Reservation {
    #[serde(default)]
    instances_set: Items<Instance>,
}

/// RunInstances answers with one reservation's instances.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RunInstances {
    #[serde(default)]
    instances_set: Items<Instance>,
}

/// An instance as EC2 describes it.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    instance_id: String,
    image_id: Option<String>,
    instance_state: InstanceState,
    private_ip_address: Option<String>,
    ip_address: Option<String>,
    /// The primary IPv6 address, when the instance has one (`Ipv6AddressCount`).
    ipv6_address: Option<String>,
    instance_type: Option<String>,
    launch_time: Option<String>,
    placement: Option<Placement>,
    #[serde(default)]
    tag_set: Items<Tag>,
    state_reason: Option<StateReason>,
}

#[derive(Deserialize, Debug)]
struct InstanceState {
    name: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Placement {
    availability_zone: Option<String>,
}

#[derive(Deserialize, Debug)]
struct Tag {
    key: String,
    value: Option<String>,
}

#[derive(Deserialize, Debug)]
struct StateReason {
    code: Option<String>,
    message: Option<String>,
}

/// CreateTags answers `<return>true</return>`.
#[derive(Deserialize, Debug)]
pub struct CreateTags {
    #[serde(rename = "return", default)]
    ret: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TerminateInstances {
    #[serde(default)]
    instances_set: Items<StateChange>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StateChange {
    previous_state: InstanceState,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct DescribeImages {
    #[serde(default)]
    images_set: Items<Image>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Image {
    image_id: String,
    name: Option<String>,
    description: Option<String>,
    creation_date: Option<String>,
    root_device_name: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct DescribeInstanceTypes {
    #[serde(default)]
    instance_type_set: Items<InstanceType>,
    next_token: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct InstanceType {
    instance_type: String,
    v_cpu_info: Option<VCpuInfo>,
    memory_info: Option<MemoryInfo>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct VCpuInfo {
    default_v_cpus: Option<u32>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct MemoryInfo {
    size_in_mi_b: Option<u64>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct DescribeRegions {
    #[serde(default)]
    region_info: Items<RegionInfo>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct RegionInfo {
    region_name: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct DescribeZones {
    #[serde(default)]
    availability_zone_info: Items<ZoneInfo>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct ZoneInfo {
    zone_name: String,
    zone_state: Option<String>,
}

/// Parses an EC2 XML answer.
pub fn parse<T: DeserializeOwned>(xml: &str) -> std::result::Result<T, String> {
    quick_xml::de::from_str(xml).map_err(|e| format!("unreadable XML: {e}"))
}

/// An instance as a [`Node`] (its public IPv4 address, else its IPv6 one).
pub fn instance_to_node(i: &Instance) -> Node {
    instance_node(i, &crate::address::IpOptions::defaults(false))
}

/// [`instance_to_node`] choosing the address as `ip` says.
pub fn instance_node(i: &Instance, ip: &crate::address::IpOptions) -> Node {
    let tags: BTreeMap<String, String> = i
        .tag_set
        .item
        .iter()
        .map(|t| (t.key.clone(), t.value.clone().unwrap_or_default()))
        .collect();
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    Node {
        id: i.instance_id.clone(),
        name: tags.get("Name").cloned().unwrap_or_default(),
        state: map_state(STATES, &i.instance_state.name),
        public_ip: ip.choose(nonempty(&i.ip_address), nonempty(&i.ipv6_address)),
        private_ip: nonempty(&i.private_ip_address),
        image: i.image_id.clone(),
        size: i.instance_type.clone(),
        location: i
            .placement
            .as_ref()
            .and_then(|p| p.availability_zone.clone()),
        created: tags.get(TAG_CREATED).cloned().or(i.launch_time.clone()),
        tags,
        ssh: SshEndpoint::default(),
    }
}

/// Every instance of a DescribeInstances answer.
pub fn instances(d: DescribeInstances) -> Vec<Instance> {
    d.reservation_set
        .item
        .into_iter()
        .flat_map(|r| r.instances_set.item)
        .collect()
}

/// A region (`eu-west-1`) or an availability zone (`eu-west-1a`, a Local Zone
/// `us-east-1-bos-1a`): `(region, zone)`. The region ends at the first number after two words.
pub fn region_of(location: &str) -> (String, Option<String>) {
    let l = location.trim();
    let parts: Vec<&str> = l.split('-').collect();
    let number = parts.iter().enumerate().skip(2).find(|(_, p)| {
        let digits = p.trim_end_matches(|c: char| c.is_ascii_lowercase());
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && p.len() - digits.len() <= 1
    });
    match number {
        Some((i, p)) => {
            let digits = p.trim_end_matches(|c: char| c.is_ascii_lowercase());
            let region = format!("{}-{digits}", parts[..i].join("-"));
            let zone = (region != l).then(|| l.to_string());
            (region, zone)
        }
        None => (l.to_string(), None),
    }
}

/// Whether `name` reads as an AWS region name: lowercase words and a number joined by
/// dashes, the first word two letters (`eu-west-1`, `us-gov-east-1`, `ap-southeast-2`).
pub fn is_region_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let words = &parts[..parts.len().saturating_sub(1)];
    parts.len() >= 3
        && parts[0].len() == 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `[providers.ec2] regions`: the regions `list` covers besides the current one, each checked
/// to be a region name (not a zone, not a typo) before any call; duplicates dropped.
pub fn regions_option(t: &toml::Table) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for r in str_list(t, "regions")?.unwrap_or_default() {
        if !is_region_name(&r) {
            let hint = match region_of(&r) {
                (region, Some(_)) => {
                    format!("'{r}' is an availability zone; its region is {region}")
                }
                _ => format!("'{r}' is not an AWS region name"),
            };
            return Err(Error::config(format!(
                "[providers.{NAME}] regions: {hint} (expected names like \"us-east-1\", \"eu-west-1\")"
            )));
        }
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

// ---- config ----

/// `[providers.ec2]` settings beyond the common ones.
#[derive(Debug, Clone, Default)]
struct Options {
    owners: Vec<String>,
    subnet_id: Option<String>,
    security_group_ids: Vec<String>,
    key_name: Option<String>,
    root_volume_size: Option<i64>,
    spot: bool,
    ssh_user: Option<String>,
    use_private_ip: bool,
    ip: crate::address::IpOptions,
    /// `regions`: listed besides the current region ([`regions_option`]).
    regions: Vec<String>,
}

/// The `ipv4`/`ipv6`/`address_family` options of `[providers.ec2]`. `ipv6 = true` asks for an
/// IPv6 address (`Ipv6AddressCount=1`: the subnet needs an IPv6 range). `ipv4 = false` needs
/// `subnet_id` naming an IPv6-only subnet: EC2 gives an instance IPv4 unless its subnet has
/// none, so without one the instance could not be IPv6-only.
/// Checks `[providers.ec2]`'s address options while planning (before credentials are looked up).
pub fn check_ip_options(t: &toml::Table) -> Result<()> {
    ip_options(t, opt_str(t, "subnet_id")?.as_deref()).map(drop)
}

fn ip_options(t: &toml::Table, subnet: Option<&str>) -> Result<crate::address::IpOptions> {
    let ip = crate::address::IpOptions::from_table(NAME, t, false)?;
    if !ip.ipv4 && subnet.is_none() {
        return Err(Error::config(format!(
            "[providers.{NAME}] ipv4 = false needs subnet_id = \"subnet-...\" naming an IPv6-only \
             subnet: EC2 decides IPv4 by the subnet, so an instance cannot be IPv6-only without one"
        )));
    }
    Ok(ip)
}

fn opt_str(t: &toml::Table, key: &str) -> Result<Option<String>> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::config(format!(
            "[providers.ec2] {key}: expected a string"
        ))),
    }
}

fn str_list(t: &toml::Table, key: &str) -> Result<Option<Vec<String>>> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| {
                Error::config(format!("[providers.ec2] {key}: expected a list of strings"))
            }),
        Some(_) => Err(Error::config(format!(
            "[providers.ec2] {key}: expected a list of strings"
        ))),
    }
}

fn opt_bool(t: &toml::Table, key: &str) -> Result<bool> {
    match t.get(key) {
        None => Ok(false),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(Error::config(format!(
            "[providers.ec2] {key}: expected true or false"
        ))),
    }
}

impl Options {
    fn from_table(t: &toml::Table) -> Result<Options> {
        let root_volume_size = match t.get("root_volume_size") {
            None => None,
            Some(v) => Some(v.as_integer().filter(|n| *n > 0).ok_or_else(|| {
                Error::config("[providers.ec2] root_volume_size: expected a size in GiB")
            })?),
        };
        Ok(Options {
            owners: str_list(t, "image_owners")?
                .unwrap_or_else(|| DEFAULT_OWNERS.iter().map(|s| s.to_string()).collect()),
            subnet_id: opt_str(t, "subnet_id")?,
            security_group_ids: str_list(t, "security_group_ids")?.unwrap_or_default(),
            key_name: opt_str(t, "key_name")?,
            root_volume_size,
            spot: opt_bool(t, "spot")?,
            ssh_user: opt_str(t, "ssh_user")?,
            use_private_ip: opt_bool(t, "use_private_ip")?,
            ip: ip_options(t, opt_str(t, "subnet_id")?.as_deref())?,
            regions: regions_option(t)?,
        })
    }
}

// ---- the driver ----

pub struct Ec2 {
    core: CloudCore,
    signer: Arc<SigV4>,
    opts: Options,
}

impl std::fmt::Debug for Ec2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2").field("core", &self.core).finish()
    }
}

cloud_builders!(Ec2);

impl Ec2 {
    /// From `[providers.ec2]` and `-u/-k` (key id and secret).
    pub fn from_config(
        table: &toml::Table,
        userid: Option<&str>,
        secret: Option<&str>,
    ) -> Result<Self> {
        let profile = Profile::find(table);
        let keys = profile.keys(userid, secret)?;
        let opts = Options::from_table(table)?;
        // no region from -l, the environment, config or profile: the first of `regions`
        let region = profile
            .region(table)?
            .or_else(|| opts.regions.first().cloned())
            .unwrap_or_default();
        // where the keys came from, in the shared type (the full story is in `keys.source`)
        let source = if keys.source.starts_with("flags") {
            CredentialSource::Flag
        } else if keys.source.starts_with("environment") {
            CredentialSource::Env("AWS_ACCESS_KEY_ID")
        } else {
            CredentialSource::Env("AWS_PROFILE")
        };
        let signer = Arc::new(SigV4 {
            keys,
            region: RwLock::new(region),
        });
        Ok(Ec2 {
            core: CloudCore::with_auth(&INFO, table, signer.clone(), source)?,
            signer,
            opts,
        })
    }

    /// Sets the region requests go to and are signed for.
    pub fn with_region(self, region: &str) -> Self {
        self.set_region(region);
        self
    }

    fn region(&self) -> Result<String> {
        let r = self.signer.region();
        if r.is_empty() {
            return Err(Error::config(
                "ec2: no region: pass -l, or set AWS_REGION, or region in [providers.ec2] or the AWS profile",
            ));
        }
        Ok(r)
    }

    fn endpoint(&self) -> Result<String> {
        let region = self.region()?;
        Ok(if self.core.client.base_url().is_empty() {
            format!("https://ec2.{region}.amazonaws.com/")
        } else {
            "/".to_string()
        })
    }

    fn form(action: &str, params: &[(String, String)]) -> Vec<(String, String)> {
        let mut form = vec![
            ("Action".to_string(), action.to_string()),
            ("Version".to_string(), VERSION.to_string()),
        ];
        form.extend(params.iter().cloned());
        form
    }

    fn read<T: DeserializeOwned>(&self, action: &str, reply: &http::Reply) -> Result<T> {
        let text = String::from_utf8_lossy(&reply.body);
        parse(&text).map_err(|e| self.core.client.malformed(format!("ec2 {action}: {e}")))
    }

    /// One read-only Query API call, retried on throttling, 5xx and connection errors.
    fn call<T: DeserializeOwned>(&self, action: &str, params: &[(String, String)]) -> Result<T> {
        let form = Self::form(action, params);
        let reply = self.core.client.send_idempotent(
            Method::POST,
            &self.endpoint()?,
            &[],
            Some(Body::Form(&form)),
        )?;
        self.read(action, &reply)
    }

    /// Instances matching `filters` (name → values), every page.
    fn describe(&self, filters: &[(&str, Vec<String>)], ids: &[&str]) -> Result<Vec<Instance>> {
        let mut params = Vec::new();
        for (i, (name, values)) in filters.iter().enumerate() {
            params.push((format!("Filter.{}.Name", i + 1), name.to_string()));
            for (j, v) in values.iter().enumerate() {
                params.push((format!("Filter.{}.Value.{}", i + 1, j + 1), v.clone()));
            }
        }
        for (i, id) in ids.iter().enumerate() {
            params.push((format!("InstanceId.{}", i + 1), id.to_string()));
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let mut p = params.clone();
            if let Some(t) = &token {
                p.push(("NextToken".into(), t.clone()));
            } else if ids.is_empty() {
                p.push(("MaxResults".into(), "1000".into()));
            }
            let d: DescribeInstances = self.call("DescribeInstances", &p)?;
            token = d.next_token.clone().filter(|t| !t.is_empty());
            out.extend(instances(d));
            if token.is_none() {
                return Ok(out);
            }
        }
        Err(self
            .core
            .client
            .malformed("ec2 DescribeInstances: NextToken never ended"))
    }

    fn node(&self, i: &Instance) -> Node {
        let mut n = instance_node(i, &self.opts.ip);
        if let Some(k) = self.core.host_key(&n.id) {
            n.ssh.host_key = Some(k);
        }
        if let Some(u) = &self.opts.ssh_user {
            n.ssh.user = Some(u.clone());
        }
        if self.opts.use_private_ip {
            // the runner is inside the VPC: the address to reach is the private one
            n.public_ip = n.private_ip.clone();
        }
        if n.state == NodeState::Terminated && n.public_ip.is_none() {
            if let Some(r) = &i.state_reason {
                crate::output::debug(&format!(
                    "{NAME}: {} ended: {} {}",
                    n.id,
                    r.code.as_deref().unwrap_or(""),
                    r.message.as_deref().unwrap_or("")
                ));
            }
        }
        n
    }

    fn images_named(&self, want: &str) -> Result<Vec<Image>> {
        let mut p = vec![
            ("Filter.1.Name".to_string(), "name".to_string()),
            ("Filter.1.Value.1".to_string(), format!("{want}*")),
            ("Filter.2.Name".to_string(), "state".to_string()),
            ("Filter.2.Value.1".to_string(), "available".to_string()),
        ];
        for (i, o) in self.opts.owners.iter().enumerate() {
            p.push((format!("Owner.{}", i + 1), o.clone()));
        }
        let d: DescribeImages = self.call("DescribeImages", &p)?;
        Ok(d.images_set.item)
    }

    fn image_by_id(&self, id: &str) -> Result<Option<Image>> {
        let p = vec![("ImageId.1".to_string(), id.to_string())];
        match self.call::<DescribeImages>("DescribeImages", &p) {
            Ok(d) => Ok(d.images_set.item.into_iter().next()),
            Err(Error::Api { message, .. }) if message.contains("InvalidAMIID") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `-i`: an AMI id (checked), or a name by the exact-or-newest-by-prefix rule.
    fn resolve_image(&self, want: &str) -> Result<String> {
        if want.starts_with("ami-") {
            return match self.image_by_id(want)? {
                Some(i) => Ok(i.image_id),
                None => Err(Error::config(format!(
                    "{NAME}: no image '{want}' in region {} (list them: list-nodes -p ec2 --images)",
                    self.region()?
                ))),
            };
        }
        let images = self.images_named(want)?;
        let candidates: Vec<Candidate> = images
            .iter()
            .filter_map(|i| {
                Some(Candidate {
                    id: i.image_id.clone(),
                    names: vec![i.name.clone()?],
                })
            })
            .collect();
        match http::pick_image(want, &candidates) {
            Some((c, _)) => Ok(c.id.clone()),
            None => Err(http::not_found(
                NAME,
                "image",
                "--images",
                want,
                std::iter::empty(),
            )),
        }
    }

    fn instance_types(&self, only: Option<&str>) -> Result<Vec<InstanceType>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let mut p = Vec::new();
            if let Some(t) = only {
                p.push(("InstanceType.1".to_string(), t.to_string()));
            }
            if let Some(t) = &token {
                p.push(("NextToken".to_string(), t.clone()));
            }
            let d: DescribeInstanceTypes = self.call("DescribeInstanceTypes", &p)?;
            token = d.next_token.clone().filter(|t| !t.is_empty());
            out.extend(d.instance_type_set.item);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// `-s`: an instance type EC2 knows.
    fn check_size(&self, size: &str) -> Result<()> {
        let found = match self.instance_types(Some(size)) {
            Ok(v) => v.iter().any(|t| t.instance_type == size),
            Err(Error::Api { message, .. }) if message.contains("InvalidInstanceType") => false,
            Err(e) => return Err(e),
        };
        if found {
            return Ok(());
        }
        let all = self.instance_types(None)?;
        Err(http::not_found(
            NAME,
            "instance type",
            "--sizes",
            size,
            all.iter().map(|t| t.instance_type.as_str()),
        ))
    }

    fn regions(&self) -> Result<Vec<String>> {
        let d: DescribeRegions = self.call("DescribeRegions", &[])?;
        Ok(d.region_info
            .item
            .into_iter()
            .map(|r| r.region_name)
            .collect())
    }

    fn zones(&self) -> Result<Vec<(String, String)>> {
        let d: DescribeZones = self.call("DescribeAvailabilityZones", &[])?;
        Ok(d.availability_zone_info
            .item
            .into_iter()
            .map(|z| (z.zone_name, z.zone_state.unwrap_or_default()))
            .collect())
    }

    /// `-l`: a region this account can use (asked of the current region, else us-east-1:
    /// every region lists them all), or an availability zone of one. Then requests go there.
    fn check_location(&self, location: &str) -> Result<()> {
        let (region, zone) = region_of(location);
        if self.signer.region().is_empty() {
            self.set_region("us-east-1");
        }
        let regions = self.regions()?;
        if !regions.contains(&region) {
            return Err(http::not_found(
                NAME,
                "region",
                "--locations",
                &region,
                regions.iter().map(String::as_str),
            ));
        }
        self.set_region(&region);
        if let Some(z) = zone {
            let zones = self.zones()?;
            if !zones.iter().any(|(n, _)| *n == z) {
                return Err(http::not_found(
                    NAME,
                    "availability zone",
                    "--locations",
                    &z,
                    zones.iter().map(|(n, _)| n.as_str()),
                ));
            }
        }
        Ok(())
    }

    /// Our instances (every one when `all`) that are not terminated, in the region calls go to.
    fn list_in_region(&self, all: bool) -> Result<Vec<Node>> {
        let live = (
            "instance-state-name",
            ["pending", "running", "stopping", "stopped"]
                .map(String::from)
                .to_vec(),
        );
        let filters = if all {
            vec![live]
        } else {
            vec![live, ("tag-key", vec![TAG_MANAGED.to_string()])]
        };
        Ok(self
            .describe(&filters, &[])?
            .iter()
            .map(|i| self.node(i))
            .collect())
    }

    /// The regions `list` covers: config `regions`, then the current region if not among them.
    fn list_regions(&self) -> Vec<String> {
        let mut v = self.opts.regions.clone();
        let here = self.signer.region();
        if !here.is_empty() && !v.contains(&here) {
            v.push(here);
        }
        v
    }

    fn set_region(&self, region: &str) {
        *self
            .signer
            .region
            .write()
            .unwrap_or_else(|e| e.into_inner()) = region.to_string();
    }

    /// The instance of a create attempt, by its create-id tag.
    fn find_by_token(&self, token: &str) -> Result<Option<Instance>> {
        let filter = format!("tag:{TAG_CREATE_ID}");
        let list = self.describe(&[(filter.as_str(), vec![token.to_string()])], &[])?;
        Ok(list.into_iter().next())
    }

    fn run_params(
        &self,
        spec: &NodeSpec,
        user_data: &str,
        token: &str,
    ) -> Result<Vec<(String, String)>> {
        let (_, zone) = region_of(&spec.location);
        let mut p: Vec<(String, String)> = vec![
            ("ImageId".into(), spec.image.clone()),
            ("InstanceType".into(), spec.size.clone()),
            ("MinCount".into(), "1".into()),
            ("MaxCount".into(), "1".into()),
            ("ClientToken".into(), token.to_string()),
            (
                "UserData".into(),
                base64::engine::general_purpose::STANDARD.encode(user_data),
            ),
            ("MetadataOptions.HttpTokens".into(), "required".into()),
            ("MetadataOptions.HttpEndpoint".into(), "enabled".into()),
            ("TagSpecification.1.ResourceType".into(), "instance".into()),
        ];
        let created = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut tags: Vec<(String, String)> = vec![
            ("Name".into(), spec.name.clone()),
            (TAG_MANAGED.into(), String::new()),
            (TAG_CREATED.into(), created),
            (TAG_CREATE_ID.into(), token.to_string()),
        ];
        for (k, v) in &spec.tags {
            if !tags.iter().any(|(t, _)| t == k) {
                tags.push((k.clone(), super::tags::encode(&super::tags::EC2, k, v)));
            }
        }
        for (i, (k, v)) in tags.iter().enumerate() {
            p.push((format!("TagSpecification.1.Tag.{}.Key", i + 1), k.clone()));
            p.push((format!("TagSpecification.1.Tag.{}.Value", i + 1), v.clone()));
        }
        if let Some(z) = zone {
            p.push(("Placement.AvailabilityZone".into(), z));
        }
        if let Some(s) = &self.opts.subnet_id {
            p.push(("SubnetId".into(), s.clone()));
        }
        if self.opts.ip.ipv6 {
            p.push(("Ipv6AddressCount".into(), "1".into()));
        }
        for (i, g) in self.opts.security_group_ids.iter().enumerate() {
            p.push((format!("SecurityGroupId.{}", i + 1), g.clone()));
        }
        if let Some(k) = &self.opts.key_name {
            p.push(("KeyName".into(), k.clone()));
        }
        if let Some(gb) = self.opts.root_volume_size {
            let device = self
                .image_by_id(&spec.image)?
                .and_then(|i| i.root_device_name)
                .unwrap_or_else(|| "/dev/xvda".into());
            p.push(("BlockDeviceMapping.1.DeviceName".into(), device));
            p.push(("BlockDeviceMapping.1.Ebs.VolumeSize".into(), gb.to_string()));
            p.push((
                "BlockDeviceMapping.1.Ebs.DeleteOnTermination".into(),
                "true".into(),
            ));
        }
        if self.opts.spot {
            p.push(("InstanceMarketOptions.MarketType".into(), "spot".into()));
        }
        Ok(p)
    }
}

/// The ClientToken of a create: the deploy's per-attempt create id when it set one (so a
/// retried attempt finds its instance), else a fresh random token. At most 64 ASCII chars.
fn client_token(spec: &NodeSpec) -> String {
    match spec.tags.get(TAG_CREATE_ID).filter(|v| !v.is_empty()) {
        Some(id) => id
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect(),
        None => {
            use rand::Rng;
            let n: u128 = rand::thread_rng().gen();
            format!("provision-{n:032x}")
        }
    }
}

impl Provider for Ec2 {
    fn name(&self) -> &str {
        NAME
    }

    fn catalog(&self, kind: Catalog) -> Result<Vec<(String, String)>> {
        match kind {
            Catalog::Images => {
                let mut p = Vec::new();
                for (i, o) in self.opts.owners.iter().enumerate() {
                    p.push((format!("Owner.{}", i + 1), o.clone()));
                }
                let d: DescribeImages = self.call("DescribeImages", &p)?;
                let mut v: Vec<(String, String)> = d
                    .images_set
                    .item
                    .into_iter()
                    .map(|i| {
                        let desc = format!(
                            "{} {}",
                            i.image_id,
                            i.description.or(i.creation_date).unwrap_or_default()
                        );
                        (i.name.unwrap_or(i.image_id), desc.trim().to_string())
                    })
                    .collect();
                v.sort_by(|a, b| http::natural_cmp(&a.0, &b.0));
                Ok(v)
            }
            Catalog::Sizes => Ok(self
                .instance_types(None)?
                .into_iter()
                .map(|t| {
                    let cpus = t.v_cpu_info.and_then(|c| c.default_v_cpus).unwrap_or(0);
                    let mem = t.memory_info.and_then(|m| m.size_in_mi_b).unwrap_or(0);
                    (t.instance_type, format!("{cpus} vCPU, {mem} MiB"))
                })
                .collect()),
            Catalog::Locations => {
                let mut v: Vec<(String, String)> = self
                    .regions()?
                    .into_iter()
                    .map(|r| (r, "region".to_string()))
                    .collect();
                v.extend(
                    self.zones()?
                        .into_iter()
                        .map(|(z, s)| (z, format!("availability zone ({s})"))),
                );
                Ok(v)
            }
        }
    }

    fn prepare(&self, image: &str, size: &str, location: &str) -> Result<Prepared> {
        if location.is_empty() {
            self.region()?;
        }
        if image.is_empty() || size.is_empty() {
            return Err(Error::config(
                "ec2: -i (AMI id or name) and -s (instance type) are needed",
            ));
        }
        let location = if location.is_empty() {
            self.region()?
        } else {
            location.to_string()
        };
        self.check_location(&location)?;
        self.check_size(size)?;
        let image = self.resolve_image(image)?;
        Ok(Prepared {
            image,
            size: size.to_string(),
            location,
        })
    }

    fn create(&self, spec: &NodeSpec) -> Result<Node> {
        if !spec.location.is_empty() {
            self.set_region(&region_of(&spec.location).0);
        }
        let host = HostKey::generate()?;
        let user_data = cloudinit::user_data(&spec.public_keys, &host, self.core.user.as_ref());
        self.core.client.add_secret(host.private_openssh(), true);
        self.core.client.add_secret(&user_data, false);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&user_data);
        self.core.client.add_secret(&encoded, false);
        let token = client_token(spec);
        let params = self.run_params(spec, &user_data, &token)?;
        // the ClientToken makes RunInstances idempotent: a re-sent create whose first answer
        // was lost returns the same instance instead of a second one
        // A lost answer is never simply re-sent: the instance is first looked up by its
        // create-id tag (EC2 would also dedupe by ClientToken; EC2-compatible clouds and moto
        // may not), and only re-sent when it does not exist.
        let form = Self::form("RunInstances", &params);
        let lookup = || {
            Ok(self.find_by_token(&token)?.map(|i| RunInstances {
                instances_set: Items { item: vec![i] },
            }))
        };
        let run: RunInstances =
            self.core
                .client
                .create_with(&self.endpoint()?, Body::Form(&form), &lookup, &|r| {
                    self.read("RunInstances", r)
                })?;
        let i = run.instances_set.item.into_iter().next().ok_or_else(|| {
            self.core
                .client
                .malformed("ec2 RunInstances: no instance in the answer")
        })?;
        let mut node = self.node(&i);
        if node.name.is_empty() {
            node.name = spec.name.clone();
        }
        node.tags.entry(TAG_MANAGED.into()).or_default();
        node.ssh.host_key = Some(host.public.clone());
        self.core.remember_host_key(&node.id, &host.public);
        Ok(node)
    }

    /// In the current region, and in each of config `regions` (one DescribeInstances, paged,
    /// per region, from this thread only: other threads' calls stay where they were).
    fn list(&self, all: bool) -> Result<Vec<Node>> {
        if self.opts.regions.is_empty() {
            return self.list_in_region(all);
        }
        let mut nodes = Vec::new();
        for region in self.list_regions() {
            let _in = InRegion::enter(&region);
            nodes.extend(self.list_in_region(all)?.into_iter().map(|mut n| {
                // a node without a zone still shows where it is
                n.location.get_or_insert_with(|| region.clone());
                n
            }));
        }
        Ok(nodes)
    }

    /// The current region only: a deploy's polls read one DescribeInstances, as without
    /// `regions`.
    fn list_here(&self, all: bool) -> Result<Vec<Node>> {
        self.list_in_region(all)
    }

    fn get(&self, id: &str) -> Result<Option<Node>> {
        if !id.starts_with("i-") {
            return Ok(None);
        }
        match self.describe(&[], &[id]) {
            Ok(list) => Ok(list.first().map(|i| self.node(i))),
            Err(Error::Api { message, .. }) if message.contains("InvalidInstanceID") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn destroy(&self, id: &str) -> Result<Destroyed> {
        if !id.starts_with("i-") {
            return Err(Error::usage(format!(
                "{NAME}: '{id}' is not an instance id (i-...)"
            )));
        }
        let p = vec![("InstanceId.1".to_string(), id.to_string())];
        match self.call::<TerminateInstances>("TerminateInstances", &p) {
            Ok(t) => Ok(
                match t
                    .instances_set
                    .item
                    .first()
                    .map(|s| s.previous_state.name.as_str())
                {
                    Some("terminated") | Some("shutting-down") => Destroyed::AlreadyGone,
                    _ => Destroyed::Destroyed,
                },
            ),
            Err(Error::Api { message, .. }) if message.contains("InvalidInstanceID.NotFound") => {
                Ok(Destroyed::AlreadyGone)
            }
            Err(e) => Err(e),
        }
    }

    fn poll_interval(&self) -> Duration {
        self.core.poll
    }

    fn updates_tags(&self) -> bool {
        true
    }

    /// CreateTags: adds the tags, replacing the values of keys the instance already has. With
    /// `regions`, sent to the region of the node's zone (the list may have found it elsewhere).
    fn update_tags(&self, node: &Node, tags: &BTreeMap<String, String>) -> Result<()> {
        let _in = node
            .location
            .as_deref()
            .filter(|_| !self.opts.regions.is_empty())
            .and_then(|l| self.scope_of(l))
            .map(|r| InRegion::enter(&r));
        let mut p = vec![("ResourceId.1".to_string(), node.id.clone())];
        for (i, (k, v)) in tags.iter().enumerate() {
            p.push((format!("Tag.{}.Key", i + 1), k.clone()));
            p.push((
                format!("Tag.{}.Value", i + 1),
                super::tags::encode(&super::tags::EC2, k, v),
            ));
        }
        let r: CreateTags = self.call("CreateTags", &p)?;
        match r.ret.as_deref() {
            Some("false") => Err(self
                .core
                .client
                .api_error(format!("CreateTags on {}: answered false", node.id))),
            _ => Ok(()),
        }
    }

    fn max_tags(&self) -> Option<usize> {
        Some(super::tags::EC2_MAX_TAGS)
    }

    /// The region requests go to (none yet: nothing configured).
    fn scope(&self) -> Option<String> {
        Some(self.signer.region())
    }

    /// The region of a node's availability zone (or of a region).
    fn scope_of(&self, location: &str) -> Option<String> {
        Some(region_of(location).0).filter(|r| !r.is_empty())
    }

    fn enter_scope(&self, scope: &str) {
        self.set_region(scope);
    }

    /// The regions `list` covers.
    fn scopes(&self) -> Vec<String> {
        self.list_regions()
    }

    /// `Name`.
    fn driver_tags(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_zones() {
        assert_eq!(region_of("eu-west-1"), ("eu-west-1".into(), None));
        assert_eq!(
            region_of("eu-west-1b"),
            ("eu-west-1".into(), Some("eu-west-1b".into()))
        );
        assert_eq!(region_of("us-gov-east-1"), ("us-gov-east-1".into(), None));
        assert_eq!(
            region_of("us-gov-east-1a"),
            ("us-gov-east-1".into(), Some("us-gov-east-1a".into()))
        );
        assert_eq!(
            region_of("us-east-1-bos-1a"),
            ("us-east-1".into(), Some("us-east-1-bos-1a".into()))
        );
        assert_eq!(region_of("local"), ("local".into(), None));
    }

    #[test]
    fn region_names_are_checked_before_any_call() {
        for ok in [
            "us-east-1",
            "eu-west-1",
            "ap-southeast-2",
            "us-gov-east-1",
            "cn-north-1",
        ] {
            assert!(is_region_name(ok), "{ok}");
        }
        for bad in [
            "eu-west-1a",
            "euwest1",
            "eu-west",
            "EU-WEST-1",
            "e-west-1",
            "eu--1",
            "",
        ] {
            assert!(!is_region_name(bad), "{bad}");
        }
        let t = |s: &str| s.parse::<toml::Table>().unwrap();
        assert_eq!(
            regions_option(&t(
                "regions = [\"eu-west-1\", \"us-east-1\", \"eu-west-1\"]"
            ))
            .unwrap(),
            ["eu-west-1", "us-east-1"]
        );
        assert!(regions_option(&t("")).unwrap().is_empty());
        let e = regions_option(&t("regions = [\"eu_west_1\"]")).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(
            e.to_string()
                .contains("'eu_west_1' is not an AWS region name"),
            "{e}"
        );
        let e = regions_option(&t("regions = 3")).unwrap_err();
        assert!(e.to_string().contains("list of strings"), "{e}");
    }

    #[test]
    fn error_bodies_and_throttling() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>"#;
        let f = Api.error_fields(body);
        assert_eq!(f.code.as_deref(), Some("RequestLimitExceeded"));
        assert_eq!(f.request_id.as_deref(), Some("r-1"));
        assert!(Api.throttled(503, &f));
        assert!(!Api.throttled(400, &ErrorFields::default()));
        let body = b"<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id '[ami-1]' does not exist</Message></Error></Errors><RequestID>x</RequestID></Response>";
        let f = Api.error_fields(body);
        assert!(f.message.unwrap().contains("--images"));
        assert_eq!(Api.error_fields(b"not xml"), ErrorFields::default());
    }

    #[test]
    fn client_token_from_the_create_id() {
        let mut spec = NodeSpec {
            name: "n".into(),
            image: "ami-1".into(),
            size: "t3.micro".into(),
            location: "us-east-1".into(),
            public_keys: vec![],
            tags: BTreeMap::new(),
        };
        let a = client_token(&spec);
        assert_ne!(a, client_token(&spec));
        spec.tags.insert(TAG_CREATE_ID.into(), "abc-123".into());
        assert_eq!(client_token(&spec), "abc-123");
    }
}

#[cfg(test)]
mod ip_tests {
    use super::*;

    fn table(t: &str) -> toml::Table {
        t.parse().unwrap()
    }

    fn instance(ip: &str) -> Instance {
        let xml = format!(
            "<RunInstancesResponse><instancesSet><item><instanceId>i-1</instanceId>\
             <instanceState><code>16</code><name>running</name></instanceState>{ip}\
             <ipv6Address>2001:db8::7</ipv6Address></item></instancesSet></RunInstancesResponse>"
        );
        let r: RunInstances = parse(&xml).unwrap();
        r.instances_set.item.into_iter().next().unwrap()
    }

    #[test]
    fn an_instance_without_ipv4_is_reached_over_ipv6() {
        let v6only = instance("");
        assert_eq!(
            instance_to_node(&v6only).public_ip.as_deref(),
            Some("2001:db8::7")
        );
        let both = instance("<ipAddress>192.0.2.4</ipAddress>");
        assert_eq!(
            instance_to_node(&both).public_ip.as_deref(),
            Some("192.0.2.4")
        );
        let o = Options::from_table(&table("address_family = \"ipv6\"")).unwrap();
        assert_eq!(
            instance_node(&both, &o.ip).public_ip.as_deref(),
            Some("2001:db8::7")
        );
    }

    #[test]
    fn ipv6_only_needs_an_ipv6_only_subnet() {
        let e = Options::from_table(&table("ipv4 = false")).unwrap_err();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("subnet_id"),
            "{e}"
        );
        let o = Options::from_table(&table("ipv4 = false\nsubnet_id = \"subnet-1\"")).unwrap();
        assert!(!o.ip.ipv4 && o.ip.ipv6);
    }
}
