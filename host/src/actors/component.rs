//! A component actor: one per component running on this host. It owns the component's NATS
//! subscription (a queue group shared with every other host running the same component id),
//! read by a forwarder task on the guest threads that starts each call there, bounded by
//! `max_instances`; the actor holds what calls run (code, slots) and stops the forwarder.
//!
//! The forwarder, the call connection's I/O and the calls share the guest runtime, so a call
//! goes from the socket to the guest and its reply back without a thread switch.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use trellis_messages::invocation::{FaultKind, InvocationRequest, InvocationResponse, HTTP_KIND, KIND_HEADER, MESSAGE_KIND, WATCH_KIND};
use trellis_messages::spy::Direction;

use crate::error::{HostError, Result};
use crate::wasm::invoke::{parse_args, Fault};
use crate::services::HostServices;
use crate::wasm::transport::http::serve_forwarded;
use crate::wasm::transport::local::{LocalComponents, LocalTarget, Slots};
use crate::wasm::{PreparedComponent, WasmRuntime};

/// Serves one component's exports.
pub struct ComponentActor {
    /// The component id.
    id: Arc<str>,
    /// This host, named in replies.
    host_id: Arc<str>,
    /// What new calls run; shared with the forwarder.
    serving: Serving,
    /// Engine, limits, guest threads.
    runtime: Arc<WasmRuntime>,
    /// The call connection, for replies.
    nats: async_nats::Client,
    /// The subscription, until `started` hands it to the forwarder.
    subscription: Option<async_nats::Subscriber>,
    /// Tells the forwarder to drain the subscription.
    drain: Option<oneshot::Sender<()>>,
    /// Calls in flight.
    tracker: TaskTracker,
    /// Cancelled at the stop deadline: calls still running then are answered with a fault.
    cutoff: CancellationToken,
    /// Components running here: this one is registered while it serves.
    local: LocalComponents,
    /// Fired by the forwarder once the drained subscription has handed over its last message.
    stream_ended: (Option<oneshot::Sender<()>>, Option<oneshot::Receiver<()>>),
    /// The tasks serving the component's exports over wRPC (for providers).
    wrpc_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for ComponentActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentActor").field("id", &self.id).field("max_instances", &self.target().slots.limit()).finish_non_exhaustive()
    }
}

