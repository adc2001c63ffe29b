//! The host's side of wasmCloud's secrets protocol (`v1alpha1`), as `wasmcloud-secrets-client`
//! speaks it: the backend's public xkey from `{topic}.v1alpha1.{backend}.server_xkey`, then each
//! secret asked for on `{topic}.v1alpha1.{backend}.get` with a JSON `SecretRequest` (the
//! reference's key, field and version; the asking code's and this host's JWTs; the application
//! and policy) sealed to the backend's xkey with a key made for that one request, whose public
//! half goes in `WasmCloud-Host-Xkey`. The backend seals its answer to that key and names its own
//! in `Server-Response-Xkey`; an answer without it is a plain-JSON error.
//!
//! The wire types are wasmCloud's own (`wasmcloud-secrets-types`), so requests and answers are
//! byte for byte what a wasmCloud 1.x host sends and reads. The client is written here rather
//! than taken from `wasmcloud-secrets-client` because that crate is built on another async-nats
//! than the host's (0.39 beside 0.49) and asks with no deadline of its own.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use nkeys::XKey;
use tokio::sync::Mutex;
use tracing::debug;
use wasmcloud_secrets_types::{SecretConfig, SecretRequest, SecretResponse, RESPONSE_XKEY, SECRET_API_VERSION, WASMCLOUD_HOST_XKEY};

use super::error::SecretsError;
use super::value::SecretValue;

/// How long the backend has to answer one request.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Asks secrets backends for secrets on this host's behalf.
pub struct SecretsClient {
    nats: async_nats::Client,
    /// The topic prefix (`--secrets-topic`, `wasmcloud.secrets` by wasmCloud's convention).
    topic: String,
    /// This host's JWT (wascap host claims, self-signed as wasmCloud's host makes them).
    host_jwt: String,
    /// Each backend's public xkey, asked for once; one cell per backend, so a backend that is
    /// slow to answer holds up only requests to itself.
    server_keys: Mutex<HashMap<String, std::sync::Arc<tokio::sync::OnceCell<String>>>>,
}

