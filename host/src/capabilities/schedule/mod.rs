//! The schedule provider (`trellis://cron`, `wasmcloud+builtin://cron`): runs components on a
//! schedule, each tick once across the lattice.
//!
//! An actor follows the links whose source is this provider and whose interface is
//! `trellis:schedule/handler` (`wit/schedule`); each link's source config is its schedule
//! ([`spec::Schedule`]). For each, a task on the guest runtime ([`tick::run`]) waits for every
//! tick and claims it in the lattice's schedule bucket ([`claims`]); the provider may run on
//! several hosts for availability, and the claim makes exactly one of them run each tick. The
//! winner calls the component's `on-tick` (in-process when it runs here, else over NATS),
//! retries failures with backoff, and reports a tick whose every attempt failed as
//! `schedule_tick_failed`. The others follow the claim and take the tick over when its deadline
//! passes without an outcome (the host that held it died).
//!
//! Bad schedules are refused at `link.put` ([`check_link`]).

pub mod claims;
pub mod spec;
pub mod tick;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use tracing::{info, warn};
use trellis_messages::link::Link;

use crate::providers::follower::{FollowLinks, LinkFollower};
use crate::lattice::LatticeStore;
use crate::services::HostServices;

/// The interface a schedule link names.
pub const NAMESPACE: &str = "trellis";
/// See [`NAMESPACE`].
pub const PACKAGE: &str = "schedule";
/// See [`NAMESPACE`].
pub const INTERFACE: &str = "handler";

/// Whether `link` is a schedule link (source: a schedule provider, target: the component).
pub fn is_schedule_link(link: &Link) -> bool {
    link.wit_namespace == NAMESPACE && link.wit_package == PACKAGE
}

/// Why a schedule link is refused at `link.put`.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleLinkError {
    /// The link names interfaces other than [`INTERFACE`].
    #[error("a `{NAMESPACE}:{PACKAGE}` link names the interface `{INTERFACE}` only, not {interfaces:?}")]
    Interfaces {
        /// The interfaces it names.
        interfaces: Vec<String>,
    },
    /// One of its source configs could not be read.
    #[error("{source}")]
    Config {
        /// The config's name.
        config: String,
        /// What the lattice store reported (boxed: a `HostError` is large).
        #[source]
        source: Box<crate::error::HostError>,
    },
    /// Its merged source config is not a valid schedule.
    #[error("schedule link `{name}` from `{source_id}` to `{target}`: {source}")]
    Schedule {
        /// The link's name.
        name: String,
        /// The link's source (the schedule provider).
        source_id: String,
        /// The link's target (the component).
        target: String,
        /// What is wrong with the schedule (boxed: keeps this error small).
        #[source]
        source: Box<spec::SpecError>,
    },
}

/// `Ok` unless `link` is a schedule link whose source config is not a valid schedule. Configs
/// that do not exist are left to `link.put`'s own check.
///
/// # Errors
/// [`ScheduleLinkError`]: naming the link and what is wrong with its schedule.
pub async fn check_link(store: &LatticeStore, link: &Link) -> Result<(), ScheduleLinkError> {
    if !is_schedule_link(link) {
        return Ok(());
    }
    if !link.interfaces.iter().all(|i| i == INTERFACE) {
        return Err(ScheduleLinkError::Interfaces { interfaces: link.interfaces.clone() });
    }
    let mut merged = BTreeMap::new();
    for name in &link.source_config {
        if let Some(values) = store.config(name).await.map_err(|source| ScheduleLinkError::Config { config: name.clone(), source: Box::new(source) })? {
            merged.extend(values);
        }
    }
    spec::Schedule::from_config(&merged).map(|_| ()).map_err(|source| ScheduleLinkError::Schedule {
        name: link.name.clone(),
        source_id: link.source_id.clone(),
        target: link.target.clone(),
        source: Box::new(source),
    })
}

/// One schedule: (component, link name).
type Key = (String, String);

/// One schedule provider (run by a [`LinkFollower`] once its bucket is open).
pub struct Schedules {
    id: String,
    services: HostServices,
    /// The schedule bucket.
    claims: claims::Claims,
    /// Running schedules, with the config they run.
    jobs: HashMap<Key, (BTreeMap<String, String>, tokio::task::JoinHandle<()>)>,
    /// Configs already reported as bad (reported once, not on every change of the lattice).
    refused: HashSet<(Key, String)>,
}

impl std::fmt::Debug for Schedules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedules").field("id", &self.id).field("jobs", &self.jobs.keys()).finish()
    }
}

/// Opens (creates when missing) the schedule bucket; JetStream unavailable or refusing it is
/// retried every 2 s, with one warning. Hosts open the bucket only when they start a schedule
/// provider.
pub async fn open_bucket(store: LatticeStore, provider_id: String) -> claims::Claims {
    let mut warned = false;
    loop {
        match store.schedules().await {
            Ok(kv) => return claims::Claims::new(kv),
            Err(e) => {
                if !std::mem::replace(&mut warned, true) {
                    warn!(provider_id = %provider_id, "schedule provider cannot open its bucket; retrying every 2 s: {e}");
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
}

impl Schedules {
    /// A provider `id` over the open bucket; its schedules follow its links once it starts.
    pub fn new(id: String, services: HostServices, claims: claims::Claims) -> Self {
        Self { id, services, claims, jobs: HashMap::new(), refused: HashSet::new() }
    }

    fn desired(&self) -> HashMap<Key, BTreeMap<String, String>> {
        let mut out = HashMap::new();
        for (link, config) in self.services.resolver.deliveries(&self.id, (NAMESPACE, PACKAGE, INTERFACE)) {
            out.insert((link.target.clone(), link.name.clone()), config);
        }
        out
    }

    fn sync(&mut self) {
        let claims = self.claims.clone();
        let desired = self.desired();
        self.jobs.retain(|key, (config, task)| {
            let keep = desired.get(key) == Some(config);
            if !keep {
                info!(component_id = %key.0, link = %key.1, "schedule removed");
                task.abort();
            }
            keep
        });
        for (key, config) in desired {
            if self.jobs.contains_key(&key) {
                continue;
            }
            let schedule = match spec::Schedule::from_config(&config) {
                Ok(s) => s,
                Err(e) => {
                    if self.refused.insert((key.clone(), format!("{config:?}"))) {
                        warn!(provider_id = %self.id, component_id = %key.0, link = %key.1, "schedule not run: {e}");
                    }
                    continue;
                }
            };
            info!(provider_id = %self.id, component_id = %key.0, link = %key.1, schedule = %schedule.text, "schedule added");
            let job = Arc::new(tick::Job {
                services: self.services.clone(),
                claims: claims.clone(),
                provider_id: self.id.clone(),
                link_name: key.1.clone(),
                component_id: key.0.clone(),
                key: trellis_messages::schedule::record_key(&self.id, &key.1, &key.0),
                schedule,
            });
            let task = self.services.runtime.guests().spawn(tick::run(job));
            self.jobs.insert(key, (config, task));
        }
    }
}

impl FollowLinks for Schedules {
    fn reconcile(&mut self, _: &mut Context<LinkFollower<Self>>) {
        self.sync();
    }

    fn stop(&mut self) {
        // A tick cut off here keeps its claim until the deadline; another host then takes it over.
        for (_, (_, task)) in self.jobs.drain() {
            task.abort();
        }
    }
}
