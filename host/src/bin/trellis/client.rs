//! Client commands: drive the hosts of a lattice through the control interface.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use trellis_host::config::parse_label;
use trellis_messages::component::{ScaleComponentCommand, UpdateComponentCommand};
use trellis_messages::event::{names, ComponentScaled, LatticeEvent as _};
use trellis_messages::Client;

use trellis_host::providers::ProviderKind;

use crate::args::{ClientArgs, Command, ConfigAction, LabelAction, LinkAction, ProviderAction};

pub(crate) async fn connect(args: &ClientArgs) -> Result<Client> {
    // The host's own connect: credentials (in the URL, a .creds file or an nkey) and TLS alike.
    let mut config = crate::nats_config(&args.lattice.nats);
    config.connect_timeout = Duration::from_secs(5);
    let client = trellis_host::nats::connect(&config, "trellis-cli", None).await?;
    Ok(Client::new(client, &args.lattice.ctl_prefix, &args.lattice.lattice)
        .with_timeout(args.timeout)
        .with_gather(args.timeout))
}

/// One journal record: a JSON line, or `cursor  time  type  summary`.
fn print_record(record: &trellis_messages::journal::Record, json: bool) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(record)?)?;
    } else {
        let data = &record.event["data"];
        let about = ["component_id", "provider_id", "source_id", "config_name", "host_id", "name"]
            .iter()
            .filter_map(|k| data.get(*k).and_then(|v| v.as_str()).map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ");
        writeln!(out, "{:>8}  {}  {:<24}  {about}", record.cursor, record.time, record.kind)?;
    }
    // Line by line, so a reader of `--follow` sees each event when it happens.
    out.flush()?;
    Ok(())
}

pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs a client command.
pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Hosts { client: args, with_label, ids } => {
            let client = connect(&args).await?;
            let mut hosts = client.ping_hosts().await?;
            hosts.sort_by(|a, b| a.id.cmp(&b.id));
            if let Some(label) = with_label {
                let (k, v) = label.split_once('=').with_context(|| format!("`{label}` must be written key=value"))?;
                hosts.retain(|h| h.labels.get(k).map(String::as_str) == Some(v));
            }
            if args.json {
                return print_json(&hosts);
            }
            if ids {
                for h in hosts {
                    println!("{}", h.id);
                }
                return Ok(());
            }
            if hosts.is_empty() {
                println!("No host answered on lattice `{}`.", args.lattice.lattice);
            }
            for h in hosts {
                let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{}  {}  up {}  {}", h.id, h.friendly_name, h.uptime_human.unwrap_or_default(), labels.join(","));
            }
            Ok(())
        }
        Command::Events { client: args, since, limit, kind, heartbeats, follow } => {
            let client = connect(&args).await?;
            let journal = trellis_messages::journal::Journal::new(client.nats().clone(), &args.lattice.lattice);
            let filter = trellis_messages::journal::Filter { kind, heartbeats };
            let since = since.unwrap_or(trellis_messages::journal::Since::Start);
            let page = journal.page(since, limit, &filter).await?;
            if args.json && !follow {
                return print_json(&page);
            }
            for record in &page.records {
                print_record(record, args.json)?;
            }
            if !follow {
                if page.has_more {
                    println!("(more: trellis events --since {})", page.next);
                }
                return Ok(());
            }
            // Follow from where the page ended: nothing twice, nothing skipped.
            let mut records = std::pin::pin!(journal.follow(trellis_messages::journal::Since::After(page.next), filter).await?);
            while let Some(record) = records.next().await {
                print_record(&record?, args.json)?;
            }
            Ok(())
        }
        Command::Spy { client: args, component_id, count } => {
            let client = connect(&args).await?;
            let mut calls = std::pin::pin!(client.spy(&component_id).await?);
            if !args.json {
                eprintln!("spying on `{component_id}` (interrupt to stop)");
            }
            let mut seen = 0;
            while count.is_none_or(|n| seen < n) {
                let Some(call) = calls.next().await else { break };
                seen += 1;
                if args.json {
                    println!("{}", serde_json::to_string(&call)?);
                    continue;
                }
                let arrow = match call.direction {
                    trellis_messages::spy::Direction::In => format!("{} → {}", call.peer, call.component_id),
                    trellis_messages::spy::Direction::Out => format!("{} → {}", call.component_id, call.peer),
                };
                let size = call.bytes.map(|b| format!("  {b} B")).unwrap_or_default();
                println!("{}  {arrow}  {}  {} µs  {}{size}  (host {})", call.at, call.function, call.duration_us, call.outcome, call.host_id);
            }
            Ok(())
        }
        Command::Inventory { client: args, host_id } => {
            let inv = connect(&args).await?.inventory(&host_id).await?;
            if args.json {
                return print_json(&inv);
            }
            println!("host {} ({}) version {} up {}", inv.host_id, inv.friendly_name, inv.version, inv.uptime_human);
            for (k, v) in &inv.labels {
                println!("  label {k}={v}");
            }
            for c in &inv.components {
                println!("  component {} from {} (max {})", c.id, c.image_ref, c.max_instances);
            }
            for p in &inv.providers {
                println!("  provider {} from {}", p.id, p.image_ref.as_deref().unwrap_or("?"));
            }
            Ok(())
        }
        Command::Label { action: LabelAction::Put { client: args, host_id, label } } => {
            let (k, v) = parse_label(&label)?;
            println!("{}", connect(&args).await?.put_label(&host_id, &k, &v).await?);
            Ok(())
        }
        Command::Label { action: LabelAction::Del { client: args, host_id, key } } => {
            println!("{}", connect(&args).await?.delete_label(&host_id, &key).await?);
            Ok(())
        }
        Command::StopHost { client: args, host_id, timeout_ms } => {
            println!("{}", connect(&args).await?.stop_host(&host_id, timeout_ms).await?);
            Ok(())
        }
        Command::Scale { client: args, host_id, from: Some(file), allow_update, wait, .. } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let entries = crate::scale::parse(&text).with_context(|| format!("{}", file.display()))?;
            let client = connect(&args).await?;
            crate::scale::run(&client, &host_id, entries, allow_update, wait, args.json).await
        }
        Command::Scale { client: args, host_id, component_id, component_ref, max, allow_update, wait, from: None } => {
            let (Some(component_id), Some(component_ref)) = (component_id, component_ref) else {
                anyhow::bail!("name a component and its reference, or --from a file of them");
            };
            let client = connect(&args).await?;
            let command = ScaleComponentCommand {
                component_ref: crate::reference::absolute(&component_ref),
                component_id: component_id.clone(),
                max_instances: max,
                host_id: host_id.clone(),
                allow_update,
                ..ScaleComponentCommand::default()
            };
            let outcome = watch_scale(&client, &component_id, wait).await?;
            let ack = client.scale_component(&host_id, &command).await?;
            if ack.contains("nothing to stop") {
                println!("{ack}");
                return Ok(());
            }
            report_scale(outcome, args.json).await
        }
        Command::Update { client: args, host_id, component_id, new_ref, wait } => {
            let client = connect(&args).await?;
            let command = UpdateComponentCommand {
                component_id: component_id.clone(),
                host_id: host_id.clone(),
                new_component_ref: crate::reference::absolute(&new_ref),
                annotations: None,
            };
            let outcome = watch_scale(&client, &component_id, wait).await?;
            let ack = client.update_component(&host_id, &command).await?;
            if ack.contains("already runs") {
                println!("{ack}");
                return Ok(());
            }
            report_scale(outcome, args.json).await
        }
        Command::Push { client: args, reference, file, insecure, replicas, user, password } => {
            if reference.starts_with(trellis_host::wasm::sources::artifacts::SCHEME) {
                let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let client = connect(&args).await?;
                let digest = trellis_host::wasm::sources::artifacts::push(client.nats(), &args.lattice.lattice, replicas, &reference, &bytes)
                    .await
                    .map_err(anyhow::Error::msg)?;
                println!("pushed {reference} to lattice `{}` ({digest})", args.lattice.lattice);
                Ok(())
            } else {
                push(&reference, &file, insecure, user.zip(password)).await
            }
        }
        Command::Call { client: args, component_id, function, args: call_args } => {
            let reply = connect(&args).await?.call(&component_id, &function, call_args).await?;
            if args.json {
                return print_json(&reply);
            }
            match (reply.results, reply.error) {
                (Some(results), _) => {
                    for r in results {
                        println!("{r}");
                    }
                    Ok(())
                }
                (None, Some(error)) => anyhow::bail!("{error}"),
                (None, None) => anyhow::bail!("the host answered neither results nor an error"),
            }
        }
        Command::Provider { action: ProviderAction::Start { client: args, host_id, provider_id, reference, config } } => {
            let client = connect(&args).await?;
            let watch = watch_provider(&client, &provider_id, args.timeout.max(Duration::from_secs(5))).await?;
            let command = trellis_messages::provider::StartProviderCommand {
                provider_id: provider_id.clone(),
                provider_ref: if ProviderKind::is_builtin(&reference) { reference } else { crate::reference::absolute(&reference) },
                host_id: host_id.clone(),
                config,
                ..Default::default()
            };
            let ack = client.start_provider(&host_id, &command).await?;
            if ack.contains("already runs") {
                println!("{ack}");
                return Ok(());
            }
            let event = watch.await??;
            if let Some(error) = event.json().get("error").and_then(|e| e.as_str()) {
                anyhow::bail!("{error}");
            }
            println!("provider {provider_id} started on host {host_id}");
            Ok(())
        }
        Command::Provider { action: ProviderAction::Stop { client: args, host_id, provider_id } } => {
            println!("{}", connect(&args).await?.stop_provider(&host_id, &provider_id).await?);
            Ok(())
        }
        Command::Link { action: LinkAction::Put { client: args, source, target, interfaces, name, source_config, target_config } } => {
            let (package, ifaces) = interfaces
                .split_once('/')
                .with_context(|| format!("`{interfaces}` must be written ns:pkg/iface[,iface…]"))?;
            let (ns, pkg) = package.split_once(':').with_context(|| format!("`{package}` must be written ns:pkg"))?;
            let link = trellis_messages::link::Link {
                source_id: source,
                target,
                name,
                wit_namespace: ns.into(),
                wit_package: pkg.into(),
                interfaces: ifaces.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
                source_config,
                target_config,
            };
            println!("{}", connect(&args).await?.put_link(&link).await?);
            Ok(())
        }
        Command::Link { action: LinkAction::Del { client: args, source, package, name } } => {
            let (ns, pkg) = package.split_once(':').with_context(|| format!("`{package}` must be written ns:pkg"))?;
            println!("{}", connect(&args).await?.delete_link(&source, &name, ns, pkg).await?);
            Ok(())
        }
        Command::Link { action: LinkAction::Get { client: args } } => {
            let links = connect(&args).await?.links().await?;
            if args.json {
                return print_json(&links);
            }
            for l in links {
                println!(
                    "{} -> {}  {}:{}/{{{}}}  name={}",
                    l.source_id,
                    l.target,
                    l.wit_namespace,
                    l.wit_package,
                    l.interfaces.join(","),
                    l.name
                );
            }
            Ok(())
        }
        Command::Config { action: ConfigAction::Put { client: args, name, values } } => {
            let values = values
                .iter()
                .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect::<Option<std::collections::HashMap<_, _>>>()
                .context("config values must be written key=value")?;
            println!("{}", connect(&args).await?.put_config(&name, &values).await?);
            Ok(())
        }
        Command::Config { action: ConfigAction::Get { client: args, name } } => {
            let values: std::collections::BTreeMap<_, _> = connect(&args).await?.config(&name).await?.into_iter().collect();
            if args.json {
                return print_json(&values);
            }
            for (k, v) in values {
                println!("{k}={v}");
            }
            Ok(())
        }
        Command::Config { action: ConfigAction::Del { client: args, name } } => {
            println!("{}", connect(&args).await?.delete_config(&name).await?);
            Ok(())
        }
        Command::Up(_)
        | Command::Host(_)
        | Command::App { .. }
        | Command::Get { .. }
        | Command::Schedule { .. }
        | Command::Sign { .. }
        | Command::Claims { .. }
        | Command::ProviderGuard { .. } => {
            anyhow::bail!("host, app, get, schedule, sign and claims commands are run by main, not this client")
        }
    }
}

