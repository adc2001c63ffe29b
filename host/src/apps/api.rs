//! wadm's application API on `wadm.api.{lattice}.model.…`, answered by one host of the queue
//! group `wadm_server` (wadm's own), with wadm's request and reply types (`wadm_types::api`).

use actix::Addr;
use futures::StreamExt;
use tracing::{debug, warn};
use wadm_types::api::{
    DeleteModelRequest, DeleteModelResponse, DeleteResult, DeployModelRequest, DeployModelResponse, DeployResult, GetModelRequest,
    GetModelResponse, GetResult, ListModelsResponse, ModelSummary, PutModelResponse, PutResult, Status, StatusInfo, StatusResponse,
    StatusResult, StatusType, VersionInfo, VersionResponse,
};

use super::liveness::Liveness;
use super::placement::{self, HostView};
use super::store::{ManifestStore, StoredManifest};
use super::{manifest, status};
use crate::actors::lattice::{DeleteLink, LatticeActor};

/// wadm's queue group: with a wadm on the lattice too, each request is answered once.
pub const QUEUE_GROUP: &str = "wadm_server";
/// Requests answered at once; more wait.
const MAX_IN_FLIGHT: usize = 64;

/// One API operation, parsed from the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `model.put`.
    Put,
    /// `model.get`: every application.
    List,
    /// `model.list`: every application as a bare array (wadm's deprecated form, which
    /// `wadm-client` 0.10 still asks for).
    ListBare,
    /// `model.get.{name}`.
    Get(String),
    /// `model.versions.{name}`.
    Versions(String),
    /// `model.del.{name}`.
    Delete(String),
    /// `model.deploy.{name}`.
    Deploy(String),
    /// `model.undeploy.{name}`.
    Undeploy(String),
    /// `model.status.{name}`.
    Status(String),
}

impl Operation {
    /// Parses the part of the subject after `wadm.api.{lattice}.`.
    pub fn parse(rest: &str) -> Option<Self> {
        let parts: Vec<&str> = rest.split('.').collect();
        Some(match parts.as_slice() {
            ["model", "put"] => Self::Put,
            ["model", "get"] => Self::List,
            ["model", "list"] => Self::ListBare,
            ["model", "get", name] => Self::Get((*name).to_string()),
            ["model", "versions", name] => Self::Versions((*name).to_string()),
            ["model", "del", name] => Self::Delete((*name).to_string()),
            ["model", "deploy", name] => Self::Deploy((*name).to_string()),
            ["model", "undeploy", name] => Self::Undeploy((*name).to_string()),
            ["model", "status", name] => Self::Status((*name).to_string()),
            _ => return None,
        })
    }
}

/// What the API needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppsApi {
    /// The manifests.
    pub store: ManifestStore,
    /// Who is alive and what they run (for status).
    pub liveness: Liveness,
    /// Links an undeploy removes go through here.
    pub lattice: Addr<LatticeActor>,
    /// The lattice's links as this host sees them (for status).
    pub view: crate::lattice::LatticeView,
    /// The lattice name.
    pub lattice_name: String,
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn storage_error(e: &crate::error::HostError) -> String {
    warn!(error = %e, "application storage error");
    format!("Internal storage error: {e}")
}

