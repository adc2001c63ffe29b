//! Declarative applications, run by the hosts themselves (no separate manager).
//!
//! Manifests are wadm's (`wadm_types::Manifest`, OAM `core.oam.dev/v1beta1`), stored as wadm
//! stores them ([`store`]: KV `wadm_manifests`, key `{lattice}-{name}`) and driven through wadm's
//! API ([`api`]: `wadm.api.{lattice}.model.…`), so `wash app` and `wadm-client` work unchanged.
//!
//! ## How hosts agree without a leader
//!
//! Every host publishes a liveness record once a second ([`liveness`]: its labels, what it runs,
//! what failed) and watches everyone else's; a host silent for [`liveness::DEAD_AFTER`] is gone
//! from every view. Placement ([`placement`]) is a pure function of the deployed manifests and
//! the live hosts: every host computes the same answer (rendezvous hashing picks hosts, not
//! arrival order) and carries out only its own part ([`reconciler`]): it scales its own
//! components and starts or stops its own providers, directly through its own actors. Links and
//! configs are lattice-wide; the app's *steward*, the first live host in the app's rendezvous
//! order, writes them and publishes the app's status. There is nothing to elect and nothing to
//! hand over: when any host dies, including a steward, the others' next view no longer has it,
//! and the same function gives its share (and the stewardship) to the survivors.
//!
//! Failure cases, and what bounds them: two hosts whose views differ for a moment (one has seen
//! a new host's record, the other not yet) may both run a share for up to one liveness period;
//! the next pass removes the surplus. A host cut off from NATS keeps running what it has (calls
//! to it fail over to other instances in the queue group) until it is reconnected and converges.
//! Every pass is idempotent and also runs on a timer, so a missed event cannot leave an app
//! diverged.

pub mod api;
pub mod liveness;
pub mod manifest;
pub mod placement;
pub mod reconciler;
pub mod status;
pub mod store;
pub mod wadm_presence;

/// Annotation wadm puts on what it manages (`wasmcloud.dev/managed-by: wadm`); Trellis does the
/// same, so tools that look for it see Trellis-managed workloads as wadm-managed.
pub const MANAGED_BY: &str = "wasmcloud.dev/managed-by";
/// The value of [`MANAGED_BY`].
pub const MANAGED_BY_WADM: &str = "wadm";
/// Annotation naming the application a workload belongs to.
pub const APP_SPEC: &str = trellis_messages::APP_SPEC_ANNOTATION;
/// Annotation naming the scaler (trait) that placed a workload.
pub const SCALER: &str = "wasmcloud.dev/scaler";
/// Annotation naming the spread a workload was placed for.
pub const SPREAD_NAME: &str = "wasmcloud.dev/spread_name";

/// The id wadm gives a manifest component: its `id` property, else `{app}-{name}`, each
/// lowercased with every character that is not ASCII alphanumeric replaced by `_`.
pub fn component_id(app: &str, explicit: Option<&String>, name: &str) -> String {
    match explicit {
        Some(id) => id.clone(),
        None => {
            let clean = |s: &str| s.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_");
            format!("{}-{}", clean(app), clean(name))
        }
    }
}

/// The app a workload's annotations say manages it, if wadm's annotations are there.
pub fn managing_app(annotations: Option<&std::collections::BTreeMap<String, String>>) -> Option<&str> {
    let a = annotations?;
    (a.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_WADM)).then(|| a.get(APP_SPEC).map(String::as_str))?
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_computed_as_wadm_does() {
        assert_eq!(super::component_id("My App", None, "http-Server"), "my_app-http_server");
        assert_eq!(super::component_id("app", Some(&"fixed".to_string()), "x"), "fixed");
    }
}
