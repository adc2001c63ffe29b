//! One host's part of every deployed application: each pass computes the lattice-wide plan
//! ([`placement::place`]) from the deployed manifests and the live hosts, then makes this host
//! match its own share, through its own actors (no NATS round trip): components scaled with
//! wadm's annotations, providers started and stopped, and, where this host is an app's steward,
//! the app's configs and links put and its status published on `wadm.status.{lattice}.{app}`.
//!
//! A pass runs when a manifest changes, when the live hosts or what they run change, and at
//! least every [`TICK`]; it is idempotent. A workload that fails to start is retried with
//! exponential backoff ([`backoff`], 1 s doubling to 30 s), and the failure is in this host's
//! liveness record, so every host's status answer shows it. What an operator scaled by hand
//! (no wadm annotations) is never touched.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use futures::StreamExt;
use tracing::{debug, info, warn};
use trellis_messages::component::ScaleComponentCommand;
use trellis_messages::provider::{StartProviderCommand, StopProviderCommand};
use wadm_types::api::Status;

use super::liveness::{LiveRecord, Liveness, PERIOD};
use super::placement::{self, HostView, Plan};
use super::store::ManifestStore;
use super::{managing_app, status};
use crate::actors::host::{GetInventory, HostActor};
use crate::actors::lattice::{LatticeActor, PutConfig, PutLink};
use crate::actors::providers::{ProvidersActor, StartProvider, StopProvider};
use crate::actors::workload::{Scale, WorkloadActor};
use crate::lattice::LatticeView;

/// The longest a pass waits for an event.
pub const TICK: Duration = Duration::from_millis(500);
/// How often the deployed manifests are read again even without a change seen.
const RELOAD: Duration = Duration::from_secs(5);

/// The wait before attempt `n` (1-based) of a workload that keeps failing: 1 s, doubling, at
/// most 30 s.
pub fn backoff(n: u32) -> Duration {
    crate::backoff::doubling(Duration::from_secs(1), n, Duration::from_secs(30))
}

/// This host's actors and lattice handles.
#[derive(Clone, Debug)]
pub struct Reconciler {
    /// This host.
    pub host_id: String,
    /// The lattice.
    pub lattice: String,
    /// The manifests.
    pub store: ManifestStore,
    /// Who is alive.
    pub liveness: Liveness,
    /// Inventory (what this host runs).
    pub host: Addr<HostActor>,
    /// Scales components.
    pub workload: Addr<WorkloadActor>,
    /// Starts and stops providers.
    pub providers: Addr<ProvidersActor>,
    /// Puts configs and links.
    pub lattice_actor: Addr<LatticeActor>,
    /// The links and configs as this host sees them.
    pub view: LatticeView,
    /// NATS (status and failure events).
    pub nats: async_nats::Client,
    /// Workload id → why it failed to start here (shared with the liveness record).
    pub failures: Arc<Mutex<BTreeMap<String, String>>>,
}

#[derive(Debug, Default)]
struct Attempts {
    count: u32,
    next: Option<Instant>,
}

impl Reconciler {
    /// This host's liveness record now.
    async fn record(&self) -> Option<LiveRecord> {
        let inventory = self.host.send(GetInventory).await.ok()?;
        let failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        Some(LiveRecord { inventory, failures })
    }

