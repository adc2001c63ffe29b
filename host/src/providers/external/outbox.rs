//! What an external provider is told about its links and config, in order: the supervisor's
//! `sync` hands each change's messages to [`outbox`] as one [`Batch`]; a link put that names
//! secrets for the provider's side has them fetched and sealed ([`LinkSealer`]) before it goes
//! out, and one whose secrets cannot be fetched comes back to the supervisor as [`Undelivered`],
//! to be sent again after [`SECRETS_RETRY`].

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::warn;

use crate::providers::external::start_data::{LinkDefinition, LinkKey};

/// What a signed provider was given: its claims' JWT and the secrets its config names.
#[derive(Debug, Default, Clone)]
pub struct Signed {
    /// The claims' JWT (shown to the secrets backend for its links' secrets).
    pub jwt: Option<String>,
    /// Its secrets.
    pub secrets: crate::secrets::Secrets,
    /// The application it belongs to.
    pub application: Option<String>,
}

/// What [`ExternalProvider::sync`] sends: bytes, or a link put whose secrets are fetched first.
pub(super) enum Outgoing {
    Bytes(Vec<u8>),
    Put(Box<LinkDefinition>),
}

/// One `sync`'s messages, with what fills their links' secrets.
pub(super) struct Batch {
    pub(super) out: Vec<(String, Outgoing)>,
    pub(super) sealer: LinkSealer,
}

/// A link put that was not sent (its secrets could not be fetched, why): tried again later.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct Undelivered(pub(super) LinkKey, pub(super) String, pub(super) String);

/// How long before a link whose secrets could not be fetched is tried again.
pub(super) const SECRETS_RETRY: Duration = Duration::from_secs(5);

/// Sends each batch in the order `sync` made them, one message after another, so a link's put
/// (which may wait for its secrets) never overtakes or is overtaken by a later delete or put.
pub(super) async fn outbox(mut batches: tokio::sync::mpsc::UnboundedReceiver<Batch>, nats: async_nats::Client, id: String, actor: Recipient<Undelivered>) {
    while let Some(Batch { out, sealer }) = batches.recv().await {
        // A batch's puts are sealed together (a slow backend costs the batch its slowest fetch,
        // not their sum), then everything goes out in order.
        let sealed = futures::future::join_all(out.into_iter().map(|(subject, outgoing)| {
            let sealer = &sealer;
            async move {
                let payload = match outgoing {
                    Outgoing::Bytes(b) => Ok(b),
                    Outgoing::Put(def) => {
                        let (key, link) = (def.key(), format!("{} → {} ({}, {}:{})", def.source_id, def.target, def.name, def.wit_namespace, def.wit_package));
                        // A link deleted meanwhile gets no secrets fetched for it.
                        if !sealer.still_linked(&def) {
                            return (subject, Err(None));
                        }
                        sealer.seal(*def).await.map_err(|e| Some(Undelivered(key, link, e.to_string())))
                    }
                };
                (subject, payload)
            }
        }))
        .await;
        for (subject, payload) in sealed {
            match payload {
                Ok(payload) => {
                    if let Err(e) = nats.publish(subject.clone(), payload.into()).await {
                        warn!(provider_id = %id, %subject, error = %e, "could not tell the provider");
                    }
                }
                Err(Some(undelivered)) => actor.do_send(undelivered),
                Err(None) => {}
            }
        }
    }
}

/// Fills a link's secrets for one provider instance before it is sent.
pub(super) struct LinkSealer {
    pub(super) provider_id: String,
    pub(super) provider_xkey: String,
    pub(super) host_xkey: Arc<nkeys::XKey>,
    pub(super) signed: Signed,
    pub(super) client: Option<Arc<crate::secrets::SecretsClient>>,
    pub(super) view: crate::lattice::LatticeView,
}

impl LinkSealer {
    /// Whether the lattice still has the link `def` was made from.
    fn still_linked(&self, def: &LinkDefinition) -> bool {
        self.view.links_from(&def.source_id).iter().any(|l| {
            l.target == def.target && l.name == def.name && l.wit_namespace == def.wit_namespace && l.wit_package == def.wit_package
        })
    }

    /// `def` as JSON, with the secrets of the provider's side fetched and sealed (with the
    /// host's xkey, to the instance's), as wasmCloud's host sends a link with secrets.
    async fn seal(&self, mut def: LinkDefinition) -> Result<Vec<u8>, crate::secrets::SecretsError> {
        use crate::secrets::SecretsError;
        let sides = [
            (def.source_id == self.provider_id, def.source_secret_names.clone(), true),
            (def.target == self.provider_id, def.target_secret_names.clone(), false),
        ];
        for (ours, names, source) in sides {
            if !ours || names.is_empty() {
                continue;
            }
            let lookup = |name: &str| self.view.config_record(name);
            let secrets =
                crate::secrets::fetch(self.client.as_deref(), &names, lookup, self.signed.jwt.as_deref(), self.signed.application.as_ref()).await?;
            let json = serde_json::to_vec(&secrets.expose_all()).map_err(|e| SecretsError::Seal(e.to_string()))?;
            let to = nkeys::XKey::from_public_key(&self.provider_xkey).map_err(|e| SecretsError::Seal(e.to_string()))?;
            let sealed = self.host_xkey.seal(&json, &to).map_err(|e| SecretsError::Seal(e.to_string()))?;
            if source {
                def.source_secrets = Some(sealed);
            } else {
                def.target_secrets = Some(sealed);
            }
        }
        Ok(serde_json::to_vec(&def).unwrap_or_default())
    }
}