pub(crate) type ScaleOutcome = tokio::task::JoinHandle<Result<trellis_messages::event::CloudEvent>>;

/// Subscribes to this component's scale events before the request goes out, so none is missed.
pub(crate) async fn watch_scale(client: &Client, component_id: &str, wait: std::time::Duration) -> Result<ScaleOutcome> {
    watch_event(client, &[names::COMPONENT_SCALED, names::COMPONENT_SCALE_FAILED], "component_id", component_id, wait).await
}

/// The next event named one of `names` whose data has `key` = `id`, within `wait`.
async fn watch_event(client: &Client, names: &'static [&'static str], key: &'static str, id: &str, wait: Duration) -> Result<ScaleOutcome> {
    let nats = client.nats().clone();
    let mut sub = nats.subscribe(client.subjects().events_wildcard()).await?;
    nats.flush().await?;
    let id = id.to_string();
    Ok(tokio::spawn(async move {
        let find = async {
            while let Some(msg) = sub.next().await {
                let Ok(event) = serde_json::from_slice::<trellis_messages::event::CloudEvent>(&msg.payload) else { continue };
                let wanted = event.name().is_some_and(|n| names.contains(&n));
                if wanted && event.json().get(key).and_then(|v| v.as_str()) == Some(id.as_str()) {
                    return Ok(event);
                }
            }
            anyhow::bail!("the event subscription ended")
        };
        tokio::time::timeout(wait, find)
            .await
            .map_err(|_| anyhow::anyhow!("no {} for `{id}` within {wait:?}", names.join(" or ")))?
    }))
}

pub(crate) async fn report_scale(outcome: ScaleOutcome, json: bool) -> Result<()> {
    let event = outcome.await??;
    if json {
        return print_json(&event);
    }
    let data: ComponentScaled = serde_json::from_value(event.json().clone())?;
    if let Some(error) = data.error {
        anyhow::bail!("{error}");
    }
    if data.max_instances == 0 {
        println!("component {} stopped on host {}", data.component_id, data.host_id);
    } else {
        println!(
            "component {} runs {} on host {} (max {} instances)",
            data.component_id, data.image_ref, data.host_id, data.max_instances
        );
    }
    Ok(())
}

/// The next `provider_started` / `provider_start_failed` of `provider_id`.
async fn watch_provider(client: &Client, provider_id: &str, wait: Duration) -> Result<ScaleOutcome> {
    watch_event(client, &[names::PROVIDER_STARTED, names::PROVIDER_START_FAILED], "provider_id", provider_id, wait).await
}

/// `trellis push` to a registry, in `wash push`'s layout.
async fn push(reference: &str, file: &std::path::Path, insecure: bool, credentials: Option<(String, String)>) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let manifest = trellis_host::wasm::sources::oci::push(reference, bytes, insecure, credentials)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    println!("pushed {reference} ({manifest})");
    Ok(())
}