impl std::fmt::Debug for SecretsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsClient").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl SecretsClient {
    /// A client asking on `topic` for the host `host_id` (an `N…` key) called `name`.
    ///
    /// # Errors
    /// When the host's JWT cannot be made (it never fails with a valid key).
    pub fn new(nats: async_nats::Client, topic: String, host_id: &str, name: &str) -> Result<Self, SecretsError> {
        // As wasmCloud's host: host claims issued by an account key made for this run.
        let issuer = nkeys::KeyPair::new_account();
        let claims = wascap::jwt::Claims::<wascap::jwt::Host>::new(
            name.to_string(),
            issuer.public_key(),
            host_id.to_string(),
            Some(HashMap::from([("self_signed".to_string(), "true".to_string())])),
        );
        let host_jwt = claims.encode(&issuer).map_err(|e| SecretsError::Seal(e.to_string()))?;
        Ok(Self { nats, topic, host_jwt, server_keys: Mutex::new(HashMap::new()) })
    }

    fn subject(&self, backend: &str, op: &str) -> String {
        format!("{}.{SECRET_API_VERSION}.{backend}.{op}", self.topic)
    }

    async fn server_key(&self, backend: &str) -> Result<XKey, SecretsError> {
        let cell = self.server_keys.lock().await.entry(backend.to_string()).or_default().clone();
        let key = cell.get_or_try_init(|| self.ask_server_key(backend)).await?;
        XKey::from_public_key(key).map_err(|e| SecretsError::Seal(e.to_string()))
    }

    async fn ask_server_key(&self, backend: &str) -> Result<String, SecretsError> {
        let subject = self.subject(backend, "server_xkey");
        let unreachable = |reason: String| SecretsError::Unreachable { backend: backend.to_string(), subject: subject.clone(), reason };
        let answer = tokio::time::timeout(ANSWER_WITHIN, self.nats.request(subject.clone(), bytes::Bytes::new()))
            .await
            .map_err(|_| unreachable(format!("no answer within {ANSWER_WITHIN:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let bad = |reason: String| SecretsError::BadAnswer { backend: backend.to_string(), reason };
        let text = std::str::from_utf8(&answer.payload).map_err(|_| bad("its xkey is not UTF-8".into()))?;
        let key = XKey::from_public_key(text.trim()).map_err(|e| bad(format!("its xkey does not parse: {e}")))?;
        Ok(key.public_key())
    }

    /// Forgets a backend's key (it may have restarted with another).
    async fn forget(&self, backend: &str) {
        self.server_keys.lock().await.remove(backend);
    }

    /// The value of the secret `reference` names, for the code whose JWT is `entity_jwt`, in
    /// `application` when it belongs to one.
    ///
    /// # Errors
    /// The backend is unreachable, refuses, or answers what cannot be read.
    pub async fn get(&self, reference: SecretConfig, entity_jwt: &str, application: Option<&String>) -> Result<SecretValue, SecretsError> {
        let backend = reference.backend.clone();
        let name = reference.name.clone();
        let result = self.ask(reference, entity_jwt, application).await;
        if matches!(result, Err(SecretsError::BadAnswer { .. })) {
            self.forget(&backend).await;
        }
        let secret = result?;
        match (secret.string_secret, secret.binary_secret) {
            (Some(s), _) => Ok(SecretValue::String(s)),
            (None, Some(b)) => Ok(SecretValue::Bytes(b)),
            (None, None) => Err(SecretsError::Empty(name)),
        }
    }

    async fn ask(&self, reference: SecretConfig, entity_jwt: &str, application: Option<&String>) -> Result<wasmcloud_secrets_types::Secret, SecretsError> {
        let backend = reference.backend.clone();
        let name = reference.name.clone();
        trellis_messages::invocation::check_component_id(&backend).map_err(|e| SecretsError::NotAReference {
            name: name.clone(),
            reason: format!("its backend is not one subject token: {e}"),
        })?;
        let server = self.server_key(&backend).await?;
        let request: SecretRequest = reference
            .try_into_request(entity_jwt, &self.host_jwt, application)
            .map_err(|e| SecretsError::Seal(e.to_string()))?;
        let body = serde_json::to_vec(&request).map_err(|e| SecretsError::Seal(e.to_string()))?;
        // A key for this request only, as wasmCloud's host makes one per request.
        let ours = XKey::new();
        let sealed = ours.seal(&body, &server).map_err(|e| SecretsError::Seal(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(WASMCLOUD_HOST_XKEY, ours.public_key().as_str());
        let subject = self.subject(&backend, "get");
        let unreachable = |reason: String| SecretsError::Unreachable { backend: backend.clone(), subject: subject.clone(), reason };
        let answer = tokio::time::timeout(ANSWER_WITHIN, self.nats.request_with_headers(subject.clone(), headers, sealed.into()))
            .await
            .map_err(|_| unreachable(format!("no answer within {ANSWER_WITHIN:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let bad = |reason: String| SecretsError::BadAnswer { backend: backend.clone(), reason };
        let response: SecretResponse = match answer.headers.as_ref().and_then(|h| h.get(RESPONSE_XKEY)) {
            Some(theirs) => {
                let theirs = XKey::from_public_key(theirs.as_str()).map_err(|e| bad(format!("its response xkey does not parse: {e}")))?;
                let opened = ours.open(&answer.payload, &theirs).map_err(|e| bad(format!("its answer does not open: {e}")))?;
                serde_json::from_slice(&opened).map_err(|e| bad(format!("its answer is not a SecretResponse: {e}")))?
            }
            // Unsealed: only an error is read from it, never a secret (a secret in the clear, or
            // from whoever else answers on the subject, is not taken).
            None => {
                let response: SecretResponse = serde_json::from_slice(&answer.payload).map_err(|e| bad(format!("its error is not a SecretResponse: {e}")))?;
                let reason = response.error.map_or_else(|| "it answered without sealing its answer".to_string(), |e| e.to_string());
                return Err(SecretsError::Refused { backend, name, reason });
            }
        };
        if let Some(error) = response.error {
            debug!(backend = %backend, secret = %name, error = %error, "secrets backend refused");
            return Err(SecretsError::Refused { backend, name, reason: error.to_string() });
        }
        response.secret.ok_or(SecretsError::Refused { backend, name, reason: "it answered with no secret".into() })
    }
}
