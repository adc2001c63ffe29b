//! What a provider process is told: the start data it reads on stdin (wasmCloud's `HostData`)
//! and the links it receives (`InterfaceLinkDefinition`), with the serde names of
//! `wasmcloud-core` 0.x as wasmCloud 1.9 and `wasmcloud-provider-sdk` 0.17 use them.
//!
//! Written here rather than taken from `wasmcloud-core`, which would compile a second wasmtime
//! into the host; the SDK-built test provider reading what this module writes is the check.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use trellis_messages::link::Link;

use crate::lattice::LatticeView;

/// A link as a provider receives it, configs resolved to their values. Its secrets (the secret
/// references among the provider's side's configs) are fetched and sealed only when it is sent
/// ([`super::supervisor`]); resolved, the secret fields are `null` and the names are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkDefinition {
    /// The caller.
    pub source_id: String,
    /// The callee.
    pub target: String,
    /// Link name.
    pub name: String,
    /// WIT namespace.
    pub wit_namespace: String,
    /// WIT package.
    pub wit_package: String,
    /// Interfaces.
    pub interfaces: Vec<String>,
    /// The source's configs, merged in order.
    pub source_config: BTreeMap<String, String>,
    /// The target's configs, merged in order.
    pub target_config: BTreeMap<String, String>,
    /// The source's secrets, sealed to the provider's xkey, when it is the source.
    pub source_secrets: Option<Vec<u8>>,
    /// The target's secrets, sealed to the provider's xkey, when it is the target.
    pub target_secrets: Option<Vec<u8>>,
    /// The secret references among the source's configs (not sent).
    #[serde(skip)]
    pub source_secret_names: Vec<String>,
    /// The secret references among the target's configs (not sent).
    #[serde(skip)]
    pub target_secret_names: Vec<String>,
}

impl LinkDefinition {
    /// `link` with its config names resolved in `view`.
    pub fn resolve(link: &Link, view: &LatticeView) -> Self {
        Self {
            source_id: link.source_id.clone(),
            target: link.target.clone(),
            name: link.name.clone(),
            wit_namespace: link.wit_namespace.clone(),
            wit_package: link.wit_package.clone(),
            interfaces: link.interfaces.clone(),
            source_config: view.config(&link.source_config),
            target_config: view.config(&link.target_config),
            source_secrets: None,
            target_secrets: None,
            source_secret_names: link.source_config.iter().filter(|n| crate::secrets::is_reference(n)).cloned().collect(),
            target_secret_names: link.target_config.iter().filter(|n| crate::secrets::is_reference(n)).cloned().collect(),
        }
    }

    /// Whether the link names secrets for `provider_id`'s side.
    pub fn has_secrets_for(&self, provider_id: &str) -> bool {
        (self.source_id == provider_id && !self.source_secret_names.is_empty()) || (self.target == provider_id && !self.target_secret_names.is_empty())
    }

    /// What identifies the link in the lattice (one per source, name and package).
    pub fn key(&self) -> LinkKey {
        (self.source_id.clone(), self.name.clone(), self.wit_namespace.clone(), self.wit_package.clone())
    }

    /// The form a link delete carries (no configs, as wasmCloud sends it).
    pub fn for_delete(&self) -> Self {
        Self { source_config: BTreeMap::new(), target_config: BTreeMap::new(), ..self.clone() }
    }
}

/// Source, name, namespace, package.
pub type LinkKey = (String, String, String, String);

/// The links of `provider_id` (as source or as target), resolved, by key.
pub fn links_of(provider_id: &str, view: &LatticeView) -> BTreeMap<LinkKey, LinkDefinition> {
    view.links()
        .iter()
        .filter(|l| l.source_id == provider_id || l.target == provider_id)
        .map(|l| LinkDefinition::resolve(l, view))
        .map(|d| (d.key(), d))
        .collect()
}

