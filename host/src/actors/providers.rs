//! The providers actor: which providers run on this host, built-in and external. Carries out
//! `provider.start` / `provider.stop`, publishes `provider_started`, `provider_start_failed`
//! and `provider_stopped`, and keeps the host actor's inventory current (external providers
//! report their process's state to it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use tracing::{info, warn};
use trellis_messages::event::{names, ProviderStartFailed, ProviderStarted, ProviderStopped};
use trellis_messages::invocation::check_provider_id;
use trellis_messages::provider::{ProviderDescription, StartProviderCommand, StopProviderCommand};

use crate::actors::host::{HostActor, SetProviders};
use crate::error::{Result, WorkloadError};
use crate::providers::external::supervisor::{ExternalProvider, Signed, StatusChanged, StopExternal};
use crate::providers::external::reference::{self, Executable};
use crate::providers::external::{archive, Launch, StartError};
use crate::wasm::sources::oci;
use crate::providers::follower::{LinkFollower, StopFollowing};
use crate::capabilities::http_server::HttpServer;
use crate::capabilities::keyvalue::watch::KeyValueWatches;
use crate::capabilities::messaging::handler::Messaging;
use crate::capabilities::schedule::Schedules;
use crate::providers::ProviderKind;
use crate::services::HostServices;

/// What runs a provider.
#[derive(Debug)]
enum Runner {
    /// Nothing runs: host functions serve its links when guests call them (HTTP client,
    /// key-value).
    HostFunctions,
    /// A built-in provider that follows its links (HTTP server, messaging, schedules).
    Following(Recipient<StopFollowing>),
    /// An external process and its supervisor.
    External(Addr<ExternalProvider>),
}

/// A provider running here.
#[derive(Debug)]
struct Running {
    kind: &'static str,
    runner: Runner,
    description: ProviderDescription,
    /// The verified claims of an archive's provider.
    claims: Option<crate::trust::ProviderClaims>,
}

/// Owns the set of running providers.
#[derive(Debug)]
pub struct ProvidersActor {
    services: HostServices,
    host: Addr<HostActor>,
    running: BTreeMap<String, Running>,
    /// How external providers start; `Err` says why they cannot on this host.
    launch: std::result::Result<Arc<Launch>, Arc<StartError>>,
    /// Providers whose archive is being unpacked.
    unpacking: BTreeSet<String>,
}

impl ProvidersActor {
    /// No providers yet.
    pub fn new(services: HostServices, host: Addr<HostActor>, launch: std::result::Result<Arc<Launch>, Arc<StartError>>) -> Self {
        Self { services, host, running: BTreeMap::new(), launch, unpacking: BTreeSet::new() }
    }

    fn publish(&self, name: &'static str, data: impl serde::Serialize + Send + 'static) {
        let events = self.services.events.clone();
        actix::spawn(async move { events.publish_logged(name, data).await });
    }

    fn publish_inventory(&self) {
        self.host.do_send(SetProviders(self.running.values().map(|r| r.description.clone()).collect()));
    }

    /// Stops provider `id`; the future finishes when it has (an external process may take the
    /// shutdown grace period and the SIGTERM/SIGKILL steps). `None` when it does not run here.
    fn stop_one(&mut self, id: &str, reason: &'static str) -> Option<impl std::future::Future<Output = ()>> {
        let running = self.running.remove(id)?;
        // Revoked before anything else: calls that start from now on are refused.
        self.services.providers.remove(&self.services.host_id, id);
        let external = match running.runner {
            Runner::Following(addr) => {
                addr.do_send(StopFollowing);
                None
            }
            Runner::External(addr) => Some(addr),
            Runner::HostFunctions => None,
        };
        let (events, host_id, id, kind) = (self.services.events.clone(), self.services.host_id.clone(), id.to_string(), running.kind);
        let annotations = running.description.annotations.unwrap_or_default();
        Some(async move {
            if let Some(addr) = external {
                let _ = addr.send(StopExternal).await;
            }
            info!(provider_id = %id, kind, reason, "provider stopped");
            events.publish_logged(names::PROVIDER_STOPPED, ProviderStopped::new(&host_id, &id, annotations, reason)).await;
        })
    }

    /// Starts the supervisor of an external provider running `path`.
    fn spawn_external(
        &self,
        cmd: &StartProviderCommand,
        path: PathBuf,
        launch: Arc<Launch>,
        signed: Signed,
        ctx: &Context<Self>,
    ) -> std::result::Result<Runner, StartError> {
        let supervisor = ExternalProvider::launch(
            cmd.provider_id.clone(),
            path,
            cmd.config.clone(),
            self.services.clone(),
            launch,
            signed,
            ctx.address().recipient(),
        )?;
        Ok(Runner::External(supervisor.start()))
    }

