//! Where every deployed application's workloads go, computed from the deployed manifests and the
//! live hosts alone, so every host computes the same plan.
//!
//! - `spreadscaler` splits `instances` over the trait's spreads in proportion to their weights,
//!   rounding as wadm does. A component's share of a spread is spread again over the eligible
//!   hosts (those whose labels satisfy the spread's requirements) as `max_instances`: at most
//!   one host per instance, as even as possible. A provider's share is a number of hosts, one
//!   process each.
//! - `daemonscaler` puts `instances` (a component's `max_instances`; a provider once) on every
//!   eligible host.
//! - Which hosts, when not all: the highest rendezvous scores of (app, workload, host), so a
//!   host joining or leaving moves only the shares it takes or leaves.
//! - Links and configs come from the manifest as wadm derives them: link targets and config
//!   names get the ids wadm computes (a config with `properties` is the app's own, named
//!   `{app}-{name}`; one without is used as named).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use trellis_messages::link::Link;
use wadm_types::{Component, ConfigProperty, Manifest, Properties, SpreadScalerProperty, Trait, TraitProperty, DAEMONSCALER_TRAIT, DEFAULT_SPREAD_WEIGHT, SPREADSCALER_TRAIT};

use super::{component_id, APP_SPEC, MANAGED_BY, MANAGED_BY_WADM, SCALER, SPREAD_NAME};

/// A live host, as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostView {
    /// Host id.
    pub id: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// One workload placed on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The application.
    pub app: String,
    /// Its reference (`image`).
    pub reference: String,
    /// `max_instances` (components); 1 for providers.
    pub max_instances: u32,
    /// Config names handed to it.
    pub config: Vec<String>,
    /// wadm's annotations, and the manifest's `trellis.dev/` ones.
    pub annotations: BTreeMap<String, String>,
}

/// Everything every deployed application needs, lattice-wide.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// host → component id → placement.
    pub components: BTreeMap<String, BTreeMap<String, Placed>>,
    /// host → provider id → placement.
    pub providers: BTreeMap<String, BTreeMap<String, Placed>>,
    /// app → links.
    pub links: BTreeMap<String, Vec<Link>>,
    /// app → config name → values (only the app's own configs).
    pub configs: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// app → why part of it cannot be placed.
    pub problems: BTreeMap<String, Vec<String>>,
}

impl Plan {
    /// Whether `host` has a share of `app`.
    pub fn host_serves(&self, host: &str, app: &str) -> bool {
        let has = |m: &BTreeMap<String, BTreeMap<String, Placed>>| m.get(host).is_some_and(|w| w.values().any(|p| p.app == app));
        has(&self.components) || has(&self.providers)
    }
}

/// The rendezvous score of `host` for `key`: a stable hash, the same on every host.
fn score(key: &str, host: &str) -> u64 {
    let digest = Sha256::new().chain_update(key.as_bytes()).chain_update([0]).chain_update(host.as_bytes()).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// `hosts` in `key`'s rendezvous order, best first.
pub fn rendezvous<'a>(key: &str, hosts: impl IntoIterator<Item = &'a HostView>) -> Vec<&'a HostView> {
    let mut v: Vec<_> = hosts.into_iter().collect();
    v.sort_by(|a, b| score(key, &b.id).cmp(&score(key, &a.id)).then_with(|| a.id.cmp(&b.id)));
    v
}

/// The host that writes `app`'s links and configs and publishes its status: the first live
/// host in the app's rendezvous order.
pub fn steward<'a>(app: &str, hosts: &'a [HostView]) -> Option<&'a HostView> {
    rendezvous(app, hosts).into_iter().next()
}

/// wadm's split of `instances` over weighted spreads (integer shares, the remainder handed out
/// one by one in order of weight).
pub fn split(property: &SpreadScalerProperty) -> Vec<(wadm_types::Spread, usize)> {
    let mut spreads = property.spread.clone();
    if spreads.is_empty() {
        return vec![(wadm_types::Spread::default(), property.instances)];
    }
    spreads.sort_by_key(|s| std::cmp::Reverse(s.weight.unwrap_or(DEFAULT_SPREAD_WEIGHT)));
    let total: usize = spreads.iter().map(|s| s.weight.unwrap_or(DEFAULT_SPREAD_WEIGHT)).sum::<usize>().max(1);
    let mut shares: Vec<_> = spreads
        .into_iter()
        .map(|s| {
            let n = property.instances.saturating_mul(s.weight.unwrap_or(DEFAULT_SPREAD_WEIGHT)) / total;
            (s, n)
        })
        .collect();
    let mut left = property.instances.saturating_sub(shares.iter().map(|(_, n)| n).sum());
    for (_, n) in &mut shares {
        if left == 0 {
            break;
        }
        *n += 1;
        left -= 1;
    }
    shares
}

