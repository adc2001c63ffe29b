//! The options of the commands that run a host (`trellis host`, `trellis up`). Every option
//! can also come from a `TRELLIS_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::args::LatticeArgs;

/// Options of a host.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    #[command(flatten)]
    pub lattice: LatticeArgs,
    /// A label `key=value` (repeatable; the variable takes a comma-separated list).
    #[arg(long = "label", short = 'l', env = "TRELLIS_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// nkey server seed (`SN…`) for a stable host id; a new id each run when unset.
    #[arg(long, env = "TRELLIS_HOST_SEED", hide_env_values = true)]
    pub host_seed: Option<String>,
    /// Friendly name shown by tools.
    #[arg(long, env = "TRELLIS_FRIENDLY_NAME")]
    pub friendly_name: Option<String>,
    /// How often to publish `host_heartbeat`.
    #[arg(long, env = "TRELLIS_HEARTBEAT_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (such as `127.0.0.1:9464`); off when unset.
    #[arg(long, env = "TRELLIS_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Serve `/livez`, `/readyz` and `/metrics` at `http://ADDR` for orchestrators (as
    /// wasmCloud's host; `/readyz` answers 200 once the host has joined and replayed the
    /// lattice's links and config, 503 before and while it stops); off when unset.
    #[arg(long, env = "TRELLIS_HTTP_ADMIN")]
    pub http_admin: Option<std::net::SocketAddr>,
    /// How long the lattice journal keeps events (hosts only ever raise the stream's limit).
    #[arg(long, env = "TRELLIS_JOURNAL_MAX_AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub journal_max_age: Duration,
    /// How many bytes of events the lattice journal keeps (`256MiB`).
    #[arg(long, env = "TRELLIS_JOURNAL_MAX_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub journal_max_bytes: u64,
    /// Do not create or raise the lattice journal's stream from this host.
    #[arg(long, env = "TRELLIS_NO_JOURNAL")]
    pub no_journal: bool,
    /// How long a graceful stop may drain when the request names no timeout.
    #[arg(long, env = "TRELLIS_STOP_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub stop_timeout: Duration,
    /// Replicas of the lattice's KV buckets (links, config) when this host creates them.
    #[arg(long, env = "TRELLIS_KV_REPLICAS", default_value_t = 1)]
    pub kv_replicas: usize,
    /// How long one component invocation may run before it is stopped.
    #[arg(long, env = "TRELLIS_MAX_EXECUTION_TIME", default_value = "10m", value_parser = humantime::parse_duration)]
    pub max_execution_time: Duration,
    /// Linear memory each component instance may use (`256MiB`, `64M`, bytes).
    #[arg(long, env = "TRELLIS_MAX_COMPONENT_MEMORY", default_value = "256MiB", value_parser = parse_size)]
    pub max_component_memory: u64,
    /// Largest component file accepted (`50MiB`, bytes).
    #[arg(long, env = "TRELLIS_MAX_COMPONENT_SIZE", default_value = "50MiB", value_parser = parse_size)]
    pub max_component_size: u64,
    /// How long a call waits for a free instance slot (`max_instances`) before failing busy.
    #[arg(long, env = "TRELLIS_MAX_QUEUE_WAIT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub max_queue_wait: Duration,
    /// Calls that may wait for a free instance slot, per component; more are refused `busy`.
    #[arg(long, env = "TRELLIS_MAX_QUEUED_CALLS", default_value_t = 1000)]
    pub max_queued_calls: usize,
    /// Concurrent component instances the pooling allocator reserves; 0 allocates on demand.
    #[arg(long, env = "TRELLIS_POOL_INSTANCES", default_value_t = 1000)]
    pub pool_instances: u32,
    /// Memory of each pooled instance reset in place when it is freed, kept warm for the next
    /// call (`1MiB`, bytes; 0 returns it all to the kernel).
    #[arg(long, env = "TRELLIS_KEEP_RESIDENT", default_value = "1MiB", value_parser = parse_size)]
    pub keep_resident: u64,
    /// Guest memory without guard pages: no page-protection changes (and their cross-core
    /// interrupts) when instances are reused, but guest memory accesses are compiled without
    /// Spectre mitigations. Only for hosts that run trusted components.
    #[arg(long, env = "TRELLIS_NO_GUARD_PAGES")]
    pub no_guard_pages: bool,
    /// Threads guests run on; 0 is one per CPU.
    #[arg(long, env = "TRELLIS_GUEST_THREADS", default_value_t = 0)]
    pub guest_threads: usize,
    /// Directory of the compile cache (default: `cache` in the data directory).
    #[arg(long, env = "TRELLIS_COMPILE_CACHE")]
    pub compile_cache: Option<PathBuf>,
    /// Load components from files (`file://` references and paths) named in control
    /// messages. Off by default for `trellis host`, on for `trellis up`.
    #[arg(long, env = "TRELLIS_ALLOW_FILE_LOAD", num_args = 0..=1, default_missing_value = "true")]
    pub allow_file_load: Option<bool>,
    /// Only load component files under this directory (repeatable; implies --allow-file-load).
    #[arg(long = "file-load-dir", env = "TRELLIS_FILE_LOAD_DIRS", value_delimiter = ',')]
    pub file_load_dirs: Vec<PathBuf>,
    /// Accept `:latest` (and untagged) OCI references.
    #[arg(long, env = "TRELLIS_ALLOW_LATEST")]
    pub allow_latest: bool,
    /// Registries (`host:port`, comma-separated) reached over plain HTTP.
    #[arg(long, env = "TRELLIS_ALLOWED_INSECURE", value_delimiter = ',')]
    pub allowed_insecure: Vec<String>,
    /// The OCI registry (`host[:port]`) that --oci-user and --oci-password are for; other
    /// registries are pulled from anonymously (or with `registry.put` credentials).
    #[arg(long, env = "TRELLIS_OCI_REGISTRY", requires = "oci_user")]
    pub oci_registry: Option<String>,
    /// Username for the --oci-registry registry.
    #[arg(long, env = "TRELLIS_OCI_USER", requires_all = ["oci_password", "oci_registry"])]
    pub oci_user: Option<String>,
    /// Password for the --oci-registry registry.
    #[arg(long, env = "TRELLIS_OCI_PASSWORD", hide_env_values = true, requires = "oci_user")]
    pub oci_password: Option<String>,
    /// Run only components and external providers that carry valid signed claims (wasmCloud's
    /// embedded JWT; provider archives); unsigned ones are refused with a clear
    /// `component_scale_failed` / `provider_start_failed`.
    #[arg(long, env = "TRELLIS_REQUIRE_SIGNED")]
    pub require_signed: bool,
    /// Account public keys (`A…`, comma-separated) whose signatures this host trusts; code
    /// signed by any other issuer is refused. Empty: any valid signature.
    #[arg(long, env = "TRELLIS_TRUSTED_ISSUERS", value_delimiter = ',')]
    pub trusted_issuers: Vec<String>,
    /// Ask the policy service on this NATS subject before starting a component or provider
    /// (wasmCloud's policy request; denied when it does not answer in time).
    #[arg(long, env = "TRELLIS_POLICY_TOPIC")]
    pub policy_topic: Option<String>,
    /// Decisions published here replace the cached decision of the request they name.
    #[arg(long, env = "TRELLIS_POLICY_CHANGES_TOPIC", requires = "policy_topic")]
    pub policy_changes_topic: Option<String>,
    /// The policy service's public nkey: only replies and changes signed by it are taken.
    #[arg(long, env = "TRELLIS_POLICY_KEY", requires = "policy_topic")]
    pub policy_key: Option<String>,
    /// How long to wait for the policy service, in milliseconds.
    #[arg(long, env = "TRELLIS_POLICY_TIMEOUT_MS", default_value_t = 1000)]
    pub policy_timeout_ms: u64,
    /// Ask for secrets on this topic prefix (wasmCloud's `--secrets-topic`; backends answer on
    /// `{topic}.v1alpha1.{backend}.*`, `wasmcloud.secrets` by convention). Without it, code
    /// that names a secret does not start.
    #[arg(long, env = "TRELLIS_SECRETS_TOPIC")]
    pub secrets_topic: Option<String>,
    /// Leave declared applications to a wadm running on the lattice: do not answer wadm's API
    /// or reconcile applications on this host.
    #[arg(long, env = "TRELLIS_NO_APPS")]
    pub no_apps: bool,
    /// How long an external provider has to exit after the shutdown request before SIGTERM
    /// (SIGKILL follows 2 s later).
    #[arg(long, env = "TRELLIS_PROVIDER_SHUTDOWN_GRACE", default_value = "3s", value_parser = humantime::parse_duration)]
    pub provider_shutdown_grace: std::time::Duration,
    /// Between health checks of an external provider.
    #[arg(long, env = "TRELLIS_PROVIDER_HEALTH_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub provider_health_interval: std::time::Duration,
    /// The longest delay before an external provider that keeps exiting is restarted (the
    /// delay starts at 100 ms and doubles).
    #[arg(long, env = "TRELLIS_PROVIDER_RESTART_MAX", default_value = "30s", value_parser = humantime::parse_duration)]
    pub provider_restart_max: std::time::Duration,
    /// Run provider images pulled from OCI registries (wasmCloud's provider archives): native
    /// code from elsewhere, so off unless given.
    #[arg(long, env = "TRELLIS_ALLOW_PROVIDER_IMAGES")]
    pub allow_provider_images: bool,
    /// Run a provider image as a built-in instead of pulling it: `IMAGE=BUILTIN`, the image's
    /// repository without a tag (every tag maps), e.g.
    /// `ghcr.io/wasmcloud/keyvalue-redis=keyvalue`; or `wasmcloud` for wasmCloud's own images
    /// that have a built-in (http-server, http-client, keyvalue-nats, messaging-nats,
    /// blobstore-nats). Repeat, or separate with commas. Give every host of a lattice the same.
    #[arg(long = "builtin-image", env = "TRELLIS_BUILTIN_IMAGES", value_delimiter = ',')]
    pub builtin_images: Vec<String>,
    /// Calls this host's components may have in flight to one external provider; more wait
    /// up to --max-queue-wait, then fail busy.
    #[arg(long, env = "TRELLIS_MAX_PROVIDER_CALLS", default_value_t = 256)]
    pub max_provider_calls: usize,
    /// How long one pull of a component (from a registry or the artifact store) may take.
    #[arg(long, env = "TRELLIS_OCI_PULL_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub oci_pull_timeout: std::time::Duration,
    /// Where components pulled from registries are cached (default: `artifacts` in the data
    /// directory).
    #[arg(long, env = "TRELLIS_ARTIFACT_CACHE")]
    pub artifact_cache: Option<PathBuf>,
    /// The key-value bucket of a link whose target config names none (default: such links are
    /// refused).
    #[arg(long, env = "TRELLIS_KV_DEFAULT_BUCKET")]
    pub kv_default_bucket: Option<String>,
    /// Control messages answered at once; more get a "busy" reply.
    #[arg(long, env = "TRELLIS_MAX_CONTROL_IN_FLIGHT", default_value_t = 256)]
    pub max_control_in_flight: usize,
    /// Largest control message accepted (`1MiB`, bytes).
    #[arg(long, env = "TRELLIS_MAX_CONTROL_MESSAGE", default_value = "1MiB", value_parser = parse_size)]
    pub max_control_message: u64,
    /// Open connections per HTTP server listener; more are answered 503.
    #[arg(long, env = "TRELLIS_MAX_HTTP_CONNECTIONS", default_value_t = 10_000)]
    pub max_http_connections: usize,
    /// Time an HTTP client has to send its request headers.
    #[arg(long, env = "TRELLIS_HTTP_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,
    /// Largest HTTP request or response body (`64MiB`, bytes): 413 for a request past it.
    #[arg(long, env = "TRELLIS_MAX_HTTP_BODY", default_value = "64MiB", value_parser = parse_size)]
    pub max_http_body: u64,
    /// Time a request body may keep the server waiting, plus 1 s per `--http-body-min-rate`
    /// bytes it delivers (408 past it); also the longest a client may leave the server unable
    /// to write its response (then it is disconnected).
    #[arg(long, env = "TRELLIS_HTTP_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_body_timeout: Duration,
    /// Bytes a second a long request body must sustain (`1KiB`, bytes).
    #[arg(long, env = "TRELLIS_HTTP_BODY_MIN_RATE", default_value = "1KiB", value_parser = parse_size)]
    pub http_body_min_rate: u64,
    /// Compile every component afresh instead of using the cache.
    #[arg(long, env = "TRELLIS_NO_COMPILE_CACHE", conflicts_with = "compile_cache")]
    pub no_compile_cache: bool,
}