    /// Records the outcome of a start: `provider_started` and the inventory, or
    /// `provider_start_failed` with the reason.
    fn launched(&mut self, cmd: &StartProviderCommand, base: ProviderStarted, started: std::result::Result<(&'static str, Runner), StartError>) {
        let (kind, runner) = match started {
            Ok(k) => k,
            Err(error) => {
                let error = error.to_string();
                warn!(provider_id = %cmd.provider_id, "{error}");
                self.publish(names::PROVIDER_START_FAILED, ProviderStartFailed { provider: base, error, link_name: "default".into() });
                return;
            }
        };
        let status = matches!(runner, Runner::External(_))
            .then(|| trellis_messages::provider::ProviderStatus { state: "starting".into(), ..Default::default() });
        let description = ProviderDescription {
            id: cmd.provider_id.clone(),
            image_ref: Some(cmd.provider_ref.clone()),
            name: Some(kind.to_string()),
            revision: 0,
            annotations: cmd.annotations.clone(),
            status,
        };
        info!(provider_id = %cmd.provider_id, kind, "provider started");
        self.services.providers.add(&self.services.host_id, &cmd.provider_id, &cmd.provider_ref);
        self.running.insert(cmd.provider_id.clone(), Running { kind, runner, description, claims: None });
        self.publish(names::PROVIDER_STARTED, base);
        self.publish_inventory();
    }

    /// Starts an external provider: an executable at once, an archive once it is verified and
    /// unpacked (off the actor's thread).
    fn start_external(&mut self, cmd: StartProviderCommand, base: ProviderStarted, ctx: &mut Context<Self>) {
        let launch = match self.launch.clone() {
            Ok(l) => l,
            Err(e) => return self.launched(&cmd, base, Err(StartError::Unavailable(e))),
        };
        match reference::executable(&cmd.provider_ref, &launch.files, launch.settings.allow_images) {
            Err(e) => self.launched(&cmd, base, Err(e)),
            Ok(Executable::File(_)) if self.services.trust.require_signed => {
                let e = StartError::Unsigned(cmd.provider_ref.clone());
                self.launched(&cmd, base, Err(e));
            }
            // A bare executable carries no claims, so no secrets backend gives it a secret.
            Ok(Executable::File(_)) if cmd.config.iter().any(|n| crate::secrets::is_reference(n)) => {
                self.launched(&cmd, base, Err(StartError::Secrets(crate::secrets::SecretsError::Unsigned)));
            }
            Ok(Executable::File(path)) => {
                let application = cmd.annotations.as_ref().and_then(|a| a.get(trellis_messages::APP_SPEC_ANNOTATION).cloned());
                let signed = Signed { application, ..Signed::default() };
                let started = self.spawn_external(&cmd, path, launch, signed, ctx).map(|r| ("external", r));
                self.launched(&cmd, base, started);
            }
            Ok(source @ (Executable::Archive(_) | Executable::Image(_))) => {
                self.unpacking.insert(cmd.provider_id.clone());
                let into = launch.unpacked.path().to_path_buf();
                let (oci, registries) = (self.services.runtime.config().oci.clone(), self.services.registries.clone());
                let trust = self.services.trust.clone();
                let (client, view, names) = (self.services.secrets.clone(), self.services.view.clone(), cmd.config.clone());
                let application = cmd.annotations.as_ref().and_then(|a| a.get(trellis_messages::APP_SPEC_ANNOTATION).cloned());
                let unpack = self.services.runtime.guests().spawn(async move {
                    let archive = match source {
                        Executable::Image(reference) => {
                            let bytes =
                                oci::pull_layer(&reference, &oci, &registries, archive::MAX_ARCHIVE, &oci::Wanted::PROVIDER).await?;
                            let path = into.join(format!("{}.par", oci::sha256(&bytes).trim_start_matches("sha256:")));
                            tokio::fs::write(&path, &bytes).await.map_err(StartError::Keep)?;
                            path
                        }
                        Executable::Archive(path) | Executable::File(path) => path,
                    };
                    let (path, token) = archive::extract(&archive, &into, &trust).await?;
                    // Asked only once the archive's claims are checked: the backend is shown them.
                    let lookup = |name: &str| view.config_record(name);
                    let secrets = crate::secrets::fetch(client.as_deref(), &names, lookup, Some(&token.jwt), application.as_ref()).await?;
                    let signed = Signed { jwt: Some(token.jwt), secrets, application };
                    Ok::<_, StartError>((path, token.claims, signed))
                });
                let unpacked = async move { unpack.await.unwrap_or_else(|e| Err(StartError::Unpacking(e.to_string()))) };
                ctx.spawn(unpacked.into_actor(self).map(move |binary, act, ctx| {
                    if !act.unpacking.remove(&cmd.provider_id) {
                        info!(provider_id = %cmd.provider_id, "provider stopped while its archive was unpacked; not started");
                        return;
                    }
                    let (started, claims) = match binary {
                        Ok((path, claims, signed)) => (act.spawn_external(&cmd, path, launch, signed, ctx).map(|r| ("external", r)), Some(claims)),
                        Err(e) => (Err(e), None),
                    };
                    let mut base = base;
                    if let (Ok(_), Some(c)) = (&started, &claims) {
                        base.archive = Some(trellis_messages::event::ArchiveClaims {
                            claims: crate::trust::provider_event_claims(c),
                            instance_id: cmd.provider_id.clone(),
                            public_key: cmd.provider_id.clone(),
                            link_name: "default".into(),
                        });
                    }
                    act.launched(&cmd, base, started);
                    if let Some(running) = act.running.get_mut(&cmd.provider_id) {
                        if let Some(c) = &claims {
                            crate::actors::workload::store_claims(&act.services, crate::trust::stored::StoredClaims::provider(c));
                        }
                        running.claims = claims;
                    }
                }));
            }
        }
    }
}

impl Handler<StatusChanged> for ProvidersActor {
    type Result = ();
    fn handle(&mut self, msg: StatusChanged, _: &mut Self::Context) {
        if let Some(r) = self.running.get_mut(&msg.id) {
            if matches!(r.runner, Runner::External(_)) {
                r.description.status = Some(msg.status);
                self.publish_inventory();
            }
        }
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
    fn handle(&mut self, StartProvider(cmd): StartProvider, ctx: &mut Self::Context) -> Self::Result {
        check_provider_id(&cmd.provider_id).map_err(WorkloadError::BadId)?;
        let base = ProviderStarted {
            host_id: self.services.host_id.clone(),
            provider_id: cmd.provider_id.clone(),
            image_ref: cmd.provider_ref.clone(),
            provider_ref: cmd.provider_ref.clone(),
            annotations: cmd.annotations.clone().unwrap_or_default().into_iter().collect(),
            archive: None,
        };
        // As a wasmCloud 1.9 host answers, whatever the reference: the id is taken here.
        if self.running.contains_key(&cmd.provider_id) || self.unpacking.contains(&cmd.provider_id) {
            return Err(WorkloadError::ProviderRunning { id: cmd.provider_id.clone() }.into());
        }
        let reply = format!("provider `{}` is starting", cmd.provider_id);
        if let Some(policy) = self.services.policy.clone() {
            // Asked first; until it answers the provider counts as starting (a second start
            // waits, a stop cancels it).
            self.unpacking.insert(cmd.provider_id.clone());
            let (id, reference, annotations) = (cmd.provider_id.clone(), cmd.provider_ref.clone(), cmd.annotations.clone().unwrap_or_default());
            let asked = async move { policy.start_provider(&id, &reference, &annotations, None).await };
            ctx.spawn(asked.into_actor(self).map(move |allowed, act, ctx| {
                if !act.unpacking.remove(&cmd.provider_id) {
                    info!(provider_id = %cmd.provider_id, "provider stopped while the policy service was asked; not started");
                    return;
                }
                match allowed {
                    Ok(()) => act.begin(cmd, base, ctx),
                    Err(e) => act.launched(&cmd, base, Err(e.into())),
                }
            }));
        } else {
            self.begin(cmd, base, ctx);
        }
        Ok(reply)
    }
}

impl ProvidersActor {
    /// Starts a provider the checks let through: a built-in (named as one, or an image this
    /// host maps to one) at once, an external one through [`Self::start_external`].
    fn begin(&mut self, cmd: StartProviderCommand, base: ProviderStarted, ctx: &mut Context<Self>) {
        let kind = match self.services.providers.builtin(&cmd.provider_ref) {
            Ok(Some(kind)) => kind,
            Ok(None) => return self.start_external(cmd, base, ctx),
            Err(e) => return self.launched(&cmd, base, Err(e.into())),
        };
        // A built-in runs on the host's own connection and reads no secret: one named is refused
        // rather than silently left unused.
        if let Some(name) = cmd.config.iter().find(|n| crate::secrets::is_reference(n)) {
            return self.launched(&cmd, base, Err(StartError::BuiltInSecret(name.clone())));
        }
        let (id, services) = (cmd.provider_id.clone(), self.services.clone());
        let runner = match kind {
            ProviderKind::HttpServer => following(HttpServer::new(id, services.clone()), &services),
            ProviderKind::Messaging => following(Messaging::new(id, services.clone()), &services),
            ProviderKind::Schedule => return self.start_schedules(cmd, base, ctx),
            ProviderKind::KeyValue => following(KeyValueWatches::new(id, services.clone()), &services),
            ProviderKind::HttpClient | ProviderKind::Blobstore => Runner::HostFunctions,
        };
        self.launched(&cmd, base, Ok((kind.name(), runner)));
    }

