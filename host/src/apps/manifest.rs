//! Reading a manifest from a request body, as wadm does (`Content-Type: application/yaml` or
//! `application/json`, else YAML then JSON), and checking it with wadm's validators.

use serde_json::Value;
use wadm_types::Manifest;

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST: usize = 1 << 20;

/// Parses `body` as a manifest; `content_type` is the request's `Content-Type` header.
///
/// # Errors
/// Why the body is not a manifest, in words a user can act on.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    if body.len() > MAX_MANIFEST {
        return Err(format!("manifest of {} bytes refused: at most {MAX_MANIFEST} bytes", body.len()));
    }
    let value: Value = match content_type {
        Some("application/json") => serde_json::from_slice(body).map_err(|e| format!("Unable to parse manifest: JSON: {e}"))?,
        Some("application/yaml") => serde_yaml::from_slice(body).map_err(|e| format!("Unable to parse manifest: YAML: {e}"))?,
        Some(other) => return Err(format!("Unsupported content type {other} given. Wadm supports YAML and JSON")),
        None => serde_yaml::from_slice(body).or_else(|yaml| {
            serde_json::from_slice(body).map_err(|json| format!("Unable to parse manifest: not YAML ({yaml}) nor JSON ({json})"))
        })?,
    };
    check_link_shapes(&value)?;
    serde_json::from_value(value).map_err(|e| format!("Unable to parse manifest: {e}"))
}

/// wadm-types' link deserializer unwraps the types of `namespace`, `package`, `interfaces` and
/// `name`; a hostile manifest with a number there would panic it. Checked here first.
fn check_link_shapes(value: &Value) -> Result<(), String> {
    let components = value.pointer("/spec/components").and_then(Value::as_array).into_iter().flatten();
    for component in components {
        let traits = component.get("traits").and_then(Value::as_array).into_iter().flatten();
        for t in traits {
            if t.get("type").and_then(Value::as_str) != Some(wadm_types::LINK_TRAIT) {
                continue;
            }
            let Some(p) = t.get("properties") else { continue };
            let string = |key: &str, required: bool| match p.get(key) {
                None if !required => Ok(()),
                Some(Value::String(_)) => Ok(()),
                _ => Err(format!("Unable to parse manifest: a link trait's `{key}` must be a string")),
            };
            string("namespace", true)?;
            string("package", true)?;
            string("name", false)?;
            match p.get("interfaces") {
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
                _ => return Err("Unable to parse manifest: a link trait's `interfaces` must be a list of strings".into()),
            }
        }
    }
    Ok(())
}

/// wadm's checks: the name, the version, then the validators (errors only; warnings pass).
///
/// # Errors
/// The first problem found.
pub async fn validate(manifest: &Manifest) -> Result<(), String> {
    use wadm_types::validation::{is_valid_manifest_name, validate_manifest_version, ValidationFailureLevel, ValidationOutput};
    let version = validate_manifest_version(manifest.version());
    let errors = version.errors();
    if !errors.is_empty() {
        return Err(format!("invalid manifest version, errors: {}", errors.iter().map(|e| e.msg.clone()).collect::<Vec<_>>().join("\n")));
    }
    let name = manifest.metadata.name.trim();
    if !is_valid_manifest_name(name) {
        return Err(format!(
            "Manifest name {name} contains invalid characters. Manifest names can only contain alphanumeric characters, dashes, and underscores."
        ));
    }
    unsupported(manifest)?;
    let failures = wadm_types::validation::validate_manifest(manifest).await.map_err(|e| e.to_string())?;
    match failures.into_iter().find(|f| matches!(f.level, ValidationFailureLevel::Error)) {
        Some(f) => Err(f.msg),
        None => Ok(()),
    }
}

/// What wadm accepts and Trellis does not run yet: refused rather than silently ignored.
fn unsupported(manifest: &Manifest) -> Result<(), String> {
    use wadm_types::Properties;
    if !manifest.spec.policies.is_empty() {
        return Err("policies (and the secrets they serve) are not supported by Trellis yet".into());
    }
    for c in &manifest.spec.components {
        let (shared, secrets) = match &c.properties {
            Properties::Component { properties } => (properties.application.is_some(), !properties.secrets.is_empty()),
            Properties::Capability { properties } => (properties.application.is_some(), !properties.secrets.is_empty()),
        };
        if shared {
            return Err(format!("component `{}` refers to a shared application, which Trellis does not support yet", c.name));
        }
        let explicit = match &c.properties {
            Properties::Component { properties } => properties.id.as_ref(),
            Properties::Capability { properties } => properties.id.as_ref(),
        };
        if let Some(id) = explicit {
            trellis_messages::invocation::check_component_id(id).map_err(|e| format!("component `{}`: {e}", c.name))?;
        }
        if secrets {
            return Err(format!("component `{}` uses secrets, which Trellis does not support yet", c.name));
        }
        for t in c.traits.iter().flatten() {
            if let wadm_types::TraitProperty::Custom(_) = t.properties {
                return Err(format!("component `{}`: trait `{}` is not supported by Trellis", c.name, t.trait_type));
            }
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
        assert!(parse(b"x", Some("text/plain")).unwrap_err().contains("Unsupported content type"));
        let hostile = YAML.replace("        - type: spreadscaler", "        - type: link\n          properties:\n            namespace: 5\n            package: p\n            interfaces: [x]\n            target: {name: t}\n        - type: spreadscaler");
        assert!(parse(hostile.as_bytes(), None).unwrap_err().contains("namespace"));
        let hostile = hostile.replace("namespace: 5", "namespace: n").replace("interfaces: [x]", "interfaces: [1]");
        assert!(parse(hostile.as_bytes(), None).unwrap_err().contains("interfaces"));
    }
}