impl AppsApi {
    /// Subscribes (in wadm's queue group) and returns the future that answers until `stop`
    /// (then it leaves the group and answers what was delivered) or until aborted.
    ///
    /// # Errors
    /// When the client cannot subscribe (it is closed).
    pub async fn serve(self, nats: async_nats::Client, stop: tokio_util::sync::CancellationToken) -> Result<impl std::future::Future<Output = ()> + Send + 'static, async_nats::SubscribeError> {
        let prefix = trellis_messages::subjects::wadm::api_prefix(&self.lattice_name);
        let sub = nats.queue_subscribe(format!("{prefix}model.>"), QUEUE_GROUP.to_string()).await?;
        Ok(self.answer_all(nats, sub, prefix, stop))
    }

    /// Answers every request until `stop`; then leaves the queue group (the UNSUB is on the
    /// connection before anything the caller publishes after this ends) and answers the
    /// requests already delivered, so none is dropped unanswered.
    async fn answer_all(self, nats: async_nats::Client, mut sub: async_nats::Subscriber, prefix: String, stop: tokio_util::sync::CancellationToken) {
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut stopping = false;
        loop {
            let msg = tokio::select! {
                msg = sub.next() => msg,
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    if let Err(e) = sub.unsubscribe().await {
                        debug!(error = %e, "cannot leave the application API's queue group");
                        break;
                    }
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            let Some(reply) = msg.reply.clone() else { continue };
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (api, nats, prefix) = (self.clone(), nats.clone(), prefix.clone());
            tokio::spawn(async move {
                let rest = msg.subject.as_str().strip_prefix(&prefix).unwrap_or_default();
                let content_type = msg.headers.as_ref().and_then(|h| h.get("Content-Type")).map(|v| v.as_str().to_string());
                let body = api.answer(rest, content_type.as_deref(), &msg.payload).await;
                if let Err(e) = nats.publish(reply, body.into()).await {
                    debug!(error = %e, "cannot send an application API reply");
                }
                drop(permit);
            });
        }
    }

    /// The reply to one request.
    pub async fn answer(&self, rest: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
        let Some(op) = Operation::parse(rest) else {
            return json(&serde_json::json!({"result": "error", "message": format!("unknown application API operation `{rest}`")}));
        };
        match op {
            Operation::Put => json(&self.put(content_type, body).await),
            Operation::List => json(&self.list().await),
            Operation::ListBare => json(&self.list().await.models),
            Operation::Get(name) => json(&self.get(&name, body).await),
            Operation::Versions(name) => json(&self.versions(&name).await),
            Operation::Delete(name) => json(&self.delete(&name, body).await),
            Operation::Deploy(name) => json(&self.deploy(&name, body).await),
            Operation::Undeploy(name) => json(&self.undeploy(&name).await),
            Operation::Status(name) => json(&self.status(&name).await),
        }
    }

    async fn put(&self, content_type: Option<&str>, body: &[u8]) -> PutModelResponse {
        let error = |message: String| PutModelResponse { result: PutResult::Error, total_versions: 0, current_version: String::new(), message, name: String::new() };
        let manifest = match manifest::parse(body, content_type) {
            Ok(m) => m,
            Err(e) => return error(e.to_string()),
        };
        if let Err(e) = manifest::validate(&manifest).await {
            return error(e.to_string());
        }
        let name = manifest.metadata.name.trim().to_string();
        let (mut stored, revision) = match self.store.get(&name).await {
            Ok(found) => found.unwrap_or_default(),
            Err(e) => return error(storage_error(&e)),
        };
        let version = manifest.version().to_string();
        if !stored.add_version(manifest) {
            return error(format!("Manifest version {version} already exists"));
        }
        if let Err(e) = self.store.set(&stored, revision).await {
            return error(storage_error(&e));
        }
        PutModelResponse {
            result: if stored.count() == 1 { PutResult::Created } else { PutResult::NewVersion },
            total_versions: stored.count(),
            current_version: stored.current_version().to_string(),
            message: format!("Successfully put manifest {name} {}", stored.current_version()),
            name,
        }
    }

    async fn list(&self) -> ListModelsResponse {
        match self.store.list().await {
            Ok(all) => {
                let mut models = Vec::new();
                for stored in all {
                    let status = self.compute_status(&stored);
                    #[allow(deprecated)]
                    models.push(ModelSummary {
                        name: stored.name().to_string(),
                        version: stored.current_version().to_string(),
                        description: stored.current().and_then(|m| m.description().map(str::to_string)),
                        deployed_version: stored.deployed_version().map(str::to_string),
                        status: status.info.status_type,
                        status_message: Some(status.info.message.clone()),
                        detailed_status: status,
                    });
                }
                ListModelsResponse { result: GetResult::Success, message: "Successfully fetched list of applications".into(), models }
            }
            Err(e) => ListModelsResponse { result: GetResult::Error, message: storage_error(&e), models: Vec::new() },
        }
    }

    async fn get(&self, name: &str, body: &[u8]) -> GetModelResponse {
        let version = serde_json::from_slice::<GetModelRequest>(body).ok().and_then(|r| r.version);
        match self.store.get(name).await {
            Ok(Some((stored, _))) => {
                let found = match version.as_deref() {
                    None | Some(wadm_types::LATEST_VERSION) => stored.current().cloned(),
                    Some(v) => stored.get(v).cloned(),
                };
                match found {
                    Some(manifest) => GetModelResponse { result: GetResult::Success, message: format!("Successfully fetched application {name}"), manifest: Some(manifest) },
                    None => GetModelResponse {
                        result: GetResult::NotFound,
                        message: format!("Application {name} with version {} not found", version.unwrap_or_default()),
                        manifest: None,
                    },
                }
            }
            Ok(None) => GetModelResponse { result: GetResult::NotFound, message: format!("Application with the name {name} not found"), manifest: None },
            Err(e) => GetModelResponse { result: GetResult::Error, message: storage_error(&e), manifest: None },
        }
    }

    async fn versions(&self, name: &str) -> VersionResponse {
        match self.store.get(name).await {
            Ok(Some((stored, _))) => VersionResponse {
                result: GetResult::Success,
                message: format!("Successfully fetched versions for application {name}"),
                versions: stored.versions().map(|v| VersionInfo { version: v.clone(), deployed: stored.deployed_version() == Some(v.as_str()) }).collect(),
            },
            Ok(None) => VersionResponse { result: GetResult::NotFound, message: format!("Application with the name {name} not found"), versions: Vec::new() },
            Err(e) => VersionResponse { result: GetResult::Error, message: storage_error(&e), versions: Vec::new() },
        }
    }

    async fn delete(&self, name: &str, body: &[u8]) -> DeleteModelResponse {
        let version = serde_json::from_slice::<DeleteModelRequest>(body).ok().and_then(|r| r.version);
        let error = |message: String| DeleteModelResponse { result: DeleteResult::Error, message, undeploy: false };
        let (mut stored, revision) = match self.store.get(name).await {
            Ok(Some(found)) => found,
            Ok(None) => return DeleteModelResponse { result: DeleteResult::Noop, message: format!("Application {name} doesn't exist or was already deleted"), undeploy: false },
            Err(e) => return error(storage_error(&e)),
        };
        let previously = stored.deployed().cloned();
        let whole = match &version {
            None => true,
            Some(v) => {
                if !stored.delete_version(v) {
                    return DeleteModelResponse { result: DeleteResult::Noop, message: format!("Application version {v} doesn't exist"), undeploy: false };
                }
                stored.count() == 0
            }
        };
        let undeploy = whole || (version.is_some() && stored.deployed().is_none() && previously.is_some());
        if undeploy {
            stored.undeploy();
        }
        let written = if whole { self.store.delete(name).await } else { self.store.set(&stored, revision).await };
        if let Err(e) = written {
            return error(storage_error(&e));
        }
        if undeploy {
            if let Some(previous) = previously {
                self.remove_links(name, &previous, None).await;
            }
        }
        let message = match version {
            Some(v) if !whole => format!("Successfully deleted version {v} of application {name}"),
            _ => format!("Successfully deleted application {name}"),
        };
        DeleteModelResponse { result: DeleteResult::Deleted, message, undeploy }
    }

    async fn deploy(&self, name: &str, body: &[u8]) -> DeployModelResponse {
        let version = serde_json::from_slice::<DeployModelRequest>(body).ok().and_then(|r| r.version);
        let reply = |result, message: String, version: Option<String>| DeployModelResponse { result, message, name: name.to_string(), version };
        let (mut stored, revision) = match self.store.get(name).await {
            Ok(Some(found)) => found,
            Ok(None) => return reply(DeployResult::NotFound, format!("Application with the name {name} not found"), None),
            Err(e) => return reply(DeployResult::Error, storage_error(&e), None),
        };
        let previously = stored.deployed().cloned();
        if !stored.deploy(version.as_deref()) {
            return reply(
                DeployResult::Error,
                format!("Application with the name '{name}' does not have a version '{}' to deploy", version.unwrap_or_default()),
                None,
            );
        }
        let deployed = stored.deployed_version().map(str::to_string);
        if let Err(e) = self.store.set(&stored, revision).await {
            return reply(DeployResult::Error, storage_error(&e), None);
        }
        // Links the previous version had and this one does not are removed.
        if let (Some(previous), Some(now)) = (previously, stored.deployed()) {
            self.remove_links(name, &previous, Some(now)).await;
        }
        reply(DeployResult::Acknowledged, format!("Successfully deployed application {name} {}", deployed.clone().unwrap_or_default()), deployed)
    }

    async fn undeploy(&self, name: &str) -> DeployModelResponse {
        let reply = |result, message: String| DeployModelResponse { result, message, name: name.to_string(), version: None };
        let (mut stored, revision) = match self.store.get(name).await {
            Ok(Some(found)) => found,
            Ok(None) => return reply(DeployResult::NotFound, format!("Application with the name {name} not found")),
            Err(e) => return reply(DeployResult::Error, storage_error(&e)),
        };
        let previously = stored.deployed().cloned();
        if !stored.undeploy() {
            return reply(DeployResult::Acknowledged, format!("Application {name} was already undeployed"));
        }
        if let Err(e) = self.store.set(&stored, revision).await {
            return reply(DeployResult::Error, storage_error(&e));
        }
        if let Some(previous) = previously {
            self.remove_links(name, &previous, None).await;
        }
        reply(DeployResult::Acknowledged, format!("Successfully undeployed application {name}"))
    }

    /// Deletes the links `previous` put that `now` (if any) does not have.
    async fn remove_links(&self, name: &str, previous: &wadm_types::Manifest, now: Option<&wadm_types::Manifest>) {
        let links_of = |m: &wadm_types::Manifest| placement::place(&[(name.to_string(), m.clone())], &[]).links.remove(name).unwrap_or_default();
        let keep = now.map(links_of).unwrap_or_default();
        for link in links_of(previous) {
            let same = |l: &trellis_messages::link::Link| {
                l.source_id == link.source_id && l.name == link.name && l.wit_namespace == link.wit_namespace && l.wit_package == link.wit_package
            };
            if keep.iter().any(same) {
                continue;
            }
            let request = trellis_messages::link::DeleteInterfaceLinkDefinitionRequest {
                source_id: link.source_id.clone(),
                name: link.name.clone(),
                wit_namespace: link.wit_namespace.clone(),
                wit_package: link.wit_package.clone(),
            };
            if let Ok(Err(e)) = self.lattice.send(DeleteLink(request)).await {
                warn!(app = name, error = %e, "cannot delete a link of an undeployed application");
            }
        }
    }

    async fn status(&self, name: &str) -> StatusResponse {
        match self.store.get(name).await {
            Ok(Some((stored, _))) => {
                StatusResponse { result: StatusResult::Ok, message: format!("Successfully fetched status for application {name}"), status: Some(self.compute_status(&stored)) }
            }
            Ok(None) => StatusResponse { result: StatusResult::NotFound, message: format!("Application with the name {name} not found"), status: None },
            Err(e) => StatusResponse { result: StatusResult::Error, message: storage_error(&e), status: None },
        }
    }

    fn compute_status(&self, stored: &StoredManifest) -> Status {
        let Some(manifest) = stored.deployed() else {
            return Status::new(StatusInfo { status_type: StatusType::Undeployed, message: String::new() }, Vec::new());
        };
        let alive = self.liveness.alive();
        let hosts: Vec<HostView> = alive.iter().map(|(id, r)| HostView { id: id.clone(), labels: r.inventory.labels.clone() }).collect();
        let name = stored.name().to_string();
        let plan = placement::place(&[(name.clone(), manifest.clone())], &hosts);
        status::compute(&name, &plan, &alive, &self.view.links())
    }
}