impl ComponentActor {
    /// Subscribes to `subject` in queue group `component_id`, and returns the actor ready to
    /// start.
    ///
    /// # Errors
    /// [`HostError::Subscribe`] when NATS refuses the subscription.
    pub async fn subscribe(
        id: &str,
        component: Arc<PreparedComponent>,
        max_instances: u32,
        services: &HostServices,
        admission: Option<Arc<crate::trust::policy::Admission>>,
    ) -> Result<Self> {
        let subject = services.subjects.invocation(id);
        let nats = services.calls.clone();
        let invocations = async {
            let subscription = nats
                .queue_subscribe(subject.clone(), id.to_string())
                .await
                .map_err(|e| HostError::Subscribe { subject: subject.clone(), reason: e.to_string() })?;
            // In place on the server before `component_scaled` tells anyone to call.
            crate::nats::barrier(&nats).await.map_err(|e| HostError::Subscribe { subject: subject.clone(), reason: e.to_string() })?;
            Ok::<_, HostError>(subscription)
        };
        // Providers call components over wRPC, on the component's own subjects; those
        // subscriptions are made while the invocation subscription is (each waits for a round
        // trip to the server).
        let wrpc = async {
            let (wrpc, prepared, local, runtime, owned_id) =
                (services.wrpc.clone(), component.clone(), services.local.clone(), services.runtime.clone(), id.to_string());
            let subject = services.subjects.wrpc_calls(id);
            // A component exporting only 0.3's messaging handler is served 0.2's over wRPC,
            // which external messaging providers deliver with.
            use crate::capabilities::messaging::handler::{HANDLE, HANDLE_0_3};
            let shim = crate::wasm::invoke::lookup(id, &component, HANDLE).is_err() && crate::wasm::invoke::lookup(id, &component, HANDLE_0_3).is_ok();
            // A component exporting `wasi:keyvalue/watcher` is served `wrpc:keyvalue/watcher`,
            // which external key-value providers call.
            let watcher = crate::wasm::invoke::lookup(id, &component, crate::capabilities::keyvalue::watch::ON_SET).is_ok();
            let (nats, lattice) = (services.calls.clone(), services.subjects.lattice().to_string());
            services
                .runtime
                .guests()
                .spawn(async move {
                    let mut tasks = wrpc.serve_component(&owned_id, &prepared, local.clone(), runtime.clone()).await?;
                    let shims = async {
                        let mut more = Vec::new();
                        if shim {
                            more.push(crate::capabilities::messaging::wrpc_handler::serve(nats.clone(), &lattice, &owned_id, local.clone(), runtime.clone()).await?);
                        }
                        if watcher {
                            more.push(crate::capabilities::keyvalue::wrpc_watcher::serve(nats, &lattice, &owned_id, local, runtime).await?);
                        }
                        Ok::<_, crate::wasm::transport::wrpc::WrpcError>(more)
                    };
                    match shims.await {
                        Ok(more) => tasks.extend(more),
                        Err(e) => {
                            // Nothing half-served: what was subscribed already stops.
                            for task in &tasks {
                                task.abort();
                            }
                            return Err(e);
                        }
                    }
                    Ok(tasks)
                })
                .await
                .map_err(|e| HostError::Subscribe { subject: subject.clone(), reason: e.to_string() })?
                .map_err(|e| HostError::Subscribe { subject, reason: e.to_string() })
        };
        let (subscription, wrpc_tasks) = futures::join!(invocations, wrpc);
        let subscription = match subscription {
            Ok(subscription) => subscription,
            Err(e) => {
                // Never started: nothing may keep serving it.
                for task in wrpc_tasks.iter().flatten() {
                    task.abort();
                }
                return Err(e);
            }
        };
        let wrpc_tasks = wrpc_tasks?;
        Ok(Self {
            wrpc_tasks,
            id: id.into(),
            host_id: services.host_id.as_str().into(),
            serving: Serving::new(LocalTarget {
                http_pool: LocalTarget::http_pool_for(id, &services.runtime, &component, max_instances, None),
                component,
                slots: Slots::new(max_instances, services.runtime.config().max_queued_calls),
                metrics: services.runtime.metrics().component(id),
                spy: services.runtime.spy().tap(id),
                admission,
            }),
            runtime: services.runtime.clone(),
            nats,
            subscription: Some(subscription),
            drain: None,
            tracker: TaskTracker::new(),
            cutoff: CancellationToken::new(),
            local: services.local.clone(),
            stream_ended: {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            },
        })
    }
}

/// What new calls of a component run: the code (replaced by an update; calls in flight keep
/// the old one), the free instance slots (`max_instances` permits) and the limit. The actor
/// changes it; the forwarder reads it once per call.
#[derive(Clone)]
struct Serving(Arc<RwLock<LocalTarget>>);

impl Serving {
    fn new(target: LocalTarget) -> Self {
        Self(Arc::new(RwLock::new(target)))
    }

    fn get(&self) -> LocalTarget {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, target: LocalTarget) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = target;
    }
}

impl ComponentActor {
    /// What new calls run.
    fn target(&self) -> LocalTarget {
        self.serving.get()
    }

    /// Makes `target` what new calls run, over NATS and from local link calls.
    fn serve(&self, target: LocalTarget) {
        self.serving.set(target);
        self.register();
    }

    /// Makes the current code and slots visible to local link calls.
    fn register(&self) {
        self.local.set(&self.id, self.target());
    }
}

