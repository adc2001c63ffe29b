//! The supervisor of one external provider: an actor that owns the provider's process and
//! speaks wasmCloud's provider protocol to it over NATS (`wasmbus.rpc.{lattice}.…`).
//!
//! - **Start**: the process gets the start data ([`HostData`]) with the links and config of the
//!   moment; a fresh instance id each start, the same xkey for the actor's life.
//! - **Ready**: the provider is probed on `….{id}.health` every 250 ms until it answers (its
//!   NATS subscriptions exist then; at most 30 s); link and config changes made meanwhile are
//!   held and sent at that moment, so none is lost to a provider still starting.
//! - **Secrets**: a signed provider gets the secrets its config names in its start data; a link
//!   that names secrets for the provider's side is not in the start data but sent once the
//!   provider is ready, its secrets fetched then (shown the provider's claims) and sealed with the
//!   host's xkey to this instance's, as wasmCloud 1.9 seals them. Only the provider's own side's
//!   secrets are fetched and sent.
//! - **Links and config**: the actor follows the lattice view. A new or changed link where the
//!   provider is source or target is sent to `….{instance xkey}.linkdefs.put` (only this host's
//!   instance receives it); a removed one to `….{id}.linkdefs.del` (as wasmCloud sends it); a
//!   change of the provider's merged config to `….{id}.config.update`.
//! - **Health**: then every health interval; `health_check_passed` / `_failed` on a change and
//!   `health_check_status` otherwise, as wasmCloud publishes them. No answer counts as unhealthy.
//! - **Exit**: a process that exits on its own is restarted after a delay that doubles from the
//!   minimum to the maximum and starts over once a process ran for the reset period;
//!   `provider_exited` says how it ended, with its last stderr lines and the delay.
//! - **Stop**: the shutdown request (`….{id}.default.shutdown` with the host id), the grace
//!   period, SIGTERM to the process group, 2 s, SIGKILL; then SIGKILL to what is left of the group
//!   (children the provider started).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::json;
use tracing::{debug, info, warn};
use trellis_messages::event::{names, ProviderExited, ProviderHealth};
use trellis_messages::provider::ProviderStatus;

use crate::providers::external::start_data::{links_of, HostData, LinkDefinition, LinkKey};
use crate::providers::external::outbox::{outbox, Batch, LinkSealer, Outgoing, Undelivered, SECRETS_RETRY};
pub use crate::providers::external::outbox::Signed;
use crate::providers::external::process::Process;
use crate::providers::external::Launch;
use crate::services::HostServices;

/// How often a starting provider is probed until it first answers.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a starting provider is probed that often; after that it is checked (and reported
/// unhealthy while silent) at the health interval.
const PROBE_FOR: Duration = Duration::from_secs(30);
/// How long one health request waits for its answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// The provider's state changed (for the inventory).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StatusChanged {
    /// The provider.
    pub id: String,
    /// Its state now.
    pub status: ProviderStatus,
}

/// One external provider on this host.
pub struct ExternalProvider {
    id: String,
    path: PathBuf,
    config_names: Vec<String>,
    services: HostServices,
    launch: Arc<Launch>,
    xkey: nkeys::XKey,
    signed: Signed,
    /// Link puts, deletes and config updates, sent in order by one task ([`outbox`]), which a
    /// stop aborts (nothing queued reaches a later provider of the same id).
    outbox: Option<(tokio::sync::mpsc::UnboundedSender<Batch>, tokio::task::JoinHandle<()>)>,
    /// Links whose secrets could not be fetched (said once each).
    undelivered: std::collections::HashSet<LinkKey>,
    /// A retry of those is waiting.
    retry_waiting: bool,
    process: Option<Process>,
    /// Counts processes started, so reports about an earlier one are told apart.
    generation: u64,
    /// The current process has answered a health request.
    ready: bool,
    /// The links and config the current process knows.
    delivered: BTreeMap<LinkKey, LinkDefinition>,
    config: BTreeMap<String, String>,
    /// The last health answer was healthy (wasmCloud's `previous_healthy`).
    healthy: bool,
    status: ProviderStatus,
    restart_delay: Duration,
    stopping: bool,
    status_to: Recipient<StatusChanged>,
}

