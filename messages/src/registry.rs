//! Registry group: `registry.put` carries credentials per registry host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn default_registry_type() -> String {
    "oci".to_string()
}

/// Credentials for one registry, as wasmCloud's control interface sends them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredential {
    /// Password for HTTP basic authentication (with `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A bearer token, used instead of username and password when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Username for HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Only `oci` is known.
    #[serde(rename = "registryType", default = "default_registry_type")]
    pub registry_type: String,
}

impl std::fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("registry_type", &self.registry_type)
            .finish()
    }
}

/// Registry host (`ghcr.io`, `127.0.0.1:5000`) → its credentials.
pub type RegistryCredentials = BTreeMap<String, RegistryCredential>;