impl Actor for ComponentActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        let Some(subscription) = self.subscription.take() else { return };
        let (drain_tx, drain_rx) = oneshot::channel();
        self.drain = Some(drain_tx);
        let forwarder = Forwarder {
            id: self.id.clone(),
            host_id: self.host_id.clone(),
            serving: self.serving.clone(),
            runtime: self.runtime.clone(),
            nats: self.nats.clone(),
            tracker: self.tracker.clone(),
            cutoff: self.cutoff.clone(),
        };
        let ended = self.stream_ended.0.take();
        self.runtime.guests().spawn(async move {
            forwarder.run(subscription, drain_rx).await;
            if let Some(ended) = ended {
                let _ = ended.send(());
            }
        });
        self.register();
        self.runtime.metrics().set_max_instances(&self.id, self.target().slots.limit());
        info!(component_id = %self.id, max_instances = self.target().slots.limit(), "component serving");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.runtime.metrics().component_stopped(&self.id);
        for task in self.wrpc_tasks.drain(..) {
            task.abort();
        }
    }
}

/// Reads the component's subscription on a guest thread and starts each call there.
struct Forwarder {
    id: Arc<str>,
    host_id: Arc<str>,
    serving: Serving,
    runtime: Arc<WasmRuntime>,
    nats: async_nats::Client,
    tracker: TaskTracker,
    cutoff: CancellationToken,
}

/// What a call cut off at the host's stop deadline is answered with.
fn cut_off(id: &str) -> String {
    format!("component `{id}` was stopped (the host's stop deadline passed) before the call finished")
}

impl Forwarder {
    /// Until the subscription ends. When `drain` fires (or its sender is dropped) it
    /// unsubscribes and still starts every message the server had already sent, so nothing
    /// accepted is dropped.
    async fn run(self, mut subscription: async_nats::Subscriber, mut drain: oneshot::Receiver<()>) {
        let mut draining = false;
        loop {
            tokio::select! {
                msg = subscription.next() => match msg {
                    Some(msg) => self.start(msg),
                    None => break,
                },
                _ = &mut drain, if !draining => {
                    draining = true;
                    if let Err(e) = subscription.drain().await {
                        debug!(component_id = %self.id, error = %e, "component subscription drain");
                        break;
                    }
                }
            }
        }
        debug!(component_id = %self.id, "component subscription ended");
    }

    /// Starts one call on this runtime (tracked, so a stop waits for it).
    fn start(&self, msg: async_nats::Message) {
        let Some(reply) = msg.reply.clone() else {
            warn!(component_id = %self.id, "invocation without a reply subject dropped");
            return;
        };
        let target = self.serving.get();
        let nats = self.nats.clone();
        let (runtime, id) = (self.runtime.clone(), self.id.clone());
        let kind = msg.headers.as_ref().and_then(|h| h.get(KIND_HEADER)).map(|v| v.as_str().to_string());
        let is_http = kind.as_deref() == Some(HTTP_KIND);
        let cutoff = self.cutoff.clone();
        let span = tracing::debug_span!(target: crate::telemetry::TARGET, "invocation", component = %id, http = is_http);
        crate::telemetry::parent_from_nats(&span, msg.headers.as_ref());
        if is_http {
            self.tracker.spawn(tracing::Instrument::instrument(async move {
                let max = nats.server_info().max_payload;
                let serve = async {
                    serve_forwarded(runtime, &id, target, msg.headers, msg.payload, max).await
                };
                let (headers, body) = tokio::select! {
                    reply = serve => reply,
                    () = cutoff.cancelled() => {
                        let mut h = async_nats::HeaderMap::new();
                        h.insert(trellis_messages::invocation::HTTP_STATUS_HEADER, "503");
                        (h, bytes::Bytes::from(cut_off(&id)))
                    }
                };
                if let Err(e) = nats.publish_with_headers(reply, headers, body).await {
                    warn!(error = %e, "forwarded HTTP reply not sent");
                }
            }, span));
            return;
        }
        let host_id = self.host_id.clone();
        let call = Call { id: id.clone(), host_id: host_id.clone(), target, runtime };
        self.tracker.spawn(tracing::Instrument::instrument(async move {
            let run = async {
                match kind.as_deref() {
                    Some(MESSAGE_KIND) => call.deliver(&msg).await,
                    Some(WATCH_KIND) => call.watch(&msg).await,
                    _ => call.run(&msg).await,
                }
            };
            let response = tokio::select! {
                response = run => response,
                () = cutoff.cancelled() => InvocationResponse::fault(&host_id, FaultKind::Host, cut_off(&id)),
            };
            let body = serde_json::to_vec(&response).unwrap_or_default();
            if let Err(e) = nats.publish(reply, body.into()).await {
                warn!(error = %e, "invocation reply not sent");
            }
        }, span));
    }
}