impl std::fmt::Debug for ExternalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalProvider").field("id", &self.id).field("path", &self.path).field("status", &self.status).finish()
    }
}

impl ExternalProvider {
    /// Starts the provider's first process; the actor is returned ready to start (it supervises
    /// that process from then on).
    ///
    /// # Errors
    /// The reason the process could not be spawned.
    pub fn launch(
        id: String,
        path: PathBuf,
        config_names: Vec<String>,
        services: HostServices,
        launch: Arc<Launch>,
        signed: Signed,
        status_to: Recipient<StatusChanged>,
    ) -> Result<Self, super::StartError> {
        let restart_delay = launch.settings.restart_min;
        let mut this = Self {
            id,
            path,
            config_names,
            services,
            launch,
            xkey: nkeys::XKey::new(),
            signed,
            outbox: None,
            undelivered: std::collections::HashSet::new(),
            retry_waiting: false,
            process: None,
            generation: 0,
            ready: false,
            delivered: BTreeMap::new(),
            config: BTreeMap::new(),
            healthy: false,
            status: ProviderStatus { state: "starting".into(), ..ProviderStatus::default() },
            restart_delay,
            stopping: false,
            status_to,
        };
        this.spawn_process()?;
        Ok(this)
    }

    /// The current status (for the inventory at start).
    pub fn status(&self) -> ProviderStatus {
        self.status.clone()
    }

    fn rpc(&self, what: &str) -> String {
        self.services.subjects.provider_rpc(what)
    }

    fn spawn_process(&mut self) -> Result<(), super::StartError> {
        // Links with secrets for this provider are sent once it is ready (their secrets fetched then).
        let mut links = links_of(&self.id, &self.services.view);
        links.retain(|_, d| !d.has_secrets_for(&self.id));
        let config = self.services.view.config(&self.config_names);
        let data = HostData {
            host_id: self.services.host_id.clone(),
            lattice_rpc_prefix: self.services.subjects.lattice().to_string(),
            link_name: "default".into(),
            lattice_rpc_user_jwt: self.launch.jwt.clone(),
            lattice_rpc_user_seed: self.launch.seed.clone(),
            lattice_rpc_url: self.launch.nats_url.clone(),
            provider_key: self.id.clone(),
            env_values: BTreeMap::new(),
            instance_id: uuid::Uuid::new_v4().to_string(),
            link_definitions: links.values().cloned().collect(),
            cluster_issuers: Vec::new(),
            config: config.clone(),
            secrets: self.signed.secrets.expose_all(),
            host_xkey_public_key: self.launch.host_xkey.public_key(),
            provider_xkey_private_key: self.xkey.seed().map_err(|e| super::StartError::Xkey(e.to_string()))?,
            default_rpc_timeout_ms: u64::try_from(self.launch.rpc_timeout.as_millis()).unwrap_or(u64::MAX),
            structured_logging: false,
            log_level: self.launch.log_level.clone(),
        };
        let line = data.stdin_line()?;
        let process = Process::spawn(self.services.runtime.guests(), &self.id, &self.path, self.launch.guard.as_deref(), line)
            .map_err(|source| super::StartError::Spawn { path: self.path.clone(), source })?;
        info!(provider_id = %self.id, pid = process.pid, path = %self.path.display(), "provider process started");
        self.generation += 1;
        self.process = Some(process);
        self.ready = false;
        self.delivered = links;
        self.config = config;
        self.status.state = "starting".into();
        self.status.healthy = None;
        self.status.message = None;
        Ok(())
    }

    fn notify(&self) {
        self.services.runtime.metrics().provider_status(&self.id, u64::from(self.status.restarts), self.status.healthy);
        self.status_to.do_send(StatusChanged { id: self.id.clone(), status: self.status.clone() });
    }

