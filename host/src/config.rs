//! Host configuration, validated once before anything starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use trellis_messages::host::check_user_label_key;

use trellis_messages::{DEFAULT_CTL_PREFIX, DEFAULT_LATTICE};

use crate::error::{ConfigError, Result};
use crate::wasm::WasmConfig;

/// How to reach NATS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated; user and password may be embedded
    /// (`nats://user:pass@host:4222`).
    pub url: String,
    /// A `.creds` file (JWT + nkey seed).
    pub creds_file: Option<PathBuf>,
    /// An nkey user seed (`SU…`) to authenticate with (servers that list the user's public
    /// nkey).
    pub nkey_seed: Option<String>,
    /// A CA certificate (PEM) to verify the server with; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            creds_file: None,
            nkey_seed: None,
            tls_ca: None,
            tls_client: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Bounds on the work a host accepts from the network, so that a flood gets a refusal, never
/// memory growth. Flags set these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Control messages answered at once; more get a `success: false` "busy" reply.
    pub max_control_in_flight: usize,
    /// Largest control message accepted, in bytes; a larger one is refused before parsing.
    pub max_control_message: usize,
    /// Open connections per HTTP server listener; more are answered 503 and closed.
    pub max_http_connections: usize,
    /// Time a client has to send a request's headers.
    pub http_header_timeout: Duration,
    /// Largest HTTP request or response body, in bytes (413 for a request past it; a response
    /// past it is cut off).
    pub max_http_body: u64,
    /// Time a request body may keep the server waiting for it, plus 1 s for every
    /// `http_body_min_rate` bytes it delivers; past it the request fails (408). Also the longest
    /// an HTTP client may leave the server unable to write its response (then it is cut off).
    pub http_body_timeout: Duration,
    /// Bytes a second a long request body must sustain (see `http_body_timeout`).
    pub http_body_min_rate: u64,
}

impl Limits {
    /// The bounds on request bodies from the network.
    #[must_use]
    pub fn body_bounds(&self) -> crate::wasm::transport::http_body::BodyBounds {
        crate::wasm::transport::http_body::BodyBounds { max: self.max_http_body, timeout: self.http_body_timeout, min_rate: self.http_body_min_rate }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_control_in_flight: 256,
            max_control_message: 1 << 20,
            max_http_connections: 10_000,
            http_header_timeout: Duration::from_secs(30),
            max_http_body: 64 << 20,
            http_body_timeout: Duration::from_secs(10),
            http_body_min_rate: 1024,
        }
    }
}

/// How external provider processes are supervised. Flags set these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSettings {
    /// How long a provider has to exit after the shutdown request before SIGTERM (SIGKILL
    /// follows 2 s later).
    pub shutdown_grace: Duration,
    /// Between health checks once a provider answers.
    pub health_interval: Duration,
    /// The first restart delay of a provider that exited on its own; it doubles on each exit.
    pub restart_min: Duration,
    /// The longest restart delay.
    pub restart_max: Duration,
    /// A process that ran this long before exiting restarts after the first delay again.
    pub reset_after: Duration,
    /// Calls this host's components may have in flight to one provider; more wait up to the
    /// queue wait, then fail busy.
    pub max_calls: usize,
    /// The `trellis` executable, which guards each provider (`trellis provider-guard`): a
    /// provider then ends when its host dies, even by SIGKILL. `None` starts providers directly.
    pub guard: Option<std::path::PathBuf>,
    /// Run provider images pulled from OCI registries (native code from elsewhere).
    pub allow_images: bool,
    /// Provider images run as built-ins instead of being pulled (`--builtin-image`).
    pub builtin_images: crate::permission::kind::BuiltinImages,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(3),
            health_interval: Duration::from_secs(30),
            restart_min: Duration::from_millis(100),
            restart_max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
            max_calls: 256,
            guard: None,
            allow_images: false,
            builtin_images: crate::permission::kind::BuiltinImages::default(),
        }
    }
}

