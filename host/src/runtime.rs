//! Starting a host and stopping it: the host thread, its actix `System`, and the supervisor
//! future that builds the actors, waits for a stop request and drains in order.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use trellis_messages::event::names;
use trellis_messages::Subjects;

use crate::actors::control::{ControlActor, ControlSubscriptions, StopControl};
use crate::actors::host::{self as host_actor, HostActor};
use crate::actors::lattice::{LatticeActor, StopLattice};
use crate::actors::providers::{ProvidersActor, StopProviders};
use crate::providers::external::Launch;
use crate::actors::workload::{DrainComponents, WorkloadActor};
use crate::lattice::{LatticeStore, LatticeView};
use crate::services::HostServices;
use crate::wasm::transport::local::LocalComponents;
use crate::permission::{GuestPolicy, ProviderDirectory, Resolver};
use crate::config::{automatic_labels, HostConfig};
use crate::actors::dispatch::{Dispatcher, HostActors};
use crate::error::{ConfigError, HostError, Result};
use crate::events::EventPublisher;
use crate::identity::HostIdentity;
use crate::nats::{connect, redact};
use crate::wasm::WasmRuntime;
pub use crate::stop::{StopReason, StopRequest};


/// What a started host tells its owner about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// Host id (`N…`).
    pub id: String,
    /// Friendly name.
    pub friendly_name: String,
    /// Lattice joined.
    pub lattice: String,
    /// NATS URL (password redacted).
    pub nats_url: String,
    /// Where `/metrics` is served (the bound address, when `--metrics-addr` asked for one).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where `/livez`, `/readyz` and `/metrics` are served (the bound address, when
    /// `--http-admin` asked for one).
    pub http_admin: Option<std::net::SocketAddr>,
}

/// A running host. Dropping it asks the host to stop; [`HostHandle::wait`] waits for that.
#[derive(Debug)]
pub struct HostHandle {
    /// Who the host is.
    info: HostInfo,
    /// To the supervisor.
    stop: mpsc::UnboundedSender<StopRequest>,
    /// Resolves when the host thread has finished.
    done: Option<oneshot::Receiver<Result<StopReason>>>,
}

impl HostHandle {
    /// Who the host is.
    pub fn info(&self) -> &HostInfo {
        &self.info
    }

    /// The host id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// Asks the host to stop, draining for at most `timeout` (the configured default if `None`).
    /// Returns at once; use [`HostHandle::wait`] to wait for the stop.
    pub fn stop(&self, timeout: Option<Duration>) {
        let _ = self.stop.send(StopRequest { timeout, reason: StopReason::Requested });
    }

    /// Waits until the host has stopped, and says why it did. Cancel-safe: a `wait` dropped
    /// before it finished (in a `select!`, say) can be called again.
    ///
    /// # Errors
    /// [`HostError::Runtime`] when the host thread ended without reporting (a panic), or the stop
    /// was already reported by an earlier `wait`.
    pub async fn wait(&mut self) -> Result<StopReason> {
        let done = self.done.as_mut().ok_or_else(|| HostError::Runtime("the host's stop was already reported".into()))?;
        let outcome = done.await;
        self.done = None;
        outcome.map_err(|_| HostError::Runtime("host thread ended without reporting".into()))?
    }

    /// Stops the host and waits for it.
    ///
    /// # Errors
    /// As [`HostHandle::wait`].
    pub async fn shutdown(mut self, timeout: Option<Duration>) -> Result<StopReason> {
        self.stop(timeout);
        self.wait().await
    }
}

impl Drop for HostHandle {
    fn drop(&mut self) {
        if self.done.is_some() {
            self.stop(None);
        }
    }
}

