//! The control actor: owns the control-interface subscriptions, parses each message once into
//! a [`CtlCommand`], has the [`Dispatcher`] answer it, and publishes the reply.

use std::pin::Pin;
use std::sync::Arc;

use actix::prelude::*;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};
use trellis_messages::{CtlCommand, CtlResponse, Subjects};

use crate::config::Limits;
use crate::actors::dispatch::Dispatcher;
use crate::error::{HostError, Result};
use crate::identity::HostIdentity;
use crate::stop::{StopReason, StopRequest};

/// Which kind of subscription delivered a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// A subscription for known operations.
    Known,
    /// The queue-group catch-all under the prefix: answers only subjects that name no operation.
    CatchAll,
}

/// A control message and the subscription it came from.
#[derive(Debug)]
pub struct Incoming {
    route: Route,
    msg: async_nats::Message,
}

type IncomingStream = Pin<Box<dyn Stream<Item = Incoming> + Send>>;

/// The control subscriptions of one host, made before the control actor starts so that a
/// subscribe failure stops the host from starting instead of leaving it deaf.
pub struct ControlSubscriptions {
    stream: IncomingStream,
    /// Set to `true` to drain: each subscription unsubscribes on the server and then still
    /// delivers what the server had already sent, so every request received gets its answer.
    drain: tokio::sync::watch::Sender<bool>,
}

/// A subscription as a stream that drains when `drain` turns `true`, then ends.
fn draining(sub: async_nats::Subscriber, drain: tokio::sync::watch::Receiver<bool>, route: Route) -> IncomingStream {
    futures::stream::unfold((sub, drain, false), move |(mut sub, mut drain, mut drained)| async move {
        loop {
            tokio::select! {
                msg = sub.next() => return msg.map(|msg| (Incoming { route, msg }, (sub, drain, drained))),
                alive = async { drain.wait_for(|d| *d).await.is_ok() }, if !drained => {
                    drained = true;
                    if !alive || sub.drain().await.is_err() {
                        return None;
                    }
                }
            }
        }
    })
    .boxed()
}

impl std::fmt::Debug for ControlSubscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSubscriptions").finish_non_exhaustive()
    }
}

impl ControlSubscriptions {
    /// Subscribes to every control subject of `host_id` (see [`Subjects::host_subscriptions`]).
    ///
    /// # Errors
    /// [`HostError::Subscribe`] naming the subject that failed.
    pub async fn subscribe(nats: &async_nats::Client, subjects: &Subjects, host_id: &str) -> Result<Self> {
        let catch_all = format!("{}.>", subjects.base());
        let (drain, drain_rx) = tokio::sync::watch::channel(false);
        let mut streams = Vec::new();
        for (subject, group) in subjects.host_subscriptions(host_id) {
            let sub = match &group {
                Some(g) => nats.queue_subscribe(subject.clone(), g.clone()).await,
                None => nats.subscribe(subject.clone()).await,
            }
            .map_err(|e| HostError::Subscribe { subject: subject.clone(), reason: e.to_string() })?;
            let route = if subject == catch_all { Route::CatchAll } else { Route::Known };
            debug!(%subject, ?group, "subscribed");
            streams.push(draining(sub, drain_rx.clone(), route));
        }
        Ok(Self { stream: futures::stream::select_all(streams).boxed(), drain })
    }
}

/// Serves the control interface for one host.
pub struct ControlActor {
    /// For parsing subjects.
    subjects: Subjects,
    /// For publishing replies.
    nats: async_nats::Client,
    /// Signs the replies.
    identity: Arc<HostIdentity>,
    /// Answers parsed commands.
    dispatcher: Dispatcher,
    /// The subscriptions, until `started()` attaches them.
    subscriptions: Option<ControlSubscriptions>,
    /// Drains the subscriptions (see [`ControlSubscriptions`]).
    drain: Option<tokio::sync::watch::Sender<bool>>,
    /// The subscriptions have ended (drained).
    ended: bool,
    /// Messages being answered.
    in_flight: usize,
    /// Set by [`StopControl`]: told when the last in-flight answer is out.
    drained: Option<oneshot::Sender<()>>,
    /// Asks the runtime to stop the host when the subscriptions end on their own.
    stop: mpsc::UnboundedSender<StopRequest>,
    /// Message size and in-flight bounds.
    limits: Limits,
}

impl std::fmt::Debug for ControlActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlActor").field("base", &self.subjects.base()).field("in_flight", &self.in_flight).finish()
    }
}

