//! Lattice events: CloudEvents 1.0 JSON on `wasmbus.evt.{lattice}.{name}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The CloudEvents envelope every lattice event travels in: cloudevents-sdk's event (what
/// wadm and wash read events with), its data JSON. [`new_event`] makes one; [`LatticeEvent`]
/// reads what the lattice puts in it.
pub use cloudevents::Event as CloudEvent;
/// Reads a [`CloudEvent`]'s attributes (`id`, `source`, `ty`, `time`).
pub use cloudevents::AttributesReader;
use cloudevents::AttributesWriter as _;

/// NATS header of a Trellis host's events and control replies: the host's Ed25519 signature
/// (base64url, no padding) of `trellis-message-v1`, a newline, the message's subject, a
/// newline, and its payload, made with the key whose public half is the host id. wasmCloud's
/// hosts send none.
pub const SIGNATURE_HEADER: &str = "Trellis-Signature";

/// An event `name` (e.g. `host_started`) from host `source`, stamped now, with JSON `data`.
pub fn new_event(source: &str, name: &str, data: serde_json::Value) -> CloudEvent {
    let mut event = CloudEvent::default();
    event.set_id(uuid::Uuid::new_v4().to_string());
    event.set_source(source);
    event.set_type(event_type(name));
    event.set_time(Some(chrono::Utc::now()));
    event.set_data("application/json", data);
    event
}

/// What the lattice puts in a [`CloudEvent`].
pub trait LatticeEvent {
    /// The short name (`host_started`), if its type is a lattice event type.
    fn name(&self) -> Option<&str>;
    /// Its data, JSON (`null` when it has none, or other data).
    fn json(&self) -> &serde_json::Value;
}

impl LatticeEvent for CloudEvent {
    fn name(&self) -> Option<&str> {
        self.ty().strip_prefix(EVENT_TYPE_PREFIX)
    }

    fn json(&self) -> &serde_json::Value {
        static NONE: serde_json::Value = serde_json::Value::Null;
        match self.data() {
            Some(cloudevents::Data::Json(value)) => value,
            _ => &NONE,
        }
    }
}

const EVENT_TYPE_PREFIX: &str = "com.wasmcloud.lattice.";

/// The CloudEvents `type` of lattice event `name`.
pub fn event_type(name: &str) -> String {
    format!("{EVENT_TYPE_PREFIX}{name}")
}

/// Event names, so that publishers and subscribers cannot drift apart.
pub mod names {
    /// A host joined the lattice.
    pub const HOST_STARTED: &str = "host_started";
    /// A host's periodic inventory.
    pub const HOST_HEARTBEAT: &str = "host_heartbeat";
    /// A host left gracefully.
    pub const HOST_STOPPED: &str = "host_stopped";
    /// A host's labels changed.
    pub const LABELS_CHANGED: &str = "labels_changed";
    /// A component's scale on a host changed (also after an update; `max_instances` 0: stopped).
    pub const COMPONENT_SCALED: &str = "component_scaled";
    /// A scale or update could not be carried out.
    pub const COMPONENT_SCALE_FAILED: &str = "component_scale_failed";
    /// A provider started on a host (data: [`super::ProviderStarted`]).
    pub const PROVIDER_STARTED: &str = "provider_started";
    /// A provider could not be started (data: [`super::ProviderStartFailed`]).
    pub const PROVIDER_START_FAILED: &str = "provider_start_failed";
    /// A provider stopped (data: [`super::ProviderStopped`]).
    pub const PROVIDER_STOPPED: &str = "provider_stopped";
    /// A provider's health check passed after it had failed (or for the first time); the
    /// three health events' data is [`super::ProviderHealth`].
    pub const HEALTH_CHECK_PASSED: &str = "health_check_passed";
    /// A provider's health check failed after it had passed.
    pub const HEALTH_CHECK_FAILED: &str = "health_check_failed";
    /// A provider's health, unchanged since the last check.
    pub const HEALTH_CHECK_STATUS: &str = "health_check_status";
    /// A link was put (data: the link).
    pub const LINKDEF_SET: &str = "linkdef_set";
    /// A link put was refused (data: the link and `error`).
    pub const LINKDEF_SET_FAILED: &str = "linkdef_set_failed";
    /// A link was deleted (always emitted: delete is idempotent).
    pub const LINKDEF_DELETED: &str = "linkdef_deleted";
    /// A named config was put.
    pub const CONFIG_SET: &str = "config_set";
    /// A named config was deleted.
    pub const CONFIG_DELETED: &str = "config_deleted";
    /// Every attempt of a scheduled tick failed (data: [`crate::schedule::ScheduleTickFailed`]).
    pub const SCHEDULE_TICK_FAILED: &str = "schedule_tick_failed";
    /// An external provider's process ended and will be restarted (data:
    /// [`super::ProviderExited`]).
    pub const PROVIDER_EXITED: &str = "provider_exited";
}

/// Data of `linkdef_set_failed`: the link and why it was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSetFailed {
    /// The refused link.
    #[serde(flatten)]
    pub link: crate::link::Link,
    /// Why.
    pub error: String,
}

/// Data of `config_set` and `config_deleted`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChanged {
    /// The config's name.
    pub config_name: String,
}