fn eligible<'a>(hosts: &'a [HostView], requirements: &BTreeMap<String, String>) -> Vec<&'a HostView> {
    hosts.iter().filter(|h| requirements.iter().all(|(k, v)| h.labels.get(k) == Some(v))).collect()
}

fn config_names(app: &str, configs: &[ConfigProperty], plan: &mut Plan) -> Vec<String> {
    configs
        .iter()
        .map(|c| match &c.properties {
            Some(values) => {
                let name = component_id(app, None, &c.name);
                plan.configs.entry(app.to_string()).or_default().insert(name.clone(), values.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
                name
            }
            None => c.name.clone(),
        })
        .collect()
}

/// The config names of `secrets` (`SECRET_{app}-{name}`, as wadm names them), each reference
/// recorded in the plan as wadm writes it (the policy's `backend`, the rest of its properties as
/// the reference's policy). A secret whose policy is missing or has no backend was refused when
/// the manifest was put; here it is skipped.
fn secret_names(app: &str, policies: &[wadm_types::Policy], secrets: &[wadm_types::SecretProperty], plan: &mut Plan) -> Vec<String> {
    let mut names = Vec::new();
    for secret in secrets {
        let Some(policy) = policies.iter().find(|p| p.name == secret.properties.policy) else { continue };
        let mut properties = policy.properties.clone();
        let Some(backend) = properties.remove("backend") else { continue };
        let reference = wasmcloud_secrets_types::SecretConfig::new(
            secret.name.clone(),
            backend,
            secret.properties.key.clone(),
            secret.properties.field.clone(),
            secret.properties.version.clone(),
            properties.into_iter().map(|(k, v)| (k, v.into())).collect(),
        );
        let Ok(record) = crate::secrets::record(reference) else { continue };
        let name = format!("{}_{}", trellis_messages::SECRET_PREFIX, component_id(app, None, &secret.name));
        plan.configs.entry(app.to_string()).or_default().insert(name.clone(), record);
        names.push(name);
    }
    names
}

/// Computes the plan.
pub fn place(apps: &[(String, Manifest)], hosts: &[HostView]) -> Plan {
    let mut plan = Plan::default();
    for (app, manifest) in apps {
        let ids: BTreeMap<&str, String> = manifest
            .spec
            .components
            .iter()
            .map(|c| {
                let explicit = match &c.properties {
                    Properties::Component { properties } => properties.id.as_ref(),
                    Properties::Capability { properties } => properties.id.as_ref(),
                };
                (c.name.as_str(), component_id(app, explicit, &c.name))
            })
            .collect();
        // The manifest's own `trellis.dev/` annotations (instance reuse: `wasm::reuse`) go to
        // every workload it scales; wadm's annotations stay wadm's. Not `trellis.dev/reuse`:
        // whether a WASI 0.2 component may be reused is its own author's word, not an app's.
        let trellis: BTreeMap<String, String> = manifest
            .metadata
            .annotations
            .iter()
            .filter(|(k, _)| k.starts_with(TRELLIS_ANNOTATIONS) && k.as_str() != crate::wasm::reuse::REUSABLE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for component in &manifest.spec.components {
            place_component(app, component, &ids, &manifest.spec.policies, &trellis, hosts, &mut plan);
        }
    }
    plan
}

/// The prefix of the manifest annotations a Trellis host passes on to the workloads' scales.
pub const TRELLIS_ANNOTATIONS: &str = "trellis.dev/";

fn place_component(
    app: &str,
    component: &Component,
    ids: &BTreeMap<&str, String>,
    policies: &[wadm_types::Policy],
    trellis: &BTreeMap<String, String>,
    hosts: &[HostView],
    plan: &mut Plan,
) {
    let id = ids.get(component.name.as_str()).cloned().unwrap_or_default();
    let (image, configs, secrets, is_provider) = match &component.properties {
        Properties::Component { properties } => (properties.image.clone(), properties.config.clone(), properties.secrets.clone(), false),
        Properties::Capability { properties } => (properties.image.clone(), properties.config.clone(), properties.secrets.clone(), true),
    };
    let mut config = config_names(app, &configs, plan);
    config.extend(secret_names(app, policies, &secrets, plan));
    let mut traits: Vec<Trait> = component.traits.clone().unwrap_or_default();
    // A provider with an image and no scaler runs one instance, as wadm 0.21 gives it.
    let scaled = traits.iter().any(|t| t.trait_type == SPREADSCALER_TRAIT || t.trait_type == DAEMONSCALER_TRAIT);
    if is_provider && image.is_some() && !scaled {
        traits.push(Trait::new_spreadscaler(SpreadScalerProperty { instances: 1, spread: vec![] }));
    }
    for t in &traits {
        match &t.properties {
            TraitProperty::Link(link) => {
                let target = ids.get(link.target.name.as_str()).cloned().unwrap_or_else(|| link.target.name.clone());
                let mut source_config = link.source.as_ref().map(|s| config_names(app, &s.config, plan)).unwrap_or_default();
                source_config.extend(link.source.as_ref().map(|s| secret_names(app, policies, &s.secrets, plan)).unwrap_or_default());
                let mut target_config = config_names(app, &link.target.config, plan);
                target_config.extend(secret_names(app, policies, &link.target.secrets, plan));
                let interfaces: Vec<&str> = link.interfaces.iter().map(String::as_str).collect();
                let name = link.name.clone().unwrap_or_else(|| wadm_types::DEFAULT_LINK_NAME.to_string());
                let mut l = Link::new(&id, &target, &name, &link.namespace, &link.package, &interfaces);
                l.source_config = source_config;
                l.target_config = target_config;
                plan.links.entry(app.to_string()).or_default().push(l);
            }
            TraitProperty::SpreadScaler(property) if t.trait_type == SPREADSCALER_TRAIT || t.trait_type == DAEMONSCALER_TRAIT => {
                let Some(reference) = image.clone() else {
                    plan.problems.entry(app.to_string()).or_default().push(format!("{} has no image", component.name));
                    continue;
                };
                let daemon = t.trait_type == DAEMONSCALER_TRAIT;
                let shares = if daemon {
                    property.spread.iter().map(|s| (s.clone(), property.instances)).collect::<Vec<_>>()
                } else {
                    split(property)
                };
                let shares = if shares.is_empty() { vec![(wadm_types::Spread::default(), property.instances)] } else { shares };
                for (spread, count) in shares {
                    if count == 0 {
                        continue;
                    }
                    let candidates = eligible(hosts, &spread.requirements);
                    if candidates.is_empty() {
                        plan.problems.entry(app.to_string()).or_default().push(format!(
                            "Could not satisfy spread {} for {reference}, 0/{} eligible hosts found.",
                            spread.name,
                            hosts.len()
                        ));
                        continue;
                    }
                    let mut annotations = BTreeMap::from([
                        (MANAGED_BY.to_string(), MANAGED_BY_WADM.to_string()),
                        (APP_SPEC.to_string(), app.to_string()),
                        (SCALER.to_string(), t.trait_type.clone()),
                    ]);
                    if !daemon {
                        annotations.insert(SPREAD_NAME.to_string(), spread.name.clone());
                    }
                    annotations.extend(trellis.iter().map(|(k, v)| (k.clone(), v.clone())));
                    let ordered = rendezvous(&format!("{app}/{id}/{}", spread.name), candidates);
                    // (host, max_instances) for this spread.
                    let shares: Vec<(&HostView, u32)> = match (daemon, is_provider) {
                        (true, _) => ordered.iter().map(|h| (*h, u32::try_from(count).unwrap_or(u32::MAX))).collect(),
                        (false, true) => ordered.iter().take(count).map(|h| (*h, 1)).collect(),
                        (false, false) => {
                            let n = count.min(ordered.len());
                            ordered
                                .iter()
                                .take(n)
                                .enumerate()
                                .map(|(i, h)| (*h, u32::try_from(count / n + usize::from(i < count % n)).unwrap_or(u32::MAX)))
                                .collect()
                        }
                    };
                    if is_provider && !daemon && count > ordered.len() {
                        plan.problems.entry(app.to_string()).or_default().push(format!(
                            "Could not satisfy spread {} for {reference}: {count} hosts wanted, {} eligible",
                            spread.name,
                            ordered.len()
                        ));
                    }
                    let target = if is_provider { &mut plan.providers } else { &mut plan.components };
                    for (host, max) in shares {
                        let entry = target.entry(host.id.clone()).or_default().entry(id.clone()).or_insert_with(|| Placed {
                            app: app.to_string(),
                            reference: reference.clone(),
                            max_instances: 0,
                            config: config.clone(),
                            annotations: annotations.clone(),
                        });
                        entry.max_instances = if is_provider { 1 } else { entry.max_instances.saturating_add(max) };
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, zone: &str) -> HostView {
        HostView { id: id.into(), labels: BTreeMap::from([("zone".to_string(), zone.to_string())]) }
    }

    fn manifest(yaml: &str) -> Manifest {
        serde_yaml::from_str(yaml).expect("manifest")
    }

    const APP: &str = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: shop, annotations: {version: v1}}
spec:
  components:
    - name: api
      type: component
      properties: {image: "nats://api:1", config: [{name: greet, properties: {greeting: hi}}]}
      traits:
        - type: spreadscaler
          properties:
            instances: 10
            spread:
              - {name: east, requirements: {zone: east}, weight: 80}
              - {name: west, requirements: {zone: west}, weight: 20}
        - type: link
          properties: {namespace: wasi, package: keyvalue, interfaces: [store], target: {name: kv, config: [{name: bucket, properties: {bucket: shop}}]}}
    - name: kv
      type: capability
      properties: {image: "wasmcloud+builtin://keyvalue-nats"}
      traits:
        - type: daemonscaler
          properties: {instances: 1, spread: [{name: all, requirements: {}}]}
"#;

    #[test]
    fn weights_hosts_links_and_configs() {
        let hosts = vec![host("N1", "east"), host("N2", "east"), host("N3", "west")];
        let plan = place(&[("shop".into(), manifest(APP))], &hosts);
        let api = |h: &str| plan.components.get(h).and_then(|m| m.get("shop-api")).map_or(0, |p| p.max_instances);
        assert_eq!(api("N1") + api("N2"), 8, "80% east, split over both east hosts");
        assert_eq!((api("N1").max(api("N2")), api("N3")), (4, 2));
        for h in ["N1", "N2", "N3"] {
            assert!(plan.providers[h].contains_key("shop-kv"), "daemonscaler: every host");
        }
        let link = &plan.links["shop"][0];
        assert_eq!((link.source_id.as_str(), link.target.as_str()), ("shop-api", "shop-kv"));
        assert_eq!(link.target_config, ["shop-bucket"]);
        assert_eq!(plan.configs["shop"]["shop-greet"]["greeting"], "hi");
        assert_eq!(plan.components["N3"]["shop-api"].annotations[APP_SPEC], "shop");
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    }

    #[test]
    fn secrets_become_wadms_references_in_config_lists_and_links() {
        let app = APP
            .replace("spec:\n", "spec:\n  policies:\n    - {name: vault, type: policy.secret.wasmcloud.dev/v1alpha1, properties: {backend: nats-kv, region: eu}}\n")
            .replace(
                "properties: {image: \"nats://api:1\", config:",
                "properties: {image: \"nats://api:1\", secrets: [{name: db, properties: {policy: vault, key: db-pw, field: value}}], config:",
            )
            .replace(
                "target: {name: kv, config: [{name: bucket, properties: {bucket: shop}}]}",
                "target: {name: kv, config: [{name: bucket, properties: {bucket: shop}}], secrets: [{name: kv-token, properties: {policy: vault, key: kv}}]}",
            )
            .replace(
                "properties: {image: \"wasmcloud+builtin://keyvalue-nats\"}",
                "properties: {image: \"ghcr.io/example/kv:1\", secrets: [{name: own, properties: {policy: vault, key: own}}]}",
            )
            .replace(
                "interfaces: [store], target:",
                "interfaces: [store], source: {secrets: [{name: api-side, properties: {policy: vault, key: api}}]}, target:",
            );
        let plan = place(&[("shop".into(), manifest(&app))], &[host("N1", "east"), host("N3", "west")]);
        assert_eq!(plan.components["N1"]["shop-api"].config, ["shop-greet", "SECRET_shop-db"]);
        assert_eq!(plan.providers["N1"]["shop-kv"].config, ["SECRET_shop-own"]);
        assert_eq!(plan.links["shop"][0].target_config, ["shop-bucket", "SECRET_shop-kv_token"]);
        assert_eq!(plan.links["shop"][0].source_config, ["SECRET_shop-api_side"]);
        let db = &plan.configs["shop"]["SECRET_shop-db"];
        // As wadm writes it: the backend taken out of the policy's properties, the rest kept.
        assert_eq!((db["name"].as_str(), db["backend"].as_str(), db["key"].as_str(), db["field"].as_str()), ("db", "nats-kv", "db-pw", "value"));
        assert_eq!(db["policy"], r#"{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{"region":"eu"}}"#);
        assert_eq!(crate::secrets::reference("SECRET_shop-db", db).expect("a reference").key, "db-pw");
    }

    #[test]
    fn a_provider_without_a_scaler_runs_once_as_wadm_gives_it() {
        let app = APP.replace("      traits:\n        - type: daemonscaler\n          properties: {instances: 1, spread: [{name: all, requirements: {}}]}\n", "");
        assert!(!app.contains("daemonscaler"));
        let hosts = vec![host("N1", "east"), host("N2", "east"), host("N3", "west")];
        let plan = place(&[("shop".into(), manifest(&app))], &hosts);
        let kv: usize = plan.providers.values().filter(|p| p.contains_key("shop-kv")).count();
        assert_eq!(kv, 1, "one instance: {:?}", plan.providers);
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    }

    #[test]
    fn a_lost_host_moves_only_its_share_and_the_same_input_gives_the_same_plan() {
        let app = APP.replace("instances: 10", "instances: 2").replace("weight: 80", "weight: 100").replace("weight: 20", "weight: 0");
        let four = vec![host("N1", "east"), host("N2", "east"), host("N3", "east"), host("N4", "east")];
        let plan = place(&[("shop".into(), manifest(&app))], &four);
        assert_eq!(place(&[("shop".into(), manifest(&app))], &four), plan, "deterministic");
        let placed: Vec<&String> = plan.components.iter().filter(|(_, m)| m.contains_key("shop-api")).map(|(h, _)| h).collect();
        assert_eq!(placed.len(), 2, "two instances, two hosts");
        let survivors: Vec<HostView> = four.iter().filter(|h| &h.id != placed[0]).cloned().collect();
        let after = place(&[("shop".into(), manifest(&app))], &survivors);
        assert!(after.components.get(placed[1]).is_some_and(|m| m.contains_key("shop-api")), "the other host keeps its share");
        assert_eq!(after.components.values().filter(|m| m.contains_key("shop-api")).count(), 2);
        // No eligible host: a problem, not a panic.
        let plan = place(&[("shop".into(), manifest(APP))], &[host("N9", "north")]);
        assert!(plan.problems["shop"].iter().any(|p| p.contains("0/1 eligible")), "{:?}", plan.problems);
    }

    #[test]
    fn the_manifests_trellis_annotations_reach_every_workload_and_no_others_do() {
        let app = APP.replace("annotations: {version: v1}", "annotations: {version: v1, \"trellis.dev/max-concurrency\": \"100\", \"trellis.dev/reuse\": \"true\", other: x}");
        let plan = place(&[("shop".into(), manifest(&app))], &[host("N1", "east"), host("N3", "west")]);
        let placed: Vec<&Placed> = plan.components.values().chain(plan.providers.values()).flat_map(BTreeMap::values).collect();
        assert!(!placed.is_empty());
        for p in placed {
            assert_eq!(p.annotations.get("trellis.dev/max-concurrency").map(String::as_str), Some("100"), "{p:?}");
            assert!(!p.annotations.contains_key("other") && !p.annotations.contains_key("version"), "{p:?}");
            assert!(!p.annotations.contains_key("trellis.dev/reuse"), "a 0.2 component's reuse is not the app's to declare: {p:?}");
        }
    }

    #[test]
    fn split_rounds_as_wadm_does() {
        let p = SpreadScalerProperty {
            instances: 7,
            spread: vec![
                wadm_types::Spread { name: "a".into(), requirements: BTreeMap::new(), weight: Some(1) },
                wadm_types::Spread { name: "b".into(), requirements: BTreeMap::new(), weight: Some(2) },
            ],
        };
        let shares: Vec<(String, usize)> = split(&p).into_iter().map(|(s, n)| (s.name, n)).collect();
        assert_eq!(shares, [("b".to_string(), 5), ("a".to_string(), 2)]);
    }
}
