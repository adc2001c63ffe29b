//! The host actor: owns the host's own state (identity, labels, uptime) and its heartbeat.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use trellis_messages::component::ComponentDescription;
use trellis_messages::provider::ProviderDescription;
use trellis_messages::event::{names, HostStarted, HostStopped, LabelsChanged};
use trellis_messages::host::{check_user_label, Host, HostInventory};
use tracing::{debug, info};

use crate::error::{HostError, Result};
use crate::events::EventPublisher;
use crate::identity::HostIdentity;

/// Host software version reported to the lattice.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Owns the host's state; every read or change of it goes through this actor's mailbox.
#[derive(Debug)]
pub struct HostActor {
    /// Host id and friendly name.
    identity: Arc<HostIdentity>,
    /// Lattice name, for the ping reply.
    lattice: String,
    /// Automatic and user labels.
    labels: BTreeMap<String, String>,
    /// When the host started, for uptime.
    started: Instant,
    /// Where events go.
    events: EventPublisher,
    /// How often to publish `host_heartbeat`.
    heartbeat_interval: Duration,
    /// The NATS server URL (redacted), for the ping reply.
    nats_url: String,
    /// Connection events from the NATS client, taken by `started()`.
    nats_events: Option<NatsEvents>,
    /// Components running here by id, as the workload actor reported them one change at a time
    /// (a whole list per change cost O(n) per scale, O(n²) to scale n).
    components: BTreeMap<String, ComponentDescription>,
    /// Providers running here, as the providers actor last reported them.
    providers: Vec<ProviderDescription>,
    /// Counts NATS reconnects.
    metrics: crate::metrics::Metrics,
    /// Whether the first `Connected` (the start, not a reconnect) has been seen.
    connected_once: bool,
}

/// Connection events from the NATS client.
pub type NatsEvents = tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>;

/// The control connection as the host actor sees it: its URL (redacted, for the ping reply),
/// its events, and where reconnects are counted.
#[derive(Debug)]
pub struct ControlConnection {
    /// The NATS server URL, redacted.
    pub url: String,
    /// Connection events from the NATS client.
    pub events: NatsEvents,
    /// Counts reconnects.
    pub metrics: crate::metrics::Metrics,
}

impl HostActor {
    /// A host actor with all its state; nothing is published until it starts.
    pub fn new(
        identity: Arc<HostIdentity>,
        lattice: String,
        labels: BTreeMap<String, String>,
        events: EventPublisher,
        heartbeat_interval: Duration,
        connection: ControlConnection,
    ) -> Self {
        let ControlConnection { url: nats_url, events: nats_events, metrics } = connection;
        Self {
            identity,
            lattice,
            labels,
            started: Instant::now(),
            events,
            heartbeat_interval,
            nats_url,
            nats_events: Some(nats_events),
            components: BTreeMap::new(),
            providers: Vec::new(),
            metrics,
            connected_once: false,
        }
    }

    fn uptime(&self) -> Duration {
        Duration::from_secs(self.started.elapsed().as_secs())
    }

    fn describe(&self) -> Host {
        Host {
            id: self.identity.id(),
            friendly_name: self.identity.friendly_name().to_string(),
            labels: self.labels.clone(),
            lattice: self.lattice.clone(),
            uptime_seconds: self.uptime().as_secs(),
            uptime_human: Some(humantime::format_duration(self.uptime()).to_string()),
            version: Some(VERSION.to_string()),
            ctl_host: Some(self.nats_url.clone()),
            rpc_host: Some(self.nats_url.clone()),
            js_domain: None,
        }
    }

    /// The inventory (heartbeat body and `host.get` answer), cut to fit one NATS message with
    /// room for the envelope (the CloudEvent or the control reply around it): a host with
    /// thousands of components lists as many as fit and counts the rest.
    fn inventory(&self) -> HostInventory {
        let mut inventory = HostInventory {
            components: self.components.values().cloned().collect(),
            providers: self.providers.clone(),
            host_id: self.identity.id(),
            friendly_name: self.identity.friendly_name().to_string(),
            labels: self.labels.clone(),
            version: VERSION.to_string(),
            uptime_human: humantime::format_duration(self.uptime()).to_string(),
            uptime_seconds: self.uptime().as_secs(),
            components_omitted: 0,
        };
        // 0 until the server has said (no INFO yet): nothing to fit.
        if let Some(max) = Some(self.events.max_payload()).filter(|m| *m > 0) {
            inventory.fit_within(max.saturating_sub(ENVELOPE));
        }
        inventory
    }

    /// The data of `host_started`.
    pub fn started_event(identity: &HostIdentity, labels: &BTreeMap<String, String>) -> HostStarted {
        HostStarted {
            friendly_name: identity.friendly_name().to_string(),
            labels: labels.clone(),
            uptime_seconds: 0,
            version: VERSION.to_string(),
        }
    }

