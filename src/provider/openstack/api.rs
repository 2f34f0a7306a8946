//! What the OpenStack driver reads from Nova, Glance and Neutron: typed serde structs for the
//! parts of their answers it uses (ids may be numbers in older, Rackspace-era answers).

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
pub(super) struct ServerReply {
    pub(super) server: Server,
}

#[derive(Debug, Deserialize)]
pub(super) struct ServersReply {
    pub(super) servers: Vec<Server>,
    #[serde(default)]
    pub(super) servers_links: Vec<Link>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Link {
    pub(super) rel: String,
    pub(super) href: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct CreatedReply {
    pub(super) server: Created,
}

#[derive(Debug, Deserialize)]
pub(super) struct Created {
    pub(super) id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Server {
    #[serde(deserialize_with = "id_string")]
    pub(super) id: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) addresses: BTreeMap<String, Vec<Address>>,
    #[serde(default)]
    pub(super) metadata: BTreeMap<String, String>,
    /// The image id; `""` for a server booted from a volume.
    #[serde(default, deserialize_with = "image_id")]
    pub(super) image: Option<String>,
    #[serde(default)]
    pub(super) flavor: Option<FlavorRef>,
    #[serde(default)]
    pub(super) created: Option<String>,
    #[serde(default, rename = "OS-EXT-AZ:availability_zone")]
    pub(super) zone: Option<String>,
    #[serde(default)]
    pub(super) fault: Option<Fault>,
}

#[derive(Deserialize)]
pub(super) struct IdRef {
    #[serde(deserialize_with = "id_string")]
    pub(super) id: String,
}

/// An id: a string, or a number in older (Rackspace-era) answers.
pub(super) fn id_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("an id, not {other}"))),
    }
}

pub(super) fn opt_id_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    id_string(d).map(Some)
}

/// `{"id": ...}` → the id; anything else (`""`) → none.
pub(super) fn image_id<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value::<IdRef>(v).ok().map(|r| r.id))
}

#[derive(Debug, Deserialize)]
pub(super) struct FlavorRef {
    #[serde(default, deserialize_with = "opt_id_string")]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) original_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Address {
    pub(super) addr: String,
    #[serde(default)]
    pub(super) version: u8,
    #[serde(default, rename = "OS-EXT-IPS:type")]
    pub(super) kind: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Fault {
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) details: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FlavorsReply {
    pub(super) flavors: Vec<Flavor>,
    #[serde(default)]
    pub(super) flavors_links: Vec<Link>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Flavor {
    #[serde(deserialize_with = "id_string")]
    pub(super) id: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) vcpus: u64,
    #[serde(default)]
    pub(super) ram: u64,
    #[serde(default)]
    pub(super) disk: u64,
}

#[derive(Debug, Deserialize)]
pub(super) struct ImagesReply {
    pub(super) images: Vec<Image>,
    #[serde(default)]
    pub(super) next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Image {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) status: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct NetworksReply {
    pub(super) networks: Vec<Network>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Network {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct ZonesReply {
    #[serde(rename = "availabilityZoneInfo")]
    pub(super) zones: Vec<Zone>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Zone {
    #[serde(rename = "zoneName")]
    pub(super) name: String,
    #[serde(rename = "zoneState")]
    pub(super) state: ZoneState,
}

#[derive(Debug, Deserialize)]
pub(super) struct ZoneState {
    pub(super) available: bool,
}
