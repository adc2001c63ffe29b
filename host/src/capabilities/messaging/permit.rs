//! What one `wasmcloud:messaging` call may do, decided before it does anything, and how it goes
//! out: 0.2's `consumer` and 0.3's `producer` and `request-reply` share it. The link (by the name
//! the call uses) must target a running messaging provider; the subject must be one the
//! capability resolver allows (the reply subject of the message being handled, never the
//! lattice's own subjects, the link's `subjects` allow-list — which an external provider's link
//! may leave out). Through the built-in provider a message goes out on the host's call
//! connection, headers included; through an external provider (wasmCloud's NATS or Kafka
//! messaging provider, …) as a `wasmcloud:messaging/consumer@0.2.0` call over wRPC, which the
//! provider carries out on its own connection (and which has no headers). A request waits at
//! most until the call's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use tracing::info;

use crate::capabilities::context::ImportContext;
use crate::capabilities::view::View;
use crate::permission::{Denied, ProviderGrant};
use crate::wasm::transport::wrpc::WrpcError;

/// wRPC's side of `wasmcloud:messaging/consumer@0.2.0`: calls to an external messaging provider.
mod wrpc_bindings {
    wit_bindgen_wrpc::generate!({
        inline: "package trellis:msg; world msg { import wasmcloud:messaging/consumer@0.2.0; }",
        path: "../wit/messaging/deps/messaging",
        world: "trellis:msg/msg",
        generate_all,
    });
}

use wrpc_bindings::wasmcloud::messaging::{consumer as wrpc_consumer, types as wire};

/// Replies one request may gather (`request-reply`'s `expected-replies`).
pub const MAX_REPLIES: u32 = 16;
/// Bytes of replies one request gathers before it stops reading (the answers are then counted
/// against what the call may hold).
pub const MAX_REPLY_BYTES: usize = 64 << 20;

/// At most 64 characters of `s`, for an error message.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Why a messaging call failed; the guest receives its text (0.2's errors are strings, 0.3's
/// an `error` variant).
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// The component runs outside a lattice.
    #[error("wasmcloud:messaging is not available: the component runs without a lattice")]
    NoLattice,
    /// The resolver refused the link or the subject.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The external provider could not be reached.
    #[error("messaging provider {0}")]
    Provider(#[from] WrpcError),
    /// The external provider answered with an error.
    #[error("{0}")]
    Refused(String),
    /// What wRPC's `wasmcloud:messaging/consumer@0.2.0` cannot carry.
    #[error("`metadata` not currently supported by wRPC targets")]
    NoHeadersOverWrpc,
    /// NATS did not take the message.
    #[error("publish failed: {0}")]
    Publish(#[from] async_nats::PublishError),
    /// No reply by the deadline.
    #[error("no reply on `{subject}` within {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    /// The request failed.
    #[error("request on `{subject}` failed: {source}")]
    Request { subject: String, source: async_nats::RequestError },
    /// Metadata NATS cannot carry as a header.
    #[error("metadata `{0}` cannot be a NATS header (no control characters, spaces or `:` in a name, no line breaks in a value)")]
    BadHeader(String),
    /// Listening for replies failed.
    #[error("cannot listen for replies: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// A message going out.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Where to.
    pub subject: String,
    /// Its body.
    pub body: Bytes,
    /// Where answers go, if anywhere.
    pub reply_to: Option<String>,
    /// Headers (0.3's metadata).
    pub headers: Vec<(String, String)>,
}

/// A message that came back (an answer to a request).
#[derive(Debug, Default)]
pub struct Received {
    /// The subject it came on.
    pub subject: String,
    /// Its body.
    pub body: Bytes,
    /// Its own reply subject.
    pub reply_to: Option<String>,
    /// Its headers.
    pub headers: Vec<(String, String)>,
}

impl From<async_nats::Message> for Received {
    fn from(m: async_nats::Message) -> Self {
        let headers = m
            .headers
            .iter()
            .flat_map(|h| h.iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string()))))
            .collect();
        Self { subject: m.subject.to_string(), body: m.payload, reply_to: m.reply.map(|r| r.to_string()), headers }
    }
}

/// `headers` as NATS headers; a name or value NATS cannot carry (control characters, spaces
/// or `:` in a name, a line break in a value) is refused, never handed to the client (whose
/// `append` would panic on it).
fn header_map(headers: &[(String, String)]) -> Result<Option<async_nats::HeaderMap>, MessagingError> {
    use std::str::FromStr as _;
    if headers.is_empty() {
        return Ok(None);
    }
    let mut map = async_nats::HeaderMap::new();
    for (k, v) in headers {
        let name = async_nats::header::HeaderName::from_str(k).map_err(|_| MessagingError::BadHeader(clip(k)))?;
        let value = async_nats::header::HeaderValue::from_str(v).map_err(|_| MessagingError::BadHeader(clip(k)))?;
        map.append(name, value);
    }
    Ok(Some(map))
}

/// What one messaging call may do.
#[derive(Debug)]
pub struct Permit {
    ctx: Arc<ImportContext>,
    grant: ProviderGrant,
    reply_to: Option<String>,
    deadline: Instant,
}