    /// Publishes this host's liveness record every [`PERIOD`] until aborted.
    pub async fn beat(self) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(record) = self.record().await {
                self.liveness.beat(&record).await;
            }
        }
    }

    /// Follows this host's own start failures into `failures` until aborted.
    async fn follow_failures(nats: async_nats::Client, lattice: String, host_id: String, failures: Arc<Mutex<BTreeMap<String, String>>>) {
        // Only the two failure events, not every event of the lattice (heartbeats included).
        let (Ok(components), Ok(providers)) = (
            nats.subscribe(trellis_messages::subjects::event(&lattice, trellis_messages::event::names::COMPONENT_SCALE_FAILED)).await,
            nats.subscribe(trellis_messages::subjects::event(&lattice, trellis_messages::event::names::PROVIDER_START_FAILED)).await,
        ) else {
            return;
        };
        let mut sub = futures::stream::select(components, providers);
        while let Some(msg) = sub.next().await {
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(&msg.payload) else { continue };
            let data = &event["data"];
            if data["host_id"].as_str() != Some(host_id.as_str()) {
                continue;
            }
            let signature = msg.headers.as_ref().and_then(|h| h.get(trellis_messages::event::SIGNATURE_HEADER)).map(|v| v.as_str());
            if let Err(why) = own_and_fresh(&host_id, &msg.subject, &msg.payload, signature, event["time"].as_str()) {
                warn!(subject = %msg.subject, "a failure event in this host's name ignored: {why}");
                continue;
            }
            let id = data["component_id"].as_str().or_else(|| data["provider_id"].as_str()).unwrap_or_default().to_string();
            let error = data["error"].as_str().unwrap_or("failed to start").to_string();
            failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, error);
        }
    }

    /// Reconciles until aborted.
    pub async fn run(self) {
        // Ends with this future (aborted at stop).
        let _failures = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(Self::follow_failures(
            self.nats.clone(),
            self.lattice.clone(),
            self.host_id.clone(),
            self.failures.clone(),
        )));
        let mut watch = self.store.watch().await.ok();
        let mut apps: Vec<(String, wadm_types::Manifest)> = Vec::new();
        let mut loaded: Option<Instant> = None;
        let mut attempts: HashMap<String, Attempts> = HashMap::new();
        let mut published: HashMap<String, Status> = HashMap::new();
        loop {
            if loaded.is_none_or(|at| at.elapsed() >= RELOAD) {
                match self.store.list().await {
                    Ok(all) => {
                        apps = all.iter().filter_map(|s| s.deployed().map(|m| (s.name().to_string(), m.clone()))).collect();
                        loaded = Some(Instant::now());
                    }
                    Err(e) => {
                        // Tried again at the next reload, not at every pass.
                        warn!(error = %e, "cannot read the deployed applications; keeping the last ones read");
                        loaded = Some(Instant::now());
                    }
                }
            }
            self.pass(&apps, &mut attempts, &mut published).await;
            tokio::select! {
                changed = async {
                    match watch.as_mut() {
                        Some(w) => w.next().await.is_some(),
                        None => std::future::pending().await,
                    }
                } => {
                    if changed {
                        loaded = None;
                    } else {
                        watch = self.store.watch().await.ok();
                    }
                }
                () = self.liveness.changed() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    async fn pass(&self, apps: &[(String, wadm_types::Manifest)], attempts: &mut HashMap<String, Attempts>, published: &mut HashMap<String, Status>) {
        let Some(own) = self.record().await else { return };
        let mut alive = self.liveness.alive();
        // This host, as it is now, whether or not its own record has come back yet.
        alive.insert(self.host_id.clone(), own.clone());
        let hosts: Vec<HostView> = alive.iter().map(|(id, r)| HostView { id: id.clone(), labels: r.inventory.labels.clone() }).collect();
        let plan = placement::place(apps, &hosts);
        self.components(&plan, &own, attempts).await;
        self.providers(&plan, &own, attempts).await;
        for (app, _) in apps {
            if placement::steward(app, &hosts).is_some_and(|h| h.id == self.host_id) {
                self.steward(app, &plan, &alive, published).await;
            }
        }
        published.retain(|app, _| apps.iter().any(|(a, _)| a == app));
    }

    /// Whether `id` may be tried now; counts the attempt.
    fn attempt(&self, id: &str, attempts: &mut HashMap<String, Attempts>) -> bool {
        let a = attempts.entry(id.to_string()).or_default();
        if a.next.is_some_and(|next| Instant::now() < next) {
            return false;
        }
        a.count += 1;
        a.next = Some(Instant::now() + backoff(a.count));
        true
    }

    fn settled(&self, id: &str, attempts: &mut HashMap<String, Attempts>) {
        attempts.remove(id);
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    async fn components(&self, plan: &Plan, own: &LiveRecord, attempts: &mut HashMap<String, Attempts>) {
        let mine = plan.components.get(&self.host_id).cloned().unwrap_or_default();
        for (id, p) in &mine {
            let running = own.inventory.components.iter().find(|c| &c.id == id);
            match running {
                Some(c) if managing_app(c.annotations.as_ref()).is_none() => {
                    self.failures
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(id.clone(), format!("component `{id}` already runs here, scaled by hand; Trellis leaves it alone"));
                    continue;
                }
                Some(c) if c.max_instances == p.max_instances && c.image_ref == p.reference => {
                    self.settled(id, attempts);
                    continue;
                }
                _ => {}
            }
            if !self.attempt(id, attempts) {
                continue;
            }
            info!(app = %p.app, component_id = %id, max = p.max_instances, "scaling for an application");
            let command = ScaleComponentCommand {
                component_ref: p.reference.clone(),
                component_id: id.clone(),
                annotations: Some(p.annotations.clone()),
                max_instances: p.max_instances,
                host_id: self.host_id.clone(),
                config: p.config.clone(),
                allow_update: true,
                ..ScaleComponentCommand::default()
            };
            if let Ok(Err(e)) = self.workload.send(Scale(command)).await {
                self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.clone(), e.to_string());
            }
        }
        for c in &own.inventory.components {
            if managing_app(c.annotations.as_ref()).is_some() && !mine.contains_key(&c.id) {
                info!(component_id = %c.id, "stopping a component no application places here");
                let command = ScaleComponentCommand { component_id: c.id.clone(), max_instances: 0, host_id: self.host_id.clone(), ..ScaleComponentCommand::default() };
                let _ = self.workload.send(Scale(command)).await;
                self.settled(&c.id, attempts);
            }
        }
    }

    async fn providers(&self, plan: &Plan, own: &LiveRecord, attempts: &mut HashMap<String, Attempts>) {
        let mine = plan.providers.get(&self.host_id).cloned().unwrap_or_default();
        for (id, p) in &mine {
            match own.inventory.providers.iter().find(|r| &r.id == id) {
                Some(r) if managing_app(r.annotations.as_ref()).is_none() => continue,
                Some(_) => {
                    self.settled(id, attempts);
                    continue;
                }
                None => {}
            }
            if !self.attempt(id, attempts) {
                continue;
            }
            info!(app = %p.app, provider_id = %id, "starting a provider for an application");
            let command = StartProviderCommand {
                provider_id: id.clone(),
                provider_ref: p.reference.clone(),
                host_id: self.host_id.clone(),
                annotations: Some(p.annotations.clone()),
                config: p.config.clone(),
            };
            match self.providers.send(StartProvider(command)).await {
                // Still starting from an earlier pass: not a failure.
                Ok(Err(crate::error::HostError::Workload(crate::error::WorkloadError::ProviderRunning { .. }))) => {}
                Ok(Err(e)) => {
                    self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.clone(), e.to_string());
                }
                _ => {}
            }
        }
        for r in &own.inventory.providers {
            if managing_app(r.annotations.as_ref()).is_some() && !mine.contains_key(&r.id) {
                info!(provider_id = %r.id, "stopping a provider no application places here");
                let command = StopProviderCommand { provider_id: r.id.clone(), host_id: self.host_id.clone() };
                let _ = self.providers.send(StopProvider(command)).await;
                self.settled(&r.id, attempts);
            }
        }
    }

    /// The steward's part: the app's configs and links, and its status.
    async fn steward(&self, app: &str, plan: &Plan, alive: &BTreeMap<String, LiveRecord>, published: &mut HashMap<String, Status>) {
        for (name, values) in plan.configs.get(app).into_iter().flatten() {
            if self.view.config_record(name).as_ref() != Some(values) {
                let values = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                if let Ok(Err(e)) = self.lattice_actor.send(PutConfig { name: name.clone(), values }).await {
                    warn!(app, config = %name, error = %e, "cannot put an application's config");
                }
            }
        }
        let links = self.view.links();
        for link in plan.links.get(app).into_iter().flatten() {
            if !links.iter().any(|l| l == link) {
                if let Ok(Err(e)) = self.lattice_actor.send(PutLink(link.clone())).await {
                    debug!(app, error = %e, "cannot put an application's link yet");
                }
            }
        }
        let status = status::compute(app, plan, alive, &self.view.links());
        if published.get(app) != Some(&status) {
            let subject = trellis_messages::subjects::wadm::status(&self.lattice, app);
            if let Ok(body) = serde_json::to_vec(&status) {
                if self.nats.publish(subject, body.into()).await.is_ok() {
                    published.insert(app.to_string(), status);
                }
            }
        }
    }
}

