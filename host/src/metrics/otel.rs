//! The host's measurements recorded a second time, into an OpenTelemetry meter, for hosts that
//! export metrics over OTLP (the `trellis` binary does when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set). The instruments mirror the Prometheus families one for one: the same name with dots
//! (`trellis.component.invocations`, the unit in the instrument's unit), the same attributes
//! (`lattice`, `host`, `component`, …), so an OTLP → Prometheus conversion gives back the
//! series `/metrics` serves.
//!
//! Gauges that disappear (a stopped component's `max_instances`, a stopped provider's health)
//! are observed from a map at each collection, so they disappear here too; the in-flight gauges
//! are up-down counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableCounter, ObservableGauge, UpDownCounter};
use opentelemetry::KeyValue;

/// Attributes of one series, made once and shared by every recording.
pub(super) type Attributes = Arc<[KeyValue]>;

#[derive(Debug)]
pub(super) struct Instruments {
    /// `lattice` and `host`, first on every series.
    base: Vec<KeyValue>,
    pub invocations: Counter<u64>,
    pub errors: Counter<u64>,
    pub duration: Histogram<f64>,
    pub active: UpDownCounter<i64>,
    pub waiting: UpDownCounter<i64>,
    pub http: Counter<u64>,
    pub nats_reconnects: Counter<u64>,
    pub watch_lag: Histogram<f64>,
    pub provider_restarts: Counter<u64>,
    /// By component, observed at collection.
    pub max_instances: Arc<Mutex<BTreeMap<String, i64>>>,
    /// By provider, observed at collection.
    pub provider_healthy: Arc<Mutex<BTreeMap<String, i64>>>,
    _observed: Observed,
}

/// Kept so their callbacks stay registered.
#[derive(Debug)]
struct Observed {
    _max_instances: ObservableGauge<i64>,
    _provider_healthy: ObservableGauge<i64>,
    _resident: ObservableGauge<u64>,
    _cpu: ObservableCounter<u64>,
}

impl Instruments {
    pub fn new(meter: &Meter, lattice: &str, host: &str, buckets: &[f64]) -> Self {
        let base = vec![KeyValue::new("lattice", lattice.to_string()), KeyValue::new("host", host.to_string())];
        let max_instances = Arc::new(Mutex::new(BTreeMap::<String, i64>::new()));
        let provider_healthy = Arc::new(Mutex::new(BTreeMap::<String, i64>::new()));
        let observed = Observed {
            _max_instances: meter
                .i64_observable_gauge("trellis.component.max_instances")
                .with_description("The component's max_instances on this host")
                .with_callback(observe_map(&max_instances, &base, "component"))
                .build(),
            _provider_healthy: meter
                .i64_observable_gauge("trellis.provider.healthy")
                .with_description("1 when an external provider's last health check passed, 0 when it failed or went unanswered")
                .with_callback(observe_map(&provider_healthy, &base, "provider"))
                .build(),
            _resident: {
                let base = base.clone();
                meter
                    .u64_observable_gauge("trellis.process.resident_memory")
                    .with_description("Resident memory of the host process")
                    .with_unit("By")
                    .with_callback(move |o| {
                        if let Some((rss, _)) = super::process_usage() {
                            o.observe(rss, &base);
                        }
                    })
                    .build()
            },
            _cpu: {
                let base = base.clone();
                meter
                    .u64_observable_counter("trellis.process.cpu_milliseconds")
                    .with_description("CPU time (user + system) of the host process")
                    .with_callback(move |o| {
                        if let Some((_, cpu)) = super::process_usage() {
                            o.observe(cpu, &base);
                        }
                    })
                    .build()
            },
        };
        Self {
            invocations: meter
                .u64_counter("trellis.component.invocations")
                .with_description("Calls of a component's exports, ended (any outcome)")
                .build(),
            errors: meter.u64_counter("trellis.component.invocation_errors").with_description("Calls that failed, by fault kind").build(),
            duration: meter
                .f64_histogram("trellis.component.invocation_duration")
                .with_description("Time from a call's start (an instance slot held) to its end")
                .with_unit("s")
                .with_boundaries(buckets.to_vec())
                .build(),
            active: meter.i64_up_down_counter("trellis.component.active_instances").with_description("Instances running a call now").build(),
            waiting: meter
                .i64_up_down_counter("trellis.component.waiting_calls")
                .with_description("Calls waiting for a free instance slot")
                .build(),
            http: meter
                .u64_counter("trellis.http.requests")
                .with_description("HTTP requests served by a component, by response status")
                .build(),
            nats_reconnects: meter
                .u64_counter("trellis.nats.reconnects")
                .with_description("Times the host's NATS connection was re-established")
                .build(),
            watch_lag: meter
                .f64_histogram("trellis.lattice.watch_lag")
                .with_description("From a link or config change stored in JetStream KV to this host's watch applying it")
                .with_unit("s")
                .with_boundaries(buckets.to_vec())
                .build(),
            provider_restarts: meter
                .u64_counter("trellis.provider.restarts")
                .with_description("Times an external provider's process was restarted after it exited")
                .build(),
            max_instances,
            provider_healthy,
            base,
            _observed: observed,
        }
    }

    /// `lattice`, `host`, then `extra`.
    pub fn attributes<const N: usize>(&self, extra: [(&'static str, String); N]) -> Attributes {
        self.base.iter().cloned().chain(extra.into_iter().map(|(k, v)| KeyValue::new(k, v))).collect()
    }

    /// `lattice` and `host` alone.
    pub fn base(&self) -> &[KeyValue] {
        &self.base
    }
}

/// Sets (or with `None` removes) `key`'s value in a map observed at collection.
pub(super) fn set(map: &Mutex<BTreeMap<String, i64>>, key: &str, value: Option<i64>) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    match value {
        Some(v) => {
            map.insert(key.to_string(), v);
        }
        None => {
            map.remove(key);
        }
    }
}

fn observe_map(
    map: &Arc<Mutex<BTreeMap<String, i64>>>,
    base: &[KeyValue],
    label: &'static str,
) -> impl Fn(&dyn opentelemetry::metrics::AsyncInstrument<i64>) + Send + Sync + 'static {
    let map = Arc::clone(map);
    let base = base.to_vec();
    move |o| {
        let map = map.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, value) in map.iter() {
            let mut attributes = base.clone();
            attributes.push(KeyValue::new(label, key.clone()));
            o.observe(*value, &attributes);
        }
    }
}
