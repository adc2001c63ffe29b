//! Every NATS subject of the lattice protocol, built in one place.
//!
//! Control subjects live under `{prefix}.v1.{lattice}` (the prefix is configurable and
//! defaults to `wasmbus.ctl`); events under `wasmbus.evt.{lattice}` (fixed: published clients
//! subscribe there whatever the control prefix).

/// Subject builder for one lattice and control prefix. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    /// `{prefix}.v1.{lattice}`: the start of every control subject.
    base: String,
    /// The lattice name, for event subjects.
    lattice: String,
}

impl Subjects {
    /// Subjects for `lattice` under control prefix `prefix` (e.g. `wasmbus.ctl`).
    pub fn new(prefix: &str, lattice: &str) -> Self {
        Self { base: format!("{prefix}.v1.{lattice}"), lattice: lattice.to_string() }
    }

    /// `{prefix}.v1.{lattice}`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The control prefix (`wasmbus.ctl`).
    pub fn prefix(&self) -> &str {
        self.base.strip_suffix(&format!(".v1.{}", self.lattice)).unwrap_or(&self.base)
    }

    /// The lattice name.
    pub fn lattice(&self) -> &str {
        &self.lattice
    }

    fn ctl(&self, rest: &str) -> String {
        format!("{}.{rest}", self.base)
    }

    /// Where component `component_id` serves its exports: `trellis.rpc.{lattice}.{id}`.
    pub fn invocation(&self, component_id: &str) -> String {
        format!("trellis.rpc.{}.{component_id}", self.lattice)
    }

    /// Broadcast: every host answers with its description.
    pub fn host_ping(&self) -> String {
        self.ctl("host.ping")
    }
    /// Targeted: the host's inventory.
    pub fn host_get(&self, host_id: &str) -> String {
        self.ctl(&format!("host.get.{host_id}"))
    }
    /// Targeted: stop the host gracefully.
    pub fn host_stop(&self, host_id: &str) -> String {
        self.ctl(&format!("host.stop.{host_id}"))
    }
    /// Targeted: set a label.
    pub fn label_put(&self, host_id: &str) -> String {
        self.ctl(&format!("label.put.{host_id}"))
    }
    /// Targeted: delete a label.
    pub fn label_del(&self, host_id: &str) -> String {
        self.ctl(&format!("label.del.{host_id}"))
    }
    /// Targeted: scale a component.
    pub fn component_scale(&self, host_id: &str) -> String {
        self.ctl(&format!("component.scale.{host_id}"))
    }
    /// Targeted: update a component to a new reference.
    pub fn component_update(&self, host_id: &str) -> String {
        self.ctl(&format!("component.update.{host_id}"))
    }
    /// Broadcast: hosts that satisfy the constraints answer.
    pub fn component_auction(&self) -> String {
        self.ctl("component.auction")
    }
    /// Targeted: start a provider.
    pub fn provider_start(&self, host_id: &str) -> String {
        self.ctl(&format!("provider.start.{host_id}"))
    }
    /// Targeted: stop a provider.
    pub fn provider_stop(&self, host_id: &str) -> String {
        self.ctl(&format!("provider.stop.{host_id}"))
    }
    /// Broadcast: hosts that satisfy the constraints answer.
    pub fn provider_auction(&self) -> String {
        self.ctl("provider.auction")
    }
    /// Queue group: put a link.
    pub fn link_put(&self) -> String {
        self.ctl("link.put")
    }
    /// Queue group: delete a link.
    pub fn link_del(&self) -> String {
        self.ctl("link.del")
    }
    /// Queue group: list links.
    pub fn link_get(&self) -> String {
        self.ctl("link.get")
    }
    /// Queue group: list claims.
    pub fn claims_get(&self) -> String {
        self.ctl("claims.get")
    }
    /// Queue group: put a named config.
    pub fn config_put(&self, name: &str) -> String {
        self.ctl(&format!("config.put.{name}"))
    }
    /// Queue group: get a named config.
    pub fn config_get(&self, name: &str) -> String {
        self.ctl(&format!("config.get.{name}"))
    }
    /// Queue group: delete a named config.
    pub fn config_del(&self, name: &str) -> String {
        self.ctl(&format!("config.del.{name}"))
    }
    /// Broadcast: registry credentials.
    pub fn registry_put(&self) -> String {
        self.ctl("registry.put")
    }

    /// What one host subscribes to, and with which queue group.
    ///
    /// Targeted subjects end in the host id; broadcast ones every host hears; the lattice-data
    /// operations (links, claims, config) are answered by one host of a queue group because their
    /// state lives in JetStream KV, not in the host.
    pub fn host_subscriptions(&self, host_id: &str) -> Vec<(String, Option<String>)> {
        let b = &self.base;
        vec![
            (format!("{b}.host.*.{host_id}"), None),
            (format!("{b}.label.*.{host_id}"), None),
            (format!("{b}.component.*.{host_id}"), None),
            (format!("{b}.provider.*.{host_id}"), None),
            (self.host_ping(), None),
            (self.component_auction(), None),
            (self.provider_auction(), None),
            (self.registry_put(), None),
            (format!("{b}.link.*"), Some(self.link_queue_group())),
            (self.claims_get(), Some(format!("{b}.claims"))),
            (format!("{b}.config.>"), Some(format!("{b}.config"))),
            // Everything else under the prefix: one host answers that it is unknown.
            (format!("{b}.>"), Some(format!("{b}.unknown"))),
        ]
    }