/// Before this host leaves: says goodbye, then waits (at most `within`) until the live hosts run
/// every share the plan without this host gives them, so its share has moved when it stops.
pub async fn hand_off(reconciler: &Reconciler, within: Duration) {
    reconciler.liveness.goodbye().await;
    let apps: Vec<(String, wadm_types::Manifest)> = match reconciler.store.list().await {
        Ok(all) => all.iter().filter_map(|s| s.deployed().map(|m| (s.name().to_string(), m.clone()))).collect(),
        Err(_) => return,
    };
    let Some(own) = reconciler.record().await else { return };
    let serves = own.inventory.components.iter().any(|c| managing_app(c.annotations.as_ref()).is_some())
        || own.inventory.providers.iter().any(|p| managing_app(p.annotations.as_ref()).is_some());
    if !serves {
        return;
    }
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut alive = reconciler.liveness.alive();
        alive.remove(&reconciler.host_id);
        let hosts: Vec<HostView> = alive.iter().map(|(id, r)| HostView { id: id.clone(), labels: r.inventory.labels.clone() }).collect();
        if hosts.is_empty() {
            return;
        }
        let plan = placement::place(&apps, &hosts);
        let done = plan.components.iter().all(|(host, placed)| {
            placed.iter().all(|(id, p)| {
                alive.get(host).is_some_and(|r| r.inventory.components.iter().any(|c| &c.id == id && c.max_instances == p.max_instances))
            })
        });
        if done {
            info!("this host's share of the applications runs elsewhere now");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warn!(?within, "stopping before every share of the applications moved elsewhere");
}

/// Whether an event in this host's name (`host_id`) is its own and fresh: signed with its key
/// (`signature`, its `Trellis-Signature`) and published (`time`) within
/// [`MAX_EVENT_SKEW`](crate::permission::directory_feed::MAX_EVENT_SKEW) of now.
fn own_and_fresh(host_id: &str, subject: &str, payload: &[u8], signature: Option<&str>, time: Option<&str>) -> Result<(), &'static str> {
    let signed = signature.is_some_and(|sig| crate::identity::verify_message(host_id, subject, payload, sig).is_ok());
    if !signed {
        return Err("this host did not sign it");
    }
    let time = time.and_then(|t| humantime::parse_rfc3339_weak(t).ok()).ok_or("it has no readable time")?;
    if crate::permission::directory_feed::skewed(time).is_some() {
        return Err("it is not fresh (a replay, or a clock to fix)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_this_hosts_own_fresh_events_count() {
        let host = crate::identity::HostIdentity::new(None, None).expect("a key");
        let other = crate::identity::HostIdentity::new(None, None).expect("a key");
        let subject = "wasmbus.evt.a.component_scale_failed";
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let old = humantime::format_rfc3339_millis(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).to_string();
        let own = host.sign_message(subject, b"{}");
        assert!(super::own_and_fresh(&host.id(), subject, b"{}", Some(&own), Some(&now)).is_ok());
        assert!(super::own_and_fresh(&host.id(), subject, b"{}", None, Some(&now)).is_err(), "unsigned");
        assert!(super::own_and_fresh(&host.id(), subject, b"{}", Some(&other.sign_message(subject, b"{}")), Some(&now)).is_err(), "another key");
        assert!(super::own_and_fresh(&host.id(), subject, b"{}", Some(&own), Some(&old)).is_err(), "old");
    }
}