/// Starts a host on its own thread with its own actix `System`, and returns once it has joined
/// the lattice (subscribed and announced `host_started`).
///
/// # Errors
/// A bad configuration, an unreachable NATS server, a failed subscription.
pub async fn start(config: HostConfig) -> Result<HostHandle> {
    config.validate()?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = mpsc::unbounded_channel();
    let supervisor_stop = stop_tx.clone();
    std::thread::Builder::new()
        .name("trellis-host".into())
        .spawn(move || {
            let system = actix::System::new();
            let result = system.block_on(supervise(config, ready_tx, supervisor_stop, stop_rx));
            let _ = done_tx.send(result);
        })
        .map_err(|e| HostError::Runtime(format!("cannot spawn host thread: {e}")))?;
    let info = ready_rx
        .await
        .map_err(|_| HostError::Runtime("host thread ended before it was ready".into()))??;
    Ok(HostHandle { info, stop: stop_tx, done: Some(done_rx) })
}

/// Builds everything, reports readiness, waits for a stop request, then drains:
/// control first (no new commands), then host state, then `host_stopped`, then NATS.
async fn supervise(
    config: HostConfig,
    ready: oneshot::Sender<Result<HostInfo>>,
    stop_tx: mpsc::UnboundedSender<StopRequest>,
    mut stop_rx: mpsc::UnboundedReceiver<StopRequest>,
) -> Result<StopReason> {
    let started = match build(&config, stop_tx).await {
        Ok(started) => started,
        Err(e) => {
            let _ = ready.send(Err(HostError::Runtime(e.to_string())));
            return Err(e);
        }
    };
    let Started { info, nats, calls, events, host, control, workload, lattice, providers, wasm, follower, apps, admin_tasks, health } = started;
    info!(host_id = %info.id, lattice = %info.lattice, name = %info.friendly_name, "host started");
    let _ = ready.send(Ok(info));

    let request = stop_rx
        .recv()
        .await
        .unwrap_or(StopRequest { timeout: None, reason: StopReason::Requested });
    let deadline = request.timeout.unwrap_or(config.stop_timeout);
    info!(reason = ?request.reason, ?deadline, "host stopping");
    health.stopping();

    let (drained_tx, drained_rx) = oneshot::channel();
    if control.send(StopControl { done: drained_tx }).await.is_ok()
        && tokio::time::timeout(deadline, drained_rx).await.is_err()
    {
        warn!(?deadline, "control answers still in flight at the stop deadline; stopping anyway");
    }
    // Its share of the applications moves to other hosts before its components stop.
    if let Some(apps) = apps {
        stop_apps(apps, deadline.min(Duration::from_secs(5))).await;
    }
    // Providers first: no new HTTP requests reach components that are about to stop.
    let _ = providers.send(StopProviders).await;
    if tokio::time::timeout(deadline, workload.send(DrainComponents { timeout: deadline })).await.is_err() {
        warn!(?deadline, "components still stopping at the stop deadline; stopping anyway");
    }
    let _ = lattice.send(StopLattice).await;
    // Awaited, so the follower's subscription is dropped here, inside the runtime (a NATS
    // subscriber dropped after the runtime is gone panics in async-nats's Drop).
    follower.abort();
    let _ = follower.await;
    let stopped = host.send(host_actor::Drain).await.unwrap_or_else(|_| {
        trellis_messages::event::HostStopped { labels: config.labels.clone() }
    });
    events.publish_logged(names::HOST_STOPPED, stopped).await;
    for (client, which) in [(&calls, "call"), (&nats, "control")] {
        if let Err(e) = tokio::time::timeout(deadline, client.flush()).await {
            warn!(error = %e, connection = which, "NATS flush timed out during stop");
        }
    }
    // Let stopped actors' contexts (and the NATS subscriptions they own) drop while the runtime
    // still runs: dropped later, outside it, a subscription cannot send its unsubscribe.
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    for task in admin_tasks {
        task.abort();
    }
    info!("host stopped");
    // The guest threads and epoch ticker end with the last reference to the wasm runtime.
    drop(wasm);
    System::current().stop();
    Ok(request.reason)
}

