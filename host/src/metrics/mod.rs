//! What the host measures, served in Prometheus's text format at `/metrics` when
//! `--metrics-addr` or `--http-admin` is set ([`crate::admin`]), and recorded into an OpenTelemetry meter as well when
//! the host is given one (`otel`: the binary's OTLP export).
//!
//! Every series carries the constant labels `lattice` and `host`. Names follow wasmCloud's
//! OpenTelemetry metrics where it has one (`wasmcloud_host.component.invocations` →
//! `trellis_component_invocations_total`). Label values a caller chooses are bounded: the
//! `operation` of a call is a function the component exports (`ns:pkg/iface.func`) or
//! `unknown`, never the name a caller sent, so a flood of made-up function names cannot grow
//! the series without end.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::warn;

mod otel;


/// The `operation` of a call to a function the component does not export.
pub const UNKNOWN_OPERATION: &str = "unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    component: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    component: String,
    operation: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    component: String,
    status: u16,
}

/// The host's metrics: a cheap-to-clone handle every call path records into. A host that
/// serves no metrics records none ([`Metrics::disabled`]): the benchmark measures what
/// recording costs a call.
#[derive(Clone, Debug)]
pub struct Metrics(Option<Arc<Inner>>);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    invocations: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    active: Family<ComponentLabels, Gauge>,
    max_instances: Family<ComponentLabels, Gauge>,
    waiting: Family<ComponentLabels, Gauge>,
    http: Family<HttpLabels, Counter>,
    nats_reconnects: Counter,
    watch_lag: Histogram,
    provider_restarts: Family<ProviderLabels, Counter>,
    provider_healthy: Family<ProviderLabels, Gauge>,
    resident: Gauge,
    cpu_ms: Counter,
    /// The same measurements into an OpenTelemetry meter, when the host was given one.
    otel: Option<otel::Instruments>,
}

/// Bounds of the duration histograms: 10 µs … ~84 s.
fn duration_buckets() -> Vec<f64> {
    exponential_buckets(1e-5, 2.0, 24).collect()
}

fn duration_histogram() -> Histogram {
    Histogram::new(duration_buckets())
}

impl Default for Metrics {
    /// [`Metrics::disabled`].
    fn default() -> Self {
        Self::disabled()
    }
}

impl Metrics {
    /// Metrics that record nothing and render empty.
    pub fn disabled() -> Self {
        Self(None)
    }

