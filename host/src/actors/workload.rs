//! The workload actor: which components run on this host, at what scale, from which reference.
//! It carries out `component.scale` and `component.update` (fetching and compiling on the guest
//! threads, never on the actor's thread), starts and stops component actors, publishes
//! `component_scaled` / `component_scale_failed`, keeps the host actor's inventory current,
//! records each component's reference in its lattice spec, and follows a spec whose reference
//! changes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::{info, warn};
use trellis_messages::component::{ComponentDescription, ScaleComponentCommand, UpdateComponentCommand};
use trellis_messages::event::{names, ComponentScaled};
use trellis_messages::invocation::check_component_id;

use crate::actors::component::{ComponentActor, SetMaxInstances, StopComponent, Update};
use crate::actors::host::{HostActor, SetComponent};
use crate::error::{HostError, Result, WorkloadError};
use crate::services::HostServices;
use crate::capabilities::imports::{link_imports, ImportContext};
use crate::wasm::limits::ComponentLimits;
use crate::wasm::reuse::Reuse;
use crate::wasm::PreparedComponent;

/// A component running here.
#[derive(Debug)]
struct Running {
    addr: Addr<ComponentActor>,
    description: ComponentDescription,
    /// The verified claims of the code it runs (`None`: unsigned).
    claims: Option<crate::trust::ComponentClaims>,
}

/// Owns the set of running components.
pub struct WorkloadActor {
    /// Shared host handles (NATS, events, wasm runtime, lattice view, local components).
    services: HostServices,
    host: Addr<HostActor>,
    components: BTreeMap<String, Running>,
    /// Ids with a scale or update in progress; a second one is refused until it finishes.
    busy: HashSet<String>,
    /// How long a stopping component may finish its calls.
    stop_timeout: Duration,
    /// Config names each running component was scaled with.
    configs: BTreeMap<String, Vec<String>>,
    /// Set when the host drains: a component that finishes starting afterwards is not started.
    draining: bool,
    /// Loads and compiles in progress; a drain waits for them, so every scale it acknowledged
    /// ends with an event.
    loading: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for WorkloadActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadActor").field("components", &self.components.keys()).finish_non_exhaustive()
    }
}