struct Started {
    info: HostInfo,
    nats: async_nats::Client,
    calls: async_nats::Client,
    events: EventPublisher,
    host: Addr<HostActor>,
    control: Addr<ControlActor>,
    workload: Addr<WorkloadActor>,
    lattice: Addr<LatticeActor>,
    providers: Addr<ProvidersActor>,
    wasm: Arc<WasmRuntime>,
    /// Follows other hosts' provider events into the provider directory.
    follower: tokio::task::JoinHandle<()>,
    /// Declared applications (unless turned off).
    apps: Option<AppTasks>,
    /// The operator's endpoints (`--metrics-addr`, `--http-admin`), when asked for.
    admin_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What `/readyz` answers.
    health: crate::admin::Health,
}

async fn build(config: &HostConfig, stop_tx: mpsc::UnboundedSender<StopRequest>) -> Result<Started> {
    let identity = Arc::new(HostIdentity::new(config.host_seed.as_deref(), config.friendly_name.clone())?);
    let host_id = identity.id();
    let mut labels = automatic_labels();
    labels.extend(config.labels.clone());

    // Recorded only when served or exported: a host nobody scrapes pays nothing per call.
    let metrics = match (config.metrics_addr.or(config.http_admin), &config.metrics_meter) {
        (None, None) => crate::metrics::Metrics::disabled(),
        (_, meter) => crate::metrics::Metrics::new(&config.lattice, &host_id, meter.as_ref()),
    };
    // Bound before anything joins the lattice: a port in use fails the start, clearly.
    let health = crate::admin::Health::default();
    let mut admin_tasks = Vec::new();
    let metrics_bound = serve_admin(config.metrics_addr, &metrics, &health, &mut admin_tasks).await?;
    let admin_bound = serve_admin(config.http_admin, &metrics, &health, &mut admin_tasks).await?;
    let (spy, spy_outlet) = crate::spy::Spy::new(&host_id);
    let wasm_config = config.wasm.clone();
    let wasm = Arc::new(
        tokio::task::spawn_blocking(move || WasmRuntime::new(wasm_config))
            .await
            .map_err(|e| HostError::Runtime(format!("wasm runtime setup failed: {e}")))??
            .with_metrics(metrics.clone())
            .with_spy(spy),
    );
    let (nats_events_tx, nats_events_rx) = mpsc::unbounded_channel();
    let nats = connect(&config.nats, &format!("trellis-host-{host_id}"), Some(nats_events_tx)).await?;
    // The call connection is made on the guest runtime, so its I/O task runs there.
    let calls = {
        let (nats_config, name) = (config.nats.clone(), format!("trellis-host-{host_id}-calls"));
        wasm.guests()
            .spawn(async move { connect(&nats_config, &name, None).await })
            .await
            .map_err(|e| HostError::Runtime(format!("call connection setup failed: {e}")))??
    };
    // Watches for `trellis spy`, subscribed before the host joins; records leave on the call
    // connection.
    let spy_task = spy_outlet
        .serve(calls.clone(), &config.lattice)
        .await
        .map_err(|e| HostError::Runtime(format!("cannot subscribe to spy watches: {e}")))?;
    wasm.guests().spawn(spy_task);
    let subjects = Subjects::new(&config.ctl_prefix, &config.lattice);
    let store = LatticeStore::open(&nats, &config.lattice, config.kv_replicas).await?;
    // Before host_started, so the journal has this host's events from its first.
    if let Some(journal) = &config.journal {
        crate::journal::ensure_logged(&nats, journal, config.kv_replicas).await;
    }
    match store.migrate().await {
        Ok(0) => {}
        Ok(n) => info!(specs = n, "rewrote component specs stored in Trellis's old layout as wasmCloud's ComponentSpecification"),
        Err(e) => warn!(error = %e, "could not rewrite component specs stored in the old layout; they are still read"),
    }
    // What declared applications need from NATS, opened before any actor or task starts: a
    // host whose user may not use them fails here, with nothing to tear down.
    let apps_opened = if config.apps { Some(open_apps(config, &nats, identity.clone()).await?) } else { None };
    let view = LatticeView::default();
    let providers_dir = ProviderDirectory::new(config.providers.builtin_images.clone());
    let registries = crate::wasm::sources::oci::Registries::default();
    let subscriptions = ControlSubscriptions::subscribe(&nats, &subjects, &host_id).await?;
    let events = EventPublisher::new(nats.clone(), subjects.clone(), identity.clone());
    let nats_url = redact(&config.nats.url);

    let policy = match &config.policy {
        None => None,
        Some(p) => {
            let host = crate::trust::policy::HostInfo {
                public_key: host_id.clone(),
                lattice: config.lattice.clone(),
                labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            };
            Some(crate::trust::policy::PolicyService::start(nats.clone(), host, p.clone()).await.map_err(ConfigError::Policy)?)
        }
    };
    let started_data = HostActor::started_event(&identity, &labels);
    let host = HostActor::new(
        identity.clone(),
        config.lattice.clone(),
        labels,
        events.clone(),
        config.heartbeat_interval,
        host_actor::ControlConnection { url: nats_url.clone(), events: nats_events_rx, metrics: metrics.clone() },
    );
    // host_started goes out before the first heartbeat the host actor publishes on start.
    events.publish(names::HOST_STARTED, started_data).await?;
    let host = host.start();
    let services = HostServices {
        host_id: host_id.clone(),
        subjects: subjects.clone(),
        nats: nats.clone(),
        calls: calls.clone(),
        events: events.clone(),
        runtime: wasm.clone(),
        view: view.clone(),
        local: LocalComponents::default(),
        providers: providers_dir.clone(),
        limits: config.limits.clone(),
        store: store.clone(),
        registries: registries.clone(),
        trust: Arc::new(config.trust.clone()),
        policy,
        secrets: match &config.secrets_topic {
            Some(topic) => Some(Arc::new(
                crate::secrets::SecretsClient::new(calls.clone(), topic.clone(), &host_id, identity.friendly_name()).map_err(ConfigError::Secrets)?,
            )),
            None => None,
        },
        wrpc: crate::wasm::transport::wrpc::Wrpc::new(
            calls.clone(),
            &config.lattice,
            wasm.engine().clone(),
            config.providers.max_calls,
            config.wasm.max_queue_wait,
            config.limits.body_bounds(),
        ),
        resolver: Resolver::new(
            view.clone(),
            providers_dir.clone(),
            GuestPolicy {
                ctl_prefix: config.ctl_prefix.clone(),
                lattice: config.lattice.clone(),
                kv_replicas: config.kv_replicas,
                kv_default_bucket: config.kv_default_bucket.clone(),
            },
        ),
    };
    let follower = crate::permission::directory_feed::follow(nats.clone(), subjects.clone(), host_id.clone(), providers_dir.clone())
        .await
        .map_err(|e| HostError::Subscribe { subject: subjects.events_wildcard(), reason: e.to_string() })?;
    let launch = match Launch::refusal(&config.nats) {
        Some(why) => Err(Arc::new(why)),
        None => Launch::new(config.providers.clone(), config.wasm.file_load.clone(), &config.nats, config.wasm.max_execution_time)
            .map(Arc::new)
            .map_err(Arc::new),
    };
    let providers = ProvidersActor::new(services.clone(), host.clone(), launch).start();
    let workload = WorkloadActor::new(services, host.clone(), config.stop_timeout).start();
    let lattice = LatticeActor::new(store, view.clone(), events.clone(), metrics.clone(), health.clone()).start();
    let dispatcher =
        Dispatcher::new(host_id.clone(), HostActors { host: host.clone(), workload: workload.clone(), lattice: lattice.clone(), providers: providers.clone() }, registries, stop_tx.clone(), view.clone());
    let apps = apps_opened.map(|opened| start_apps(opened, config, &host_id, &nats, &events, &host, &workload, &providers, &lattice, &view));
    let control = ControlActor::new(subjects, nats.clone(), identity.clone(), dispatcher, subscriptions, stop_tx, config.limits.clone()).start();
    // Every subscription is in place on the server before the host reports itself started.
    if let Err(reason) = crate::nats::barrier(&nats).await {
        follower.abort();
        let _ = follower.await;
        if let Some(apps) = apps {
            stop_apps(apps, Duration::ZERO).await;
        }
        return Err(HostError::Subscribe { subject: "(barrier)".into(), reason: reason.to_string() });
    }
    let info = HostInfo {
        id: host_id,
        friendly_name: identity.friendly_name().to_string(),
        lattice: config.lattice.clone(),
        nats_url,
        metrics_addr: metrics_bound,
        http_admin: admin_bound,
    };
    health.joined();
    Ok(Started { info, nats, calls, events, host, control, workload, lattice, providers, wasm, follower, apps, admin_tasks, health })
}

