//! Turning a parsed control command into an answer: one match over [`CtlCommand`], each arm
//! asking the actor that owns the state concerned.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::Addr;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};
use trellis_messages::component::ComponentAuctionAck;
use trellis_messages::provider::ProviderAuctionAck;
use trellis_messages::{CtlCommand, CtlResponse};

use crate::actors::host::{self as host_actor, HostActor};
use crate::actors::lattice::{self, LatticeActor};
use crate::actors::providers::{self, ProvidersActor};
use crate::actors::workload::{self, WorkloadActor};
use crate::error::HostError;
use crate::stop::{StopReason, StopRequest};

/// What to do after a command: the reply body (none: stay silent) and whether to stop.
#[derive(Debug, Default)]
pub struct Answer {
    /// JSON reply body.
    pub reply: Option<Vec<u8>>,
    /// Stop the host once the reply is out.
    pub then_stop: Option<StopRequest>,
}

impl Answer {
    /// An answer that replies `response`.
    pub fn reply<T: Serialize>(response: &CtlResponse<T>) -> Self {
        let body = serde_json::to_vec(response).unwrap_or_else(|e| {
            // Our own reply types always encode; say so on the wire if one ever does not.
            format!(r#"{{"success":false,"message":"reply could not be encoded: {e}"}}"#).into_bytes()
        });
        Self { reply: Some(body), then_stop: None }
    }

    fn silent() -> Self {
        Self::default()
    }

    fn result(result: Result<String, HostError>) -> Self {
        match result {
            Ok(message) => Self::reply(&CtlResponse::success(message)),
            Err(e) => Self::reply(&CtlResponse::<()>::error(e.to_string())),
        }
    }
}

/// The actors a dispatcher hands commands to.
#[derive(Debug)]
pub struct HostActors {
    /// Host state (labels, inventory).
    pub host: Addr<HostActor>,
    /// The running components.
    pub workload: Addr<WorkloadActor>,
    /// Links and configs.
    pub lattice: Addr<LatticeActor>,
    /// The running providers.
    pub providers: Addr<ProvidersActor>,
}

/// Answers control commands for one host. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    /// This host's id.
    host_id: String,
    /// The actor owning host state.
    host: Addr<HostActor>,
    /// The actor owning the running components.
    workload: Addr<WorkloadActor>,
    /// The actor owning links and configs.
    lattice: Addr<LatticeActor>,
    /// The actor owning the running providers.
    providers: Addr<ProvidersActor>,
    /// Registry credentials (`registry.put`), read by component pulls.
    registries: crate::wasm::sources::oci::Registries,
    /// Where stop requests go (the runtime's supervisor).
    stop: mpsc::UnboundedSender<StopRequest>,
    /// The lattice's links, configs and stored claims (`claims.get`).
    view: crate::lattice::LatticeView,
}

impl Dispatcher {
    /// A dispatcher for host `host_id`.
    pub fn new(
        host_id: String,
        HostActors { host, workload, lattice, providers }: HostActors,
        registries: crate::wasm::sources::oci::Registries,
        stop: mpsc::UnboundedSender<StopRequest>,
        view: crate::lattice::LatticeView,
    ) -> Self {
        Self { host_id, host, workload, lattice, providers, registries, stop, view }
    }

    /// Asks the runtime to stop the host.
    ///
    /// # Errors
    /// When the runtime is already gone.
    pub fn request_stop(&self, request: StopRequest) -> Result<(), HostError> {
        self.stop.send(request).map_err(|_| HostError::ShuttingDown)
    }

