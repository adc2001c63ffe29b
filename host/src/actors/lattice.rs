//! The lattice actor: carries out link and config operations against the KV buckets, and
//! mirrors both buckets into this host's [`LatticeView`] by watching them, so a link or config
//! changed anywhere reaches running components here without a restart.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix::prelude::*;
use async_nats::jetstream::kv;
use futures::StreamExt;
use serde_json::json;
use tracing::{debug, info, warn};
use trellis_messages::event::{names, ConfigChanged, LinkSetFailed};
use trellis_messages::link::{DeleteInterfaceLinkDefinitionRequest, Link};

use crate::error::{LinkError, Result};
use crate::events::EventPublisher;
use crate::lattice::spec::ComponentSpec;
use crate::lattice::store::LinkDeletion;
use crate::lattice::{LatticeStore, LatticeView};

/// Which bucket a watched entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Links,
    Configs,
}

/// A watched KV entry (or the end of a watch).
#[derive(Debug)]
enum Watched {
    Entry(Bucket, kv::Entry),
    /// The bucket held nothing when the watch began: its (empty) history is replayed.
    Empty(Bucket),
    Ended(Bucket),
}

/// Owns the KV handles and keeps the view current.
pub struct LatticeActor {
    store: LatticeStore,
    view: LatticeView,
    events: EventPublisher,
    /// Where the watch lag is recorded.
    metrics: crate::metrics::Metrics,
    /// When this actor was made (ns since the epoch): entries stored before it are history
    /// replayed, not lag.
    since_ns: i128,
    /// Told when each bucket's history has been applied (`/readyz`).
    health: crate::admin::Health,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

impl std::fmt::Debug for LatticeActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatticeActor").finish_non_exhaustive()
    }
}

impl LatticeActor {
    /// An actor over opened buckets; watching starts when it starts.
    pub fn new(
        store: LatticeStore,
        view: LatticeView,
        events: EventPublisher,
        metrics: crate::metrics::Metrics,
        health: crate::admin::Health,
    ) -> Self {
        Self { store, view, events, metrics, since_ns: now_ns(), health }
    }

    /// `bucket`'s history has been applied to the view.
    fn replayed(&self, bucket: Bucket) {
        match bucket {
            Bucket::Links => self.health.links_replayed(),
            Bucket::Configs => self.health.configs_replayed(),
        }
    }

    fn watch(&self, bucket: Bucket, ctx: &mut Context<Self>) {
        let store = match bucket {
            Bucket::Links => self.store.links.clone(),
            Bucket::Configs => self.store.configs.clone(),
        };
        let stream = async move {
            // An empty bucket's watch delivers nothing, so nothing would say it was replayed.
            let empty = store.status().await.is_ok_and(|s| s.values() == 0);
            let first = futures::stream::iter(empty.then_some(Watched::Empty(bucket)));
            match store.watch_with_history(">").await {
                Ok(watch) => first
                    .chain(watch.filter_map(move |e| async move {
                        match e {
                            Ok(entry) => Some(Watched::Entry(bucket, entry)),
                            Err(e) => {
                                warn!(error = %e, ?bucket, "KV watch error");
                                None
                            }
                        }
                    }))
                    .chain(futures::stream::once(async move { Watched::Ended(bucket) }))
                    .boxed(),
                Err(e) => {
                    warn!(error = %e, ?bucket, "cannot watch KV bucket; retrying");
                    futures::stream::once(async move { Watched::Ended(bucket) }).boxed()
                }
            }
        };
        ctx.add_stream(futures::stream::once(stream).flatten());
    }