/// Serves the operator's endpoints on `asked`, if given: the bound address.
async fn serve_admin(
    asked: Option<std::net::SocketAddr>,
    metrics: &crate::metrics::Metrics,
    health: &crate::admin::Health,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Option<std::net::SocketAddr>> {
    let Some(addr) = asked else { return Ok(None) };
    let (bound, task) = crate::admin::serve(addr, metrics.clone(), health.clone())
        .await
        .map_err(|e| ConfigError::Metrics { addr: addr.to_string(), reason: e.to_string() })?;
    tasks.push(task);
    Ok(Some(bound))
}

/// The tasks of declared applications ([`crate::apps`]) on this host.
struct AppTasks {
    reconciler: crate::apps::reconciler::Reconciler,
    /// Answers wadm's API and reconciles this host's share while no wadm manages the lattice
    /// ([`crate::apps::wadm_presence::manage`]).
    manager: tokio::task::JoinHandle<()>,
    /// Whether this host manages applications now (not while a wadm does).
    managing: Arc<std::sync::atomic::AtomicBool>,
    /// Publishes this host's liveness record.
    beat: tokio::task::JoinHandle<()>,
    /// Follows the other hosts' records.
    follow: tokio::task::JoinHandle<()>,
}

/// The application store, the liveness bucket, and the follower of the liveness records (a
/// future holding its KV watch, spawned by [`start_apps`]).
struct AppsOpened {
    store: crate::apps::store::ManifestStore,
    liveness: crate::apps::liveness::Liveness,
    follow: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

async fn open_apps(config: &HostConfig, nats: &async_nats::Client, identity: Arc<HostIdentity>) -> Result<AppsOpened> {
    use crate::apps::{liveness::Liveness, store::ManifestStore};
    let needs = |e: HostError| {
        HostError::Runtime(format!(
            "declared applications cannot start ({e}); give this host's NATS user the application subjects and buckets, or run it with --no-apps"
        ))
    };
    // A cluster that has just started, or lost its JetStream leader, answers "temporarily
    // unavailable" for a moment: that is waited out (as the lattice's buckets are), a refusal is not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let opened = async {
            let store = ManifestStore::open(nats, &config.lattice, config.kv_replicas).await?;
            let liveness = Liveness::open(nats, &config.lattice, config.kv_replicas, identity.clone()).await?;
            let follow: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = Box::pin(liveness.follow().await?);
            Ok::<_, HostError>(AppsOpened { store, liveness, follow })
        }
        .await;
        match opened {
            Err(e) if e.to_string().contains("temporarily unavailable") && std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "JetStream not available yet for the application buckets; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            other => return other.map_err(needs),
        }
    }
}