/// Everything a host needs to start.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// How to reach NATS.
    pub nats: NatsConfig,
    /// The lattice to join.
    pub lattice: String,
    /// Control-interface subject prefix (`wasmbus.ctl`).
    pub ctl_prefix: String,
    /// User labels (no `hostcore.*`).
    pub labels: BTreeMap<String, String>,
    /// Friendly name; derived from the host id when unset.
    pub friendly_name: Option<String>,
    /// An nkey server seed (`SN…`) for a stable host id; a new key each run when unset.
    pub host_seed: Option<String>,
    /// How often `host_heartbeat` is published.
    pub heartbeat_interval: Duration,
    /// How long a graceful stop may drain when the request names no timeout.
    pub stop_timeout: Duration,
    /// Guest limits, compile cache, guest threads.
    pub wasm: WasmConfig,
    /// Replicas of the lattice's KV buckets when this host creates them (3 on a 3-node cluster);
    /// also of key-value buckets created for guests.
    pub kv_replicas: usize,
    /// The bucket of a key-value link whose target config names none; `None` refuses such
    /// links.
    pub kv_default_bucket: Option<String>,
    /// Bounds on control messages and HTTP traffic.
    pub limits: Limits,
    /// Run declared applications: answer wadm's API and reconcile this host's share (off to
    /// leave applications to a wadm running on the lattice).
    pub apps: bool,
    /// External provider supervision.
    pub providers: ProviderSettings,
    /// Serve Prometheus metrics at `http://{addr}/metrics` (off when `None`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Serve `/livez`, `/readyz` and `/metrics` at `http://{addr}` (`--http-admin`, as
    /// wasmCloud's host; off when `None`); metrics are recorded when it is set.
    pub http_admin: Option<std::net::SocketAddr>,
    /// Record the same metrics into this OpenTelemetry meter too (the binary's OTLP export);
    /// the host records metrics when this or `metrics_addr` is set.
    pub metrics_meter: Option<opentelemetry::metrics::Meter>,
    /// Keep the lattice's events in the journal stream (off when `None`).
    pub journal: Option<crate::journal::JournalConfig>,
    /// Which code may start: signed claims, trusted issuers.
    pub trust: crate::trust::TrustPolicy,
    /// The policy service asked before code starts (none when `None`).
    /// The secrets topic prefix (`--secrets-topic`); `None`: no secrets backend.
    pub secrets_topic: Option<String>,
    pub policy: Option<crate::trust::policy::PolicyConfig>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            nats: NatsConfig::default(),
            lattice: DEFAULT_LATTICE.into(),
            ctl_prefix: DEFAULT_CTL_PREFIX.into(),
            labels: BTreeMap::new(),
            friendly_name: None,
            host_seed: None,
            heartbeat_interval: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            wasm: WasmConfig::default(),
            kv_replicas: 1,
            kv_default_bucket: None,
            limits: Limits::default(),
            apps: true,
            providers: ProviderSettings::default(),
            metrics_addr: None,
            http_admin: None,
            metrics_meter: None,
            journal: Some(crate::journal::JournalConfig::default()),
            trust: crate::trust::TrustPolicy::default(),
            policy: None,
            secrets_topic: None,
        }
    }
}

impl HostConfig {
    /// Checks every value, so that a bad one is reported before the host joins the lattice.
    ///
    /// # Errors
    /// [`HostError::Config`](crate::error::HostError::Config) ([`ConfigError`]) naming the first bad value.
    pub fn validate(&self) -> Result<()> {
        check_token("lattice", &self.lattice)?;
        for part in self.ctl_prefix.split('.') {
            check_token("control prefix", part).map_err(|_| ConfigError::Prefix(self.ctl_prefix.clone()))?;
        }
        for (i, (key, value)) in self.labels.iter().enumerate() {
            trellis_messages::host::check_user_label(key, value, i + automatic_labels().len(), false).map_err(ConfigError::Label)?;
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::Heartbeat.into());
        }
        if self.nats.creds_file.is_some() && self.nats.nkey_seed.is_some() {
            return Err(ConfigError::TwoCredentials.into());
        }
        if self.nats.url.trim().is_empty() {
            return Err(ConfigError::NoNatsUrl.into());
        }
        if !(1..=5).contains(&self.kv_replicas) {
            return Err(ConfigError::Replicas(self.kv_replicas).into());
        }
        self.trust.validate().map_err(ConfigError::from)?;
        if let Some(p) = &self.policy {
            if p.topic.is_empty() || p.topic.split('.').any(|t| t.is_empty() || t.contains([' ', '*', '>'])) {
                return Err(ConfigError::PolicyTopic(p.topic.clone()).into());
            }
            if p.timeout.is_zero() {
                return Err(ConfigError::PolicyTimeout.into());
            }
        }
        if let Some(topic) = &self.secrets_topic {
            if topic.is_empty() || topic.chars().any(char::is_control) || topic.split('.').any(|t| t.is_empty() || t.contains([' ', '*', '>'])) {
                return Err(ConfigError::SecretsTopic(topic.clone()).into());
            }
        }
        if let Some(bucket) = &self.kv_default_bucket {
            crate::permission::check_bucket(bucket).map_err(|e| ConfigError::DefaultBucket(Box::new(e)))?;
        }
        let l = &self.limits;
        if l.max_control_in_flight == 0 || l.max_http_connections == 0 || l.max_http_body == 0 || l.http_body_min_rate == 0 || l.max_control_message < 1024 {
            return Err(ConfigError::Limits.into());
        }
        let w = &self.wasm;
        if w.max_execution_time < Duration::from_millis(10) {
            return Err(ConfigError::ExecutionTime.into());
        }
        if w.max_component_memory < 64 << 10 {
            return Err(ConfigError::ComponentMemory.into());
        }
        if w.max_component_size == 0 {
            return Err(ConfigError::ComponentSize.into());
        }
        let p = &self.providers;
        if p.health_interval < Duration::from_millis(100) || p.restart_min.is_zero() || p.restart_max < p.restart_min || p.max_calls == 0 {
            return Err(ConfigError::Providers.into());
        }
        Ok(())
    }
}

