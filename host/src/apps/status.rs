//! An application's status, from its plan and what the live hosts say they run: `deployed`
//! when every placement runs as planned and every link is in place, `failed` (with the reasons)
//! when a placement is impossible or a workload keeps failing to start, `reconciling` otherwise.

use std::collections::BTreeMap;

use trellis_messages::link::Link;
use wadm_types::api::{ScalerStatus, Status, StatusInfo, StatusType};

use super::liveness::LiveRecord;
use super::placement::Plan;
use super::{managing_app, SCALER};

/// The status of `app`.
pub fn compute(app: &str, plan: &Plan, alive: &BTreeMap<String, LiveRecord>, links: &[Link]) -> Status {
    let mut failed: Vec<String> = plan.problems.get(app).cloned().unwrap_or_default();
    let mut pending: Vec<String> = Vec::new();
    let mut scalers: BTreeMap<String, ScalerStatus> = BTreeMap::new();
    let mut note = |id: &str, kind: &str, info: StatusInfo| {
        let entry = scalers.entry(id.to_string()).or_insert_with(|| ScalerStatus {
            id: id.to_string(),
            kind: kind.to_string(),
            name: id.to_string(),
            info: StatusInfo::deployed(""),
        });
        if info.status_type != StatusType::Deployed {
            entry.info = info;
        }
    };
    for (host, placed) in &plan.components {
        for (id, p) in placed.iter().filter(|(_, p)| p.app == app) {
            let record = alive.get(host);
            let running = record.and_then(|r| r.inventory.components.iter().find(|c| &c.id == id));
            let kind = p.annotations.get(SCALER).cloned().unwrap_or_default();
            match (running, record.and_then(|r| r.failures.get(id))) {
                (Some(c), _) if c.max_instances == p.max_instances && c.image_ref == p.reference => note(id, &kind, StatusInfo::deployed("")),
                (_, Some(error)) => {
                    failed.push(format!("{id} on {host}: {error}"));
                    note(id, &kind, StatusInfo::failed(error));
                }
                _ => {
                    pending.push(format!("{id} on {host}"));
                    note(id, &kind, StatusInfo::reconciling(&format!("scaling on {host}")));
                }
            }
        }
    }
    for (host, placed) in &plan.providers {
        for (id, p) in placed.iter().filter(|(_, p)| p.app == app) {
            let record = alive.get(host);
            let running = record.is_some_and(|r| r.inventory.providers.iter().any(|c| &c.id == id));
            let kind = p.annotations.get(SCALER).cloned().unwrap_or_default();
            match (running, record.and_then(|r| r.failures.get(id))) {
                (true, _) => note(id, &kind, StatusInfo::deployed("")),
                (false, Some(error)) => {
                    failed.push(format!("{id} on {host}: {error}"));
                    note(id, &kind, StatusInfo::failed(error));
                }
                (false, None) => {
                    pending.push(format!("{id} on {host}"));
                    note(id, &kind, StatusInfo::reconciling(&format!("starting on {host}")));
                }
            }
        }
    }
    // Managed workloads still running where the plan has none (being removed).
    for (host, record) in alive {
        for c in &record.inventory.components {
            let planned = plan.components.get(host).is_some_and(|m| m.contains_key(&c.id));
            if managing_app(c.annotations.as_ref()) == Some(app) && !planned {
                pending.push(format!("{} leaving {host}", c.id));
            }
        }
    }
    for link in plan.links.get(app).into_iter().flatten() {
        let present = links.iter().any(|l| l == link);
        if !present {
            pending.push(format!("link {} → {} ({})", link.source_id, link.target, link.name));
        }
    }
    let info = if !failed.is_empty() {
        StatusInfo::failed(&failed.join("; "))
    } else if !pending.is_empty() {
        StatusInfo::reconciling(&format!("waiting for: {}", pending.join(", ")))
    } else {
        StatusInfo::deployed("")
    };
    Status::new(info, scalers.into_values().collect())
}
