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
    /// Components left out to keep the message under the NATS max payload (a Trellis addition
    /// wasmCloud's clients ignore): `components` is then partial.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub components_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl HostInventory {
    /// Leaves components out (the last ones first, counting them in `components_omitted`) until
    /// the inventory serialises to at most `max_bytes`. A host with thousands of components
    /// would otherwise publish heartbeats and answer `host.get` with messages the NATS server
    /// refuses, and look gone to every tool.
    pub fn fit_within(&mut self, max_bytes: usize) {
        let size = |v: &Self| serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
        let mut total = size(self);
        while total > max_bytes {
            let Some(last) = self.components.pop() else { break };
            let freed = serde_json::to_vec(&last).map_or(0, |b| b.len() + 1);
            self.components_omitted += 1;
            // The count field may have just appeared or grown by a digit: measure again only
            // when the estimate says it fits.
            total = total.saturating_sub(freed);
            if total <= max_bytes {
                total = size(self);
            }
        }
    }
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

/// Why a user label is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// An empty (or blank) key.
    #[error("label key must not be empty")]
    EmptyKey,
    /// A key over [`MAX_LABEL_KEY`] bytes.
    #[error("label key is {0} bytes; at most {MAX_LABEL_KEY} are allowed")]
    KeyTooLong(usize),
    /// A value over [`MAX_LABEL_VALUE`] bytes.
    #[error("label value is {0} bytes; at most {MAX_LABEL_VALUE} are allowed")]
    ValueTooLong(usize),
    /// Already [`MAX_LABELS`] labels.
    #[error("a host carries at most {MAX_LABELS} labels; delete one first")]
    TooMany,
    /// A `hostcore.*` key (any case): the host sets those.
    #[error("label `{0}` is reserved: `{RESERVED_LABEL_PREFIX}*` labels are set by the host")]
    Reserved(String),
}

/// `Ok` when a user label `key` = `value` may be set on a host that has `count` labels
/// (`replacing` when `key` is one of them).
///
/// # Errors
/// [`LabelError`] naming the limit.
pub fn check_user_label(key: &str, value: &str, count: usize, replacing: bool) -> Result<(), LabelError> {
    check_user_label_key(key)?;
    if value.len() > MAX_LABEL_VALUE {
        return Err(LabelError::ValueTooLong(value.len()));
    }
    if !replacing && count >= MAX_LABELS {
        return Err(LabelError::TooMany);
    }
    Ok(())
}

/// # Errors
/// [`LabelError`] saying why the key is refused: empty, too long, or under `hostcore.`.
pub fn check_user_label_key(key: &str) -> Result<(), LabelError> {
    if key.trim().is_empty() {
        return Err(LabelError::EmptyKey);
    }
    if key.len() > MAX_LABEL_KEY {
        return Err(LabelError::KeyTooLong(key.len()));
    }
    if key.get(..RESERVED_LABEL_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_LABEL_PREFIX)) {
        return Err(LabelError::Reserved(key.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::ComponentDescription;

    #[test]
    fn an_inventory_too_large_for_one_message_leaves_components_out_and_says_how_many() {
        let mut inventory = HostInventory { host_id: "NHOST".into(), ..Default::default() };
        inventory.components = (0..1000)
            .map(|i| ComponentDescription { id: format!("component-{i}"), image_ref: format!("oci://registry/component:{i}"), ..Default::default() })
            .collect();
        let full = serde_json::to_vec(&inventory).unwrap().len();
        let mut small = inventory.clone();
        small.fit_within(full);
        assert_eq!(small, inventory, "one that fits is left alone");
        small.fit_within(full / 3);
        assert!(serde_json::to_vec(&small).unwrap().len() <= full / 3);
        assert_eq!(small.components.len() + small.components_omitted, 1000);
        assert!(small.components_omitted > 600 && small.components_omitted < 700, "{}", small.components_omitted);
        assert_eq!(small.components[0].id, "component-0", "the first ones are kept");
        let parsed: HostInventory = serde_json::from_slice(&serde_json::to_vec(&small).unwrap()).unwrap();
        assert_eq!(parsed.components_omitted, small.components_omitted);
        let json = serde_json::to_value(&inventory).unwrap();
        assert!(json.get("components_omitted").is_none(), "absent unless something was left out");
    }
}