/// A value that becomes one NATS subject token: non-empty, no `.`, `*`, `>` or whitespace.
fn check_token(what: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.chars().any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace()) {
        return Err(ConfigError::Token { what, value: value.to_string() }.into());
    }
    Ok(())
}

/// Parses `key=value` (for `--label`).
///
/// # Errors
/// [`HostError::Config`](crate::error::HostError::Config) when there is no `=` or the key is reserved.
pub fn parse_label(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| ConfigError::LabelForm(s.to_string()))?;
    check_user_label_key(k).map_err(ConfigError::Label)?;
    Ok((k.to_string(), v.to_string()))
}

/// The prefix of environment variables that are labels, as wasmCloud 1.x reads them
/// (`WASMCLOUD_LABEL_zone=east` is the label `zone=east`).
pub const ENV_LABEL_PREFIX: &str = "WASMCLOUD_LABEL_";

/// The labels among environment variables `vars` (name without [`ENV_LABEL_PREFIX`] → value).
///
/// # Errors
/// A label key a user may not set (`hostcore.*`, empty, too long).
pub fn env_labels(vars: impl IntoIterator<Item = (String, String)>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, value) in vars {
        let Some(key) = name.strip_prefix(ENV_LABEL_PREFIX) else { continue };
        check_user_label_key(key).map_err(ConfigError::Label)?;
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// The labels the host sets on itself.
pub fn automatic_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("hostcore.arch".to_string(), std::env::consts::ARCH.to_string()),
        ("hostcore.os".to_string(), std::env::consts::OS.to_string()),
        ("hostcore.osfamily".to_string(), std::env::consts::FAMILY.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HostError;

    #[test]
    fn default_is_valid() {
        HostConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = HostConfig { lattice: "a.b".into(), ..HostConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("lattice `a.b`"));
        c.lattice = "ok".into();
        c.labels.insert("hostcore.os".into(), "x".into());
        assert!(c.validate().unwrap_err().to_string().contains("reserved"));
        c.labels.clear();
        c.ctl_prefix = "a..b".into();
        assert!(matches!(c.validate(), Err(HostError::Config(ConfigError::Prefix(p))) if p == "a..b"));
        c.ctl_prefix = "acme.ctl".into();
        c.validate().unwrap();
        c.kv_replicas = 7;
        let err = c.validate().expect_err("seven replicas");
        assert!(matches!(err, HostError::Config(ConfigError::Replicas(7))));
        assert_eq!(err.to_string(), "invalid configuration: KV replicas must be 1 to 5, not 7", "the message is as before");
        c.kv_replicas = 1;
        for bad in ["", "a..b", "wasmcloud.*", "a.>", "with space", "tab\tin", ".lead", "trail."] {
            c.secrets_topic = Some(bad.into());
            assert!(matches!(c.validate(), Err(HostError::Config(ConfigError::SecretsTopic(t))) if t == bad), "secrets topic {bad:?}");
        }
        c.secrets_topic = Some("wasmcloud.secrets".into());
        c.validate().unwrap();
    }

    #[test]
    fn parses_labels() {
        assert_eq!(parse_label("zone=eu=1").unwrap(), ("zone".into(), "eu=1".into()));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("hostcore.arch=x").is_err());
        let vars = [("WASMCLOUD_LABEL_zone", "eu"), ("PATH", "/bin"), ("WASMCLOUD_LABEL_Team", "core")];
        let labels = env_labels(vars.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string()))).unwrap();
        assert_eq!(labels, BTreeMap::from([("zone".into(), "eu".into()), ("Team".into(), "core".into())]));
        assert!(env_labels([("WASMCLOUD_LABEL_hostcore.os".to_string(), "x".to_string())]).is_err());
    }
}