    /// Metrics of host `host` on lattice `lattice`, recorded into `meter` too when there is
    /// one (instrument names: the Prometheus family names with dots, `trellis.component.invocations`).
    pub fn new(lattice: &str, host: &str, meter: Option<&opentelemetry::metrics::Meter>) -> Self {
        let mut root = Registry::default();
        let labels = [("lattice".into(), lattice.to_string().into()), ("host".into(), host.to_string().into())];
        let registry = root.sub_registry_with_labels(labels.into_iter());
        let registry = registry.sub_registry_with_prefix("trellis");
        let invocations = Family::<CallLabels, Counter>::default();
        registry.register("component_invocations", "Calls of a component's exports, ended (any outcome)", invocations.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("component_invocation_errors", "Calls that failed, by fault kind", errors.clone());
        let duration = Family::<CallLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register_with_unit(
            "component_invocation_duration",
            "Time from a call's start (an instance slot held) to its end",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let active = Family::<ComponentLabels, Gauge>::default();
        registry.register("component_active_instances", "Instances running a call now", active.clone());
        let max_instances = Family::<ComponentLabels, Gauge>::default();
        registry.register("component_max_instances", "The component's max_instances on this host", max_instances.clone());
        let waiting = Family::<ComponentLabels, Gauge>::default();
        registry.register("component_waiting_calls", "Calls waiting for a free instance slot", waiting.clone());
        let http = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served by a component, by response status", http.clone());
        let nats_reconnects = Counter::default();
        registry.register("nats_reconnects", "Times the host's NATS connection was re-established", nats_reconnects.clone());
        let watch_lag = duration_histogram();
        registry.register_with_unit(
            "lattice_watch_lag",
            "From a link or config change stored in JetStream KV (the server's timestamp) to this host's watch applying it",
            prometheus_client::registry::Unit::Seconds,
            watch_lag.clone(),
        );
        let provider_restarts = Family::<ProviderLabels, Counter>::default();
        registry.register("provider_restarts", "Times an external provider's process was restarted after it exited", provider_restarts.clone());
        let provider_healthy = Family::<ProviderLabels, Gauge>::default();
        registry.register(
            "provider_healthy",
            "1 when an external provider's last health check passed, 0 when it failed or went unanswered",
            provider_healthy.clone(),
        );
        let resident = Gauge::default();
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the host process",
            prometheus_client::registry::Unit::Bytes,
            resident.clone(),
        );
        let cpu_ms = Counter::default();
        registry.register("process_cpu_milliseconds", "CPU time (user + system) of the host process", cpu_ms.clone());
        Self(Some(Arc::new(Inner {
            registry: root,
            invocations,
            errors,
            duration,
            active,
            max_instances,
            waiting,
            http,
            nats_reconnects,
            watch_lag,
            provider_restarts,
            provider_healthy,
            resident,
            cpu_ms,
            otel: meter.map(|m| otel::Instruments::new(m, lattice, host, &duration_buckets())),
        })))
    }

    /// `component` now runs with at most `max` instances here.
    pub fn set_max_instances(&self, component: &str, max: u32) {
        let Some(inner) = &self.0 else { return };
        inner.max_instances.get_or_create(&ComponentLabels { component: component.into() }).set(i64::from(max));
        if let Some(o) = &inner.otel {
            otel::set(&o.max_instances, component, Some(i64::from(max)));
        }
    }

    /// `component` stopped here: its per-component gauges go (counters stay, as Prometheus
    /// expects of counters).
    pub fn component_stopped(&self, component: &str) {
        let Some(inner) = &self.0 else { return };
        let labels = ComponentLabels { component: component.into() };
        inner.max_instances.remove(&labels);
        inner.active.remove(&labels);
        inner.waiting.remove(&labels);
        if let Some(o) = &inner.otel {
            otel::set(&o.max_instances, component, None);
        }
    }

    /// An HTTP request to `component` was answered with `status`.
    pub fn http_response(&self, component: &str, status: u16) {
        let Some(inner) = &self.0 else { return };
        inner.http.get_or_create(&HttpLabels { component: component.into(), status }).inc();
        if let Some(o) = &inner.otel {
            o.http.add(1, &o.attributes([("component", component.to_string()), ("status", status.to_string())]));
        }
    }

    /// A change in the lattice's KV buckets reached this host `lag` after it was stored.
    pub fn watch_applied(&self, lag: Duration) {
        if let Some(inner) = &self.0 {
            inner.watch_lag.observe(lag.as_secs_f64());
            if let Some(o) = &inner.otel {
                o.watch_lag.record(lag.as_secs_f64(), o.base());
            }
        }
    }

    /// External provider `provider` now has `restarts` restarts and this health (`None`: not
    /// known, such as while it restarts).
    pub fn provider_status(&self, provider: &str, restarts: u64, healthy: Option<bool>) {
        let Some(inner) = &self.0 else { return };
        let labels = ProviderLabels { provider: provider.into() };
        let counter = inner.provider_restarts.get_or_create(&labels);
        let seen = counter.get();
        if restarts > seen {
            counter.inc_by(restarts - seen);
            if let Some(o) = &inner.otel {
                o.provider_restarts.add(restarts - seen, &o.attributes([("provider", provider.to_string())]));
            }
        }
        if let Some(o) = &inner.otel {
            otel::set(&o.provider_healthy, provider, healthy.map(i64::from));
        }
        match healthy {
            Some(h) => {
                inner.provider_healthy.get_or_create(&labels).set(i64::from(h));
            }
            None => {
                inner.provider_healthy.remove(&labels);
            }
        }
    }

    /// External provider `provider` stopped here: its health gauge goes.
    pub fn provider_stopped(&self, provider: &str) {
        if let Some(inner) = &self.0 {
            inner.provider_healthy.remove(&ProviderLabels { provider: provider.into() });
            if let Some(o) = &inner.otel {
                otel::set(&o.provider_healthy, provider, None);
            }
        }
    }

    /// The NATS connection came back after a loss.
    pub fn nats_reconnected(&self) {
        if let Some(inner) = &self.0 {
            inner.nats_reconnects.inc();
            if let Some(o) = &inner.otel {
                o.nats_reconnects.add(1, o.base());
            }
        }
    }

    /// The text exposition (OpenMetrics, which Prometheus reads), with the process's memory
    /// and CPU read now.
    pub fn render(&self) -> String {
        let Some(inner) = &self.0 else { return String::new() };
        if let Some((rss, cpu)) = process_usage() {
            inner.resident.set(i64::try_from(rss).unwrap_or(i64::MAX));
            let seen = inner.cpu_ms.get();
            if cpu > seen {
                inner.cpu_ms.inc_by(cpu - seen);
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &inner.registry) {
            warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// One component's metric handles, made once when it starts serving, so a call records with
/// atomic increments and one lookup of its operation, without building label sets.
#[derive(Clone, Debug)]
pub struct ComponentMetrics(Option<Arc<ComponentHandles>>);

#[derive(Debug)]
struct ComponentHandles {
    id: String,
    metrics: Metrics,
    active: Gauge,
    waiting: Gauge,
    /// By operation (exported functions and `unknown` only: see the module's doc).
    calls: std::sync::RwLock<std::collections::HashMap<String, CallHandles>>,
    /// `lattice`, `host`, `component`, when recording into a meter too.
    otel: Option<otel::Attributes>,
}

/// What one operation's calls record into.
#[derive(Clone, Debug)]
struct CallHandles {
    count: Counter,
    duration: Histogram,
    /// `lattice`, `host`, `component`, `operation`, when recording into a meter too.
    otel: Option<otel::Attributes>,
}

impl Metrics {
    /// The handles of `component`: its calls record through them.
    pub fn component(&self, component: &str) -> ComponentMetrics {
        let Some(inner) = &self.0 else { return ComponentMetrics(None) };
        let labels = ComponentLabels { component: component.into() };
        ComponentMetrics(Some(Arc::new(ComponentHandles {
            id: component.into(),
            metrics: self.clone(),
            active: inner.active.get_or_create(&labels).clone(),
            waiting: inner.waiting.get_or_create(&labels).clone(),
            calls: std::sync::RwLock::default(),
            otel: inner.otel.as_ref().map(|o| o.attributes([("component", component.to_string())])),
        })))
    }
}

impl ComponentMetrics {
    /// Records nothing (a runtime outside a host).
    pub fn disabled() -> Self {
        Self(None)
    }

    /// Whether calls are recorded (a host that serves no metrics records none, and skips the
    /// work of naming the operation).
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// A call of `operation` (an exported function, or [`UNKNOWN_OPERATION`]) ended after
    /// `took`; `fault` names its kind when it failed.
    pub fn call_ended(&self, operation: &str, took: Duration, fault: Option<&str>) {
        let Some(h) = &self.0 else { return };
        let Some(inner) = &h.metrics.0 else { return };
        let cached = h.calls.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(operation).cloned();
        let handles = match cached {
            Some(handles) => handles,
            None => {
                let call = CallLabels { component: h.id.clone(), operation: operation.into() };
                let handles = CallHandles {
                    count: inner.invocations.get_or_create(&call).clone(),
                    duration: inner.duration.get_or_create(&call).clone(),
                    otel: inner.otel.as_ref().map(|o| o.attributes([("component", h.id.clone()), ("operation", operation.to_string())])),
                };
                h.calls.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(operation.into(), handles.clone());
                handles
            }
        };
        handles.count.inc();
        handles.duration.observe(took.as_secs_f64());
        if let (Some(o), Some(attributes)) = (&inner.otel, &handles.otel) {
            o.invocations.add(1, attributes);
            o.duration.record(took.as_secs_f64(), attributes);
        }
        if let Some(kind) = fault {
            let labels = ErrorLabels { component: h.id.clone(), operation: operation.into(), kind: kind.into() };
            inner.errors.get_or_create(&labels).inc();
            if let Some(o) = &inner.otel {
                let attributes = o.attributes([("component", h.id.clone()), ("operation", operation.to_string()), ("kind", kind.to_string())]);
                o.errors.add(1, &attributes);
            }
        }
    }

    /// An instance runs a call until the guard drops.
    pub fn active(&self) -> ActiveGuard {
        self.guard(Which::Active)
    }

    /// A call waits for a slot until the guard drops.
    pub fn waiting(&self) -> ActiveGuard {
        self.guard(Which::Waiting)
    }

    fn guard(&self, which: Which) -> ActiveGuard {
        let guard = ActiveGuard(self.0.clone().map(|h| (h, which)));
        guard.add(1);
        guard
    }
}

#[derive(Clone, Copy, Debug)]
enum Which {
    Active,
    Waiting,
}

/// Decrements an in-flight gauge when dropped.
#[derive(Debug)]
pub struct ActiveGuard(Option<(Arc<ComponentHandles>, Which)>);

impl ActiveGuard {
    fn add(&self, delta: i64) {
        let Some((h, which)) = &self.0 else { return };
        let gauge = match which {
            Which::Active => &h.active,
            Which::Waiting => &h.waiting,
        };
        gauge.inc_by(delta);
        if let (Some(inner), Some(attributes)) = (&h.metrics.0, &h.otel) {
            if let Some(o) = &inner.otel {
                match which {
                    Which::Active => o.active.add(delta, attributes),
                    Which::Waiting => o.waiting.add(delta, attributes),
                }
            }
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.add(-1);
    }
}

/// Resident bytes and CPU milliseconds of this process, from `getrusage` and `/proc/self/statm`.
fn process_usage() -> Option<(u64, u64)> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let ms = |t: nix::sys::time::TimeVal| u64::try_from(t.tv_sec()).unwrap_or(0) * 1000 + u64::try_from(t.tv_usec()).unwrap_or(0) / 1000;
    let cpu = ms(usage.user_time()) + ms(usage.system_time());
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = u64::try_from(rustix::param::page_size()).unwrap_or(4096);
    Some((pages * page, cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_that_serves_no_metrics_records_none() {
        let off = Metrics::disabled();
        let calls = off.component("echo");
        assert!(!calls.enabled());
        calls.call_ended("trellis:echo/echo.echo", Duration::from_millis(1), Some("trap"));
        drop(calls.active());
        assert_eq!(off.render(), "");

        let on = Metrics::new("l", "h", None);
        on.component("echo").call_ended("trellis:echo/echo.echo", Duration::from_millis(1), None);
        assert!(on.render().contains(r#"trellis_component_invocations_total{lattice="l",host="h",component="echo",operation="trellis:echo/echo.echo"} 1"#));
    }
}