impl Permit {
    /// The permit of a call through link `link_name`.
    ///
    /// # Errors
    /// No lattice; no such link to a running messaging provider.
    pub fn new(view: &View<'_>, link_name: &str) -> Result<Self, MessagingError> {
        let ctx = view.context().ok_or(MessagingError::NoLattice)?;
        let grant = ctx.resolver.messaging(&ctx.source_id, link_name)?;
        Ok(Self { ctx, grant, reply_to: view.reply_to().map(str::to_string), deadline: view.deadline() })
    }

    fn check(&self, subject: &str) -> Result<(), MessagingError> {
        self.ctx.resolver.may_publish(&self.grant, subject, self.reply_to.as_deref()).map_err(|d| {
            info!(component_id = %self.ctx.source_id, subject, "messaging refused: {d}");
            d.into()
        })
    }

    /// Runs `call` on the external provider the grant names, within the call's deadline.
    async fn via_provider<T, F, Fut>(&self, call: F) -> Result<T, MessagingError>
    where
        F: FnOnce(Arc<wrpc_transport_nats::Client>, Option<async_nats::HeaderMap>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
    {
        let provider = &self.grant.link.target;
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.ctx
            .wrpc
            .invoke(&self.ctx.source_id, &self.grant.link.name, provider, left, call)
            .await?
            .map_err(MessagingError::Refused)
    }

    /// Publishes `msg`.
    ///
    /// # Errors
    /// A subject refused; the provider or NATS failing.
    pub async fn publish(self, msg: Outgoing) -> Result<(), MessagingError> {
        self.check(&msg.subject)?;
        // A reply subject is where the receiver will publish: it must be a subject this
        // component could publish to itself.
        if let Some(reply) = &msg.reply_to {
            self.check(reply)?;
        }
        if self.grant.external {
            if !msg.headers.is_empty() {
                return Err(MessagingError::NoHeadersOverWrpc);
            }
            let wire = wire::BrokerMessage { subject: msg.subject, body: msg.body, reply_to: msg.reply_to };
            return self.via_provider(|c, cx| async move { wrpc_consumer::publish(&*c, cx, &wire).await }).await;
        }
        let nats = &self.ctx.nats;
        match (msg.reply_to, header_map(&msg.headers)?) {
            (Some(reply), Some(h)) => nats.publish_with_reply_and_headers(msg.subject, reply, h, msg.body).await,
            (Some(reply), None) => nats.publish_with_reply(msg.subject, reply, msg.body).await,
            (None, Some(h)) => nats.publish_with_headers(msg.subject, h, msg.body).await,
            (None, None) => nats.publish(msg.subject, msg.body).await,
        }
        .map_err(MessagingError::from)
    }

    /// Sends `msg` as a request and gathers up to `expected` answers (at most [`MAX_REPLIES`]),
    /// waiting at most `timeout_ms` (else until the call's deadline). At least one answer, or
    /// an error.
    ///
    /// # Errors
    /// A subject refused; no answer in time; the provider or NATS failing.
    pub async fn request(self, msg: Outgoing, timeout_ms: Option<u32>, expected: u32) -> Result<Vec<Received>, MessagingError> {
        self.check(&msg.subject)?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let timeout = timeout_ms.map_or(left, |ms| Duration::from_millis(u64::from(ms.max(1))).min(left));
        let subject = msg.subject;
        if self.grant.external {
            if !msg.headers.is_empty() {
                return Err(MessagingError::NoHeadersOverWrpc);
            }
            // wRPC's consumer answers one reply.
            let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            let body = msg.body;
            let answer = self.via_provider(|c, cx| async move { wrpc_consumer::request(&*c, cx, &subject, &body, timeout_ms).await }).await?;
            return Ok(vec![Received { subject: answer.subject, body: answer.body, reply_to: answer.reply_to, headers: Vec::new() }]);
        }
        let nats = &self.ctx.nats;
        let expected = expected.clamp(1, MAX_REPLIES) as usize;
        if expected == 1 {
            let mut request = async_nats::Request::new().payload(msg.body).timeout(Some(timeout));
            if let Some(h) = header_map(&msg.headers)? {
                request = request.headers(h);
            }
            return match tokio::time::timeout(timeout, nats.send_request(subject.clone(), request)).await {
                Err(_) => Err(MessagingError::Timeout { subject, timeout }),
                Ok(Err(source)) => Err(MessagingError::Request { subject, source }),
                Ok(Ok(answer)) => Ok(vec![answer.into()]),
            };
        }
        // More than one answer: a fresh inbox, read until enough arrived or the time is up.
        let inbox = nats.new_inbox();
        let mut answers = nats.subscribe(inbox.clone()).await?;
        answers.unsubscribe_after(expected as u64).await.map_err(|e| MessagingError::Request {
            subject: subject.clone(),
            source: async_nats::RequestError::with_source(async_nats::RequestErrorKind::Other, e),
        })?;
        match header_map(&msg.headers)? {
            Some(h) => nats.publish_with_reply_and_headers(subject.clone(), inbox, h, msg.body).await?,
            None => nats.publish_with_reply(subject.clone(), inbox, msg.body).await?,
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let until = tokio::time::Instant::now() + timeout;
        while out.len() < expected && bytes < MAX_REPLY_BYTES {
            match tokio::time::timeout_at(until, answers.next()).await {
                Ok(Some(m)) => {
                    bytes = bytes.saturating_add(m.length);
                    out.push(Received::from(m));
                }
                Ok(None) | Err(_) => break,
            }
        }
        if out.is_empty() {
            return Err(MessagingError::Timeout { subject, timeout });
        }
        Ok(out)
    }
}
