//! Link group: the link definition and the delete request.

use serde::{Deserialize, Serialize};

fn default_link_name() -> String {
    "default".to_string()
}

/// A link: `source_id` calls `target` for `wit_namespace:wit_package/{interfaces}` under `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The caller (component or provider id).
    pub source_id: String,
    /// The callee (component or provider id).
    pub target: String,
    /// Link name; `default` unless the guest picks another.
    #[serde(default = "default_link_name")]
    pub name: String,
    /// WIT namespace of the interfaces, e.g. `wasi`.
    pub wit_namespace: String,
    /// WIT package of the interfaces, e.g. `http`.
    pub wit_package: String,
    /// Interface names, e.g. `["incoming-handler"]`.
    pub interfaces: Vec<String>,
    /// Config names handed to the source.
    #[serde(default)]
    pub source_config: Vec<String>,
    /// Config names handed to the target.
    #[serde(default)]
    pub target_config: Vec<String>,
}

impl Link {
    /// A link named `name` from `source` to `target` for `ns:pkg/{interfaces}`, without configs.
    pub fn new(source: &str, target: &str, name: &str, ns: &str, pkg: &str, interfaces: &[&str]) -> Self {
        Self {
            source_id: source.into(),
            target: target.into(),
            name: name.into(),
            wit_namespace: ns.into(),
            wit_package: pkg.into(),
            interfaces: interfaces.iter().map(|s| (*s).to_string()).collect(),
            source_config: Vec::new(),
            target_config: Vec::new(),
        }
    }

    /// With config names handed to the source.
    #[must_use]
    pub fn with_source_config(mut self, names: &[&str]) -> Self {
        self.source_config = names.iter().map(|s| (*s).to_string()).collect();
        self
    }

    /// With config names handed to the target.
    #[must_use]
    pub fn with_target_config(mut self, names: &[&str]) -> Self {
        self.target_config = names.iter().map(|s| (*s).to_string()).collect();
        self
    }
}

/// Body of `link.del`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteInterfaceLinkDefinitionRequest {
    /// The caller of the link to delete.
    pub source_id: String,
    /// Link name.
    #[serde(default = "default_link_name")]
    pub name: String,
    /// WIT namespace.
    pub wit_namespace: String,
    /// WIT package.
    pub wit_package: String,
}
