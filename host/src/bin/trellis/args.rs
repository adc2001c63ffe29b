//! Command-line arguments. Every option can also come from a `TRELLIS_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Trellis: a lattice host for WebAssembly components on NATS.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,trellis_host=debug`); default `info`
    /// for hosts and `warn` for client commands.
    #[arg(long, global = true, env = "TRELLIS_LOG")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local NATS with JetStream when none is reachable, then run a host on it.
    Up(UpArgs),
    /// Run a host joined to an existing lattice.
    Host(HostArgs),
    /// The lattice on one screen: hosts, components, providers (health), links, applications.
    Get {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the hosts of the lattice (`host.ping`).
    Hosts {
        #[command(flatten)]
        client: ClientArgs,
        /// Only hosts with this label (`key=value`).
        #[arg(long = "with-label")]
        with_label: Option<String>,
        /// Print only the host ids, one per line (for scripts).
        #[arg(long, conflicts_with = "json")]
        ids: bool,
    },
    /// Read the lattice's journal of events (kept in JetStream, so it outlives every host):
    /// each record with its cursor; a page says whether more follow and where to go on.
    Events {
        #[command(flatten)]
        client: ClientArgs,
        /// Start after this cursor (a number printed by an earlier read) or this long ago
        /// (`10m`, `2h`); from the oldest record kept when unset.
        #[arg(long)]
        since: Option<trellis_messages::journal::Since>,
        /// At most this many records (a page).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only events of this type (`component_scaled`).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Heartbeats too (left out by default).
        #[arg(long)]
        heartbeats: bool,
        /// After the page, print each new event as it is published, until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Show the calls to and from one component as they happen (function, caller or target,
    /// size, duration, outcome), on every host that runs it, until interrupted. Hosts record
    /// calls only while someone spies.
    Spy {
        #[command(flatten)]
        client: ClientArgs,
        /// The component's id.
        component_id: String,
        /// Stop after this many calls.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Show a host's inventory (`host.get`).
    Inventory {
        #[command(flatten)]
        client: ClientArgs,
        /// Host id (`N…`).
        host_id: String,
    },
    /// Set or delete a host label.
    Label {
        #[command(subcommand)]
        action: LabelAction,
    },
    /// Run a component on a host, or change its scale (`component.scale`); waits for the outcome.
    Scale {
        #[command(flatten)]
        client: ClientArgs,
        /// Host id (`N…`).
        host_id: String,
        /// Component id (one NATS token, e.g. `echo`).
        component_id: String,
        /// `file://…` reference or a path (a local path is made absolute).
        component_ref: String,
        /// Concurrent invocations allowed on that host; 0 stops the component.
        #[arg(long, default_value_t = 1)]
        max: u32,
        /// Let a different reference replace the running one.
        #[arg(long)]
        allow_update: bool,
        /// How long to wait for `component_scaled` / `component_scale_failed`.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Switch a running component to a new reference (`component.update`); waits for the outcome.
    Update {
        #[command(flatten)]
        client: ClientArgs,
        /// Host id (`N…`).
        host_id: String,
        /// Component id.
        component_id: String,
        /// The new reference.
        new_ref: String,
        /// How long to wait for the outcome.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Call a function a component exports, wherever it runs on the lattice. Arguments and
    /// results are WAVE values: `'"hi"'`, `42`, `true`, `'[1, 2]'`, `'ok("x")'`.
    Call {
        #[command(flatten)]
        client: ClientArgs,
        /// Component id.
        component_id: String,
        /// `ns:pkg/interface.function` (e.g. `trellis:echo/echo.echo`), or a top-level export.
        function: String,
        /// One WAVE value per parameter.
        args: Vec<String>,
    },
    /// Publish a component to an OCI registry the way `wash push` lays it out (config
    /// `application/vnd.wasm.config.v0+json`, one `application/wasm` layer), or to the
    /// lattice's own artifact store (`nats://NAME:VERSION`).
    Push {
        #[command(flatten)]
        client: ClientArgs,
        /// Where: `registry/repository:tag` (or `oci://…`), or `nats://NAME:VERSION` for the
        /// lattice's own artifact store.
        reference: String,
        /// The component file.
        file: PathBuf,
        /// Reach the registry over plain HTTP.
        #[arg(long)]
        insecure: bool,
        /// Replicas of the lattice's artifact store when this push creates it.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Registry username.
        #[arg(long, env = "TRELLIS_OCI_USER", requires = "password")]
        user: Option<String>,
        /// Registry password.
        #[arg(long, env = "TRELLIS_OCI_PASSWORD", hide_env_values = true, requires = "user")]
        password: Option<String>,
    },
    /// Start or stop a built-in provider (`provider.start`, `provider.stop`).
    Provider {
        #[command(subcommand)]
        action: ProviderAction,
    },
    /// Put, delete or list links (`link.put`, `link.del`, `link.get`).
    Link {
        #[command(subcommand)]
        action: LinkAction,
    },
    /// Put, read or delete a named config (`config.put`, `config.get`, `config.del`).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run by hosts between themselves and each external provider (ends the provider when the
    /// host dies); not for direct use.
    #[command(hide = true)]
    ProviderGuard {
        /// The provider executable.
        provider: PathBuf,
    },
    /// Declared applications through wadm's API: put, deploy, undeploy, list, status, get,
    /// versions, del.
    App {
        #[command(subcommand)]
        action: AppAction,
    },
    /// Stop a host gracefully (`host.stop`).
    StopHost {
        #[command(flatten)]
        client: ClientArgs,
        /// Host id (`N…`).
        host_id: String,
        /// How long the host may drain, in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderAction {
    /// Start provider `provider_id` from `reference` (e.g. `wasmcloud+builtin://http-server`).
    Start {
        #[command(flatten)]
        client: ClientArgs,
        /// Host id (`N…`).
        host_id: String,
        /// Provider id (the link source or target name).
        provider_id: String,
        /// A built-in (`wasmcloud+builtin://http-server`, `…/http-client`, `trellis://keyvalue`,
        /// `…/messaging`), or an external provider: a path to its executable or provider archive
        /// (`.par`, `.par.gz`; made absolute here), which the host must be allowed to run.
        reference: String,
        /// Named configs the provider gets (merged in order; repeatable).
        #[arg(long = "config")]
        config: Vec<String>,
    },
    /// Stop provider `provider_id`.
    Stop {
        #[command(flatten)]
        client: ClientArgs,
        /// Host id (`N…`).
        host_id: String,
        /// Provider id.
        provider_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LinkAction {
    /// Link `source` to `target` for `ns:pkg/iface[,iface…]`.
    Put {
        #[command(flatten)]
        client: ClientArgs,
        /// The caller's component id.
        source: String,
        /// The callee's component id.
        target: String,
        /// `ns:pkg/iface`, several interfaces comma-separated: `trellis:echo/echo,other`.
        interfaces: String,
        /// Link name.
        #[arg(long, default_value = "default")]
        name: String,
        /// Config names handed to the source (repeatable).
        #[arg(long = "source-config")]
        source_config: Vec<String>,
        /// Config names handed to the target (repeatable).
        #[arg(long = "target-config")]
        target_config: Vec<String>,
    },
    /// Delete `source`'s link for `ns:pkg` (succeeds when there is none).
    Del {
        #[command(flatten)]
        client: ClientArgs,
        /// The caller's component id.
        source: String,
        /// `ns:pkg`.
        package: String,
        /// Link name.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List every link of the lattice.
    Get {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppAction {
    /// Store a manifest (YAML or JSON) as a new version.
    Put {
        #[command(flatten)]
        client: ClientArgs,
        /// The manifest file.
        file: PathBuf,
    },
    /// Deploy an application: a manifest file (put first), or the name of a stored one.
    Deploy {
        #[command(flatten)]
        client: ClientArgs,
        /// A manifest file, or an application name.
        app: String,
        /// The version to deploy (default: the newest).
        #[arg(long)]
        version: Option<String>,
        /// Then follow the application's status, printing each change on stderr, until it is
        /// deployed (exit 0) or failed (exit 1).
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, requires = "wait")]
        wait_for: std::time::Duration,
    },
    /// Undeploy an application (its versions stay stored).
    Undeploy {
        #[command(flatten)]
        client: ClientArgs,
        /// Application name.
        name: String,
    },
    /// List the applications with their status.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an application's status.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Application name.
        name: String,
    },
    /// Print a stored manifest (JSON).
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// Application name.
        name: String,
        /// The version (default: the newest).
        #[arg(long)]
        version: Option<String>,
    },
    /// List an application's versions.
    Versions {
        #[command(flatten)]
        client: ClientArgs,
        /// Application name.
        name: String,
    },
    /// Delete an application (undeploying it), or one version.
    Del {
        #[command(flatten)]
        client: ClientArgs,
        /// Application name.
        name: String,
        /// Only this version.
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Create or replace config `name` with `key=value` pairs.
    Put {
        #[command(flatten)]
        client: ClientArgs,
        /// Config name.
        name: String,
        /// `key=value` pairs.
        values: Vec<String>,
    },
    /// Show config `name`.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        /// Config name.
        name: String,
    },
    /// Delete config `name` (succeeds when there is none).
    Del {
        #[command(flatten)]
        client: ClientArgs,
        /// Config name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabelAction {
    /// Set `key=value` on a host.
    Put {
        #[command(flatten)]
        client: ClientArgs,
        /// Host id (`N…`).
        host_id: String,
        /// `key=value`.
        label: String,
    },
    /// Delete `key` from a host.
    Del {
        #[command(flatten)]
        client: ClientArgs,
        /// Host id (`N…`).
        host_id: String,
        /// Label key.
        key: String,
    },
}

/// How to reach NATS.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated; `nats://user:pass@host:port` is accepted.
    #[arg(long, env = "TRELLIS_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// NATS credentials file (`.creds`: JWT and nkey seed).
    #[arg(long, env = "TRELLIS_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// NATS nkey user seed (`SU…`), for servers that list the user's public nkey.
    #[arg(long, env = "TRELLIS_NATS_NKEY", hide_env_values = true, conflicts_with = "nats_creds")]
    pub nats_nkey: Option<String>,
    /// CA certificate (PEM) to verify the NATS server; requires TLS.
    #[arg(long, env = "TRELLIS_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --nats-tls-key.
    #[arg(long, env = "TRELLIS_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS; needs --nats-tls-cert.
    #[arg(long, env = "TRELLIS_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
}

/// Which lattice, and how its control subjects are named.
#[derive(Debug, Clone, Args)]
pub struct LatticeArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Lattice name.
    #[arg(long, env = "TRELLIS_LATTICE", default_value = "default")]
    pub lattice: String,
    /// Control-interface subject prefix.
    #[arg(long, env = "TRELLIS_CTL_PREFIX", default_value = "wasmbus.ctl")]
    pub ctl_prefix: String,
}

/// Options of client commands.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub lattice: LatticeArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for a reply (broadcasts gather for this long).
    #[arg(long, env = "TRELLIS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

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
    /// Username for OCI registries.
    #[arg(long, env = "TRELLIS_OCI_USER", requires = "oci_password")]
    pub oci_user: Option<String>,
    /// Password for OCI registries.
    #[arg(long, env = "TRELLIS_OCI_PASSWORD", hide_env_values = true, requires = "oci_user")]
    pub oci_password: Option<String>,
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
    /// Compile every component afresh instead of using the cache.
    #[arg(long, env = "TRELLIS_NO_COMPILE_CACHE", conflicts_with = "compile_cache")]
    pub no_compile_cache: bool,
}

/// Parses `256MiB`, `64M`, `1G`, `4096` (bytes) into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size like 256MiB or 4096"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB or GiB)")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("`{s}` is too large"))
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
    /// `kv_counter.wasm`, as `scripts/build-actors` makes them) behind the HTTP server provider.
    #[arg(long, env = "TRELLIS_DEMO")]
    pub demo: Option<PathBuf>,
    /// Where the demo's HTTP server listens.
    #[arg(long, env = "TRELLIS_DEMO_ADDRESS", default_value = "127.0.0.1:8080")]
    pub demo_address: String,
}
