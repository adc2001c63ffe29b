//! The `trellis` command: run a host, or drive a lattice's hosts.

mod app;
mod args;
mod client;
mod demo;
mod host_args;
mod otlp;
mod overview;
mod reference;
mod scale;
mod schedule;
mod sign;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tracing_subscriber::EnvFilter;
use trellis_host::config::{env_labels, parse_label, ProviderSettings};
use trellis_host::wasm::sources::load::FileLoad;
use trellis_host::wasm::sources::oci::OciConfig;
use trellis_host::wasm::WasmConfig;
use trellis_host::{local_nats, HostConfig, Limits, NatsConfig, StopReason};

use crate::args::{Cli, Command, HostArgs, NatsArgs, UpArgs};

fn main() -> ExitCode {
    // One rustls crypto provider for every TLS connection of the process (NATS, registries):
    // two are compiled in, and rustls will not choose between them by itself.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Up(_) | Command::Host(_)) { "info" } else { "warn" };
    let filter = match &cli.log {
        Some(filter) => match EnvFilter::try_new(filter) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("trellis: --log `{filter}` is not a valid filter: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => EnvFilter::new(default_level),
    };
    // Traces and metrics over OTLP for the commands that run a host, when the environment
    // names a collector.
    let runs_host = matches!(cli.command, Command::Up(_) | Command::Host(_));
    let export = match runs_host {
        true => match otlp::Export::start() {
            Ok(export) => export,
            Err(e) => {
                eprintln!("trellis: cannot export over OTLP: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        false => otlp::Export::default(),
    };
    let tracer = export.tracer();
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        let traces = tracer.map(|t| {
            tracing_opentelemetry::layer()
                .with_tracer(t)
                .with_filter(tracing_subscriber::filter::Targets::new().with_target(trellis_host::telemetry::TARGET, tracing::Level::DEBUG))
        });
        let lines = match cli.log_format {
            args::LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed(),
            args::LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(filter).boxed(),
        };
        tracing_subscriber::registry()
            .with(lines)
            .with(traces)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trellis: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::ProviderGuard { provider } = &cli.command {
        return ExitCode::from(runtime.block_on(trellis_host::providers::external::guard::run(provider)));
    }
    let outcome = runtime.block_on(run(cli.command, export.meter()));
    drop(runtime);
    export.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trellis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `meter`: where the host records its metrics for OTLP export, when it is exported.
async fn run(command: Command, meter: Option<opentelemetry::metrics::Meter>) -> Result<()> {
    match command {
        Command::Up(args) => up(args, meter).await,
        Command::Host(args) => run_host(HostConfig { metrics_meter: meter, ..host_config(&args, false)? }).await,
        Command::App { action } => app::run(action).await,
        Command::Get { client } => overview::run(client).await,
        Command::Schedule { action: args::ScheduleAction::List { client } } => schedule::list(client).await,
        Command::Sign { input, output, issuer_seed, subject_seed, name, expires, not_before, tags, rev, ver } => {
            let options = trellis_host::trust::sign::SignOptions {
                name: name.unwrap_or_default(),
                subject: None,
                expires_in: expires,
                not_before_in: not_before,
                tags,
                rev,
                ver,
                call_alias: None,
            };
            sign::sign(&input, &output, &issuer_seed, subject_seed.as_deref(), options)
        }
        Command::Claims { component, insecure, json } => sign::claims(&component, insecure, json).await,
        other => client::run(other).await,
    }
}

fn nats_config(args: &NatsArgs) -> NatsConfig {
    NatsConfig {
        url: args.nats_url.clone(),
        creds_file: args.nats_creds.clone(),
        nkey_seed: args.nats_nkey.clone(),
        tls_ca: args.nats_tls_ca.clone(),
        tls_client: args.nats_tls_cert.clone().zip(args.nats_tls_key.clone()),
        ..NatsConfig::default()
    }
}

/// The host's configuration; `files_by_default` says whether file loads are allowed when the
/// flags say nothing (`trellis up` yes, `trellis host` no).
fn host_config(args: &HostArgs, files_by_default: bool) -> Result<HostConfig> {
    let mut dirs = Vec::new();
    for dir in &args.file_load_dirs {
        let abs = std::path::absolute(dir).with_context(|| format!("--file-load-dir `{}`", dir.display()))?;
        dirs.push(abs);
    }
    let allowed = args.allow_file_load.unwrap_or(files_by_default || !dirs.is_empty());
    // `WASMCLOUD_LABEL_*` variables first; a label given with --label (or TRELLIS_LABELS) wins.
    let mut labels = env_labels(std::env::vars())?;
    for label in args.labels.iter().filter(|l| !l.is_empty()) {
        let (key, value) = parse_label(label)?;
        labels.insert(key, value);
    }
    Ok(HostConfig {
        nats: nats_config(&args.lattice.nats),
        lattice: args.lattice.lattice.clone(),
        ctl_prefix: args.lattice.ctl_prefix.clone(),
        labels,
        friendly_name: args.friendly_name.clone(),
        host_seed: args.host_seed.clone(),
        heartbeat_interval: args.heartbeat_interval,
        metrics_addr: args.metrics_addr,
        http_admin: args.http_admin,
        metrics_meter: None,
        journal: (!args.no_journal)
            .then_some(trellis_host::journal::JournalConfig { max_age: args.journal_max_age, max_bytes: args.journal_max_bytes }),
        stop_timeout: args.stop_timeout,
        kv_replicas: args.kv_replicas,
        kv_default_bucket: args.kv_default_bucket.clone(),
        trust: trellis_host::trust::TrustPolicy {
            require_signed: args.require_signed,
            trusted_issuers: args.trusted_issuers.iter().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect(),
        },
        secrets_topic: args.secrets_topic.clone(),
        policy: args.policy_topic.clone().map(|topic| trellis_host::trust::policy::PolicyConfig {
            topic,
            changes_topic: args.policy_changes_topic.clone(),
            timeout: std::time::Duration::from_millis(args.policy_timeout_ms),
            key: args.policy_key.clone(),
        }),
        limits: Limits {
            max_control_in_flight: args.max_control_in_flight,
            max_control_message: usize::try_from(args.max_control_message).unwrap_or(usize::MAX),
            max_http_connections: args.max_http_connections,
            http_header_timeout: args.http_header_timeout,
            max_http_body: args.max_http_body,
            http_body_timeout: args.http_body_timeout,
            http_body_min_rate: args.http_body_min_rate,
        },
        wasm: WasmConfig {
            file_load: FileLoad { allowed, dirs },
            oci: OciConfig {
                allow_latest: args.allow_latest,
                insecure: args.allowed_insecure.clone(),
                credentials: match (&args.oci_registry, &args.oci_user, &args.oci_password) {
                    (Some(registry), Some(user), Some(password)) => Some(trellis_host::wasm::sources::oci::OciCredentials {
                        registry: registry.clone(),
                        user: user.clone(),
                        password: password.clone(),
                    }),
                    _ => None,
                },
                cache_dir: Some(args.artifact_cache.clone().unwrap_or_else(|| default_data_dir().join("artifacts"))),
                timeout: args.oci_pull_timeout,
            },
            max_execution_time: args.max_execution_time,
            max_component_memory: args.max_component_memory,
            max_component_size: args.max_component_size,
            max_queue_wait: args.max_queue_wait,
            max_queued_calls: args.max_queued_calls,
            pool_instances: args.pool_instances,
            keep_resident: args.keep_resident,
            guard_pages: !args.no_guard_pages,
            guest_threads: args.guest_threads,
            cache_dir: if args.no_compile_cache {
                None
            } else {
                Some(args.compile_cache.clone().unwrap_or_else(|| default_data_dir().join("cache")))
            },
        },
        apps: !args.no_apps,
        providers: ProviderSettings {
            shutdown_grace: args.provider_shutdown_grace,
            health_interval: args.provider_health_interval,
            restart_max: args.provider_restart_max,
            max_calls: args.max_provider_calls,
            guard: std::env::current_exe().ok(),
            allow_images: args.allow_provider_images,
            builtin_images: trellis_host::permission::kind::BuiltinImages::parse(&args.builtin_images)?,
            ..ProviderSettings::default()
        },
    })
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from(".trellis"));
    base.join("trellis")
}

async fn up(args: UpArgs, meter: Option<opentelemetry::metrics::Meter>) -> Result<()> {
    let mut config = HostConfig { metrics_meter: meter, ..host_config(&args.host, true)? };
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    if config.wasm.cache_dir.is_some() && args.host.compile_cache.is_none() {
        config.wasm.cache_dir = Some(data_dir.join("cache"));
    }
    let store = data_dir.join("nats");
    let url = config.nats.url.clone();
    let local = tokio::task::spawn_blocking(move || local_nats::ensure(&url, &store)).await??;
    match &local {
        Some(server) => println!(
            "Started a local NATS server with JetStream at {} (data in {}); it stops with this host.",
            server.url(),
            server.store_dir().display()
        ),
        None => println!("Using the NATS server already running at {}.", trellis_host::nats::redact(&config.nats.url)),
    }
    let demo = match args.demo {
        Some(dir) => Some(demo::Demo::new(&dir, args.demo_address, &config)?),
        None => None,
    };
    let result = run_host_with(config, demo).await;
    drop(local);
    result
}

async fn run_host(config: HostConfig) -> Result<()> {
    run_host_with(config, None).await
}

async fn run_host_with(config: HostConfig, demo: Option<demo::Demo>) -> Result<()> {
    let stop_timeout = config.stop_timeout;
    let mut host = trellis_host::start(config).await.context("host did not start")?;
    let info = host.info().clone();
    println!(
        "Trellis host {} ({}) joined lattice `{}` at {}.\nTry `trellis hosts --lattice {}` in another terminal; Ctrl-C stops the host.",
        info.id, info.friendly_name, info.lattice, info.nats_url, info.lattice
    );
    if let Some(addr) = info.metrics_addr {
        println!("Prometheus metrics at http://{addr}/metrics.");
    }
    if let Some(addr) = info.http_admin {
        println!("Health at http://{addr}/livez and http://{addr}/readyz.");
    }
    // Listening before the demo is set up: a signal that arrives meanwhile (a restarted demo
    // serves from the stored links at once) is kept for the select below, not fatal.
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    if let Some(demo) = demo {
        // The host runs on; a demo that cannot be set up says why.
        if let Err(e) = demo.run(&info.id).await {
            eprintln!("trellis: the demo could not be set up: {e:#}");
        }
    }
    let reason = tokio::select! {
        reason = host.wait() => reason?,
        _ = sigint.recv() => { host.stop(Some(stop_timeout)); host.wait().await? }
        _ = sigterm.recv() => { host.stop(Some(stop_timeout)); host.wait().await? }
    };
    match reason {
        StopReason::ControlLost => anyhow::bail!("host stopped: its NATS connection closed"),
        StopReason::ControlInterface | StopReason::Requested => {
            println!("Trellis host {} stopped.", info.id);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn host_args(argv: &[&str]) -> HostArgs {
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Host(args)) => args,
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    #[test]
    fn guard_pages_stay_on_unless_the_flag_or_variable_turns_them_off() {
        let on = host_config(&host_args(&["trellis", "host"]), false).expect("config");
        assert!(on.wasm.guard_pages);
        let off = host_config(&host_args(&["trellis", "host", "--no-guard-pages"]), false).expect("config");
        assert!(!off.wasm.guard_pages);
    }
}
