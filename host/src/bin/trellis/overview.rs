//! `trellis get`: the lattice on one screen — hosts, components (where, at what scale),
//! providers (health), links and applications — the command an operator runs first.

use anyhow::Result;
use serde::Serialize;
use trellis_messages::host::{Host, HostInventory};
use trellis_messages::link::Link;
use wadm_types::api::{GetResult, ListModelsResponse, ModelSummary};

use crate::args::ClientArgs;

/// What `--json` prints.
#[derive(Serialize)]
struct Overview {
    lattice: String,
    hosts: Vec<HostView>,
    links: Vec<Link>,
    /// `None` when no host answered wadm's API (every host runs with `--no-apps` and no wadm).
    applications: Option<Vec<ModelSummary>>,
}

#[derive(Serialize)]
struct HostView {
    host: Host,
    /// `None` when the host did not answer `host.get` in time.
    inventory: Option<HostInventory>,
}

pub async fn run(args: ClientArgs) -> Result<()> {
    let client = crate::client::connect(&args).await?;
    let mut hosts = client.ping_hosts().await?;
    hosts.sort_by(|a, b| a.id.cmp(&b.id));
    // Every host asked at once: one slow host costs one timeout, not one each.
    let inventories = futures::future::join_all(hosts.iter().map(|h| client.inventory(&h.id))).await;
    let hosts: Vec<HostView> = hosts.into_iter().zip(inventories).map(|(host, inv)| HostView { host, inventory: inv.ok() }).collect();
    let mut links = client.links().await?;
    links.sort_by(|a, b| (&a.source_id, &a.name, &a.target).cmp(&(&b.source_id, &b.name, &b.target)));
    let applications = crate::app::request::<ListModelsResponse>(&args, "get", Vec::new(), None)
        .await
        .ok()
        .filter(|r| r.result != GetResult::Error)
        .map(|r| r.models);
    let overview = Overview { lattice: args.lattice.lattice.clone(), hosts, links, applications };
    if args.json {
        return crate::client::print_json(&overview);
    }
    print!("{}", render(&overview));
    Ok(())
}

fn render(o: &Overview) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let inventories: Vec<&HostInventory> = o.hosts.iter().filter_map(|h| h.inventory.as_ref()).collect();
    let components: usize = inventories.iter().map(|i| i.components.len() + i.components_omitted).sum();
    let providers: usize = inventories.iter().map(|i| i.providers.len()).sum();
    let _ = writeln!(
        out,
        "Lattice {}: {} host(s), {components} component instance group(s), {providers} provider(s), {} link(s), {}",
        o.lattice,
        o.hosts.len(),
        o.links.len(),
        o.applications.as_ref().map_or("applications not answered".to_string(), |a| format!("{} application(s)", a.len()))
    );
    let _ = writeln!(out, "\nHOSTS");
    for h in &o.hosts {
        let labels: Vec<String> = h.host.labels.iter().filter(|(k, _)| !k.starts_with("hostcore.")).map(|(k, v)| format!("{k}={v}")).collect();
        let counts = h.inventory.as_ref().map_or("no inventory".into(), |i| format!("{} components, {} providers", i.components.len() + i.components_omitted, i.providers.len()));
        let _ = writeln!(out, "  {}  {}  up {}  {}  {}", h.host.id, h.host.friendly_name, h.host.uptime_human.clone().unwrap_or_default(), counts, labels.join(","));
    }
    let _ = writeln!(out, "\nCOMPONENTS");
    let mut any = false;
    for h in &o.hosts {
        let Some(inv) = &h.inventory else { continue };
        for c in &inv.components {
            any = true;
            let _ = writeln!(out, "  {:<24} max {:<4} on {}  {}", c.id, c.max_instances, h.host.friendly_name, c.image_ref);
        }
        if inv.components_omitted > 0 {
            let _ = writeln!(out, "  … and {} more on {} (its inventory is cut to fit one NATS message)", inv.components_omitted, h.host.friendly_name);
        }
    }
    if !any {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out, "\nPROVIDERS");
    let mut any = false;
    for h in &o.hosts {
        let Some(inv) = &h.inventory else { continue };
        for p in &inv.providers {
            any = true;
            let health = match &p.status {
                None => "built in".to_string(),
                Some(s) => match (s.healthy, &s.message) {
                    (Some(true), _) => format!("{}, healthy", s.state),
                    (Some(false), Some(m)) => format!("{}, unhealthy: {m}", s.state),
                    (Some(false), None) => format!("{}, unhealthy", s.state),
                    (None, _) => format!("{}, not checked yet", s.state),
                },
            };
            let _ = writeln!(out, "  {:<24} on {}  {}  {}", p.id, h.host.friendly_name, p.image_ref.clone().unwrap_or_default(), health);
        }
    }
    if !any {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out, "\nLINKS");
    for l in &o.links {
        let _ = writeln!(out, "  {} -> {}  {}:{}/{{{}}}  ({})", l.source_id, l.target, l.wit_namespace, l.wit_package, l.interfaces.join(","), l.name);
    }
    if o.links.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out, "\nAPPLICATIONS");
    match &o.applications {
        None => {
            let _ = writeln!(out, "  (no host answered wadm's API)");
        }
        Some(apps) if apps.is_empty() => {
            let _ = writeln!(out, "  (none)");
        }
        Some(apps) => {
            for m in apps {
                let status = format!("{:?}", m.detailed_status.info.status_type).to_lowercase();
                let _ = writeln!(out, "  {:<24} {:<12} deployed {:<12} {status}", m.name, m.version, m.deployed_version.clone().unwrap_or_else(|| "-".into()));
            }
        }
    }
    out
}