/// Everything one call needs, moved to a guest thread.
struct Call {
    id: Arc<str>,
    host_id: Arc<str>,
    target: LocalTarget,
    runtime: Arc<WasmRuntime>,
}

impl Call {
    /// A message for the component's `wasmcloud:messaging/handler`, forwarded by a messaging
    /// provider on another host: delivered as one on this host would deliver it.
    async fn deliver(self, msg: &async_nats::Message) -> InvocationResponse {
        use crate::capabilities::messaging::handler::{deliver_here, result_wave, Delivery, HANDLE, HANDLE_0_3};
        use trellis_messages::invocation::{MESSAGE_REPLY_TO_HEADER, MESSAGE_SUBJECT_HEADER, SOURCE_ID_HEADER};
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let caller = header(SOURCE_ID_HEADER).unwrap_or_else(|| "messaging".into());
        // Refused at once, without a slot, as any call of what the component does not export.
        let exported = crate::wasm::invoke::lookup(&self.id, &self.target.component, HANDLE)
            .or_else(|fault| crate::wasm::invoke::lookup(&self.id, &self.target.component, HANDLE_0_3).map_err(|_| fault));
        let refused = match (exported, header(MESSAGE_SUBJECT_HEADER)) {
            (Err(fault), _) => Err(fault),
            (Ok(_), None) => Err(Fault::new(FaultKind::BadArguments, format!("a forwarded message without its subject ({MESSAGE_SUBJECT_HEADER})"))),
            (Ok(_), Some(subject)) => Ok(subject),
        };
        let subject = match refused {
            Ok(subject) => subject,
            Err(fault) => {
                self.target.metrics.call_ended(crate::metrics::UNKNOWN_OPERATION, Duration::ZERO, Some(fault.kind.as_str()));
                self.target.spy.record(Direction::In, HANDLE, &caller, Some(msg.payload.len()), Duration::ZERO, fault.kind.as_str());
                return InvocationResponse::fault(&self.host_id, fault.kind, fault.message);
            }
        };
        let delivery = Delivery { subject, body: msg.payload.clone(), reply_to: header(MESSAGE_REPLY_TO_HEADER), headers: Vec::new() };
        match deliver_here(&self.runtime, &self.target, &self.id, &caller, delivery).await {
            Ok(result) => InvocationResponse::ok(&self.host_id, vec![result_wave(&result)]),
            Err(fault) => {
                info!(component_id = %self.id, fault = ?fault.kind, "{}", fault.message);
                InvocationResponse::fault(&self.host_id, fault.kind, fault.message)
            }
        }
    }

