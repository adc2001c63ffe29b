//! Secrets, wasmCloud 1.x's way: a component or provider names secret references among its
//! configs (names beginning `SECRET`, as `wasmcloud-secrets-types` defines them); each is a
//! record in the lattice's config bucket saying which backend holds the secret, under which key,
//! and with which policy. When the code starts, the host asks the backend for each ([`client`]),
//! proving who asks with the code's signed claims and its own host claims; the backend decides
//! (its mappings of subjects to secrets). The values are held zeroed-on-drop ([`value`]) and
//! reach only the code they were fetched for: never config, logs, events, spy records or traces.
//!
//! Secrets are fetched when the code starts, as on a wasmCloud host; a changed reference takes
//! effect on the next start.

mod client;
mod error;
mod value;

pub use client::SecretsClient;
pub use error::SecretsError;
pub use value::{SecretValue, Secrets};

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt as _, TryStreamExt as _};
use secrecy::SecretBox;
use wasmcloud_secrets_types::SecretConfig;

/// Config names that are secret references (wasmCloud's `SECRET_PREFIX`, `SECRET`, which
/// `trellis_messages::SECRET_PREFIX` equals; a unit test holds them equal).
pub fn is_reference(config_name: &str) -> bool {
    config_name.starts_with(trellis_messages::SECRET_PREFIX)
}

/// At most this many secrets per component or provider.
pub const MAX_SECRETS: usize = 64;
/// At most this many bytes of secret values per component or provider (they go into a
/// provider's start data, which is written to its stdin whole).
pub const MAX_SECRET_BYTES: usize = 1 << 20;
/// Secrets asked for at once.
const AT_ONCE: usize = 8;
/// How long fetching one workload's secrets may take in all.
pub const FETCH_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// A secret reference read from its config record (the map wadm and `wash` put: `name`,
/// `backend`, `key`, optional `field` and `version`, `policy` as a JSON string, `type`).
///
/// # Errors
/// The record is not a secret reference.
pub fn reference(config_name: &str, record: &BTreeMap<String, String>) -> Result<SecretConfig, SecretsError> {
    let object: serde_json::Map<String, serde_json::Value> =
        record.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let reference: SecretConfig = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| SecretsError::NotAReference { name: config_name.to_string(), reason: e.to_string() })?;
    if reference.secret_type != wasmcloud_secrets_types::SECRET_TYPE {
        return Err(SecretsError::NotAReference {
            name: config_name.to_string(),
            reason: format!("its type is `{}`, not `{}`", reference.secret_type, wasmcloud_secrets_types::SECRET_TYPE),
        });
    }
    Ok(reference)
}

/// A secret reference's config record, as wadm puts it for a manifest's secret.
///
/// # Errors
/// The policy cannot be written as JSON (it always can).
pub fn record(reference: SecretConfig) -> Result<BTreeMap<String, String>, SecretsError> {
    let map: HashMap<String, String> = reference.try_into().map_err(|e: anyhow::Error| SecretsError::Seal(e.to_string()))?;
    Ok(map.into_iter().collect())
}