impl WorkloadActor {
    /// A workload actor with no components.
    pub fn new(services: HostServices, host: Addr<HostActor>, stop_timeout: Duration) -> Self {
        Self {
            services,
            host,
            components: BTreeMap::new(),
            busy: HashSet::new(),
            stop_timeout,
            configs: BTreeMap::new(),
            draining: false,
            loading: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Refuses an invalid id, or one with a scale or update still in progress.
    fn check_idle(&self, id: &str) -> Result<()> {
        check_component_id(id).map_err(WorkloadError::BadId)?;
        if self.busy.contains(id) {
            return Err(WorkloadError::InProgress(id.into()).into());
        }
        Ok(())
    }

    /// Tells the host actor (inventory, heartbeat) what component `id` now is: one entry, so a
    /// scale costs the same with 10 or 10,000 components running.
    fn publish_component(&self, id: &str) {
        self.host.do_send(SetComponent(id.to_string(), self.components.get(id).map(|r| r.description.clone())));
    }

    fn event(&self, id: &str, image_ref: &str, max: u32, annotations: Option<&BTreeMap<String, String>>, error: Option<String>) {
        let claims = if error.is_none() { self.components.get(id).and_then(|r| r.claims.as_ref()) } else { None };
        let data = ComponentScaled {
            host_id: self.services.host_id.clone(),
            image_ref: image_ref.into(),
            component_id: id.into(),
            max_instances: max,
            annotations: annotations.cloned().unwrap_or_default(),
            claims: claims.map(crate::trust::event_claims),
            public_key: claims.map(|c| c.subject.clone()),
            error,
        };
        let name = if data.error.is_some() { names::COMPONENT_SCALE_FAILED } else { names::COMPONENT_SCALED };
        if let Some(e) = &data.error {
            warn!(component_id = id, image_ref, error = %e, "component scale failed");
        }
        let events = self.services.events.clone();
        actix::spawn(async move { events.publish_logged(name, data).await });
    }

    /// Fetches `reference` for component `id` (a file, an OCI registry or the lattice's artifact
    /// store) on the guest threads, checks its claims against the host's trust policy, then
    /// compiles it on their blocking pool.
    fn prepare(
        &self,
        id: &str,
        reference: String,
        config_names: Vec<String>,
        scale: (u32, BTreeMap<String, String>),
        limits: ComponentLimits,
    ) -> impl std::future::Future<Output = Result<(Arc<PreparedComponent>, Option<crate::trust::ComponentClaims>)>> {
        let runtime = self.services.runtime.clone();
        let handle = runtime.guests().clone();
        let s = &self.services;
        let (trust, policy, component_id) = (s.trust.clone(), s.policy.clone(), id.to_string());
        let sources = crate::wasm::sources::load::Sources {
            registries: s.registries.clone(),
            nats: s.calls.clone(),
            lattice: s.subjects.lattice().to_string(),
        };
        let (resolver, local, calls, subjects, wrpc) = (s.resolver.clone(), s.local.clone(), s.calls.clone(), s.subjects.clone(), s.wrpc.clone());
        let spy = s.runtime.spy().tap(id);
        let (secrets_client, view) = (s.secrets.clone(), s.view.clone());
        let application = scale.1.get(trellis_messages::APP_SPEC_ANNOTATION).cloned();
        async move {
            let config = runtime.config().clone();
            let fetched = {
                let reference = reference.clone();
                handle.spawn(async move { crate::wasm::sources::load::fetch(&reference, &config, &sources).await })
            };
            let bytes = fetched.await.map_err(|e| HostError::Runtime(format!("component fetch failed: {e}")))??;
            // On the blocking pool: hashing a large component is CPU work, and the claims are
            // untrusted input to a parser that must not take the host down if it panics.
            let (bytes, claims) = handle
                .spawn_blocking(move || {
                    let claims = trust.component_token(&bytes);
                    (bytes, claims)
                })
                .await
                .map_err(|_| WorkloadError::NotTrusted { reference: reference.clone(), reason: crate::trust::TrustError::ReaderFailed })?;
            let token = claims.map_err(|reason| WorkloadError::NotTrusted { reference: reference.clone(), reason })?;
            let (claims, jwt) = token.map(|t| (t.claims, t.jwt)).unzip();
            if let Some(policy) = policy {
                let (max, annotations) = scale;
                policy.start_component(&component_id, &reference, max, &annotations, claims.as_ref()).await.map_err(WorkloadError::Policy)?;
            }
            // Asked only once the code may start: the backend is shown the code's claims.
            let lookup = |name: &str| view.config_record(name);
            let secrets = crate::secrets::fetch(secrets_client.as_deref(), &config_names, lookup, jwt.as_deref(), application.as_ref())
                .await
                .map_err(|reason| WorkloadError::Secrets { reference: reference.clone(), reason })?;
            let imports = Arc::new(ImportContext {
                source_id: component_id.clone(),
                config_names,
                secrets,
                resolver: resolver.clone(),
                local,
                runtime: runtime.clone(),
                nats: calls,
                subjects,
                wrpc,
                spy,
            });
            let capabilities = crate::wasm::state::CapabilityContext {
                data: imports.clone(),
                outgoing_http: Arc::new(crate::capabilities::http_client::HttpClient::new(resolver, &component_id)),
            };
            let prepared = handle
                .spawn_blocking(move || {
                    let link = |linker: &mut _, component: &_| link_imports(linker, component, &imports);
                    PreparedComponent::load(&runtime, &reference, bytes, link, Some(capabilities)).map(|mut prepared| {
                        prepared.limits = limits;
                        Arc::new(prepared)
                    })
                })
                .await
                .map_err(|e| HostError::Runtime(format!("component loader failed: {e}")))??;
            Ok((prepared, claims))
        }
    }

    fn start_component(&mut self, command: ScaleComponentCommand, limits: ComponentLimits, ctx: &mut Context<Self>) {
        let id = command.component_id.clone();
        self.busy.insert(id.clone());
        let scale = (command.max_instances, command.annotations.clone().unwrap_or_default());
        let prepare = self.prepare(&id, command.component_ref.clone(), command.config.clone(), scale, limits);
        let services = self.services.clone();
        let max = command.max_instances;
        let annotations = command.annotations.clone().unwrap_or_default();
        let fut = async move {
            let (component, claims) = prepare.await?;
            let admission = admission(&services, &id, &component.image_ref, annotations, claims.clone());
            ComponentActor::subscribe(&id, component, max, &services, admission).await.map(|a| (a, claims))
        };
        let fut = self.loading.track_future(fut);
        ctx.spawn(fut.into_actor(self).map(move |result, act, _| {
            act.busy.remove(&command.component_id);
            let result = match result {
                // Never started, so never drained: dropping it drops its subscription.
                Ok(_) if act.draining => Err(HostError::ShuttingDown),
                other => other,
            };
            match result {
                Ok((actor, claims)) => {
                    act.configs.insert(command.component_id.clone(), command.config.clone());
                    let description = ComponentDescription {
                        id: command.component_id.clone(),
                        image_ref: command.component_ref.clone(),
                        name: None,
                        annotations: command.annotations.clone(),
                        revision: 0,
                        max_instances: command.max_instances,
                        limits: command.component_limits.clone(),
                    };
                    let addr = actor.start();
                    if let Some(c) = &claims {
                        store_claims(&act.services, crate::trust::stored::StoredClaims::component(c));
                    }
                    act.components.insert(command.component_id.clone(), Running { addr, description, claims });
                    act.record_url(&command.component_id, &command.component_ref);
                    act.event(&command.component_id, &command.component_ref, command.max_instances, command.annotations.as_ref(), None);
                    act.publish_component(&command.component_id);
                }
                Err(e) => act.event(
                    &command.component_id,
                    &command.component_ref,
                    command.max_instances,
                    command.annotations.as_ref(),
                    Some(e.to_string()),
                ),
            }
        }));
    }

    fn stop_component(&mut self, id: String, ctx: &mut Context<Self>) {
        let Some(running) = self.components.remove(&id) else { return };
        self.configs.remove(&id);
        self.busy.insert(id.clone());
        self.publish_component(&id);
        let timeout = self.stop_timeout;
        let addr = running.addr.clone();
        ctx.spawn(async move { addr.send(StopComponent { timeout }).await }.into_actor(self).map(move |_, act, _| {
            act.busy.remove(&id);
            let d = &running.description;
            act.event(&id, &d.image_ref, 0, d.annotations.as_ref(), None);
        }));
    }

    fn update_component(
        &mut self,
        id: String,
        new_ref: String,
        annotations: Option<BTreeMap<String, String>>,
        ctx: &mut Context<Self>,
    ) {
        self.busy.insert(id.clone());
        let configs = self.configs.get(&id).cloned().unwrap_or_default();
        let scale = self.components.get(&id).map_or_else(Default::default, |r| {
            let a = annotations.clone().or_else(|| r.description.annotations.clone()).unwrap_or_default();
            (r.description.max_instances, a)
        });
        // The new code keeps the limits the component was started with (checked then).
        let host_max = self.services.runtime.config().max_component_memory;
        let mut limits = self
            .components
            .get(&id)
            .and_then(|r| ComponentLimits::parse(r.description.limits.as_ref(), host_max).ok())
            .unwrap_or_default();
        // Reuse as the update's annotations say, else as the running component's did.
        limits.reuse = Reuse::parse(Some(&scale.1)).unwrap_or_default();
        let prepare = self.loading.track_future(self.prepare(&id, new_ref.clone(), configs, scale, limits));
        ctx.spawn(prepare.into_actor(self).map(move |result, act, _| {
            act.busy.remove(&id);
            let Some(running) = act.components.get_mut(&id) else {
                return; // stopped meanwhile
            };
            match result {
                Ok((component, claims)) => {
                    let a = annotations.clone().or_else(|| running.description.annotations.clone()).unwrap_or_default();
                    let admission = admission(&act.services, &id, &new_ref, a, claims.clone());
                    running.addr.do_send(Update(component, admission));
                    if let Some(c) = &claims {
                        store_claims(&act.services, crate::trust::stored::StoredClaims::component(c));
                    }
                    running.claims = claims;
                    running.description.image_ref = new_ref.clone();
                    if annotations.is_some() {
                        running.description.annotations = annotations;
                    }
                    let d = running.description.clone();
                    act.event(&id, &d.image_ref, d.max_instances, d.annotations.as_ref(), None);
                    // This host only, as on wasmCloud 1.9: the spec's reference is not rewritten
                    // (writing it moves the component on every Trellis host that runs it).
                    act.publish_component(&id);
                }
                Err(e) => {
                    let d = running.description.clone();
                    act.event(&id, &new_ref, d.max_instances, d.annotations.as_ref(), Some(e.to_string()));
                }
            }
        }));
    }
}

impl Actor for WorkloadActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let changes = self.services.view.url_changes();
        ctx.add_stream(futures::stream::unfold(changes, |mut rx| async move {
            use tokio::sync::broadcast::error::RecvError;
            match rx.recv().await {
                Ok(id) => Some((UrlChanged::Of(id), rx)),
                Err(RecvError::Lagged(_)) => Some((UrlChanged::Unknown, rx)),
                Err(RecvError::Closed) => None,
            }
        }));
    }
}

