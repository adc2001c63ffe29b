//! Provider group: start, stop, auction, and the inventory description.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A running provider as it appears in an inventory or heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderDescription {
    /// Provider id, unique in the lattice.
    #[serde(default)]
    pub id: String,
    /// The reference it was started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<String>,
    /// Name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Revision.
    #[serde(default)]
    pub revision: i32,
    /// Annotations given when it was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// How an external provider's process is doing (a Trellis addition; absent for built-ins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ProviderStatus>,
}

/// The state of an external provider's process, in the inventory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStatus {
    /// `starting` (process started, not answering yet), `running`, `restarting` (exited; a
    /// new process follows after a delay).
    pub state: String,
    /// The last health answer; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// The message of the last unhealthy answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Processes restarted since `provider.start`.
    #[serde(default)]
    pub restarts: u32,
    /// How the last process ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

/// Body of `provider.start.{host}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartProviderCommand {
    /// The id the provider runs under.
    pub provider_id: String,
    /// Where to start it from (`wasmcloud+builtin://…`, a path).
    #[serde(default)]
    pub provider_ref: String,
    /// The host addressed.
    #[serde(default)]
    pub host_id: String,
    /// Names of configs the provider reads.
    #[serde(default)]
    pub config: Vec<String>,
    /// Annotations to keep with the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Body of `provider.stop.{host}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopProviderCommand {
    /// The host addressed.
    #[serde(default)]
    pub host_id: String,
    /// The provider to stop.
    #[serde(default, alias = "provider_ref")]
    pub provider_id: String,
}

/// Body of `provider.auction`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderAuctionRequest {
    /// Reference of the provider to place.
    #[serde(default)]
    pub provider_ref: String,
    /// Id it would run under.
    pub provider_id: String,
    /// Labels the host must carry.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
}

/// A host's bid in a provider auction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderAuctionAck {
    /// The bidding host.
    #[serde(default)]
    pub host_id: String,
    /// Reference of the provider.
    #[serde(default)]
    pub provider_ref: String,
    /// Id of the provider.
    #[serde(default)]
    pub provider_id: String,
    /// The constraints it satisfies.
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
}
