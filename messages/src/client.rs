//! A typed async client for the control interface, over any `async_nats::Client`.

use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::CtlResponse;
use crate::error::{Error, Result};
use crate::host::{Host, HostInventory, HostLabel, HostLabelIdentifier, StopHostCommand};
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
        let request = self.nats.request(subject.clone(), payload.into());
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(Error::Timeout { subject, timeout: self.timeout }),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                Err(Error::Timeout { subject, timeout: self.timeout })
            }
            Ok(Err(e)) => Err(Error::Nats { subject, reason: e.to_string() }),
            Ok(Ok(msg)) => Ok(msg),
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