    fn publish_heartbeat(&self) {
        let events = self.events.clone();
        let inventory = self.inventory();
        actix::spawn(async move { events.publish_logged(names::HOST_HEARTBEAT, inventory).await });
    }

    fn labels_changed(&self) {
        let events = self.events.clone();
        let data = LabelsChanged { host_id: self.identity.id(), labels: self.labels.clone() };
        actix::spawn(async move { events.publish_logged(names::LABELS_CHANGED, data).await });
    }
}

/// Bytes left for the envelope around an inventory (CloudEvent fields, control reply).
const ENVELOPE: usize = 4096;

impl Actor for HostActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.publish_heartbeat();
        ctx.run_interval(self.heartbeat_interval, |act, _| act.publish_heartbeat());
        if let Some(rx) = self.nats_events.take() {
            ctx.add_stream(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) }));
        }
    }
}

impl StreamHandler<async_nats::Event> for HostActor {
    fn handle(&mut self, event: async_nats::Event, _: &mut Self::Context) {
        // After a reconnect, tell the lattice at once that this host is still here.
        if matches!(event, async_nats::Event::Connected) {
            debug!("NATS (re)connected: publishing a heartbeat now");
            if self.connected_once {
                self.metrics.nats_reconnected();
            }
            self.connected_once = true;
            self.publish_heartbeat();
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The NATS client is gone (we are shutting down); the host stops through `Drain`.
    }
}

/// Asks for the `host.ping` reply.
#[derive(Debug, Message)]
#[rtype(result = "Host")]
pub struct Describe;

impl Handler<Describe> for HostActor {
    type Result = MessageResult<Describe>;
    fn handle(&mut self, _: Describe, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.describe())
    }
}

/// Asks for the inventory.
#[derive(Debug, Message)]
#[rtype(result = "HostInventory")]
pub struct GetInventory;

impl Handler<GetInventory> for HostActor {
    type Result = MessageResult<GetInventory>;
    fn handle(&mut self, _: GetInventory, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.inventory())
    }
}

/// Asks for the labels (auctions compare constraints with them).
#[derive(Debug, Message)]
#[rtype(result = "BTreeMap<String, String>")]
pub struct GetLabels;

impl Handler<GetLabels> for HostActor {
    type Result = MessageResult<GetLabels>;
    fn handle(&mut self, _: GetLabels, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.labels.clone())
    }
}

/// Sets a user label; `hostcore.*` is refused.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct PutLabel {
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: String,
}

impl Handler<PutLabel> for HostActor {
    type Result = Result<()>;
    fn handle(&mut self, msg: PutLabel, _: &mut Self::Context) -> Self::Result {
        check_user_label(&msg.key, &msg.value, self.labels.len(), self.labels.contains_key(&msg.key)).map_err(HostError::Label)?;
        info!(key = %msg.key, value = %msg.value, "label set");
        self.labels.insert(msg.key, msg.value);
        self.labels_changed();
        Ok(())
    }
}

/// Deletes a label, `hostcore.*` too (as wasmCloud 1.9 does). Returns whether it was set.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool>")]
pub struct DeleteLabel {
    /// Label key.
    pub key: String,
}

impl Handler<DeleteLabel> for HostActor {
    type Result = Result<bool>;
    fn handle(&mut self, msg: DeleteLabel, _: &mut Self::Context) -> Self::Result {
        let was_set = self.labels.remove(&msg.key).is_some();
        if was_set {
            info!(key = %msg.key, "label deleted");
            self.labels_changed();
        }
        Ok(was_set)
    }
}

/// Stops the heartbeat and the actor; answers the data of `host_stopped`.
#[derive(Debug, Message)]
#[rtype(result = "HostStopped")]
pub struct Drain;

impl Handler<Drain> for HostActor {
    type Result = MessageResult<Drain>;
    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        MessageResult(HostStopped { labels: self.labels.clone() })
    }
}

/// What component `0` now is (`None`: no longer here), from the workload actor, for inventory
/// and heartbeat.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetComponent(pub String, pub Option<ComponentDescription>);

impl Handler<SetComponent> for HostActor {
    type Result = ();
    fn handle(&mut self, SetComponent(id, description): SetComponent, _: &mut Self::Context) {
        match description {
            Some(d) => {
                self.components.insert(id, d);
            }
            None => {
                self.components.remove(&id);
            }
        }
    }
}

/// The providers actor's current list of providers, for inventory and heartbeat.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetProviders(pub Vec<ProviderDescription>);

impl Handler<SetProviders> for HostActor {
    type Result = ();
    fn handle(&mut self, msg: SetProviders, _: &mut Self::Context) {
        self.providers = msg.0;
    }
}
