//! Keeps a [`ProviderDirectory`] current with the other hosts of the lattice: their
//! `provider_started`, `provider_stopped`, `host_heartbeat` and `host_stopped` events, and at
//! start the inventory of every host that answers a ping. This host's own events are skipped:
//! the providers actor records its providers directly, so a stop here revokes at once and a
//! late heartbeat cannot bring a stopped provider back.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tracing::{debug, warn};
use trellis_messages::event::{names, CloudEvent};
use trellis_messages::{Client, Subjects};

use crate::permission::ProviderDirectory;

/// Subscribes to the lattice's events and returns the task that follows them (abort it to
/// stop).
///
/// # Errors
/// When the subscription cannot be made.
pub async fn follow(
    nats: async_nats::Client,
    subjects: Subjects,
    host_id: String,
    directory: ProviderDirectory,
) -> Result<tokio::task::JoinHandle<()>, async_nats::SubscribeError> {
    let mut events = nats.subscribe(subjects.events_wildcard()).await?;
    // One task for both, so that stopping it drops every subscription inside the runtime.
    Ok(actix::spawn(async move {
        let bootstrap = bootstrap(nats.clone(), subjects.clone(), host_id.clone(), directory.clone());
        let follow = async {
            while let Some(msg) = events.next().await {
                let Ok(event) = serde_json::from_slice::<CloudEvent>(&msg.payload) else { continue };
                if event.source == host_id {
                    continue;
                }
                if !is_host_key(&event.source) {
                    debug!(source = %event.source, "lattice event from a source that is not a host key ignored");
                    continue;
                }
                if !directory.heard(&event.source) {
                    warn!(source = %event.source, "lattice event ignored: {} other hosts are known already", crate::permission::directory::MAX_HOSTS);
                    continue;
                }
                apply(&directory, &event);
            }
        };
        futures::join!(bootstrap, follow);
    }))
}

/// Whether `source` is a host's public key (`N…`), as every host's events name it.
fn is_host_key(source: &str) -> bool {
    nkeys::KeyPair::from_public_key(source).is_ok_and(|k| k.key_pair_type() == nkeys::KeyPairType::Server)
}

/// Applies one event of another host.
fn apply(directory: &ProviderDirectory, event: &CloudEvent) {
    let host = event.source.as_str();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match event.name() {
        Some(names::PROVIDER_STARTED) => {
            if let (Some(id), Some(reference)) =
                (text(&event.data, "provider_id"), text(&event.data, "image_ref").or_else(|| text(&event.data, "provider_ref")))
            {
                directory.add(host, &id, &reference);
            }
        }
        Some(names::PROVIDER_STOPPED) => {
            if let Some(id) = text(&event.data, "provider_id") {
                directory.remove(host, &id);
            }
        }
        Some(names::HOST_HEARTBEAT) => directory.set_host(host, providers_of(&event.data)),
        Some(names::HOST_STOPPED) => directory.remove_host(host),
        _ => {}
    }
}

/// `(id, image_ref)` of the `providers` list of a heartbeat or inventory.
fn providers_of(data: &Value) -> Vec<(String, String)> {
    data.get("providers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| Some((p.get("id")?.as_str()?.to_string(), p.get("image_ref")?.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Learns what the hosts already running have, without waiting for their next heartbeat.
async fn bootstrap(nats: async_nats::Client, subjects: Subjects, host_id: String, directory: ProviderDirectory) {
    let client = Client::new(nats, subjects.prefix(), subjects.lattice())
        .with_timeout(Duration::from_secs(2))
        .with_gather(Duration::from_millis(500));
    let hosts = match client.ping_hosts().await {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "cannot list the lattice's hosts; their providers are learnt from their heartbeats");
            return;
        }
    };
    for host in hosts.into_iter().filter(|h| h.id != host_id && is_host_key(&h.id)) {
        if !directory.heard(&host.id) {
            continue;
        }
        match client.inventory(&host.id).await {
            Ok(inventory) => {
                let value = serde_json::to_value(&inventory).unwrap_or_default();
                directory.set_host(&host.id, providers_of(&value));
            }
            Err(e) => debug!(host = %host.id, error = %e, "no inventory"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_update_the_directory() {
        let d = ProviderDirectory::default();
        let ev = |name: &str, data: Value| CloudEvent::new("H2", name, data);
        apply(&d, &ev("provider_started", json!({"provider_id": "kv", "image_ref": "trellis://keyvalue"})));
        assert!(d.kind_of("kv").is_some());
        apply(&d, &ev("provider_stopped", json!({"provider_id": "kv"})));
        assert!(d.kind_of("kv").is_none());
        apply(&d, &ev("host_heartbeat", json!({"providers": [{"id": "m", "image_ref": "trellis://messaging"}]})));
        assert!(d.kind_of("m").is_some());
        apply(&d, &ev("host_stopped", json!({})));
        assert!(d.kind_of("m").is_none());
        apply(&d, &ev("provider_started", json!("not an object")));
    }

    #[test]
    fn only_host_keys_are_sources() {
        assert!(is_host_key(&nkeys::KeyPair::new_server().public_key()));
        for bad in ["H2", "", &nkeys::KeyPair::new_account().public_key(), "NOTAKEY"] {
            assert!(!is_host_key(bad), "{bad}");
        }
    }
}
