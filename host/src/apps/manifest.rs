//! Reading a manifest from a request body, as wadm does (`Content-Type: application/yaml` or
//! `application/json`, else YAML then JSON), and checking it with wadm's validators.

use serde_json::Value;
use wadm_types::Manifest;

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST: usize = 1 << 20;

/// Why a manifest is refused, in words a user can act on (wadm's, where wadm has words for it).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The body is larger than [`MAX_MANIFEST`].
    #[error("manifest of {size} bytes refused: at most {MAX_MANIFEST} bytes")]
    TooLarge {
        /// The body's size in bytes.
        size: usize,
    },
    /// `Content-Type: application/json` and the body is not JSON.
    #[error("Unable to parse manifest: JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// `Content-Type: application/yaml` and the body is not YAML.
    #[error("Unable to parse manifest: YAML: {0}")]
    Yaml(#[source] serde_yaml::Error),
    /// A `Content-Type` other than YAML or JSON.
    #[error("Unsupported content type {content_type} given. Wadm supports YAML and JSON")]
    ContentType {
        /// The `Content-Type` given.
        content_type: String,
    },
    /// No `Content-Type`, and the body is neither YAML nor JSON.
    #[error("Unable to parse manifest: not YAML ({yaml}) nor JSON ({json})")]
    Neither {
        /// Why it is not YAML.
        yaml: serde_yaml::Error,
        /// Why it is not JSON.
        json: serde_json::Error,
    },
    /// A link trait's `namespace`, `package` or `name` is not a string.
    #[error("Unable to parse manifest: a link trait's `{key}` must be a string")]
    LinkString {
        /// The component whose trait it is (its `name`, when that is a string).
        component: Option<String>,
        /// The property.
        key: &'static str,
    },
    /// A link trait's `interfaces` is not a list of strings.
    #[error("Unable to parse manifest: a link trait's `interfaces` must be a list of strings")]
    LinkInterfaces {
        /// The component whose trait it is (its `name`, when that is a string).
        component: Option<String>,
    },
    /// The document is not a manifest (a missing or mistyped field).
    #[error("Unable to parse manifest: {0}")]
    Decode(#[source] serde_json::Error),
    /// The manifest's version is not acceptable to wadm.
    #[error("invalid manifest version, errors: {}", .errors.join("\n"))]
    Version {
        /// wadm's messages, one per problem.
        errors: Vec<String>,
    },
    /// The manifest's name has characters wadm refuses.
    #[error("Manifest name {name} contains invalid characters. Manifest names can only contain alphanumeric characters, dashes, and underscores.")]
    Name {
        /// The name (trimmed).
        name: String,
    },
    /// wadm's validators could not run.
    #[error("{0}")]
    Validator(String),
    /// wadm's validators found an error: its message.
    #[error("{0}")]
    Invalid(String),
    /// A secret names a policy the manifest does not define, or one with no backend.
    #[error("secret `{secret}` of `{component}` names policy `{policy}`, which {why}")]
    Policy {
        /// The component's name.
        component: String,
        /// The secret's name.
        secret: String,
        /// The policy it names.
        policy: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A component refers to a shared application.
    #[error("component `{component}` refers to a shared application, which Trellis does not support yet")]
    SharedApplication {
        /// The component's name.
        component: String,
    },
    /// A component's explicit id is not a valid component id.
    #[error("component `{component}`: {reason}")]
    ComponentId {
        /// The component's name.
        component: String,
        /// Why the id is refused.
        reason: trellis_messages::invocation::IdError,
    },
    /// A component has a trait with custom properties (one Trellis does not know).
    #[error("component `{component}`: trait `{trait_type}` is not supported by Trellis")]
    Trait {
        /// The component's name.
        component: String,
        /// The trait's `type`.
        trait_type: String,
    },
}

/// Parses `body` as a manifest; `content_type` is the request's `Content-Type` header.
///
/// # Errors
/// Why the body is not a manifest, in words a user can act on.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
    if body.len() > MAX_MANIFEST {
        return Err(ManifestError::TooLarge { size: body.len() });
    }
    let value: Value = match content_type {
        Some("application/json") => serde_json::from_slice(body).map_err(ManifestError::Json)?,
        Some("application/yaml") => serde_yaml::from_slice(body).map_err(ManifestError::Yaml)?,
        Some(other) => return Err(ManifestError::ContentType { content_type: other.to_string() }),
        None => serde_yaml::from_slice(body).or_else(|yaml| serde_json::from_slice(body).map_err(|json| ManifestError::Neither { yaml, json }))?,
    };
    check_link_shapes(&value)?;
    serde_json::from_value(value).map_err(ManifestError::Decode)
}

/// wadm-types' link deserializer unwraps the types of `namespace`, `package`, `interfaces` and
/// `name`; a hostile manifest with a number there would panic it. Checked here first.
fn check_link_shapes(value: &Value) -> Result<(), ManifestError> {
    let components = value.pointer("/spec/components").and_then(Value::as_array).into_iter().flatten();
    for component in components {
        let name = || component.get("name").and_then(Value::as_str).map(str::to_string);
        let traits = component.get("traits").and_then(Value::as_array).into_iter().flatten();
        for t in traits {
            if t.get("type").and_then(Value::as_str) != Some(wadm_types::LINK_TRAIT) {
                continue;
            }
            let Some(p) = t.get("properties") else { continue };
            let string = |key: &'static str, required: bool| match p.get(key) {
                None if !required => Ok(()),
                Some(Value::String(_)) => Ok(()),
                _ => Err(ManifestError::LinkString { component: name(), key }),
            };
            string("namespace", true)?;
            string("package", true)?;
            string("name", false)?;
            match p.get("interfaces") {
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
                _ => return Err(ManifestError::LinkInterfaces { component: name() }),
            }
        }
    }
    Ok(())
}