    fn apply(&self, bucket: Bucket, entry: &kv::Entry) {
        let stored = entry.created.unix_timestamp_nanos();
        if stored >= self.since_ns {
            // Clocks of the server and this host may differ slightly: a negative lag is none.
            let lag = u64::try_from(now_ns() - stored).unwrap_or(0);
            self.metrics.watch_applied(std::time::Duration::from_nanos(lag));
        }
        let deleted = matches!(entry.operation, kv::Operation::Delete | kv::Operation::Purge);
        match bucket {
            Bucket::Links if entry.key.starts_with(crate::trust::stored::KEY_PREFIX) => {
                use crate::trust::stored::{StoredClaims, KEY_PREFIX, MAX_RECORDS};
                let subject = &entry.key[KEY_PREFIX.len()..];
                if deleted {
                    self.view.set_claims(subject, None, MAX_RECORDS);
                    return;
                }
                match StoredClaims::read(&entry.key, &entry.value) {
                    Some(claims) => self.view.set_claims(subject, Some(claims.to_map()), MAX_RECORDS),
                    None => debug!(key = %entry.key, "ignoring stored claims that cannot be read or name another subject"),
                }
            }
            Bucket::Links => {
                let Some(source) = entry.key.strip_prefix("COMPONENT_") else { return };
                if deleted {
                    self.view.set_spec(source, ComponentSpec::default());
                    return;
                }
                match ComponentSpec::decode(&entry.value) {
                    Ok(decoded) => {
                        debug!(source, links = decoded.spec.links.len(), url = %decoded.spec.url, "component spec changed");
                        self.view.set_spec(source, decoded.spec);
                    }
                    Err(e) => warn!(key = %entry.key, error = %e, "ignoring a component spec that cannot be read"),
                }
            }
            Bucket::Configs => {
                if deleted {
                    self.view.set_config(&entry.key, None);
                    return;
                }
                match serde_json::from_slice::<BTreeMap<String, String>>(&entry.value) {
                    Ok(values) => {
                        debug!(config = %entry.key, "config changed");
                        self.view.set_config(&entry.key, Some(values));
                    }
                    Err(e) => warn!(key = %entry.key, error = %e, "ignoring config that is not a JSON object of strings"),
                }
            }
        }
    }
}

impl Actor for LatticeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.watch(Bucket::Links, ctx);
        self.watch(Bucket::Configs, ctx);
    }
}

