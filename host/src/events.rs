//! Publishing lattice events: a cheap handle any actor can clone.

use serde::Serialize;
use trellis_messages::event::new_event;
use trellis_messages::Subjects;
use tracing::{debug, warn};

use crate::error::{HostError, Result};

/// Publishes CloudEvents from this host on `wasmbus.evt.{lattice}.{name}`.
#[derive(Clone, Debug)]
pub struct EventPublisher {
    /// The connection events go out on.
    nats: async_nats::Client,
    /// For the event subjects.
    subjects: Subjects,
    /// The `source` of every event, which signs them.
    identity: std::sync::Arc<crate::identity::HostIdentity>,
}

impl EventPublisher {
    /// A publisher for the host `identity` names and signs for.
    pub fn new(nats: async_nats::Client, subjects: Subjects, identity: std::sync::Arc<crate::identity::HostIdentity>) -> Self {
        Self { nats, subjects, identity }
    }

    /// Publishes event `name` with `data`.
    ///
    /// # Errors
    /// [`HostError::Publish`] when the data cannot be encoded or the client refuses it.
    pub async fn publish(&self, name: &str, data: impl Serialize) -> Result<()> {
        let subject = self.subjects.event(name);
        let data = serde_json::to_value(data)
            .map_err(|e| HostError::Publish { subject: subject.clone(), reason: e.to_string() })?;
        let event = new_event(&self.identity.id(), name, data);
        let bytes = serde_json::to_vec(&event)
            .map_err(|e| HostError::Publish { subject: subject.clone(), reason: e.to_string() })?;
        debug!(%subject, bytes = bytes.len(), "publishing event");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(trellis_messages::event::SIGNATURE_HEADER, self.identity.sign_message(&subject, &bytes).as_str());
        self.nats
            .publish_with_headers(subject.clone(), headers, bytes.into())
            .await
            .map_err(|e| HostError::Publish { subject, reason: e.to_string() })
    }

    /// The largest message the NATS server takes (its `max_payload`).
    pub fn max_payload(&self) -> usize {
        self.nats.server_info().max_payload
    }

    /// Publishes and logs a failure instead of returning it: events are best effort, and a
    /// failed one must not stop the work that caused it.
    pub async fn publish_logged(&self, name: &str, data: impl Serialize) {
        if let Err(error) = self.publish(name, data).await {
            warn!(%error, event = name, "event not published");
        }
    }
}