/// wadm's checks: the name, the version, then the validators (errors only; warnings pass).
///
/// # Errors
/// The first problem found.
pub async fn validate(manifest: &Manifest) -> Result<(), ManifestError> {
    use wadm_types::validation::{is_valid_manifest_name, validate_manifest_version, ValidationFailureLevel, ValidationOutput};
    let version = validate_manifest_version(manifest.version());
    let errors = version.errors();
    if !errors.is_empty() {
        return Err(ManifestError::Version { errors: errors.iter().map(|e| e.msg.clone()).collect() });
    }
    let name = manifest.metadata.name.trim();
    if !is_valid_manifest_name(name) {
        return Err(ManifestError::Name { name: name.to_string() });
    }
    unsupported(manifest)?;
    let failures = wadm_types::validation::validate_manifest(manifest).await.map_err(|e| ManifestError::Validator(e.to_string()))?;
    match failures.into_iter().find(|f| matches!(f.level, ValidationFailureLevel::Error)) {
        Some(f) => Err(ManifestError::Invalid(f.msg)),
        None => Ok(()),
    }
}

/// What wadm accepts and Trellis does not run yet: refused rather than silently ignored.
fn unsupported(manifest: &Manifest) -> Result<(), ManifestError> {
    use wadm_types::Properties;
    for c in &manifest.spec.components {
        let shared = match &c.properties {
            Properties::Component { properties } => {
                check_policies(manifest, &c.name, &properties.secrets)?;
                properties.application.is_some()
            }
            Properties::Capability { properties } => {
                check_policies(manifest, &c.name, &properties.secrets)?;
                properties.application.is_some()
            }
        };
        for t in c.traits.iter().flatten() {
            if let wadm_types::TraitProperty::Link(l) = &t.properties {
                check_policies(manifest, &c.name, &l.target.secrets)?;
                check_policies(manifest, &c.name, l.source.as_ref().map(|s| s.secrets.as_slice()).unwrap_or_default())?;
            }
        }
        if shared {
            return Err(ManifestError::SharedApplication { component: c.name.clone() });
        }
        let explicit = match &c.properties {
            Properties::Component { properties } => properties.id.as_ref(),
            Properties::Capability { properties } => properties.id.as_ref(),
        };
        if let Some(id) = explicit {
            trellis_messages::invocation::check_component_id(id).map_err(|reason| ManifestError::ComponentId { component: c.name.clone(), reason })?;
        }
        for t in c.traits.iter().flatten() {
            if let wadm_types::TraitProperty::Custom(_) = t.properties {
                return Err(ManifestError::Trait { component: c.name.clone(), trait_type: t.trait_type.clone() });
            }
        }
    }
    Ok(())
}