/// Parses `256MiB`, `1.5 GiB`, `64MB`, `4096` (bytes) into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    // `bytesize` reads `256MiB`, `1.5 GiB`, `4096`; its decimal units (`MB` = 10^6 bytes)
    // are SI, as the binary ones (`MiB`) are IEC.
    let bytes = s.trim().parse::<bytesize::ByteSize>().map(|b| b.as_u64()).map_err(|e| format!("`{s}` is not a size like 256MiB or 4096: {e}"))?;
    // bytesize saturates where a size overflows: refused, not read as "no limit".
    if bytes == u64::MAX {
        return Err(format!("`{s}` is too large"));
    }
    Ok(bytes)
}

/// Options of `trellis up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub host: HostArgs,
    /// Where a NATS server started by `up` keeps its JetStream data
    /// (default: `$XDG_DATA_HOME/trellis/nats` or `~/.local/share/trellis/nats`).
    #[arg(long, env = "TRELLIS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Run the demo: `http-hello` and `kv-counter` from this directory (`http_hello.wasm`,
    /// `kv_counter.wasm`, as `scripts/build-components` makes them) behind the HTTP server provider.
    #[arg(long, env = "TRELLIS_DEMO")]
    pub demo: Option<PathBuf>,
    /// Where the demo's HTTP server listens.
    #[arg(long, env = "TRELLIS_DEMO_ADDRESS", default_value = "127.0.0.1:8080")]
    pub demo_address: String,
}

#[cfg(test)]
mod parse_size_tests {
    use super::parse_size;

    #[test]
    fn sizes_binary_decimal_and_bare() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size(" 1KiB "), Ok(1024));
        assert_eq!(parse_size("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999GiB").unwrap_err().contains("too large"));
    }
}