    /// A key-value change for the component's `wasi:keyvalue/watcher`, forwarded by the host of
    /// the key-value provider that watches for it: checked against the link, then delivered.
    async fn watch(self, msg: &async_nats::Message) -> InvocationResponse {
        use crate::capabilities::keyvalue::watch::{deliver_forwarded, Change, ON_DELETE, ON_SET};
        use trellis_messages::invocation::{LINK_NAME_HEADER, SOURCE_ID_HEADER, WATCH_BUCKET_HEADER, WATCH_KEY_HEADER, WATCH_OP_HEADER};
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let caller = header(SOURCE_ID_HEADER).unwrap_or_default();
        let checked = match (header(WATCH_OP_HEADER).as_deref(), header(WATCH_KEY_HEADER), header(LINK_NAME_HEADER), header(WATCH_BUCKET_HEADER)) {
            (Some(op @ ("set" | "delete")), Some(key), Some(link), Some(bucket)) if !caller.is_empty() => {
                let function = if op == "set" { ON_SET } else { ON_DELETE };
                crate::wasm::invoke::lookup(&self.id, &self.target.component, function).map(|_| {
                    (function, link, bucket, Change { key, value: (op == "set").then(|| msg.payload.clone()) })
                })
            }
            _ => Err(Fault::new(
                FaultKind::BadArguments,
                format!("a forwarded key-value change needs {SOURCE_ID_HEADER}, {LINK_NAME_HEADER}, {WATCH_BUCKET_HEADER}, {WATCH_KEY_HEADER} and {WATCH_OP_HEADER} (set or delete)"),
            )),
        };
        let (function, link, bucket, change) = match checked {
            Ok(c) => c,
            Err(fault) => {
                self.target.metrics.call_ended(crate::metrics::UNKNOWN_OPERATION, Duration::ZERO, Some(fault.kind.as_str()));
                self.target.spy.record(Direction::In, "wasi:keyvalue/watcher", &caller, Some(msg.payload.len()), Duration::ZERO, fault.kind.as_str());
                return InvocationResponse::fault(&self.host_id, fault.kind, fault.message);
            }
        };
        match deliver_forwarded(&self.runtime, &self.target, &self.id, (&caller, &link, &bucket), change).await {
            Ok(()) => InvocationResponse::ok(&self.host_id, Vec::new()),
            Err(fault) => {
                info!(component_id = %self.id, function, fault = ?fault.kind, "{}", fault.message);
                InvocationResponse::fault(&self.host_id, fault.kind, fault.message)
            }
        }
    }

    async fn run(self, msg: &async_nats::Message) -> InvocationResponse {
        let caller = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(trellis_messages::invocation::SOURCE_ID_HEADER))
            .map_or("client", |v| v.as_str());
        let began = Instant::now();
        let request: InvocationRequest = match serde_json::from_slice(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                self.target.spy.record(Direction::In, "(unreadable request)", caller, Some(msg.payload.len()), began.elapsed(), FaultKind::BadArguments.as_str());
                return InvocationResponse::fault(
                    &self.host_id,
                    FaultKind::BadArguments,
                    format!("{} ({{\"function\": …, \"args\": […]}}): {e}", crate::wasm::invoke::NOT_AN_INVOCATION),
                )
            }
        };
        let component = self.target.component.clone();
        // A function the component does not export is refused at once, without a slot.
        if let Err(fault) = crate::wasm::invoke::lookup(&self.id, &component, &request.function) {
            self.target.metrics.call_ended(crate::metrics::UNKNOWN_OPERATION, Duration::ZERO, Some(fault.kind.as_str()));
            self.target.spy.record(Direction::In, &request.function, caller, Some(msg.payload.len()), began.elapsed(), fault.kind.as_str());
            return InvocationResponse::fault(&self.host_id, fault.kind, fault.message);
        }
        // Admitted, then given a slot, and only then are the arguments parsed: a call that
        // waits holds its WAVE text, not the values it stands for.
        let (runtime, id, function) = (&*self.runtime, &*self.id, request.function.as_str());
        let invoke = || async {
            let params = parse_args(id, &component, &request)?;
            let results = crate::wasm::invoke::invoke_vals(runtime, id, &component, function, params).await?;
            results
                .iter()
                .map(|v| v.to_wave().map_err(|e| Fault::new(FaultKind::Host, format!("cannot print a result of `{function}`: {e}"))))
                .collect::<Result<Vec<String>, Fault>>()
        };
        let result = self.target.call_with(runtime, id, function, caller, invoke).await;
        match result {
            Ok(results) => InvocationResponse::ok(&self.host_id, results),
            Err(fault) => {
                info!(component_id = %self.id, function = %request.function, fault = ?fault.kind, "{}", fault.message);
                InvocationResponse::fault(&self.host_id, fault.kind, fault.message)
            }
        }
    }
}