/// Each secret names a policy of the manifest whose properties name a backend (wadm's rule).
fn check_policies(manifest: &Manifest, component: &str, secrets: &[wadm_types::SecretProperty]) -> Result<(), ManifestError> {
    for secret in secrets {
        let refused = |why| ManifestError::Policy {
            component: component.to_string(),
            secret: secret.name.clone(),
            policy: secret.properties.policy.clone(),
            why,
        };
        let policy = manifest.spec.policies.iter().find(|p| p.name == secret.properties.policy).ok_or_else(|| refused("the manifest does not define"))?;
        if !policy.properties.contains_key("backend") {
            return Err(refused("has no `backend` property"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: demo
  annotations:
    version: v0.1.0
spec:
  components:
    - name: echo
      type: component
      properties:
        image: nats://echo:1.0
      traits:
        - type: spreadscaler
          properties:
            instances: 2
"#;

    #[test]
    fn yaml_json_and_hostile_links() {
        let m = parse(YAML.as_bytes(), None).expect("yaml");
        assert_eq!(m.metadata.name, "demo");
        let json = serde_json::to_vec(&m).expect("json");
        assert_eq!(parse(&json, Some("application/json")).expect("json"), m);
        assert!(parse(b"x", Some("text/plain")).unwrap_err().to_string().contains("Unsupported content type"));
        let hostile = YAML.replace("        - type: spreadscaler", "        - type: link\n          properties:\n            namespace: 5\n            package: p\n            interfaces: [x]\n            target: {name: t}\n        - type: spreadscaler");
        assert!(parse(hostile.as_bytes(), None).unwrap_err().to_string().contains("namespace"));
        let hostile = hostile.replace("namespace: 5", "namespace: n").replace("interfaces: [x]", "interfaces: [1]");
        assert!(parse(hostile.as_bytes(), None).unwrap_err().to_string().contains("interfaces"));
    }

    #[test]
    fn secrets_need_a_policy_of_the_manifest_with_a_backend() {
        let with_secret = YAML.replace(
            "        image: nats://echo:1.0\n",
            "        image: nats://echo:1.0\n        secrets:\n          - name: db\n            properties:\n              policy: vault\n              key: db-password\n",
        );
        let m = parse(with_secret.as_bytes(), None).expect("wadm reads it");
        let err = unsupported(&m).unwrap_err();
        assert!(matches!(&err, ManifestError::Policy { secret, .. } if secret == "db"), "{err}");
        assert!(err.to_string().contains("the manifest does not define"), "{err}");
        let policy = "spec:\n  policies:\n    - name: vault\n      type: policy.secret.wasmcloud.dev/v1alpha1\n      properties:\n        backend: nats-kv\n";
        let with_policy = with_secret.replace("spec:\n", policy);
        assert!(unsupported(&parse(with_policy.as_bytes(), None).expect("yaml")).is_ok());
        let no_backend = with_policy.replace("backend: nats-kv", "other: x");
        assert!(unsupported(&parse(no_backend.as_bytes(), None).expect("yaml")).unwrap_err().to_string().contains("no `backend`"));
        let provider = with_policy.replace("type: component", "type: capability");
        assert!(unsupported(&parse(provider.as_bytes(), None).expect("yaml")).is_ok());
        let unknown = provider.replace("policy: vault", "policy: other");
        assert!(unsupported(&parse(unknown.as_bytes(), None).expect("yaml")).unwrap_err().to_string().contains("`other`"));
        assert!(unsupported(&parse(YAML.as_bytes(), None).expect("yaml")).is_ok());
    }
}
