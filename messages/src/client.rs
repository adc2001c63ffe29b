//! A typed async client for the control interface, over any `async_nats::Client`.

use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::CtlResponse;
use crate::error::{Error, Result};
use crate::component::{ComponentAuctionAck, ComponentAuctionRequest, ScaleComponentCommand, UpdateComponentCommand};
use crate::host::{Host, HostInventory, HostLabel, HostLabelIdentifier, StopHostCommand};
use crate::invocation::{InvocationRequest, InvocationResponse};
use crate::link::{DeleteInterfaceLinkDefinitionRequest, Link};
use crate::subjects::Subjects;

/// A cheap-to-clone handle for driving hosts of one lattice.
#[derive(Clone, Debug)]
pub struct Client {
    /// The NATS connection requests go over.
    nats: async_nats::Client,
    /// Subject builder for the lattice and control prefix.
    subjects: Subjects,
    /// How long a targeted request waits for its reply.
    timeout: Duration,
    /// How long a broadcast (ping, auction) gathers replies.
    gather: Duration,
}

impl Client {
    /// A client for `lattice` under control prefix `prefix`, with a 5 s request timeout and a
    /// 2 s gather window for broadcasts.
    pub fn new(nats: async_nats::Client, prefix: &str, lattice: &str) -> Self {
        Self {
            nats,
            subjects: Subjects::new(prefix, lattice),
            timeout: Duration::from_secs(5),
            gather: Duration::from_secs(2),
        }
    }