/// Data of `component_scaled` and, with `error`, of `component_scale_failed`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentScaled {
    /// The host the component runs on.
    pub host_id: String,
    /// The reference it runs from.
    pub image_ref: String,
    /// Its id.
    pub component_id: String,
    /// Concurrent invocations allowed on this host now (0: stopped).
    pub max_instances: u32,
    /// Annotations of the scale request.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Claims of a signed component, in wasmCloud's shape (absent when unsigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<serde_json::Value>,
    /// A signed component's public key (its claims' subject), as wasmCloud 1.9 sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Why the scale failed (`component_scale_failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Data of `host_started`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStarted {
    /// Friendly name.
    pub friendly_name: String,
    /// Labels at start.
    pub labels: BTreeMap<String, String>,
    /// Always 0.
    pub uptime_seconds: u64,
    /// Host software version.
    pub version: String,
}

/// Data of `host_stopped`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStopped {
    /// Labels at stop.
    pub labels: BTreeMap<String, String>,
}

/// Data of `labels_changed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelsChanged {
    /// The host whose labels changed.
    pub host_id: String,
    /// All labels after the change.
    pub labels: BTreeMap<String, String>,
}

/// Data of `provider_started`, with the fields wasmCloud 1.x hosts send (and, for an archive
/// with claims, those 1.9 adds then).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStarted {
    /// The host it runs on.
    pub host_id: String,
    /// Its id.
    pub provider_id: String,
    /// The reference it was started from.
    pub image_ref: String,
    /// The same reference, under the name of the start command's field (a Trellis addition).
    pub provider_ref: String,
    /// Annotations of the start command.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// A provider archive's claims, in wasmCloud 1.9's shape; with them, as 1.9 sends them,
    /// `instance_id` and `public_key` (the provider id) and `link_name` (`default`).
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveClaims>,
}

/// What `provider_started` adds for a provider started from an archive with claims.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveClaims {
    /// Issuer, name, version and validity, as wasmCloud 1.9 formats them.
    pub claims: serde_json::Value,
    /// The provider id.
    pub instance_id: String,
    /// The provider id.
    pub public_key: String,
    /// Always `default`.
    pub link_name: String,
}

/// Data of `provider_start_failed`: wasmCloud 1.x's fields, and what `provider_started` has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStartFailed {
    /// The provider, as it would have started.
    #[serde(flatten)]
    pub provider: ProviderStarted,
    /// Why it did not.
    pub error: String,
    /// Always `default` (wasmCloud 1.x still sends it).
    pub link_name: String,
}

/// Data of `provider_stopped`, with the fields wasmCloud 1.x hosts send (wadm reads
/// `annotations`; `instance_id`, `public_key` and `link_name` are kept as 1.x keeps them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStopped {
    /// The host it ran on.
    pub host_id: String,
    /// Its id.
    pub provider_id: String,
    /// Annotations of its start command.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Why it stopped.
    pub reason: String,
    /// The provider id again.
    pub instance_id: String,
    /// The provider id again.
    pub public_key: String,
    /// Always `default`.
    pub link_name: String,
}

impl ProviderStopped {
    /// Provider `provider_id`, started with `annotations`, stopped on `host_id` for `reason`.
    pub fn new(host_id: &str, provider_id: &str, annotations: BTreeMap<String, String>, reason: &str) -> Self {
        Self {
            host_id: host_id.into(),
            provider_id: provider_id.into(),
            annotations,
            reason: reason.into(),
            instance_id: provider_id.into(),
            public_key: provider_id.into(),
            link_name: "default".into(),
        }
    }
}

/// Data of `health_check_passed`, `health_check_failed` and `health_check_status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderHealth {
    /// The host it runs on.
    pub host_id: String,
    /// Its id.
    pub provider_id: String,
    /// Whether it answered healthy.
    pub healthy: bool,
    /// What it said, or why there is no answer.
    #[serde(default)]
    pub message: Option<String>,
}

/// Data of `provider_exited` (a Trellis event): an external provider's process ended and a new
/// one follows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderExited {
    /// The host it ran on.
    pub host_id: String,
    /// Its id.
    pub provider_id: String,
    /// How the process ended (or why it could not be started again).
    pub status: String,
    /// Its last lines on stderr.
    #[serde(default)]
    pub stderr_tail: Vec<String>,
    /// Restarts so far.
    pub restarts: u32,
    /// When the next process starts, in milliseconds.
    pub restart_in_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_fields() {
        let ev = new_event("NHOST", names::HOST_STARTED, serde_json::json!({"a": 1}));
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "com.wasmcloud.lattice.host_started");
        assert_eq!(json["source"], "NHOST");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["data"]["a"], 1);
        assert!(humantime::parse_rfc3339_weak(json["time"].as_str().unwrap()).is_ok());
        assert_eq!(ev.name(), Some("host_started"));
        // Read back, as a subscriber reads it.
        let back: CloudEvent = serde_json::from_value(json).unwrap();
        assert_eq!((back.name(), back.json()["a"].as_i64()), (Some("host_started"), Some(1)));
    }

    /// An event as wasmCloud 1.x's host publishes it reads the same way.
    #[test]
    fn a_wasmcloud_event_reads() {
        let raw = r#"{"specversion":"1.0","id":"0192","type":"com.wasmcloud.lattice.provider_stopped","source":"NB","datacontenttype":"application/json","time":"2026-02-01T10:00:00.123456789Z","data":{"provider_id":"p","reason":"stop"}}"#;
        let ev: CloudEvent = serde_json::from_str(raw).unwrap();
        assert_eq!((ev.name(), ev.source().as_str(), ev.json()["provider_id"].as_str()), (Some("provider_stopped"), "NB", Some("p")));
    }
}
