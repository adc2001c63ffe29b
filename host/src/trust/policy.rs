//! wasmCloud's policy service: before this host starts a component or a provider, and before a
//! call that arrived from another host (or a client, or a provider) runs, it asks an external
//! service on `--policy-topic` and obeys the answer. The request and reply are
//! wasmCloud 1.x's (`{requestId, kind, version: "v1", request, host}` →
//! `{requestId, permitted, message}`), so a policy service written for wasmCloud answers
//! Trellis unchanged. Decisions are cached per subject of the request (component id and
//! reference, provider id and reference); a reply published on `--policy-changes-topic` with a
//! known `requestId` replaces the decision it names. A service that does not answer in time, or
//! answers something that is not a decision, denies: the host fails closed, and that denial is
//! not cached, so the next attempt asks again.
//!
//! Any client allowed to subscribe to the policy topic could answer first. With a policy key
//! (`--policy-key`, the service's public nkey) the host takes only replies, and changes, that
//! carry the key's Ed25519 signature of the payload in the [`SIGNATURE_HEADER`] header, and a
//! reply only when it names the request this host sent; anything else denies, or is ignored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{ComponentClaims, ProviderClaims};

/// The function a policy request names for an HTTP request.
pub const HTTP_HANDLE: &str = "wasi:http/incoming-handler@0.2.0.handle";

/// The header of a signed reply or change: the base64url (no padding) Ed25519 signature of
/// the payload by the key named with `--policy-key`.
pub const SIGNATURE_HEADER: &str = "Trellis-Policy-Signature";

/// Decisions kept at most; past this the cache starts again empty.
const MAX_DECISIONS: usize = 10_000;
/// The largest policy reply read.
const MAX_REPLY: usize = 64 * 1024;

/// Where the policy service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Requests go here.
    pub topic: String,
    /// Decisions that replace cached ones arrive here.
    pub changes_topic: Option<String>,
    /// How long to wait for a decision (then: denied).
    pub timeout: Duration,
    /// The public nkey whose signature replies and changes must carry (`None`: unsigned
    /// replies are taken, and NATS permissions must keep others off the topics).
    pub key: Option<String>,
}

/// Why the policy service was not asked, or did not permit.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The service decided: not permitted.
    #[error("denied by the policy service ({kind} of `{subject}`): {message}")]
    Denied { kind: &'static str, subject: String, message: String },
    /// No decision in time.
    #[error("the policy service on `{topic}` did not answer within {ms} ms; denied (fail closed)")]
    Timeout { topic: String, ms: u128 },
    /// Nobody listens on the topic.
    #[error("no policy service listens on `{topic}`; denied (fail closed)")]
    NoService { topic: String },
    /// The request itself failed.
    #[error("the policy request on `{topic}` failed: {source}; denied (fail closed)")]
    Request { topic: String, source: async_nats::RequestError },
    /// The request could not be written.
    #[error("cannot encode the policy request: {0}")]
    Encode(#[from] serde_json::Error),
    /// The reply is larger than any decision.
    #[error("the policy service on `{topic}` answered {bytes} bytes, over {MAX_REPLY}; denied")]
    TooLarge { topic: String, bytes: usize },
    /// `--policy-key` is set and the reply does not carry its signature.
    #[error("the policy service's reply on `{topic}` is not signed by the policy key: {why}; denied")]
    Unsigned { topic: String, why: Unverified },
    /// The reply is not a decision.
    #[error("the policy service on `{topic}` answered something that is not a decision ({source}); denied")]
    NotADecision { topic: String, source: serde_json::Error },
    /// A signed reply to another request (a replay).
    #[error("the policy service's signed reply on `{topic}` names another request; denied")]
    OtherRequest { topic: String },
}

/// Why the policy service client cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PolicySetupError {
    /// `--policy-key` is not a public nkey.
    #[error("policy key `{key}` is not a public nkey: {source}")]
    Key { key: String, source: nkeys::error::Error },
    /// The changes topic cannot be followed.
    #[error("cannot subscribe to the policy changes topic `{topic}`: {source}")]
    Subscribe { topic: String, source: async_nats::SubscribeError },
}