    /// Sets the timeout of targeted requests.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long broadcasts gather replies.
    #[must_use]
    pub fn with_gather(mut self, gather: Duration) -> Self {
        self.gather = gather;
        self
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// The subjects this client uses.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Every host that answers `host.ping` within the gather window.
    ///
    /// # Errors
    /// When the request cannot be published. Replies that do not parse are skipped.
    pub async fn ping_hosts(&self) -> Result<Vec<Host>> {
        let replies: Vec<CtlResponse<Host>> = self.gather(self.subjects.host_ping(), Vec::new()).await?;
        Ok(replies.into_iter().filter_map(|r| r.response).collect())
    }

    /// The inventory of host `host_id`.
    ///
    /// # Errors
    /// On timeout, a reply that does not parse, or a refusal.
    pub async fn inventory(&self, host_id: &str) -> Result<HostInventory> {
        self.request_response(self.subjects.host_get(host_id), None::<&()>).await
    }

    /// Sets label `key=value` on host `host_id`.
    ///
    /// # Errors
    /// On timeout or refusal (e.g. a `hostcore.*` key).
    pub async fn put_label(&self, host_id: &str, key: &str, value: &str) -> Result<String> {
        let body = HostLabel { key: key.into(), value: value.into() };
        self.request_ack(self.subjects.label_put(host_id), Some(&body)).await
    }

    /// Deletes label `key` from host `host_id`.
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn delete_label(&self, host_id: &str, key: &str) -> Result<String> {
        let body = HostLabelIdentifier { key: key.into() };
        self.request_ack(self.subjects.label_del(host_id), Some(&body)).await
    }

    /// Asks host `host_id` to stop, draining for at most `timeout_ms`.
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn stop_host(&self, host_id: &str, timeout_ms: Option<u64>) -> Result<String> {
        let body = StopHostCommand { host_id: host_id.into(), timeout: timeout_ms };
        self.request_ack(self.subjects.host_stop(host_id), Some(&body)).await
    }

    /// Asks host `host_id` to run `command.component_id` from `command.component_ref` with at
    /// most `command.max_instances` concurrent invocations (`0` stops it). The host only
    /// acknowledges; the outcome is a `component_scaled` or `component_scale_failed` event.
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn scale_component(&self, host_id: &str, command: &ScaleComponentCommand) -> Result<String> {
        self.request_ack(self.subjects.component_scale(host_id), Some(command)).await
    }

    /// Asks host `host_id` to switch a running component to a new reference.
    ///
    /// # Errors
    /// On timeout or refusal (e.g. the component does not run there).
    pub async fn update_component(&self, host_id: &str, command: &UpdateComponentCommand) -> Result<String> {
        self.request_ack(self.subjects.component_update(host_id), Some(command)).await
    }

    /// The bids of every host that could run the component under `request.constraints`.
    ///
    /// # Errors
    /// When the request cannot be published.
    pub async fn component_auction(&self, request: &ComponentAuctionRequest) -> Result<Vec<ComponentAuctionAck>> {
        let payload = serde_json::to_vec(request).map_err(|source| Error::Encode { what: "auction request", source })?;
        let replies: Vec<CtlResponse<ComponentAuctionAck>> = self.gather(self.subjects.component_auction(), payload).await?;
        Ok(replies.into_iter().filter(|r| r.success).filter_map(|r| r.response).collect())
    }

    /// Calls `function` of component `component_id` wherever it runs on the lattice, with
    /// WAVE-encoded `args`. Returns the host's reply: results or a fault.
    ///
    /// # Errors
    /// When no host answers in time ([`Error::Timeout`], or [`Error::Nats`] with "no responders"
    /// when no host runs the component), or the reply does not parse.
    pub async fn call(&self, component_id: &str, function: &str, args: Vec<String>) -> Result<InvocationResponse> {
        let subject = self.subjects.invocation(component_id);
        let body = InvocationRequest { function: function.into(), args };
        let payload = serde_json::to_vec(&body).map_err(|source| Error::Encode { what: "invocation", source })?;
        let msg = match self.request(subject.clone(), payload).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                return Err(Error::NotRunning {
                    component_id: component_id.into(),
                    lattice: self.subjects.lattice().into(),
                })
            }
            other => self.request_result(subject.clone(), other)?,
        };
        serde_json::from_slice(&msg.payload).map_err(|source| Error::BadReply { subject, source })
    }

    /// Starts a provider on host `host_id`; the outcome is a `provider_started` or
    /// `provider_start_failed` event.
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn start_provider(&self, host_id: &str, command: &crate::provider::StartProviderCommand) -> Result<String> {
        self.request_ack(self.subjects.provider_start(host_id), Some(command)).await
    }

    /// Stops provider `provider_id` on host `host_id`.
    ///
    /// # Errors
    /// On timeout or refusal (it does not run there).
    pub async fn stop_provider(&self, host_id: &str, provider_id: &str) -> Result<String> {
        let body = crate::provider::StopProviderCommand { host_id: host_id.into(), provider_id: provider_id.into() };
        self.request_ack(self.subjects.provider_stop(host_id), Some(&body)).await
    }

    /// Puts a link (validated by the host that answers: configs must exist, no conflicting
    /// target for the same source, package, interface and name).
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn put_link(&self, link: &Link) -> Result<String> {
        self.request_ack(self.subjects.link_put(), Some(link)).await
    }

    /// Deletes the link of `source_id` named `name` for `wit_namespace:wit_package`; succeeds
    /// when there is none.
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn delete_link(&self, source_id: &str, name: &str, wit_namespace: &str, wit_package: &str) -> Result<String> {
        let body = DeleteInterfaceLinkDefinitionRequest {
            source_id: source_id.into(),
            name: name.into(),
            wit_namespace: wit_namespace.into(),
            wit_package: wit_package.into(),
        };
        self.request_ack(self.subjects.link_del(), Some(&body)).await
    }

    /// Every link of the lattice.
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn links(&self) -> Result<Vec<Link>> {
        let reply: CtlResponse<Vec<Link>> = self.request_envelope(self.subjects.link_get(), None::<&()>).await?;
        Ok(reply.response.unwrap_or_default())
    }

    /// Creates or replaces the named config.
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn put_config(&self, name: &str, values: &std::collections::HashMap<String, String>) -> Result<String> {
        self.request_ack(self.subjects.config_put(name), Some(values)).await
    }

    /// The named config (empty when it does not exist).
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn config(&self, name: &str) -> Result<std::collections::HashMap<String, String>> {
        let reply: CtlResponse<std::collections::HashMap<String, String>> =
            self.request_envelope(self.subjects.config_get(name), None::<&()>).await?;
        Ok(reply.response.unwrap_or_default())
    }

    /// Deletes the named config; succeeds when there is none.
    ///
    /// # Errors
    /// On timeout or refusal.
    pub async fn delete_config(&self, name: &str) -> Result<String> {
        self.request_ack(self.subjects.config_del(name), None::<&()>).await
    }

    /// Sends raw bytes on `subject` and returns the envelope, whatever `success` says.
    ///
    /// # Errors
    /// On timeout or a reply that is not an envelope.
    pub async fn request_raw(&self, subject: String, payload: Vec<u8>) -> Result<CtlResponse<serde_json::Value>> {
        let msg = self.request_bytes(subject.clone(), payload).await?;
        serde_json::from_slice(&msg.payload).map_err(|source| Error::BadReply { subject, source })
    }

    async fn request_ack<B: Serialize>(&self, subject: String, body: Option<&B>) -> Result<String> {
        let reply: CtlResponse<serde_json::Value> = self.request_envelope(subject, body).await?;
        Ok(reply.message)
    }

    async fn request_response<B: Serialize, R: DeserializeOwned>(&self, subject: String, body: Option<&B>) -> Result<R> {
        let reply: CtlResponse<R> = self.request_envelope(subject.clone(), body).await?;
        reply.response.ok_or_else(|| Error::Refused { subject, message: "reply carried no response".into() })
    }

    async fn request_envelope<B: Serialize, R: DeserializeOwned>(
        &self,
        subject: String,
        body: Option<&B>,
    ) -> Result<CtlResponse<R>> {
        let payload = match body {
            Some(b) => serde_json::to_vec(b).map_err(|source| Error::Encode { what: "request body", source })?,
            None => Vec::new(),
        };
        let msg = self.request_bytes(subject.clone(), payload).await?;
        let reply: CtlResponse<R> =
            serde_json::from_slice(&msg.payload).map_err(|source| Error::BadReply { subject: subject.clone(), source })?;
        if !reply.success {
            return Err(Error::Refused { subject, message: reply.message });
        }
        Ok(reply)
    }

    async fn request_bytes(&self, subject: String, payload: Vec<u8>) -> Result<async_nats::Message> {
        let result = self.request(subject.clone(), payload).await;
        self.request_result(subject, result)
    }

    /// A request bounded by this client's timeout (reported as `TimedOut`).
    async fn request(
        &self,
        subject: String,
        payload: Vec<u8>,
    ) -> std::result::Result<async_nats::Message, async_nats::RequestError> {
        // The request carries this client's timeout: the NATS client's own default (10 s) would
        // otherwise end a longer one early.
        let request = self.nats.send_request(subject, async_nats::Request::new().payload(payload.into()).timeout(Some(self.timeout)));
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(async_nats::RequestError::new(async_nats::RequestErrorKind::TimedOut)),
            Ok(result) => result,
        }
    }

    fn request_result(
        &self,
        subject: String,
        result: std::result::Result<async_nats::Message, async_nats::RequestError>,
    ) -> Result<async_nats::Message> {
        match result {
            Ok(msg) => Ok(msg),
            Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                Err(Error::Timeout { subject, timeout: self.timeout })
            }
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                Err(Error::Nats { subject, reason: "no responders (nothing serves this subject)".into() })
            }
            Err(e) => Err(Error::Nats { subject, reason: e.to_string() }),
        }
    }

    async fn gather<R: DeserializeOwned>(&self, subject: String, payload: Vec<u8>) -> Result<Vec<R>> {
        let inbox = self.nats.new_inbox();
        let nats_err = |e: &dyn std::fmt::Display| Error::Nats { subject: subject.clone(), reason: e.to_string() };
        let mut sub = self.nats.subscribe(inbox.clone()).await.map_err(|e| nats_err(&e))?;
        self.nats
            .publish_with_reply(subject.clone(), inbox, payload.into())
            .await
            .map_err(|e| nats_err(&e))?;
        self.nats.flush().await.map_err(|e| nats_err(&e))?;
        let mut out = Vec::new();
        let deadline = tokio::time::sleep(self.gather);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                msg = sub.next() => match msg {
                    Some(msg) => {
                        if let Ok(r) = serde_json::from_slice(&msg.payload) { out.push(r) }
                    }
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        Ok(out)
    }
}
