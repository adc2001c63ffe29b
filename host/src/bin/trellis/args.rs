//! Command-line arguments. Every option can also come from a `TRELLIS_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use crate::host_args::{HostArgs, UpArgs};

/// Trellis: a lattice host for WebAssembly components on NATS.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,trellis_host=debug`); default `info`
    /// for hosts and `warn` for client commands.
    #[arg(long, global = true, env = "TRELLIS_LOG")]
    pub log: Option<String>,
    /// How log lines are written to stderr: `text` for people, `json` for log collectors (one
    /// JSON object a line, with the event's fields, such as `component_id`, as fields).
    #[arg(long, global = true, env = "TRELLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
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
    /// With `--from FILE`, every component the file names, with progress on stderr.
    Scale {
        #[command(flatten)]
        client: ClientArgs,
        /// Host id (`N…`).
        host_id: String,
        /// Component id (one NATS token, e.g. `echo`).
        #[arg(required_unless_present = "from", conflicts_with = "from")]
        component_id: Option<String>,
        /// `file://…` reference or a path (a local path is made absolute).
        #[arg(required_unless_present = "from", conflicts_with = "from")]
        component_ref: Option<String>,
        /// Concurrent invocations allowed on that host; 0 stops the component.
        #[arg(long, default_value_t = 1, conflicts_with = "from")]
        max: u32,
        /// A file with a line `ID REFERENCE [MAX]` per component: all are scaled (16 requests at
        /// a time), progress goes to stderr, and the command fails if any did not scale.
        #[arg(long, value_name = "FILE")]
        from: Option<std::path::PathBuf>,
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
    /// Sign a component with wasmCloud's claims (an account key signs; the component gets a
    /// new module key unless one is given), as `wash` does: hosts with --require-signed or
    /// --trusted-issuers check these claims.
    Sign {
        /// The component to sign.
        input: PathBuf,
        /// Where to write the signed component.
        output: PathBuf,
        /// The issuer's account seed (`SA…`).
        #[arg(long, env = "TRELLIS_ISSUER_SEED", hide_env_values = true)]
        issuer_seed: String,
        /// The component's module seed (`SM…`); a new key when absent.
        #[arg(long, env = "TRELLIS_SUBJECT_SEED", hide_env_values = true)]
        subject_seed: Option<String>,
        /// The component's name (default: the file name without `.wasm`).
        #[arg(long)]
        name: Option<String>,
        /// Valid for this long from now (`30d`, `1h`); forever when absent.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
        /// Not valid until this long from now.
        #[arg(long, value_parser = humantime::parse_duration)]
        not_before: Option<std::time::Duration>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Revision.
        #[arg(long)]
        rev: Option<i32>,
        /// Version.
        #[arg(long)]
        ver: Option<String>,
    },
    /// Print the claims of a component file or OCI reference, checked as a host checks them
    /// (signature, hash, expiry); exit 1 when they do not hold.
    Claims {
        /// A component file, or an OCI reference.
        component: String,
        /// Reach the registry over plain HTTP.
        #[arg(long)]
        insecure: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
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
    /// Scheduled invocations (the built-in `trellis://cron` provider's links).
    Schedule {
        #[command(subcommand)]
        action: ScheduleAction,
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
pub enum ScheduleAction {
    /// Every schedule: its link, when it last ran and how, when it runs next.
    List {
        #[command(flatten)]
        client: ClientArgs,
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