/// wasmCloud's `HostData`. Every field the SDK requires is present even when empty
/// (`env_values`, `link_definitions`): the SDK refuses start data without them.
#[derive(Clone, Debug, Serialize)]
pub struct HostData {
    /// The host's id.
    pub host_id: String,
    /// The lattice.
    pub lattice_rpc_prefix: String,
    /// Always `default`.
    pub link_name: String,
    /// A user JWT for NATS (from the host's `.creds`), or empty.
    pub lattice_rpc_user_jwt: String,
    /// The seed signing with that JWT, or empty.
    pub lattice_rpc_user_seed: String,
    /// Where the provider connects to NATS.
    pub lattice_rpc_url: String,
    /// The provider id.
    pub provider_key: String,
    /// Environment values (none).
    pub env_values: BTreeMap<String, String>,
    /// A new uuid each time the process starts.
    pub instance_id: String,
    /// Every link where the provider is source or target.
    pub link_definitions: Vec<LinkDefinition>,
    /// Cluster issuers (none).
    pub cluster_issuers: Vec<String>,
    /// The provider's named configs, merged in order.
    pub config: BTreeMap<String, String>,
    /// The secrets its config names, as `wasmcloud-core`'s `SecretValue`s.
    pub secrets: BTreeMap<String, crate::secrets::SecretValue>,
    /// The host's xkey (public): with the provider's, it moves link puts to the instance's own
    /// subject.
    pub host_xkey_public_key: String,
    /// This instance's xkey seed.
    pub provider_xkey_private_key: String,
    /// The host's default call timeout, in milliseconds.
    pub default_rpc_timeout_ms: u64,
    /// Whether the host logs JSON.
    pub structured_logging: bool,
    /// The level providers log at (`error` … `trace`).
    pub log_level: String,
}

impl HostData {
    /// The line written to the provider's stdin: base64 of the JSON, then CRLF (as wasmCloud
    /// writes it).
    ///
    /// # Errors
    /// When the data does not serialise (it always does).
    pub fn stdin_line(&self) -> serde_json::Result<Vec<u8>> {
        let json = serde_json::to_vec(self)?;
        let mut line = base64::engine::general_purpose::STANDARD.encode(json).into_bytes();
        line.extend_from_slice(b"\r\n");
        Ok(line)
    }
}

/// The user JWT and seed in a NATS `.creds` file.
///
/// # Errors
/// When the file does not hold both.
pub fn read_creds(text: &str) -> Result<(String, String), super::StartError> {
    let block = |begin: &str| {
        let mut lines = text.lines().skip_while(|l| !l.contains(begin));
        lines.next()?;
        lines.map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
    };
    match (block("BEGIN NATS USER JWT"), block("BEGIN USER NKEY SEED")) {
        (Some(jwt), Some(seed)) if !jwt.starts_with("---") && !seed.starts_with("---") => Ok((jwt, seed)),
        _ => Err(super::StartError::CredsContent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_data_is_base64_json_with_every_required_field() {
        let data = HostData {
            host_id: "NHOST".into(),
            lattice_rpc_prefix: "default".into(),
            link_name: "default".into(),
            lattice_rpc_user_jwt: String::new(),
            lattice_rpc_user_seed: String::new(),
            lattice_rpc_url: "nats://127.0.0.1:4222".into(),
            provider_key: "kv".into(),
            env_values: BTreeMap::new(),
            instance_id: "i".into(),
            link_definitions: Vec::new(),
            cluster_issuers: Vec::new(),
            config: BTreeMap::new(),
            secrets: BTreeMap::new(),
            host_xkey_public_key: "XH".into(),
            provider_xkey_private_key: "SX".into(),
            default_rpc_timeout_ms: 2000,
            structured_logging: false,
            log_level: "info".into(),
        };
        let line = data.stdin_line().unwrap();
        assert!(line.ends_with(b"\r\n"));
        let json = base64::engine::general_purpose::STANDARD.decode(&line[..line.len() - 2]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["env_values"], serde_json::json!({}));
        assert_eq!(v["link_definitions"], serde_json::json!([]));
        assert_eq!(v["provider_key"], "kv");
        assert_eq!(v["log_level"], "info");
    }

    #[test]
    fn creds_files_give_jwt_and_seed() {
        let creds = "-----BEGIN NATS USER JWT-----\neyJ0eXAi.x.y\n------END NATS USER JWT------\n\n\
                     ************************* IMPORTANT *************************\n\n\
                     -----BEGIN USER NKEY SEED-----\nSUAB\n------END USER NKEY SEED------\n";
        assert_eq!(read_creds(creds).unwrap(), ("eyJ0eXAi.x.y".to_string(), "SUAB".to_string()));
        assert!(read_creds("nothing here").is_err());
        assert!(read_creds("-----BEGIN NATS USER JWT-----\n------END NATS USER JWT------\n").is_err());
    }
}