/// Why a reply or change does not carry the policy key's signature.
#[derive(Debug, thiserror::Error)]
pub enum Unverified {
    /// No header.
    #[error("it carries no {SIGNATURE_HEADER} header")]
    Missing,
    /// The header is not base64url.
    #[error("its signature is not base64url: {0}")]
    NotBase64(#[from] base64::DecodeError),
    /// Someone else's signature, or of something else.
    #[error("its signature is not {0}'s")]
    NotTheKeys(String),
}

/// Signs `payload` as a policy service holding `seed` does: the value of [`SIGNATURE_HEADER`].
///
/// # Errors
/// `seed` is not an nkey seed.
pub fn sign(seed: &str, payload: &[u8]) -> Result<String, nkeys::error::Error> {
    use base64::Engine as _;
    let key = nkeys::KeyPair::from_seed(seed)?;
    let signature = key.sign(payload)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature))
}

/// Whether `headers` carry `key`'s signature of `payload`.
fn signed_by(key: &nkeys::KeyPair, headers: Option<&async_nats::HeaderMap>, payload: &[u8]) -> Result<(), Unverified> {
    use base64::Engine as _;
    let value = headers.and_then(|h| h.get(SIGNATURE_HEADER)).ok_or(Unverified::Missing)?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value.as_str().trim())?;
    key.verify(payload, &signature).map_err(|_| Unverified::NotTheKeys(key.public_key()))
}

/// Claims as a policy request carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyClaims {
    #[serde(rename = "publicKey")]
    pub public_key: String,
    pub issuer: String,
    #[serde(rename = "issuedAt")]
    pub issued_at: String,
    #[serde(rename = "expiresAt")]
    pub expires_at: Option<u64>,
    pub expired: bool,
}

fn expired(expires: Option<u64>) -> bool {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    expires.is_some_and(|e| now > e)
}

/// Components' and providers' claims share the fields a policy request carries.
impl<T> From<&wascap::jwt::Claims<T>> for PolicyClaims {
    fn from(c: &wascap::jwt::Claims<T>) -> Self {
        Self { public_key: c.subject.clone(), issuer: c.issuer.clone(), issued_at: c.issued_at.to_string(), expires_at: c.expires, expired: expired(c.expires) }
    }
}

/// `startComponent`'s request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInformation {
    #[serde(rename = "componentId")]
    pub component_id: String,
    #[serde(rename = "imageRef")]
    pub image_ref: String,
    #[serde(rename = "maxInstances")]
    pub max_instances: u32,
    pub annotations: BTreeMap<String, String>,
    pub claims: Option<PolicyClaims>,
}

/// `startProvider`'s request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInformation {
    #[serde(rename = "providerId")]
    pub provider_id: String,
    #[serde(rename = "imageRef")]
    pub image_ref: String,
    pub annotations: BTreeMap<String, String>,
    pub claims: Option<PolicyClaims>,
}

/// `performInvocation`'s request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerformInvocationRequest {
    /// `ns:pkg/iface@version` of the export called.
    pub interface: String,
    /// The function.
    pub function: String,
    /// The component called (`maxInstances` 0, as wasmCloud sends it).
    pub target: ComponentInformation,
}

/// The host asking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    #[serde(rename = "publicKey")]
    pub public_key: String,
    pub lattice: String,
    pub labels: HashMap<String, String>,
}

/// What is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestBody {
    /// May this component start here?
    StartComponent(ComponentInformation),
    /// May this provider start here?
    StartProvider(ProviderInformation),
    /// May this call, which arrived from another host, run here?
    PerformInvocation(PerformInvocationRequest),
}

impl RequestBody {
    fn kind(&self) -> &'static str {
        match self {
            Self::StartComponent(_) => "startComponent",
            Self::StartProvider(_) => "startProvider",
            Self::PerformInvocation(_) => "performInvocation",
        }
    }

    /// What a decision is cached under, as wasmCloud keys it.
    fn key(&self) -> (&'static str, String) {
        match self {
            Self::StartComponent(c) => (self.kind(), format!("{}_{}", c.component_id, c.image_ref)),
            Self::StartProvider(p) => (self.kind(), format!("{}_{}", p.provider_id, p.image_ref)),
            Self::PerformInvocation(i) => (self.kind(), format!("{}_{}_{}_{}", i.target.component_id, i.target.image_ref, i.interface, i.function)),
        }
    }
}