/// Switches to new code; calls in flight finish on the old.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Update(pub Arc<PreparedComponent>, pub Option<Arc<crate::trust::policy::Admission>>);

impl std::fmt::Debug for Update {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Update").field(&self.0.image_ref).finish()
    }
}

impl Handler<Update> for ComponentActor {
    type Result = ();
    fn handle(&mut self, msg: Update, _: &mut Self::Context) {
        info!(component_id = %self.id, image_ref = %msg.0.image_ref, "component updated");
        let target = self.target();
        // New code, new instances: the old pool's finish what they hold and end.
        let http_pool = LocalTarget::http_pool_for(&self.id, &self.runtime, &msg.0, target.slots.limit(), target.http_pool.as_deref());
        let old = target.http_pool.clone();
        self.serve(LocalTarget { component: msg.0, admission: msg.1, http_pool, ..target });
        if let Some(old) = old {
            old.close();
        }
    }
}

/// Changes `max_instances` in place: calls holding a slot finish normally, and no more than the
/// new limit run once they have.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetMaxInstances(pub u32);

impl Handler<SetMaxInstances> for ComponentActor {
    type Result = ();
    fn handle(&mut self, msg: SetMaxInstances, _: &mut Self::Context) {
        let target = self.target();
        let slots = target.slots;
        let from = slots.limit();
        if msg.0 != from {
            info!(component_id = %self.id, from, to = msg.0, "component rescaled");
            slots.resize(msg.0);
            if let Some(pool) = &target.http_pool {
                pool.resize(msg.0);
            }
            self.runtime.metrics().set_max_instances(&self.id, msg.0);
        }
    }
}

/// Stops serving: drains the subscription, waits up to `timeout` for calls in flight, stops.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopComponent {
    /// How long calls in flight may take to finish.
    pub timeout: Duration,
}

impl Handler<StopComponent> for ComponentActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, msg: StopComponent, _: &mut Self::Context) -> Self::Result {
        // Local callers now go over NATS (to another host, if any runs this component).
        self.local.remove(&self.id);
        // Reused instances take no new request and end once idle.
        if let Some(pool) = &self.target().http_pool {
            pool.close();
        }
        for task in self.wrpc_tasks.drain(..) {
            task.abort();
        }
        if let Some(drain) = self.drain.take() {
            let _ = drain.send(());
        }
        let ended = self.stream_ended.1.take();
        let deadline = Instant::now() + msg.timeout;
        let id = self.id.clone();
        let timeout = msg.timeout;
        Box::pin(
            async move {
                // The forwarder has started a tracked call for every message the server
                // delivered before the unsubscribe by the time it reports the stream ended.
                if let Some(ended) = ended {
                    let _ = tokio::time::timeout_at(deadline.into(), ended).await;
                }
            }
            .into_actor(self)
            .then(move |(), act, _| {
                let (tracker, cutoff) = (act.tracker.clone(), act.cutoff.clone());
                tracker.close();
                async move {
                    if tokio::time::timeout_at(deadline.into(), tracker.wait()).await.is_err() {
                        warn!(component_id = %id, ?timeout, "calls still running at the stop deadline are answered with a fault");
                        cutoff.cancel();
                        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
                    }
                }
                .into_actor(act)
            })
            .map(|(), act, ctx| {
                info!(component_id = %act.id, "component stopped");
                ctx.stop();
            }),
        )
    }
}
