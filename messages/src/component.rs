//! Component group: scale, update, auction, and the inventory description.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A running component as it appears in an inventory or heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentDescription {
    /// Component id, unique in the lattice.
    #[serde(default)]
    pub id: String,
    /// The reference it was started from.
    #[serde(default)]
    pub image_ref: String,
    /// Name from the component's metadata, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Annotations given when it was scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Revision from the component's metadata.
    #[serde(default)]
    pub revision: i32,
    /// Maximum concurrent invocations on this host.
    #[serde(default)]
    pub max_instances: u32,
    /// Resource limits.
    #[serde(default)]
    pub limits: Option<HashMap<String, String>>,
}

/// Body of `component.scale.{host}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleComponentCommand {
    /// Where to load the component from (`file://…` or a path).
    #[serde(default)]
    pub component_ref: String,
    /// The id the component runs under.
    pub component_id: String,
    /// Annotations to keep with the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Concurrent invocation limit on this host; `0` stops the component.
    #[serde(default, alias = "max_instances", rename = "count")]
    pub max_instances: u32,
    /// Resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_limits: Option<HashMap<String, String>>,
    /// The host addressed.
    #[serde(default)]
    pub host_id: String,
    /// Names of configs the component reads.
    #[serde(default)]
    pub config: Vec<String>,
    /// Whether a different reference may replace a running one.
    #[serde(default)]
    pub allow_update: bool,
}

/// Body of `component.update.{host}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateComponentCommand {
    /// The running component to update.
    #[serde(default)]
    pub component_id: String,
    /// New annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The host addressed.
    #[serde(default)]
    pub host_id: String,
    /// The reference to switch to.
    #[serde(default)]
    pub new_component_ref: String,
}

/// Body of `component.auction`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentAuctionRequest {
    /// Reference of the component to place.
    #[serde(default)]
    pub component_ref: String,
    /// Id it would run under.
    pub component_id: String,
    /// Labels the host must carry.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
}

/// A host's bid in a component auction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentAuctionAck {
    /// Reference of the component.
    #[serde(default)]
    pub component_ref: String,
    /// Id of the component.
    #[serde(default)]
    pub component_id: String,
    /// The bidding host.
    #[serde(default)]
    pub host_id: String,
    /// The constraints it satisfies.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
}