    /// The answer to `command`.
    pub async fn answer(&self, command: CtlCommand) -> Answer {
        match command {
            CtlCommand::HostPing => match self.host.send(host_actor::Describe).await {
                Ok(host) => Answer::reply(&CtlResponse::ok(host)),
                Err(e) => Answer::result(Err(e.into())),
            },
            CtlCommand::HostGet { .. } => match self.host.send(host_actor::GetInventory).await {
                Ok(inv) => Answer::reply(&CtlResponse::ok(inv)),
                Err(e) => Answer::result(Err(e.into())),
            },
            CtlCommand::HostStop { command, .. } => {
                info!(timeout_ms = ?command.timeout, "stop requested through the control interface");
                let mut answer = Answer::reply(&CtlResponse::success("host stopping"));
                answer.then_stop = Some(StopRequest {
                    timeout: command.timeout.map(Duration::from_millis),
                    reason: StopReason::ControlInterface,
                });
                answer
            }
            CtlCommand::LabelPut { label, .. } => {
                let key = label.key.clone();
                let result = self.host.send(host_actor::PutLabel { key: label.key, value: label.value }).await;
                Answer::result(flatten(result).map(|()| format!("label `{key}` set")))
            }
            CtlCommand::LabelDel { label, .. } => {
                let key = label.key.clone();
                let result = self.host.send(host_actor::DeleteLabel { key: label.key }).await;
                Answer::result(flatten(result).map(|was_set| {
                    if was_set { format!("label `{key}` deleted") } else { format!("label `{key}` was not set") }
                }))
            }
            CtlCommand::ComponentScale { command, .. } => {
                Answer::result(flatten(self.workload.send(workload::Scale(command)).await))
            }
            CtlCommand::ComponentUpdate { command, .. } => {
                Answer::result(flatten(self.workload.send(workload::UpdateComponent(command)).await))
            }
            CtlCommand::ProviderStart { command, .. } => {
                Answer::result(flatten(self.providers.send(providers::StartProvider(command)).await))
            }
            CtlCommand::ProviderStop { command, .. } => {
                Answer::result(flatten(self.providers.send(providers::StopProvider(command)).await))
            }
            CtlCommand::LinkPut(link) => Answer::result(flatten(self.lattice.send(lattice::PutLink(link)).await)),
            CtlCommand::LinkDel(req) => Answer::result(flatten(self.lattice.send(lattice::DeleteLink(req)).await)),
            CtlCommand::LinkGet => match flatten(self.lattice.send(lattice::GetLinks).await) {
                Ok(links) => Answer::reply(&CtlResponse::ok(links)),
                Err(e) => Answer::result(Err(e)),
            },
            CtlCommand::ConfigPut { name, values } => {
                Answer::result(flatten(self.lattice.send(lattice::PutConfig { name, values }).await))
            }
            CtlCommand::ConfigGet { name } => match flatten(self.lattice.send(lattice::GetConfig(name.clone())).await) {
                Ok(Some(values)) => Answer::reply(&CtlResponse::ok(values)),
                // wasmCloud 1.9's answer: success, a message, no `response`.
                Ok(None) => Answer::reply(&CtlResponse::<BTreeMap<String, String>> { success: true, message: "Configuration not found".into(), response: None }),
                Err(e) => Answer::result(Err(e)),
            },
            CtlCommand::ConfigDel { name } => Answer::result(flatten(self.lattice.send(lattice::DeleteConfig(name)).await)),
            CtlCommand::ComponentAuction(req) => {
                // Like a wasmCloud host, do not bid for a component already running here.
                let running = self.workload.send(workload::IsRunning(req.component_id.clone())).await.unwrap_or(true);
                if running || !self.satisfies(&req.constraints).await {
                    return Answer::silent();
                }
                Answer::reply(&CtlResponse::ok(ComponentAuctionAck {
                    component_ref: req.component_ref,
                    component_id: req.component_id,
                    host_id: self.host_id.clone(),
                    constraints: req.constraints,
                }))
            }
            CtlCommand::ProviderAuction(req) => {
                // Like a wasmCloud host, do not bid for a provider already running here.
                let running = self.providers.send(providers::IsRunning(req.provider_id.clone())).await.unwrap_or(true);
                if running || !self.satisfies(&req.constraints).await {
                    return Answer::silent();
                }
                Answer::reply(&CtlResponse::ok(ProviderAuctionAck {
                    host_id: self.host_id.clone(),
                    provider_ref: req.provider_ref,
                    provider_id: req.provider_id,
                    constraints: req.constraints,
                }))
            }
            CtlCommand::RegistryPut(credentials) => {
                let names: Vec<&String> = credentials.keys().collect();
                info!(registries = ?names, "registry credentials stored");
                self.registries.put(credentials);
                Answer::reply(&CtlResponse::success("registry credentials stored"))
            }
            CtlCommand::ClaimsGet => {
                let (components, providers) = futures::join!(self.workload.send(workload::ComponentClaims), self.providers.send(providers::ProviderClaims));
                match (components, providers) {
                    (Ok(mut all), Ok(p)) => {
                        // This host's own, then what every host stored for the lattice.
                        all.extend(p);
                        use crate::trust::stored::{answer_bytes, MAX_ANSWER_BYTES};
                        let mut seen: std::collections::HashSet<String> = all.iter().filter_map(|c| c.get("sub").cloned()).collect();
                        let mut bytes: usize = all.iter().map(answer_bytes).sum();
                        for c in self.view.claims() {
                            if !c.get("sub").is_some_and(|s| seen.insert(s.clone())) {
                                continue;
                            }
                            bytes += answer_bytes(&c);
                            if bytes > MAX_ANSWER_BYTES {
                                warn!("claims.get answers part of the lattice's stored claims: more would pass the NATS max payload");
                                break;
                            }
                            all.push(c);
                        }
                        Answer::reply(&CtlResponse::ok(all))
                    }
                    (Err(e), _) | (_, Err(e)) => Answer::result(Err(e.into())),
                }
            }
        }
    }

    async fn satisfies(&self, constraints: &BTreeMap<String, String>) -> bool {
        match self.host.send(host_actor::GetLabels).await {
            Ok(labels) => constraints.iter().all(|(k, v)| labels.get(k) == Some(v)),
            Err(_) => false,
        }
    }
}

fn flatten<T>(r: Result<Result<T, HostError>, actix::MailboxError>) -> Result<T, HostError> {
    r.map_err(HostError::from).and_then(|inner| inner)
}