/// A policy request on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub kind: String,
    pub version: String,
    pub request: RequestBody,
    pub host: HostInfo,
}

/// A decision on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(rename = "requestId")]
    pub request_id: String,
    pub permitted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

type Key = (&'static str, String);

#[derive(Debug, Default)]
struct Cache {
    decisions: HashMap<Key, Decision>,
    by_request: HashMap<String, Key>,
}

/// What the policy service is told about a component when a call to it arrives from another
/// host: built when the component starts (and again when its code is updated).
#[derive(Debug)]
pub struct Admission {
    /// The service to ask.
    pub policy: PolicyService,
    /// The component.
    pub component_id: String,
    /// Its reference.
    pub image_ref: String,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// Its claims.
    pub claims: Option<ComponentClaims>,
}

impl Admission {
    /// See [`PolicyService::perform_invocation`].
    ///
    /// # Errors
    /// As there.
    pub async fn invocation(&self, function: &str) -> Result<(), PolicyError> {
        self.policy.perform_invocation(self, function).await
    }
}

/// Asks the policy service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PolicyService {
    nats: async_nats::Client,
    host: HostInfo,
    config: PolicyConfig,
    key: Option<Arc<nkeys::KeyPair>>,
    cache: Arc<Mutex<Cache>>,
}

impl PolicyService {
    /// A client of the service at `config`, subscribed to its changes topic when there is one.
    ///
    /// # Errors
    /// The policy key is not a public nkey, or the changes topic cannot be subscribed to.
    pub async fn start(nats: async_nats::Client, host: HostInfo, config: PolicyConfig) -> Result<Self, PolicySetupError> {
        let key = match &config.key {
            Some(k) => Some(Arc::new(nkeys::KeyPair::from_public_key(k.trim()).map_err(|source| PolicySetupError::Key { key: k.clone(), source })?)),
            None => None,
        };
        let service = Self { nats: nats.clone(), host, config, key: key.clone(), cache: Arc::default() };
        if let Some(topic) = service.config.changes_topic.clone() {
            let mut changes = nats.subscribe(topic.clone()).await.map_err(|source| PolicySetupError::Subscribe { topic: topic.clone(), source })?;
            let cache = Arc::downgrade(&service.cache);
            tokio::spawn(async move {
                while let Some(msg) = changes.next().await {
                    let Some(cache) = cache.upgrade() else { return };
                    if let Some(key) = &key {
                        if let Err(why) = signed_by(key, msg.headers.as_ref(), &msg.payload) {
                            warn!(%topic, "policy change ignored: {why}");
                            continue;
                        }
                    }
                    match serde_json::from_slice::<Decision>(&msg.payload) {
                        Ok(decision) => {
                            let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            match cache.by_request.get(&decision.request_id).cloned() {
                                Some(key) => {
                                    info!(request_id = %decision.request_id, permitted = decision.permitted, "policy decision replaced");
                                    cache.decisions.insert(key, decision);
                                }
                                None => debug!(request_id = %decision.request_id, "policy change for a request this host did not make"),
                            }
                        }
                        Err(e) => warn!(%topic, "policy change is not a decision: {e}"),
                    }
                }
            });
        }
        Ok(service)
    }

    /// May component `id` from `image_ref` start here?
    ///
    /// # Errors
    /// Denied (with the service's message) or no decision in time.
    pub async fn start_component(&self, id: &str, image_ref: &str, max_instances: u32, annotations: &BTreeMap<String, String>, claims: Option<&ComponentClaims>) -> Result<(), PolicyError> {
        self.evaluate(RequestBody::StartComponent(ComponentInformation {
            component_id: id.into(),
            image_ref: image_ref.into(),
            max_instances,
            annotations: annotations.clone(),
            claims: claims.map(PolicyClaims::from),
        }))
        .await
    }