    /// The queue group links are handled in.
    pub fn link_queue_group(&self) -> String {
        format!("{}.link", self.base)
    }

    /// The subject of event `name` (e.g. `host_started`).
    pub fn event(&self, name: &str) -> String {
        event(&self.lattice, name)
    }

    /// All events of this lattice.
    pub fn events_wildcard(&self) -> String {
        format!("wasmbus.evt.{}.>", self.lattice)
    }

    /// The wRPC prefix of `target` (a component or provider id): `{lattice}.{target}`.
    pub fn wrpc_prefix(&self, target: &str) -> String {
        wrpc_prefix(&self.lattice, target)
    }

    /// Every wRPC call to `target`: `{lattice}.{target}.wrpc.>`.
    pub fn wrpc_calls(&self, target: &str) -> String {
        format!("{}.wrpc.>", wrpc_prefix(&self.lattice, target))
    }

    /// wasmCloud's provider subjects outside wRPC (`wasmbus.rpc.{lattice}.{rest}`: link puts and
    /// deletes, health, shutdown of one provider).
    pub fn provider_rpc(&self, rest: &str) -> String {
        format!("wasmbus.rpc.{}.{rest}", self.lattice)
    }

    /// The tokens of `subject` after `{prefix}.v1.{lattice}`, or `None` when it is not ours.
    pub fn ctl_tokens<'a>(&self, subject: &'a str) -> Option<Vec<&'a str>> {
        let rest = subject.strip_prefix(self.base.as_str())?.strip_prefix('.')?;
        Some(rest.split('.').collect())
    }
}

/// The subject of event `name` in `lattice`: `wasmbus.evt.{lattice}.{name}` (whatever the
/// control prefix).
pub fn event(lattice: &str, name: &str) -> String {
    format!("wasmbus.evt.{lattice}.{name}")
}

/// The wRPC prefix of `target` in `lattice`: `{lattice}.{target}`, under which wRPC's NATS
/// transport puts `wrpc.0.0.1.{instance}.{function}` (as wasmCloud 1.x hosts and providers do).
pub fn wrpc_prefix(lattice: &str, target: &str) -> String {
    format!("{lattice}.{target}")
}

/// wadm's subjects for one lattice: its application API and the status it publishes.
pub mod wadm {
    /// The subject of API operation `op` (`put`, `get`, `list`, `deploy`, `undeploy`, `del`,
    /// `status`, `versions`, with the app name where it takes one): `wadm.api.{lattice}.model.{op}`.
    pub fn model(lattice: &str, op: &str) -> String {
        format!("{}model.{op}", api_prefix(lattice))
    }

    /// The start of every API subject of `lattice`: `wadm.api.{lattice}.`.
    pub fn api_prefix(lattice: &str) -> String {
        format!("wadm.api.{lattice}.")
    }

    /// Where an application's status is published: `wadm.status.{lattice}.{app}`.
    pub fn status(lattice: &str, app: &str) -> String {
        format!("wadm.status.{lattice}.{app}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_wrpc_wadm_and_event_subjects_as_wasmcloud_and_wadm_do() {
        let s = Subjects::new("wasmbus.ctl", "default");
        assert_eq!(s.event("host_started"), "wasmbus.evt.default.host_started");
        assert_eq!(s.wrpc_prefix("echo"), "default.echo");
        assert_eq!(s.wrpc_calls("echo"), "default.echo.wrpc.>");
        assert_eq!(s.provider_rpc("VPROV.linkdefs.put"), "wasmbus.rpc.default.VPROV.linkdefs.put");
        assert_eq!(wadm::model("default", "put"), "wadm.api.default.model.put");
        assert_eq!(wadm::model("default", "deploy.app"), "wadm.api.default.model.deploy.app");
        assert_eq!(wadm::status("default", "app"), "wadm.status.default.app");
    }

    #[test]
    fn builds_the_published_client_subjects() {
        let s = Subjects::new("wasmbus.ctl", "default");
        assert_eq!(s.host_ping(), "wasmbus.ctl.v1.default.host.ping");
        assert_eq!(s.host_get("NABC"), "wasmbus.ctl.v1.default.host.get.NABC");
        assert_eq!(s.component_scale("NABC"), "wasmbus.ctl.v1.default.component.scale.NABC");
        assert_eq!(s.config_put("c1"), "wasmbus.ctl.v1.default.config.put.c1");
        assert_eq!(s.link_queue_group(), "wasmbus.ctl.v1.default.link");
        assert_eq!(s.event("host_started"), "wasmbus.evt.default.host_started");
    }

    #[test]
    fn custom_prefix() {
        let s = Subjects::new("acme.ctl", "prod");
        assert_eq!(s.label_put("N1"), "acme.ctl.v1.prod.label.put.N1");
    }

    #[test]
    fn tokens_after_base() {
        let s = Subjects::new("wasmbus.ctl", "lat");
        assert_eq!(s.ctl_tokens("wasmbus.ctl.v1.lat.host.get.N1"), Some(vec!["host", "get", "N1"]));
        assert_eq!(s.ctl_tokens("wasmbus.ctl.v1.other.host.ping"), None);
        assert_eq!(s.ctl_tokens("wasmbus.ctl.v1.latx.host.ping"), None);
    }
}
