//! A component actor: one per component running on this host. It owns the component's NATS
//! subscription (a queue group shared with every other host running the same component id) and
//! hands each call to the guest threads, bounded by `max_instances`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use trellis_messages::invocation::{FaultKind, InvocationRequest, InvocationResponse, HTTP_KIND_HEADER};

use crate::error::{HostError, Result};
use crate::wasm::invoke::{parse_args, Fault};
use crate::services::HostServices;
use crate::wasm::http::serve_forwarded;
use crate::wasm::local::{LocalComponents, LocalTarget};
use crate::wasm::{PreparedComponent, WasmRuntime};

/// Messages buffered between the subscription and the actor.
const INCOMING_BUFFER: usize = 1024;

/// Serves one component's exports.
pub struct ComponentActor {
    /// The component id.
    id: Arc<str>,
    /// This host, named in replies.
    host_id: Arc<str>,
    /// The code calls run; replaced by an update (calls in flight keep the old one).
    current: Arc<PreparedComponent>,
    /// Free instance slots: `max_instances` permits.
    permits: Arc<Semaphore>,
    /// The configured `max_instances`.
    max_instances: u32,
    /// Engine, limits, guest threads.
    runtime: Arc<WasmRuntime>,
    /// For replies.
    nats: async_nats::Client,
    /// The subscription, until `started` hands it to the forwarder.
    subscription: Option<async_nats::Subscriber>,
    /// Tells the forwarder to drain the subscription.
    drain: Option<oneshot::Sender<()>>,
    /// Calls in flight.
    tracker: TaskTracker,
    /// Components running here: this one is registered while it serves.
    local: LocalComponents,
    /// Fired by `finished` once the drained subscription has handed over its last message.
    stream_ended: (Option<oneshot::Sender<()>>, Option<oneshot::Receiver<()>>),
}

impl std::fmt::Debug for ComponentActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentActor").field("id", &self.id).field("max_instances", &self.max_instances).finish_non_exhaustive()
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
    ) -> Result<Self> {
        let subject = services.subjects.invocation(id);
        let nats = services.nats.clone();
        let subscription = nats
            .queue_subscribe(subject.clone(), id.to_string())
            .await
            .map_err(|e| HostError::Subscribe { subject: subject.clone(), reason: e.to_string() })?;
        // In place on the server before `component_scaled` tells anyone to call.
        crate::nats::barrier(&nats).await.map_err(|reason| HostError::Subscribe { subject, reason })?;
        Ok(Self {
            id: id.into(),
            host_id: services.host_id.as_str().into(),
            current: component,
            permits: Arc::new(Semaphore::new(max_instances as usize)),
            max_instances,
            runtime: services.runtime.clone(),
            nats,
            subscription: Some(subscription),
            drain: None,
            tracker: TaskTracker::new(),
            local: services.local.clone(),
            stream_ended: {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            },
        })
    }
}

impl ComponentActor {
    /// Makes the current code and slots visible to local link calls.
    fn register(&self) {
        self.local.set(
            &self.id,
            LocalTarget { component: self.current.clone(), permits: self.permits.clone(), max_instances: self.max_instances },
        );
    }
}

impl Actor for ComponentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(mut subscription) = self.subscription.take() else { return };
        let (tx, rx) = mpsc::channel(INCOMING_BUFFER);
        let (drain_tx, mut drain_rx) = oneshot::channel();
        self.drain = Some(drain_tx);
        // Forwarder: subscription → actor mailbox. On drain it unsubscribes and still hands over
        // every message the server had already sent, so nothing accepted is dropped.
        actix::spawn(async move {
            let mut draining = false;
            loop {
                tokio::select! {
                    msg = subscription.next() => match msg {
                        Some(msg) => if tx.send(msg).await.is_err() { break },
                        None => break,
                    },
                    _ = &mut drain_rx, if !draining => {
                        draining = true;
                        if let Err(e) = subscription.drain().await {
                            debug!(error = %e, "component subscription drain");
                            break;
                        }
                    }
                }
            }
        });
        ctx.add_stream(tokio_stream_from(rx));
        self.register();
        info!(component_id = %self.id, max_instances = self.max_instances, "component serving");
    }
}

fn tokio_stream_from<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