    /// May provider `id` from `image_ref` start here?
    ///
    /// # Errors
    /// Denied (with the service's message) or no decision in time.
    pub async fn start_provider(&self, id: &str, image_ref: &str, annotations: &BTreeMap<String, String>, claims: Option<&ProviderClaims>) -> Result<(), PolicyError> {
        self.evaluate(RequestBody::StartProvider(ProviderInformation {
            provider_id: id.into(),
            image_ref: image_ref.into(),
            annotations: annotations.clone(),
            claims: claims.map(PolicyClaims::from),
        }))
        .await
    }

    /// May a call of `function` (`ns:pkg/iface@version.func`, or a bare name) of the component
    /// `admission` describes, arriving from another host, run here?
    ///
    /// # Errors
    /// Denied (with the service's message) or no decision in time.
    pub async fn perform_invocation(&self, admission: &Admission, function: &str) -> Result<(), PolicyError> {
        let (interface, function) = match function.rsplit_once('.') {
            Some((iface, f)) if iface.contains(':') => (iface.to_string(), f.to_string()),
            _ => (String::new(), function.to_string()),
        };
        self.evaluate(RequestBody::PerformInvocation(PerformInvocationRequest {
            interface,
            function,
            target: ComponentInformation {
                component_id: admission.component_id.clone(),
                image_ref: admission.image_ref.clone(),
                max_instances: 0,
                annotations: admission.annotations.clone(),
                claims: admission.claims.as_ref().map(PolicyClaims::from),
            },
        }))
        .await
    }

    async fn evaluate(&self, body: RequestBody) -> Result<(), PolicyError> {
        let key = body.key();
        let cached = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).decisions.get(&key).cloned();
        let decision = match cached {
            Some(d) => d,
            None => {
                let d = self.ask(body).await?;
                let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if cache.decisions.len() >= MAX_DECISIONS {
                    *cache = Cache::default();
                }
                cache.by_request.insert(d.request_id.clone(), key.clone());
                cache.decisions.insert(key.clone(), d.clone());
                d
            }
        };
        if decision.permitted {
            return Ok(());
        }
        Err(PolicyError::Denied { kind: key.0, subject: key.1, message: decision.message.unwrap_or_else(|| "no reason given".into()) })
    }

    async fn ask(&self, body: RequestBody) -> Result<Decision, PolicyError> {
        let topic = &self.config.topic;
        let request_id = uuid::Uuid::new_v4().to_string();
        let request = Request { request_id: request_id.clone(), kind: body.kind().into(), version: "v1".into(), request: body, host: self.host.clone() };
        let payload = serde_json::to_vec(&request)?;
        let ms = self.config.timeout.as_millis();
        let sent = async_nats::Request::new().payload(payload.into()).timeout(Some(self.config.timeout));
        let reply = match self.nats.send_request(topic.clone(), sent).await {
            Ok(r) => r,
            Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => return Err(PolicyError::Timeout { topic: topic.clone(), ms }),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => return Err(PolicyError::NoService { topic: topic.clone() }),
            Err(source) => return Err(PolicyError::Request { topic: topic.clone(), source }),
        };
        if reply.payload.len() > MAX_REPLY {
            return Err(PolicyError::TooLarge { topic: topic.clone(), bytes: reply.payload.len() });
        }
        if let Some(key) = &self.key {
            signed_by(key, reply.headers.as_ref(), &reply.payload).map_err(|why| {
                warn!(%topic, "policy reply refused: {why}");
                PolicyError::Unsigned { topic: topic.clone(), why }
            })?;
        }
        let decision: Decision = serde_json::from_slice(&reply.payload).map_err(|source| PolicyError::NotADecision { topic: topic.clone(), source })?;
        if self.key.is_some() && decision.request_id != request_id {
            return Err(PolicyError::OtherRequest { topic: topic.clone() });
        }
        // Keyed by the id this host sent: a change names the request it replaces by that id.
        Ok(Decision { request_id, ..decision })
    }
}