    fn publish_event(&self, name: &'static str, data: impl serde::Serialize + Send + 'static) {
        let events = self.services.events.clone();
        actix::spawn(async move { events.publish_logged(name, data).await });
    }

    /// `provider_exited`: the process ended (`status`), and the next follows in `delay`.
    fn publish_exit(&self, status: String, stderr_tail: Vec<String>, delay: Duration) {
        let exited = ProviderExited {
            host_id: self.services.host_id.clone(),
            provider_id: self.id.clone(),
            status,
            stderr_tail,
            restarts: self.status.restarts,
            restart_in_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        };
        self.publish_event(names::PROVIDER_EXITED, exited);
    }

    /// Follows the current process: its exit, and health probes until it answers.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        let Some(process) = &self.process else { return };
        let generation = self.generation;
        let mut exit = process.exit.clone();
        let exited = async move {
            let _ = exit.wait_for(Option::is_some).await;
            exit.borrow().clone().unwrap_or_default()
        };
        ctx.spawn(exited.into_actor(self).map(move |status, act, ctx| act.exited(generation, status, ctx)));
        ctx.run_later(PROBE_EVERY, move |act, ctx| act.check_health(generation, ctx));
    }

    fn check_health(&mut self, generation: u64, ctx: &mut Context<Self>) {
        if generation != self.generation || self.stopping || self.process.is_none() {
            return;
        }
        let nats = self.services.nats.clone();
        let subject = self.rpc(&format!("{}.health", self.id));
        let ask = async move {
            let answer = tokio::time::timeout(HEALTH_TIMEOUT, nats.request(subject, bytes::Bytes::new())).await;
            match answer {
                Ok(Ok(msg)) => match serde_json::from_slice::<serde_json::Value>(&msg.payload) {
                    Ok(v) => Some((
                        v.get("healthy").and_then(serde_json::Value::as_bool).unwrap_or(false),
                        v.get("message").and_then(serde_json::Value::as_str).map(str::to_string),
                    )),
                    Err(_) => Some((false, Some("the health answer is not JSON".to_string()))),
                },
                _ => None,
            }
        };
        ctx.spawn(ask.into_actor(self).map(move |answer, act, ctx| {
            if generation != act.generation || act.stopping {
                return;
            }
            if !act.ready {
                let probing = act.process.as_ref().is_some_and(|p| p.started.elapsed() < PROBE_FOR);
                if answer.is_none() && probing {
                    ctx.run_later(PROBE_EVERY, move |act, ctx| act.check_health(generation, ctx));
                    return;
                }
                act.ready = true;
                act.mark_running();
                if answer.is_some() {
                    info!(provider_id = %act.id, "provider answers on the lattice");
                } else {
                    warn!(provider_id = %act.id, "provider has not answered a health check since it started {PROBE_FOR:?} ago");
                }
                act.sync();
            }
            act.health(answer);
            let every = act.launch.settings.health_interval;
            ctx.run_later(every, move |act, ctx| act.check_health(generation, ctx));
        }));
    }

    fn mark_running(&mut self) {
        self.status.state = "running".into();
    }

    /// Records a health answer (`None`: none came) and publishes wasmCloud's events.
    fn health(&mut self, answer: Option<(bool, Option<String>)>) {
        let (healthy, message) = answer.unwrap_or((false, Some("no answer to the health check".into())));
        let event = match (healthy, self.healthy) {
            (true, false) => names::HEALTH_CHECK_PASSED,
            (false, true) => names::HEALTH_CHECK_FAILED,
            _ => names::HEALTH_CHECK_STATUS,
        };
        if !healthy {
            warn!(provider_id = %self.id, message = message.as_deref().unwrap_or(""), "provider unhealthy");
        }
        self.healthy = healthy;
        let changed = self.status.healthy != Some(healthy) || self.status.message != message;
        self.status.healthy = Some(healthy);
        self.status.message.clone_from(&message);
        self.publish_event(event, ProviderHealth { host_id: self.services.host_id.clone(), provider_id: self.id.clone(), healthy, message });
        if changed {
            self.notify();
        }
    }

    /// Sends the provider what changed in its links and config since it last heard.
    fn sync(&mut self) {
        if !self.ready || self.stopping {
            return;
        }
        let now = links_of(&self.id, &self.services.view);
        let config = self.services.view.config(&self.config_names);
        let mut out: Vec<(String, Outgoing)> = Vec::new();
        let put = self.rpc(&format!("{}.linkdefs.put", self.xkey.public_key()));
        let del = self.rpc(&format!("{}.linkdefs.del", self.id));
        for (key, def) in &now {
            if self.delivered.get(key) != Some(def) {
                out.push((put.clone(), Outgoing::Put(Box::new(def.clone()))));
            }
        }
        for (key, def) in &self.delivered {
            if !now.contains_key(key) {
                out.push((del.clone(), Outgoing::Bytes(serde_json::to_vec(&def.for_delete()).unwrap_or_default())));
            }
        }
        if config != self.config {
            out.push((self.rpc(&format!("{}.config.update", self.id)), Outgoing::Bytes(serde_json::to_vec(&config).unwrap_or_default())));
        }
        self.undelivered.retain(|k| now.contains_key(k));
        self.delivered = now;
        self.config = config;
        if out.is_empty() {
            return;
        }
        let sealer = LinkSealer {
            provider_id: self.id.clone(),
            provider_xkey: self.xkey.public_key(),
            host_xkey: self.launch.host_xkey.clone(),
            signed: self.signed.clone(),
            client: self.services.secrets.clone(),
            view: self.services.view.clone(),
        };
        if let Some((outbox, _)) = &self.outbox {
            let _ = outbox.send(Batch { out, sealer });
        }
    }

    fn exited(&mut self, generation: u64, status: String, ctx: &mut Context<Self>) {
        if generation != self.generation || self.stopping {
            return;
        }
        let Some(process) = self.process.take() else { return };
        let settings = &self.launch.settings;
        if process.started.elapsed() >= settings.reset_after {
            self.restart_delay = settings.restart_min;
        }
        let delay = self.restart_delay;
        self.restart_delay = (delay * 2).min(settings.restart_max);
        let tail = process.tail();
        self.status.restarts += 1;
        self.status.state = "restarting".into();
        self.status.last_exit = Some(status.clone());
        self.status.healthy = None;
        warn!(provider_id = %self.id, %status, restart_in = ?delay, restarts = self.status.restarts, "provider exited; restarting");
        self.publish_exit(status, tail, delay);
        self.notify();
        ctx.run_later(delay, |act, ctx| act.restart(ctx));
    }

    /// Starts the process again; a provider given secrets has them fetched again first, so a
    /// revoked or rotated secret is not handed to the new process (as wasmCloud 1.9 does).
    fn restart(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let names: Vec<String> = self.config_names.iter().filter(|n| crate::secrets::is_reference(n)).cloned().collect();
        let Some(jwt) = self.signed.jwt.clone().filter(|_| !names.is_empty()) else {
            return self.restart_now(ctx);
        };
        let (client, view, application) = (self.services.secrets.clone(), self.services.view.clone(), self.signed.application.clone());
        let fetch = async move {
            let lookup = |name: &str| view.config_record(name);
            crate::secrets::fetch(client.as_deref(), &names, lookup, Some(&jwt), application.as_ref()).await
        };
        ctx.spawn(fetch.into_actor(self).map(|fetched, act, ctx| match fetched {
            Ok(secrets) => {
                act.signed.secrets = secrets;
                act.restart_now(ctx);
            }
            Err(e) => act.restart_failed(super::StartError::Secrets(e).to_string(), ctx),
        }));
    }

    fn restart_now(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        match self.spawn_process() {
            Ok(()) => {
                self.notify();
                self.watch(ctx);
            }
            Err(e) => self.restart_failed(e.to_string(), ctx),
        }
    }

    /// A restart that failed (`e`): counted and retried like an exit (the file, or the secrets
    /// backend, may be back later).
    fn restart_failed(&mut self, e: String, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        self.process = None;
        let delay = self.restart_delay;
        self.restart_delay = (delay * 2).min(self.launch.settings.restart_max);
        self.status.restarts += 1;
        self.status.last_exit = Some(e.clone());
        warn!(provider_id = %self.id, error = %e, restart_in = ?delay, "provider could not be restarted");
        self.publish_exit(e, Vec::new(), delay);
        self.notify();
        ctx.run_later(delay, move |act, ctx| {
            if act.generation == generation {
                act.restart(ctx);
            }
        });
    }
}