impl StreamHandler<async_nats::Message> for ComponentActor {
    fn handle(&mut self, msg: async_nats::Message, _: &mut Self::Context) {
        let Some(reply) = msg.reply.clone() else {
            warn!(component_id = %self.id, "invocation without a reply subject dropped");
            return;
        };
        let call = Call {
            id: self.id.clone(),
            host_id: self.host_id.clone(),
            target: LocalTarget {
                component: self.current.clone(),
                permits: self.permits.clone(),
                max_instances: self.max_instances,
            },
            runtime: self.runtime.clone(),
        };
        let nats = self.nats.clone();
        let is_http = msg.headers.as_ref().and_then(|h| h.get(HTTP_KIND_HEADER)).is_some_and(|v| v.as_str() == "http");
        if is_http {
            let target = call.target.clone();
            let (runtime, id) = (self.runtime.clone(), self.id.clone());
            self.tracker.spawn_on(
                async move {
                    let (headers, body) = serve_forwarded(runtime, &id, target, msg.headers, msg.payload).await;
                    if let Err(e) = nats.publish_with_headers(reply, headers, body).await {
                        warn!(error = %e, "forwarded HTTP reply not sent");
                    }
                },
                self.runtime.guests(),
            );
            return;
        }
        self.tracker.spawn_on(
            async move {
                let response = call.run(&msg.payload).await;
                let body = serde_json::to_vec(&response).unwrap_or_default();
                if let Err(e) = nats.publish(reply, body.into()).await {
                    warn!(error = %e, "invocation reply not sent");
                }
            },
            self.runtime.guests(),
        );
    }

    fn finished(&mut self, _: &mut Self::Context) {
        debug!(component_id = %self.id, "component subscription ended");
        if let Some(tx) = self.stream_ended.0.take() {
            let _ = tx.send(());
        }
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
    async fn run(self, payload: &[u8]) -> InvocationResponse {
        let request: InvocationRequest = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => {
                return InvocationResponse::fault(
                    &self.host_id,
                    FaultKind::BadArguments,
                    format!("invocation request is not valid JSON ({{\"function\": …, \"args\": […]}}): {e}"),
                )
            }
        };
        let component = self.target.component.clone();
        let result = match parse_args(&self.id, &component, &request) {
            Ok(params) => self.target.call(&self.runtime, &self.id, &request.function, params).await.and_then(|vals| {
                vals.iter()
                    .map(|v| {
                        v.to_wave().map_err(|e| {
                            Fault::new(FaultKind::Host, format!("cannot print a result of `{}`: {e}", request.function))
                        })
                    })
                    .collect()
            }),
            Err(fault) => Err(fault),
        };
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
pub struct Update(pub Arc<PreparedComponent>);

impl std::fmt::Debug for Update {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Update").field(&self.0.image_ref).finish()
    }
}

impl Handler<Update> for ComponentActor {
    type Result = ();
    fn handle(&mut self, msg: Update, _: &mut Self::Context) {
        info!(component_id = %self.id, image_ref = %msg.0.image_ref, "component updated");
        self.current = msg.0;
        self.register();
    }
}

/// Changes `max_instances`; calls holding a slot of the old limit finish normally.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetMaxInstances(pub u32);

impl Handler<SetMaxInstances> for ComponentActor {
    type Result = ();
    fn handle(&mut self, msg: SetMaxInstances, _: &mut Self::Context) {
        if msg.0 != self.max_instances {
            info!(component_id = %self.id, from = self.max_instances, to = msg.0, "component rescaled");
            self.max_instances = msg.0;
            self.permits = Arc::new(Semaphore::new(msg.0 as usize));
            self.register();
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
        if let Some(drain) = self.drain.take() {
            let _ = drain.send(());
        }
        let ended = self.stream_ended.1.take();
        let deadline = Instant::now() + msg.timeout;
        let id = self.id.clone();
        let timeout = msg.timeout;
        Box::pin(
            async move {
                // Every message the server delivered before the unsubscribe reaches `handle`
                // before the stream ends.
                if let Some(ended) = ended {
                    let _ = tokio::time::timeout_at(deadline.into(), ended).await;
                }
            }
            .into_actor(self)
            .then(move |(), act, _| {
                let tracker = act.tracker.clone();
                tracker.close();
                async move {
                    if tokio::time::timeout_at(deadline.into(), tracker.wait()).await.is_err() {
                        warn!(component_id = %id, ?timeout, "calls still running when the component stopped");
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