    /// Starts a schedule provider once its bucket is open (retried while JetStream refuses);
    /// a stop in the meantime means it never starts.
    fn start_schedules(&mut self, cmd: StartProviderCommand, base: ProviderStarted, ctx: &mut Context<Self>) {
        self.unpacking.insert(cmd.provider_id.clone());
        let open = crate::capabilities::schedule::open_bucket(self.services.store.clone(), cmd.provider_id.clone());
        ctx.spawn(open.into_actor(self).map(move |claims, act, _| {
            if !act.unpacking.remove(&cmd.provider_id) {
                info!(provider_id = %cmd.provider_id, "schedule provider stopped while its bucket was opened; not started");
                return;
            }
            let runner = following(Schedules::new(cmd.provider_id.clone(), act.services.clone(), claims), &act.services);
            act.launched(&cmd, base, Ok((ProviderKind::Schedule.name(), runner)));
        }));
    }
}

/// Starts `provider` following its links.
fn following<P: crate::providers::follower::FollowLinks>(provider: P, services: &HostServices) -> Runner {
    Runner::Following(LinkFollower::new(provider, services.view.clone()).start().recipient())
}

/// `provider.stop`.
#[derive(Debug, Message)]
#[rtype(result = "Result<String>")]
pub struct StopProvider(pub StopProviderCommand);

impl Handler<StopProvider> for ProvidersActor {
    type Result = Result<String>;
    fn handle(&mut self, StopProvider(cmd): StopProvider, _: &mut Self::Context) -> Self::Result {
        if self.unpacking.remove(&cmd.provider_id) {
            self.publish(names::PROVIDER_STOPPED, ProviderStopped::new(&self.services.host_id, &cmd.provider_id, BTreeMap::new(), "stop"));
            return Ok(format!("provider `{}` stopped before it started", cmd.provider_id));
        }
        if let Some(stopping) = self.stop_one(&cmd.provider_id, "stop") {
            self.publish_inventory();
            // provider_stopped follows once it has (for an external one, after its process).
            actix::spawn(stopping);
            Ok(format!("provider `{}` stopped", cmd.provider_id))
        } else {
            Err(WorkloadError::NoProvider { id: cmd.provider_id.clone(), host: self.services.host_id.clone() }.into())
        }
    }
}

/// Stops every provider (host shutdown); answered once all have stopped, external processes
/// included (each within its shutdown grace period plus the SIGTERM/SIGKILL steps).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopProviders;

impl Handler<StopProviders> for ProvidersActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: StopProviders, _: &mut Self::Context) -> Self::Result {
        // Archives still being unpacked are not started.
        self.unpacking.clear();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        let stops: Vec<_> = ids.iter().filter_map(|id| self.stop_one(id, "host stopping")).collect();
        Box::pin(futures::future::join_all(stops).into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}

/// Whether provider `0` runs (or is starting) here: a host does not bid for it then.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct IsRunning(pub String);

impl Handler<IsRunning> for ProvidersActor {
    type Result = bool;
    fn handle(&mut self, IsRunning(id): IsRunning, _: &mut Self::Context) -> bool {
        self.running.contains_key(&id) || self.unpacking.contains(&id)
    }
}

/// `claims.get`: the claims of every provider archive running here, in wasmCloud's shape.
#[derive(Debug, Message)]
#[rtype(result = "Vec<std::collections::HashMap<String, String>>")]
pub struct ProviderClaims;

impl Handler<ProviderClaims> for ProvidersActor {
    type Result = Vec<std::collections::HashMap<String, String>>;
    fn handle(&mut self, _: ProviderClaims, _: &mut Self::Context) -> Self::Result {
        self.running.values().filter_map(|r| r.claims.as_ref()).map(crate::trust::provider_map).collect()
    }
}
