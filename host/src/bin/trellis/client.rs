//! Client commands: drive the hosts of a lattice through the control interface.

use std::time::Duration;

use anyhow::{Context, Result};
use trellis_host::config::parse_label;
use trellis_messages::Client;

use crate::args::{ClientArgs, Command, LabelAction};

async fn connect(args: &ClientArgs) -> Result<Client> {
    let nats = &args.lattice.nats;
    let mut opts = match &nats.nats_creds {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path.clone())
            .await
            .with_context(|| format!("cannot read NATS credentials file {}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(ca) = &nats.nats_tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&nats.nats_tls_cert, &nats.nats_tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let client = opts
        .connection_timeout(Duration::from_secs(5))
        .connect(nats.nats_url.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", trellis_host::nats::redact(&nats.nats_url)))?;
    Ok(Client::new(client, &args.lattice.ctl_prefix, &args.lattice.lattice)
        .with_timeout(args.timeout)
        .with_gather(args.timeout))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs a client command.
pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Hosts(args) => {
            let client = connect(&args).await?;
            let mut hosts = client.ping_hosts().await?;
            hosts.sort_by(|a, b| a.id.cmp(&b.id));
            if args.json {
                return print_json(&hosts);
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
        Command::Up(_) | Command::Host(_) => anyhow::bail!("host commands are run by main, not the client"),
    }
}
