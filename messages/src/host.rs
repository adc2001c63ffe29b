//! Host group: ping replies, inventory, labels, stop.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::component::ComponentDescription;
use crate::provider::ProviderDescription;

/// Label keys under this prefix are set by the host and may not be changed by users.
pub const RESERVED_LABEL_PREFIX: &str = "hostcore.";

/// A host's answer to `host.ping`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// The host id (an nkey public key starting with `N`).
    #[serde(default)]
    pub id: String,
    /// A human-friendly name.
    #[serde(default)]
    pub friendly_name: String,
    /// Labels, including the automatic `hostcore.*` ones.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The lattice this host belongs to.
    #[serde(default)]
    pub lattice: String,
    /// Seconds since the host started.
    #[serde(default)]
    pub uptime_seconds: u64,
    /// Uptime in words, e.g. `1h 2m 3s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_human: Option<String>,
    /// Host software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The NATS server the control connection uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctl_host: Option<String>,
    /// The NATS server the RPC connection uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_host: Option<String>,
    /// JetStream domain, if one is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub js_domain: Option<String>,
}

/// A host's answer to `host.get.{id}`, and the body of its heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInventory {
    /// Running components.
    #[serde(default, alias = "actors")]
    pub components: Vec<ComponentDescription>,
    /// Running providers.
    #[serde(default)]
    pub providers: Vec<ProviderDescription>,
    /// The host id.
    #[serde(default)]
    pub host_id: String,
    /// A human-friendly name.
    #[serde(default)]
    pub friendly_name: String,
    /// Labels, including the automatic `hostcore.*` ones.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Host software version.
    #[serde(default)]
    pub version: String,
    /// Uptime in words.
    #[serde(default)]
    pub uptime_human: String,
    /// Seconds since the host started.
    #[serde(default)]
    pub uptime_seconds: u64,
}

/// Body of `label.put.{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLabel {
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: String,
}

/// Body of `label.del.{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLabelIdentifier {
    /// Label key.
    pub key: String,
}

/// Body of `host.stop.{id}` (an empty body means "now, default timeout").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopHostCommand {
    /// The host to stop.
    #[serde(default)]
    pub host_id: String,
    /// Milliseconds the host may take to drain before it stops regardless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// Checks a label key a user wants to set or delete.
///
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY: usize = 256;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 4096;
/// Most labels a host carries (its own `hostcore.*` ones included): with the limits above, a
/// heartbeat stays far below the NATS server's max payload (1 MiB by default).
pub const MAX_LABELS: usize = 100;

/// `Ok` when a user label `key` = `value` may be set on a host that has `count` labels
/// (`replacing` when `key` is one of them).
///
/// # Errors
/// A message naming the limit.
pub fn check_user_label(key: &str, value: &str, count: usize, replacing: bool) -> Result<(), String> {
    check_user_label_key(key)?;
    if value.len() > MAX_LABEL_VALUE {
        return Err(format!("label value is {} bytes; at most {MAX_LABEL_VALUE} are allowed", value.len()));
    }
    if !replacing && count >= MAX_LABELS {
        return Err(format!("a host carries at most {MAX_LABELS} labels; delete one first"));
    }
    Ok(())
}

/// # Errors
/// A message saying why the key is refused: empty, too long, or under `hostcore.`.
pub fn check_user_label_key(key: &str) -> Result<(), String> {
    if key.trim().is_empty() {
        return Err("label key must not be empty".into());
    }
    if key.len() > MAX_LABEL_KEY {
        return Err(format!("label key is {} bytes; at most {MAX_LABEL_KEY} are allowed", key.len()));
    }
    if key.starts_with(RESERVED_LABEL_PREFIX) {
        return Err(format!(
            "label `{key}` is reserved: `{RESERVED_LABEL_PREFIX}*` labels are set by the host"
        ));
    }
    Ok(())
}
