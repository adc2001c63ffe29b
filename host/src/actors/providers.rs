//! The providers actor: which built-in providers run on this host. Carries out
//! `provider.start` / `provider.stop`, publishes `provider_started`, `provider_start_failed`
//! and `provider_stopped`, and keeps the host actor's inventory current.

use std::collections::BTreeMap;

use actix::prelude::*;
use serde_json::json;
use tracing::{info, warn};
use trellis_messages::invocation::check_component_id;
use trellis_messages::provider::{ProviderDescription, StartProviderCommand, StopProviderCommand};

use crate::actors::host::{HostActor, SetProviders};
use crate::error::{HostError, Result};
use crate::providers::http_server::{HttpServerActor, StopHttpServer};
use crate::providers::messaging::{MessagingActor, StopMessaging};
use crate::providers::ProviderKind;
use crate::services::HostServices;

/// A provider running here.
#[derive(Debug)]
struct Running {
    kind: ProviderKind,
    /// The actor, for providers that have one (in-process capabilities do not).
    http: Option<Addr<HttpServerActor>>,
    /// The messaging actor, for a messaging provider.
    messaging: Option<Addr<MessagingActor>>,
    description: ProviderDescription,
}

/// Owns the set of running providers.
#[derive(Debug)]
pub struct ProvidersActor {
    services: HostServices,
    host: Addr<HostActor>,
    running: BTreeMap<String, Running>,
}

impl ProvidersActor {
    /// No providers yet.
    pub fn new(services: HostServices, host: Addr<HostActor>) -> Self {
        Self { services, host, running: BTreeMap::new() }
    }

    fn publish(&self, name: &'static str, data: serde_json::Value) {
        let events = self.services.events.clone();
        actix::spawn(async move { events.publish_logged(name, data).await });
    }

    fn publish_inventory(&self) {
        self.host.do_send(SetProviders(self.running.values().map(|r| r.description.clone()).collect()));
    }

    fn stop_one(&mut self, id: &str, reason: &str) -> bool {
        let Some(running) = self.running.remove(id) else { return false };
        // Revoked before anything else: calls that start from now on are refused.
        self.services.providers.remove(&self.services.host_id, id);
        if let Some(addr) = running.http {
            addr.do_send(StopHttpServer);
        }
        if let Some(addr) = running.messaging {
            addr.do_send(StopMessaging);
        }
        info!(provider_id = id, kind = running.kind.name(), reason, "provider stopped");
        self.publish("provider_stopped", json!({"host_id": self.services.host_id, "provider_id": id, "reason": reason}));
        true
    }
}

impl Actor for ProvidersActor {
    type Context = Context<Self>;
}

/// `provider.start`: the reply acknowledges; the outcome is an event.
#[derive(Debug, Message)]
#[rtype(result = "Result<String>")]
pub struct StartProvider(pub StartProviderCommand);

impl Handler<StartProvider> for ProvidersActor {
    type Result = Result<String>;
    fn handle(&mut self, StartProvider(cmd): StartProvider, _: &mut Self::Context) -> Self::Result {
        check_component_id(&cmd.provider_id).map_err(|e| HostError::Workload(e.replace("component id", "provider id")))?;
        let base = json!({
            "host_id": self.services.host_id,
            "provider_id": cmd.provider_id,
            "image_ref": cmd.provider_ref,
            "provider_ref": cmd.provider_ref,
            "annotations": cmd.annotations.clone().unwrap_or_default(),
        });
        if let Some(r) = self.running.get(&cmd.provider_id) {
            if r.description.image_ref.as_deref() == Some(cmd.provider_ref.as_str()) {
                return Ok(format!("provider `{}` already runs here", cmd.provider_id));
            }
            return Err(HostError::Workload(format!(
                "provider `{}` already runs `{}` on this host",
                cmd.provider_id,
                r.description.image_ref.clone().unwrap_or_default()
            )));
        }
        let kind = match ProviderKind::parse(&cmd.provider_ref) {
            Ok(k) => k,
            Err(e) => {
                warn!(provider_id = %cmd.provider_id, "{e}");
                let mut data = base;
                data["error"] = json!(e);
                self.publish("provider_start_failed", data);
                return Ok(format!("provider `{}` is starting", cmd.provider_id));
            }
        };
        let http = (kind == ProviderKind::HttpServer)
            .then(|| HttpServerActor::new(cmd.provider_id.clone(), self.services.clone()).start());
        let messaging = (kind == ProviderKind::Messaging)
            .then(|| MessagingActor::new(cmd.provider_id.clone(), self.services.clone()).start());
        let description = ProviderDescription {
            id: cmd.provider_id.clone(),
            image_ref: Some(cmd.provider_ref.clone()),
            name: Some(kind.name().to_string()),
            revision: 0,
            annotations: cmd.annotations.clone(),
        };
        info!(provider_id = %cmd.provider_id, kind = kind.name(), "provider started");
        self.services.providers.add(&self.services.host_id, &cmd.provider_id, &cmd.provider_ref);
        self.running.insert(cmd.provider_id.clone(), Running { kind, http, messaging, description });
        self.publish("provider_started", base);
        self.publish_inventory();
        Ok(format!("provider `{}` is starting", cmd.provider_id))
    }
}

/// `provider.stop`.
#[derive(Debug, Message)]
#[rtype(result = "Result<String>")]
pub struct StopProvider(pub StopProviderCommand);

impl Handler<StopProvider> for ProvidersActor {
    type Result = Result<String>;
    fn handle(&mut self, StopProvider(cmd): StopProvider, _: &mut Self::Context) -> Self::Result {
        if self.stop_one(&cmd.provider_id, "stop requested") {
            self.publish_inventory();
            Ok(format!("provider `{}` stopped", cmd.provider_id))
        } else {
            Err(HostError::Workload(format!("provider `{}` is not running on host {}", cmd.provider_id, self.services.host_id)))
        }
    }
}

/// Stops every provider (host shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopProviders;

impl Handler<StopProviders> for ProvidersActor {
    type Result = ();
    fn handle(&mut self, _: StopProviders, ctx: &mut Self::Context) {
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            self.stop_one(&id, "host stopping");
        }
        ctx.stop();
    }
}