/// Spawns the application tasks. Nothing here fails the host: the only fallible step is the
/// API's subscription, which fails only on a closed connection (a permission refusal comes back
/// from the server later); the host then runs without answering the API, and says so. The API
/// and the reconciler run only while no wadm manages the lattice.
#[allow(clippy::too_many_arguments)]
fn start_apps(
    opened: AppsOpened,
    config: &HostConfig,
    host_id: &str,
    nats: &async_nats::Client,
    events: &EventPublisher,
    host: &Addr<HostActor>,
    workload: &Addr<WorkloadActor>,
    providers: &Addr<ProvidersActor>,
    lattice: &Addr<LatticeActor>,
    view: &LatticeView,
) -> AppTasks {
    use crate::apps::{api::AppsApi, reconciler::Reconciler};
    let AppsOpened { store, liveness, follow } = opened;
    let follow = tokio::spawn(follow);
    let reconciler = Reconciler {
        host_id: host_id.to_string(),
        lattice: config.lattice.clone(),
        store: store.clone(),
        liveness: liveness.clone(),
        host: host.clone(),
        workload: workload.clone(),
        providers: providers.clone(),
        lattice_actor: lattice.clone(),
        view: view.clone(),
        nats: nats.clone(),
        failures: std::sync::Arc::default(),
    };
    let api = AppsApi { store, liveness, lattice: lattice.clone(), view: view.clone(), lattice_name: config.lattice.clone() };
    let managing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = {
        let (reconciler, nats, managing) = (reconciler.clone(), nats.clone(), managing.clone());
        move |stop: tokio_util::sync::CancellationToken| {
            let (api, reconciler, nats, managing) = (api.clone(), reconciler.clone(), nats.clone(), managing.clone());
            async move {
                use tokio_util::task::AbortOnDropHandle;
                let mut tasks = Vec::new();
                match api.serve(nats, stop.clone()).await {
                    Ok(serve) => tasks.push(AbortOnDropHandle::new(tokio::spawn(serve))),
                    Err(e) => warn!(error = %e, "cannot subscribe to wadm's API; this host does not answer it"),
                }
                // Reconciling stops between passes' awaits, as an abort would.
                tasks.push(AbortOnDropHandle::new(tokio::spawn(async move {
                    tokio::select! {
                        () = reconciler.run() => {}
                        () = stop.cancelled() => {}
                    }
                })));
                managing.store(true, std::sync::atomic::Ordering::Release);
                tasks
            }
        }
    };
    let stepped_aside = {
        let managing = managing.clone();
        move || managing.store(false, std::sync::atomic::Ordering::Release)
    };
    let manager = tokio::spawn(crate::apps::wadm_presence::manage(
        async_nats::jetstream::new(nats.clone()),
        config.lattice.clone(),
        host_id.to_string(),
        events.clone(),
        start,
        stepped_aside,
    ));
    let beat = tokio::spawn(reconciler.clone().beat());
    AppTasks { reconciler, manager, managing, beat, follow }
}

/// Stops reconciling, hands this host's share to the others (at most `within`), then stops the
/// rest; every task is awaited, so its NATS subscriptions drop inside the runtime.
async fn stop_apps(apps: AppTasks, within: Duration) {
    let managing = apps.managing.load(std::sync::atomic::Ordering::Acquire);
    // The manager's tasks (the API, the reconciler) end with it.
    apps.manager.abort();
    apps.beat.abort();
    let _ = apps.manager.await;
    let _ = apps.beat.await;
    // Bounded as a whole: with NATS unreachable even the goodbye would wait for a timeout. A
    // host that left the applications to a wadm has no share to hand over.
    if managing && tokio::time::timeout(within, crate::apps::reconciler::hand_off(&apps.reconciler, within)).await.is_err() {
        warn!(?within, "could not hand this host's share of the applications over in time");
    }
    apps.follow.abort();
    let _ = apps.follow.await;
}