impl Actor for ExternalProvider {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = actix::spawn(outbox(rx, self.services.nats.clone(), self.id.clone(), ctx.address().recipient()));
        self.outbox = Some((tx, task));
        ctx.add_stream(crate::providers::follower::changes(&self.services.view));
        self.watch(ctx);
    }
}

impl StreamHandler<()> for ExternalProvider {
    fn handle(&mut self, (): (), _: &mut Self::Context) {
        self.sync();
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// Stops the provider: shutdown request, grace period, SIGTERM, SIGKILL. Answered once the
/// process is gone; the actor stops then.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopExternal;

impl Handler<StopExternal> for ExternalProvider {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopExternal, _: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        if let Some((_, task)) = self.outbox.take() {
            task.abort();
        }
        self.services.runtime.metrics().provider_stopped(&self.id);
        let process = self.process.take();
        let nats = self.services.nats.clone();
        let subject = self.rpc(&format!("{}.default.shutdown", self.id));
        let payload = serde_json::to_vec(&json!({ "host_id": self.services.host_id })).unwrap_or_default();
        let grace = self.launch.settings.shutdown_grace;
        let id = self.id.clone();
        let stop = async move {
            let Some(process) = process else { return };
            let asked = tokio::time::Instant::now();
            // The SDK answers once its shutdown has run; either way the process gets the grace
            // period from the request on.
            let _ = tokio::time::timeout(grace, nats.request(subject, payload.into())).await;
            let left = grace.saturating_sub(asked.elapsed());
            if process.exited_within(left).await {
                info!(provider_id = %id, "provider exited after the shutdown request");
            } else {
                warn!(provider_id = %id, ?grace, "provider still running after the shutdown request; SIGTERM");
                process.signal(rustix::process::Signal::TERM);
                if !process.exited_within(TERM_GRACE).await {
                    warn!(provider_id = %id, "provider ignored SIGTERM; SIGKILL");
                    process.signal(rustix::process::Signal::KILL);
                    let _ = process.exited_within(TERM_GRACE).await;
                }
            }
            // What the provider started in its group goes with it.
            process.signal(rustix::process::Signal::KILL);
        };
        Box::pin(stop.into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}

impl Handler<Undelivered> for ExternalProvider {
    type Result = ();
    fn handle(&mut self, Undelivered(key, link, error): Undelivered, ctx: &mut Self::Context) {
        // Said once per link until it goes through; then at debug level.
        if self.undelivered.insert(key.clone()) {
            warn!(provider_id = %self.id, %link, %error, retry_every = ?SECRETS_RETRY, "a link that names secrets for the provider is not sent yet: its secrets could not be fetched");
        } else {
            debug!(provider_id = %self.id, %link, %error, "a link's secrets still cannot be fetched");
        }
        // Not delivered after all: the next sync sends it again (if it still exists), at most
        // one retry waiting at a time.
        self.delivered.remove(&key);
        if !self.retry_waiting {
            self.retry_waiting = true;
            ctx.run_later(SECRETS_RETRY, |act, _| {
                act.retry_waiting = false;
                act.sync();
            });
        }
    }
}