/// A component spec's reference changed: of one component, or (the reader fell behind) of any.
enum UrlChanged {
    Of(String),
    Unknown,
}

/// A running component whose spec now names another reference is updated to it (calls in
/// flight finish on the old code), as on every host that runs it.
impl StreamHandler<UrlChanged> for WorkloadActor {
    fn handle(&mut self, changed: UrlChanged, ctx: &mut Self::Context) {
        if self.draining {
            return;
        }
        let ids: Vec<String> = match changed {
            UrlChanged::Of(id) => vec![id],
            UrlChanged::Unknown => self.components.keys().cloned().collect(),
        };
        let moved: Vec<(String, String)> = ids
            .into_iter()
            .filter(|id| !self.busy.contains(id))
            .filter_map(|id| {
                let running = self.components.get(&id)?;
                let url = self.services.view.url_of(&id)?;
                (url != running.description.image_ref).then_some((id, url))
            })
            .collect();
        for (id, url) in moved {
            info!(component_id = %id, new_ref = %url, "the component's spec names a new reference; updating");
            self.update_component(id, url, None, ctx);
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl WorkloadActor {
    /// Records `reference` as component `id`'s url in the lattice's spec when it names none
    /// yet (in the background).
    fn record_url(&self, id: &str, reference: &str) {
        let (store, id, reference) = (self.services.store.clone(), id.to_string(), reference.to_string());
        actix::spawn(async move {
            if let Err(e) = store.set_url_if_missing(&id, &reference).await {
                warn!(component_id = %id, error = %e, "could not record the component's reference in its spec");
            }
        });
    }
}

/// `component.scale`: validated at once (the reply), carried out in the background (the event).
#[derive(Debug, Message)]
#[rtype(result = "Result<String>")]
pub struct Scale(pub ScaleComponentCommand);

impl Handler<Scale> for WorkloadActor {
    type Result = Result<String>;
    fn handle(&mut self, Scale(command): Scale, ctx: &mut Self::Context) -> Self::Result {
        let id = command.component_id.clone();
        self.check_idle(&id)?;
        let max = command.max_instances;
        match self.components.get(&id) {
            None if max == 0 => {
                // As wasmCloud 1.9: a scale to zero of what is not running still says it is at
                // zero (wadm counts on the event).
                self.event(&id, &command.component_ref, 0, command.annotations.as_ref(), None);
                Ok(format!("component `{id}` is not running on this host; nothing to stop"))
            }
            None => {
                if command.component_ref.trim().is_empty() {
                    return Err(WorkloadError::NoReference(id.clone()).into());
                }
                let host_max = self.services.runtime.config().max_component_memory;
                let mut limits = ComponentLimits::parse(command.component_limits.as_ref(), host_max).map_err(WorkloadError::Limits)?;
                limits.reuse = Reuse::parse(command.annotations.as_ref()).map_err(WorkloadError::Reuse)?;
                info!(component_id = %id, image_ref = %command.component_ref, max, "scaling component");
                self.start_component(command, limits, ctx);
                Ok(format!("component `{id}` is starting"))
            }
            Some(_) if max == 0 => {
                info!(component_id = %id, "stopping component");
                self.stop_component(id.clone(), ctx);
                Ok(format!("component `{id}` is stopping"))
            }
            // The same code with other reuse annotations: prepared again with them, and swapped
            // in as below.
            Some(running)
                if (command.component_ref.is_empty() || command.component_ref == running.description.image_ref)
                    && command.annotations.is_some()
                    && Reuse::parse(command.annotations.as_ref()).map_err(WorkloadError::Reuse)?
                        != Reuse::parse(running.description.annotations.as_ref()).unwrap_or_default() =>
            {
                running.addr.do_send(SetMaxInstances(max));
                let reference = running.description.image_ref.clone();
                if let Some(r) = self.components.get_mut(&id) {
                    r.description.max_instances = max;
                }
                info!(component_id = %id, "reuse annotations changed; preparing the component again with them");
                self.update_component(id.clone(), reference, command.annotations, ctx);
                Ok(format!("component `{id}` scaled to {max}; its new reuse settings take effect when it is prepared again"))
            }
            // The same code with another config list (a manifest's config or secrets changed):
            // prepared again with the new list (its secrets fetched again), and swapped in
            // without dropping calls, as a wasmCloud 1.9 host refetches config and secrets.
            Some(running)
                if (command.component_ref.is_empty() || command.component_ref == running.description.image_ref)
                    && self.configs.get(&id).is_some_and(|c| *c != command.config) =>
            {
                running.addr.do_send(SetMaxInstances(max));
                let reference = running.description.image_ref.clone();
                if let Some(r) = self.components.get_mut(&id) {
                    r.description.max_instances = max;
                }
                info!(component_id = %id, "config list changed; preparing the component again with it");
                self.configs.insert(id.clone(), command.config.clone());
                self.update_component(id.clone(), reference, command.annotations, ctx);
                Ok(format!("component `{id}` scaled to {max}; its new config list takes effect when it is prepared again"))
            }
            Some(running) if command.component_ref.is_empty() || command.component_ref == running.description.image_ref => {
                running.addr.do_send(SetMaxInstances(max));
                let d = {
                    let r = self.components.get_mut(&id).ok_or(HostError::ShuttingDown)?;
                    r.description.max_instances = max;
                    if command.annotations.is_some() {
                        r.description.annotations = command.annotations.clone();
                    }
                    r.description.clone()
                };
                self.event(&id, &d.image_ref, max, d.annotations.as_ref(), None);
                self.publish_component(&id);
                Ok(format!("component `{id}` scaled to {max}"))
            }
            Some(running) if command.allow_update => {
                running.addr.do_send(SetMaxInstances(max));
                if let Some(r) = self.components.get_mut(&id) {
                    r.description.max_instances = max;
                }
                self.update_component(id.clone(), command.component_ref, command.annotations, ctx);
                Ok(format!("component `{id}` is updating"))
            }
            // As a wasmCloud 1.9 host does: the code running is scaled, its reference kept, and
            // the reply says so.
            Some(running) => {
                running.addr.do_send(SetMaxInstances(max));
                let d = {
                    let r = self.components.get_mut(&id).ok_or(HostError::ShuttingDown)?;
                    r.description.max_instances = max;
                    r.description.clone()
                };
                self.event(&id, &d.image_ref, max, d.annotations.as_ref(), None);
                self.publish_component(&id);
                Ok(format!(
                    "Requested to scale existing component to a different image reference: {} != {}. The component will be scaled but the image reference will not be updated. If you meant to update this component to a new image ref, use the update command.",
                    d.image_ref, command.component_ref
                ))
            }
        }
    }
}

/// `component.update`: switch a running component to a new reference without dropping calls.
#[derive(Debug, Message)]
#[rtype(result = "Result<String>")]
pub struct UpdateComponent(pub UpdateComponentCommand);

impl Handler<UpdateComponent> for WorkloadActor {
    type Result = Result<String>;
    fn handle(&mut self, UpdateComponent(command): UpdateComponent, ctx: &mut Self::Context) -> Self::Result {
        let id = command.component_id.clone();
        if command.new_component_ref.trim().is_empty() {
            return Err(WorkloadError::NoNewReference(id).into());
        }
        self.check_idle(&id)?;
        let Some(running) = self.components.get(&id) else {
            return Err(WorkloadError::NoComponent { id, host: self.services.host_id.clone() }.into());
        };
        if running.description.image_ref == command.new_component_ref {
            return Ok(format!("component `{id}` already runs `{}`", command.new_component_ref));
        }
        Reuse::parse(command.annotations.as_ref()).map_err(WorkloadError::Reuse)?;
        info!(component_id = %id, new_ref = %command.new_component_ref, "updating component");
        self.update_component(id.clone(), command.new_component_ref, command.annotations, ctx);
        Ok(format!("component `{id}` is updating"))
    }
}

/// Stops every component (host shutdown), letting calls in flight finish within `timeout`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DrainComponents {
    /// How long calls in flight may take.
    pub timeout: Duration,
}

impl Handler<DrainComponents> for WorkloadActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, msg: DrainComponents, _: &mut Self::Context) -> Self::Result {
        self.draining = true;
        let running: Vec<_> = std::mem::take(&mut self.components).into_values().collect();
        for r in &running {
            self.host.do_send(SetComponent(r.description.id.clone(), None));
        }
        let timeout = msg.timeout;
        let loading = self.loading.clone();
        loading.close();
        Box::pin(
            async move {
                let stops = running.iter().map(|r| r.addr.send(StopComponent { timeout }));
                futures::future::join_all(stops).await;
                // A component still loading is refused when it finishes (see `draining`).
                let _ = tokio::time::timeout(timeout, loading.wait()).await;
            }
            .into_actor(self)
            // A moment later, so the completions of those loads (futures of this actor) have
            // run and published their events.
            .map(|(), _, ctx| {
                ctx.run_later(Duration::from_millis(5), |_, ctx| ctx.stop());
            }),
        )
    }
}