impl ControlActor {
    /// A control actor serving `subscriptions`.
    pub fn new(
        subjects: Subjects,
        nats: async_nats::Client,
        identity: Arc<HostIdentity>,
        dispatcher: Dispatcher,
        subscriptions: ControlSubscriptions,
        stop: mpsc::UnboundedSender<StopRequest>,
        limits: Limits,
    ) -> Self {
        Self {
            subjects,
            nats,
            identity,
            dispatcher,
            subscriptions: Some(subscriptions),
            drain: None,
            ended: false,
            in_flight: 0,
            drained: None,
            stop,
            limits,
        }
    }

    fn one_done(&mut self, ctx: &mut Context<Self>) {
        self.in_flight -= 1;
        if self.drained.is_some() && self.ended && self.in_flight == 0 {
            ctx.stop();
        }
    }
}

impl Actor for ControlActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(subs) = self.subscriptions.take() {
            self.drain = Some(subs.drain);
            ctx.add_stream(subs.stream);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(done) = self.drained.take() {
            let _ = done.send(());
        }
    }
}

/// Publishes a control reply, signed by this host (`Trellis-Signature`), so a host that learns
/// another's inventory from it knows who answered.
async fn reply(nats: &async_nats::Client, identity: &HostIdentity, reply_to: async_nats::Subject, body: Vec<u8>) -> Result<(), async_nats::PublishError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(trellis_messages::event::SIGNATURE_HEADER, identity.sign_message(&reply_to, &body).as_str());
    nats.publish_with_headers(reply_to, headers, body.into()).await
}

impl StreamHandler<Incoming> for ControlActor {
    fn handle(&mut self, incoming: Incoming, ctx: &mut Self::Context) {
        let Incoming { route, msg } = incoming;
        let subject = msg.subject.to_string();
        if route == Route::CatchAll && CtlCommand::operation(&self.subjects, &subject).is_ok() {
            return; // a known operation: its own subscription answers it
        }
        let nats = self.nats.clone();
        let identity = self.identity.clone();
        let reply_to = msg.reply.clone();
        // Bounded before anything is parsed or spawned: an answer, never a queue.
        let refusal = if msg.payload.len() > self.limits.max_control_message {
            Some(format!(
                "control message of {} bytes refused: this host accepts at most {} bytes (--max-control-message)",
                msg.payload.len(),
                self.limits.max_control_message
            ))
        } else if self.in_flight >= self.limits.max_control_in_flight {
            Some(format!(
                "host is busy: {} control requests are being answered (--max-control-in-flight); try again",
                self.in_flight
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            warn!(%subject, "{refusal}");
            if let Some(reply_to) = reply_to {
                let body = crate::actors::dispatch::Answer::reply(&CtlResponse::<()>::error(refusal)).reply.unwrap_or_default();
                // Fire and forget: the publish is buffered by the client, not awaited.
                actix::spawn(async move {
                    let _ = reply(&nats, &identity, reply_to, body).await;
                });
            }
            return;
        }
        let parsed = CtlCommand::parse(&self.subjects, &subject, &msg.payload);
        let dispatcher = self.dispatcher.clone();
        let work = async move {
            let answer = match parsed {
                Ok(command) => dispatcher.answer(command).await,
                Err(e) => {
                    warn!(%subject, error = %e, "rejected control message");
                    crate::actors::dispatch::Answer::reply(&CtlResponse::<()>::error(e.to_string()))
                }
            };
            if let (Some(body), Some(reply_to)) = (answer.reply, reply_to) {
                if let Err(e) = reply(&nats, &identity, reply_to, body).await {
                    error!(%subject, error = %e, "control reply not sent");
                }
            }
            if let Some(then) = answer.then_stop {
                // Make sure the acknowledgement leaves before the host begins to stop.
                let _ = nats.flush().await;
                let _ = dispatcher.request_stop(then);
            }
        };
        self.in_flight += 1;
        ctx.spawn(actix::fut::wrap_future(work).map(|(), act: &mut Self, ctx| act.one_done(ctx)));
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.ended = true;
        if self.drained.is_none() {
            error!("control subscriptions ended unexpectedly; stopping the host");
            let _ = self.stop.send(StopRequest { timeout: None, reason: StopReason::ControlLost });
        }
        if self.in_flight == 0 {
            ctx.stop();
        }
    }
}

/// Drains the subscriptions (unsubscribes, answers what the server had already delivered), lets
/// in-flight answers finish, then stops the actor and signals `done`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopControl {
    /// Signalled once the actor has stopped.
    pub done: oneshot::Sender<()>,
}

impl Handler<StopControl> for ControlActor {
    type Result = ();
    fn handle(&mut self, msg: StopControl, ctx: &mut Self::Context) {
        self.drained = Some(msg.done);
        match self.drain.take() {
            Some(drain) => {
                let _ = drain.send(true);
            }
            None => self.ended = true,
        }
        if self.ended && self.in_flight == 0 {
            ctx.stop();
        }
    }
}