/// Fetches the secrets `config_names` refers to (the other names are skipped) for the code
/// whose claims JWT is `entity_jwt`, reading each reference with `lookup`.
///
/// # Errors
/// The first secret that cannot be fetched; no secret is given unless all are.
pub async fn fetch(
    client: Option<&SecretsClient>,
    config_names: &[String],
    lookup: impl Fn(&str) -> Option<BTreeMap<String, String>>,
    entity_jwt: Option<&str>,
    application: Option<&String>,
) -> Result<Secrets, SecretsError> {
    let names: Vec<&String> = config_names.iter().filter(|n| is_reference(n)).collect();
    if names.is_empty() {
        return Ok(Secrets::default());
    }
    if names.len() > MAX_SECRETS {
        return Err(SecretsError::TooMany { count: names.len(), max: MAX_SECRETS });
    }
    let client = client.ok_or_else(|| SecretsError::NoTopic(names[0].clone()))?;
    let entity_jwt = entity_jwt.ok_or(SecretsError::Unsigned)?;
    let mut asks = Vec::with_capacity(names.len());
    for name in names {
        let record = lookup(name).ok_or_else(|| SecretsError::NoReference(name.clone()))?;
        asks.push(reference(name, &record)?);
    }
    let fetched = futures::stream::iter(asks)
        .map(|reference| async move {
            let given_as = reference.name.clone();
            client.get(reference, entity_jwt, application).await.map(|v| (given_as, v))
        })
        .buffer_unordered(AT_ONCE)
        .try_collect::<Vec<_>>();
    let fetched = tokio::time::timeout(FETCH_WITHIN, fetched).await.map_err(|_| SecretsError::TooSlow(FETCH_WITHIN))??;
    let mut values = BTreeMap::new();
    let mut total = 0usize;
    for (name, value) in fetched {
        total = total.saturating_add(value.len());
        if total > MAX_SECRET_BYTES {
            return Err(SecretsError::TooLarge { max: MAX_SECRET_BYTES });
        }
        values.insert(name, SecretBox::new(Box::new(value)));
    }
    Ok(Secrets::new(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_round_trips_through_its_config_record() {
        let written = SecretConfig::new(
            "db".into(),
            "nats-kv".into(),
            "db-password".into(),
            Some("value".into()),
            None,
            HashMap::from([("backend".to_string(), serde_json::Value::String("nats-kv".into()))]),
        );
        let record = record(written.clone()).expect("record");
        assert_eq!(record["name"], "db");
        assert_eq!(record["type"], wasmcloud_secrets_types::SECRET_TYPE);
        assert_eq!(reference("SECRET_app-db", &record).expect("reads"), written);
    }

    #[test]
    fn plain_config_is_not_a_reference() {
        let plain = BTreeMap::from([("address".to_string(), "0.0.0.0:8000".to_string())]);
        let err = reference("SECRET_x", &plain).expect_err("not a reference");
        assert!(matches!(err, SecretsError::NotAReference { .. }), "{err}");
        assert!(is_reference("SECRET_app-db") && !is_reference("app-db"));
        assert_eq!(trellis_messages::SECRET_PREFIX, wasmcloud_secrets_types::SECRET_PREFIX);
    }

    #[tokio::test]
    async fn no_backend_or_no_claims_is_an_error_naming_why() {
        let names = vec!["SECRET_app-db".to_string(), "plain".to_string()];
        let err = fetch(None, &names, |_| None, Some("jwt"), None).await.expect_err("no topic");
        assert!(matches!(err, SecretsError::NoTopic(ref n) if n == "SECRET_app-db"), "{err}");
        let none = fetch(None, &["plain".to_string()], |_| None, None, None).await.expect("nothing asked");
        assert!(none.is_empty());
        // With a backend, code without claims is given nothing (and nothing is asked).
        let nats = async_nats::ConnectOptions::new().retry_on_initial_connect().connect("127.0.0.1:1").await.expect("a client");
        let client = SecretsClient::new(nats, "wasmcloud.secrets".into(), &nkeys::KeyPair::new_server().public_key(), "h").expect("a client");
        let err = fetch(Some(&client), &names, |_| None, None, None).await.expect_err("unsigned");
        assert!(matches!(err, SecretsError::Unsigned), "{err}");
        let err = fetch(Some(&client), &names, |_| None, Some("jwt"), None).await.expect_err("no reference");
        assert!(matches!(err, SecretsError::NoReference(ref n) if n == "SECRET_app-db"), "{err}");
        let many: Vec<String> = (0..=MAX_SECRETS).map(|i| format!("SECRET_{i}")).collect();
        assert!(matches!(fetch(None, &many, |_| None, None, None).await, Err(SecretsError::TooMany { .. })));
    }
}