/// Whether component `0` runs here (auctions skip hosts that already run it).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct IsRunning(pub String);

impl Handler<IsRunning> for WorkloadActor {
    type Result = bool;
    fn handle(&mut self, msg: IsRunning, _: &mut Self::Context) -> bool {
        self.components.contains_key(&msg.0) || self.busy.contains(&msg.0)
    }
}

/// Keeps `claims` for the lattice, where wasmCloud hosts keep theirs (`claims.get` on every
/// host answers them); a failure is logged, and the code runs regardless.
pub(crate) fn store_claims(services: &HostServices, claims: crate::trust::stored::StoredClaims) {
    let store = services.store.clone();
    actix::spawn(async move {
        if let Err(e) = store.put_claims(&claims).await {
            warn!(subject = claims.subject(), error = %e, "claims not stored for the lattice");
        }
    });
}

/// `claims.get`: the claims of every signed component running here, in wasmCloud's shape.
#[derive(Debug, Message)]
#[rtype(result = "Vec<std::collections::HashMap<String, String>>")]
pub struct ComponentClaims;

impl Handler<ComponentClaims> for WorkloadActor {
    type Result = Vec<std::collections::HashMap<String, String>>;
    fn handle(&mut self, _: ComponentClaims, _: &mut Self::Context) -> Self::Result {
        self.components.values().filter_map(|r| r.claims.as_ref()).map(crate::trust::component_map).collect()
    }
}

/// What the policy service is told when a call to component `id` arrives from elsewhere;
/// `None` when the host has no policy service.
fn admission(
    services: &HostServices,
    id: &str,
    image_ref: &str,
    annotations: BTreeMap<String, String>,
    claims: Option<crate::trust::ComponentClaims>,
) -> Option<Arc<crate::trust::policy::Admission>> {
    let policy = services.policy.clone()?;
    Some(Arc::new(crate::trust::policy::Admission { policy, component_id: id.to_string(), image_ref: image_ref.to_string(), annotations, claims }))
}