impl StreamHandler<Watched> for LatticeActor {
    fn handle(&mut self, item: Watched, ctx: &mut Self::Context) {
        match item {
            Watched::Entry(bucket, entry) => {
                self.apply(bucket, &entry);
                // The last entry of the history (and every one after it) is 0 from the latest.
                if entry.delta == 0 {
                    self.replayed(bucket);
                }
            }
            Watched::Empty(bucket) => self.replayed(bucket),
            Watched::Ended(bucket) => {
                // The watch ended (e.g. the server restarted): watch again; the history replay
                // brings the view up to date.
                info!(?bucket, "KV watch ended; watching again");
                ctx.run_later(Duration::from_secs(1), move |act, ctx| act.watch(bucket, ctx));
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // One watch stream ended; `Ended` already scheduled a new one. Keep the actor running.
    }
}

/// `link.put`.
#[derive(Debug, Message)]
#[rtype(result = "Result<String>")]
pub struct PutLink(pub Link);

impl Handler<PutLink> for LatticeActor {
    type Result = ResponseFuture<Result<String>>;
    fn handle(&mut self, PutLink(link): PutLink, _: &mut Self::Context) -> Self::Result {
        let (store, events) = (self.store.clone(), self.events.clone());
        Box::pin(async move {
            let checked = match crate::capabilities::schedule::check_link(&store, &link).await {
                Ok(()) => store.put_link(&link).await,
                Err(e) => Err(LinkError::Capability(Box::new(e)).into()),
            };
            match checked {
                Ok(()) => {
                    info!(source = %link.source_id, target = %link.target, name = %link.name, "link put");
                    events.publish_logged(names::LINKDEF_SET, &link).await;
                    Ok(format!("link `{}` from `{}` to `{}` set", link.name, link.source_id, link.target))
                }
                Err(e) => {
                    events.publish_logged(names::LINKDEF_SET_FAILED, LinkSetFailed { link, error: e.to_string() }).await;
                    Err(e)
                }
            }
        })
    }
}

/// `link.del`.
#[derive(Debug, Message)]
#[rtype(result = "Result<String>")]
pub struct DeleteLink(pub DeleteInterfaceLinkDefinitionRequest);

impl Handler<DeleteLink> for LatticeActor {
    type Result = ResponseFuture<Result<String>>;
    fn handle(&mut self, DeleteLink(req): DeleteLink, _: &mut Self::Context) -> Self::Result {
        let (store, events) = (self.store.clone(), self.events.clone());
        Box::pin(async move {
            // As a wasmCloud 1.9 host does: no spec, no event; else the event, with the
            // link's target and interfaces when there was one.
            let data = match store.delete_link(&req).await? {
                LinkDeletion::NoSpec => return Ok("successfully deleted link (spec doesn't exist)".to_string()),
                LinkDeletion::Deleted(Some(link)) => json!({
                    "source_id": req.source_id, "target": link.target, "name": req.name,
                    "wit_namespace": req.wit_namespace, "wit_package": req.wit_package, "interfaces": link.interfaces,
                }),
                LinkDeletion::Deleted(None) => json!({
                    "source_id": req.source_id, "name": req.name,
                    "wit_namespace": req.wit_namespace, "wit_package": req.wit_package,
                }),
            };
            events.publish_logged(names::LINKDEF_DELETED, data).await;
            Ok("successfully deleted link".to_string())
        })
    }
}

/// `link.get`: every link, read from KV (not the mirror) so the answer is current.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Link>>")]
pub struct GetLinks;

impl Handler<GetLinks> for LatticeActor {
    type Result = ResponseFuture<Result<Vec<Link>>>;
    fn handle(&mut self, _: GetLinks, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { store.all_links().await })
    }
}

/// `config.put.{name}`.
#[derive(Debug, Message)]
#[rtype(result = "Result<String>")]
pub struct PutConfig {
    /// Config name.
    pub name: String,
    /// Values.
    pub values: HashMap<String, String>,
}

impl Handler<PutConfig> for LatticeActor {
    type Result = ResponseFuture<Result<String>>;
    fn handle(&mut self, msg: PutConfig, _: &mut Self::Context) -> Self::Result {
        let (store, events) = (self.store.clone(), self.events.clone());
        Box::pin(async move {
            let values: BTreeMap<String, String> = msg.values.into_iter().collect();
            store.put_config(&msg.name, &values).await?;
            events.publish_logged(names::CONFIG_SET, ConfigChanged { config_name: msg.name.clone() }).await;
            Ok(format!("config `{}` set", msg.name))
        })
    }
}

/// `config.get.{name}`: the values, `None` when it does not exist.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<BTreeMap<String, String>>>")]
pub struct GetConfig(pub String);

impl Handler<GetConfig> for LatticeActor {
    type Result = ResponseFuture<Result<Option<BTreeMap<String, String>>>>;
    fn handle(&mut self, GetConfig(name): GetConfig, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { store.config(&name).await })
    }
}

/// `config.del.{name}`.
#[derive(Debug, Message)]
#[rtype(result = "Result<String>")]
pub struct DeleteConfig(pub String);

impl Handler<DeleteConfig> for LatticeActor {
    type Result = ResponseFuture<Result<String>>;
    fn handle(&mut self, DeleteConfig(name): DeleteConfig, _: &mut Self::Context) -> Self::Result {
        let (store, events) = (self.store.clone(), self.events.clone());
        Box::pin(async move {
            store.delete_config(&name).await?;
            events.publish_logged(names::CONFIG_DELETED, ConfigChanged { config_name: name.clone() }).await;
            Ok(format!("config `{name}` deleted"))
        })
    }
}


/// Stops the watches and the actor (host shutdown), so nothing NATS-owned outlives the runtime.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopLattice;

impl Handler<StopLattice> for LatticeActor {
    type Result = ();
    fn handle(&mut self, _: StopLattice, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
