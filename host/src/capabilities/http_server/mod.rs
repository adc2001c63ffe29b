//! The HTTP server provider: an actor that follows the links whose source is this provider
//! (`wasi:http/incoming-handler`) and serves the linked components over HTTP/1.1.
//!
//! Each link's source config gives `address` (default `127.0.0.1:8000`) and optionally `path`:
//! links without `path` own their address; links with `path` share an address and are routed
//! by the longest matching path prefix. Requests for a component running on this host go to it
//! in-process; otherwise they are forwarded over NATS to whichever host runs it (the body is
//! buffered, up to the NATS max payload). Each listener serves at most `--max-http-connections`
//! connections (more get 503), gives a client `--http-header-timeout` to send its headers, and
//! counts bodies as they stream: a request past `--max-http-body` gets 413 (at once when its
//! `content-length` says so), a response past it is cut off. When the provider stops, open
//! connections finish the request in flight and close. Listening failures (address in use, bad address) are published as
//! `linkdef_set_failed` with the reason, once per link and reason. A client that leaves the
//! server unable to write for `--http-body-timeout` is disconnected (`write_clock`).

mod over_wrpc;
mod write_clock;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};
use trellis_messages::event::{names, LinkSetFailed};
use trellis_messages::link::Link;

use crate::providers::follower::{FollowLinks, LinkFollower};
use crate::services::HostServices;
use http_body_util::BodyExt;

use crate::wasm::transport::http::{forward, limit_body, serve_local, text, BodyError, ResponseBody};
use over_wrpc::OverWrpc;

/// Address used when a link's config names none.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8000";

/// A route on one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    prefix: Option<String>,
    target: String,
    /// The link's name (a request to a component only a wasmCloud host runs carries it).
    link_name: String,
}

type Routes = Arc<RwLock<Vec<Route>>>;

struct Listener {
    routes: Routes,
    stop: Option<oneshot::Sender<()>>,
}

/// One HTTP server provider (run by a [`LinkFollower`]).
pub struct HttpServer {
    id: String,
    services: HostServices,
    listeners: HashMap<SocketAddr, Listener>,
    /// Failures already reported, so a link is not reported again on every change.
    reported: HashSet<(String, String)>,
    /// A retry of failed binds is scheduled.
    retrying: bool,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer").field("id", &self.id).field("listeners", &self.listeners.keys()).finish()
    }
}

impl HttpServer {
    /// A provider `id` with no listeners yet; they follow its links once it starts.
    pub fn new(id: String, services: HostServices) -> Self {
        Self { id, services, listeners: HashMap::new(), reported: HashSet::new(), retrying: false }
    }

    /// Routes wanted by the current links, by address.
    fn desired(&mut self) -> BTreeMap<SocketAddr, Vec<Route>> {
        let mut out: BTreeMap<SocketAddr, Vec<Route>> = BTreeMap::new();
        for (link, config) in self.services.resolver.deliveries(&self.id, ("wasi", "http", "incoming-handler")) {
            let address = config.get("address").map_or(DEFAULT_ADDRESS, String::as_str);
            match address.parse::<SocketAddr>() {
                Ok(addr) => out.entry(addr).or_default().push(Route { prefix: config.get("path").cloned(), target: link.target.clone(), link_name: link.name.clone() }),
                Err(e) => self.report(&link, format!("HTTP server `{}`: address `{address}` is not valid: {e}", self.id)),
            }
        }
        out
    }

    fn report(&mut self, link: &Link, error: String) {
        if self.reported.insert((format!("{}->{}", link.source_id, link.target), error.clone())) {
            warn!("{error}");
            let events = self.services.events.clone();
            let data = LinkSetFailed { link: link.clone(), error };
            actix::spawn(async move { events.publish_logged(names::LINKDEF_SET_FAILED, data).await });
        }
    }

    /// One pass; `false` when some listener could not bind.
    fn reconcile_once(&mut self) -> bool {
        let mut all_bound = true;
        let desired = self.desired();
        let gone: Vec<SocketAddr> = self.listeners.keys().filter(|a| !desired.contains_key(a)).copied().collect();
        for addr in gone {
            if let Some(mut l) = self.listeners.remove(&addr) {
                info!(provider = %self.id, %addr, "HTTP listener stopped (no link uses it)");
                if let Some(stop) = l.stop.take() {
                    let _ = stop.send(());
                }
            }
        }
        for (addr, routes) in desired {
            if let Some(l) = self.listeners.get(&addr) {
                *l.routes.write().unwrap_or_else(std::sync::PoisonError::into_inner) = routes;
                continue;
            }
            match std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
                Ok(std_listener) => {
                    let routes: Routes = Arc::new(RwLock::new(routes));
                    let (stop_tx, stop_rx) = oneshot::channel();
                    let services = self.services.clone();
                    let r = routes.clone();
                    let id = self.id.clone();
                    self.services.runtime.guests().spawn(async move {
                        match tokio::net::TcpListener::from_std(std_listener) {
                            Ok(listener) => accept_loop(id, listener, r, services, stop_rx).await,
                            Err(e) => warn!(%addr, error = %e, "cannot use the HTTP listener"),
                        }
                    });
                    info!(provider = %self.id, %addr, "HTTP listener started");
                    self.listeners.insert(addr, Listener { routes, stop: Some(stop_tx) });
                }
                Err(e) => {
                    all_bound = false;
                    let links: Vec<Link> = self.services.view.links_from(&self.id);
                    for link in links.iter().filter(|l| routes.iter().any(|r| r.target == l.target)) {
                        self.report(link, format!("HTTP server `{}` cannot listen on {addr}: {e}", self.id));
                    }
                }
            }
        }
        all_bound
    }
}

/// How long open connections may finish their requests after the provider stops.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn accept_loop(
    provider: String,
    listener: tokio::net::TcpListener,
    routes: Routes,
    services: HostServices,
    mut stop: oneshot::Receiver<()>,
) {
    let limits = services.limits.clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_http_connections));
    // Tells every open connection to finish the request it serves and close.
    let closing = tokio_util::sync::CancellationToken::new();
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        // A response leaves in more than one write (headers, body chunks, the last chunk):
        // with Nagle's algorithm a later write waits for the client's delayed ACK, ~40 ms.
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            warn!(%provider, %peer, limit = limits.max_http_connections, "HTTP connection refused: too many open connections");
            let _ = stream.try_write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            continue;
        };
        let (routes, services, provider, closing) = (routes.clone(), services.clone(), provider.clone(), closing.clone());
        let (header_timeout, write_timeout) = (limits.http_header_timeout, limits.http_body_timeout);
        let source: Arc<str> = Arc::from(provider.as_str());
        connections.spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (routes, services, source) = (routes.clone(), services.clone(), source.clone());
                async move { Ok::<_, std::convert::Infallible>(route(req, source, routes, services).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
            let stream = write_clock::WriteClock::new(stream, write_timeout);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = closing.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await {
                        Ok(r) => r,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                debug!(%provider, %peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    // Stopped: no new connections; open ones finish their request in flight and close.
    drop(listener);
    closing.cancel();
    connections.close();
    if tokio::time::timeout(CLOSE_GRACE + std::time::Duration::from_secs(1), connections.wait()).await.is_err() {
        warn!(%provider, "HTTP connections still open after the provider stopped");
    }
}

fn content_length(req: &hyper::Request<hyper::body::Incoming>) -> Option<u64> {
    req.headers().get(hyper::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

async fn route(req: hyper::Request<hyper::body::Incoming>, provider: Arc<str>, routes: Routes, services: HostServices) -> hyper::Response<ResponseBody> {
    let limit = services.limits.max_http_body;
    if content_length(&req).is_some_and(|n| n > limit) {
        return text(413, format!("the request body is larger than this server's limit of {limit} bytes"));
    }
    let span = tracing::debug_span!(target: crate::telemetry::TARGET, "http", method = %req.method(), path = %req.uri().path());
    crate::telemetry::parent_from_http(&span, req.headers());
    let bounds = services.limits.body_bounds();
    let response = tracing::Instrument::instrument(dispatch(req.map(|b| bounds.apply(b)), &provider, &routes, &services), span).await;
    response.map(|b| limit_body(b, limit).boxed_unsync())
}

async fn dispatch<B>(req: hyper::Request<B>, provider: &str, routes: &Routes, services: &HostServices) -> hyper::Response<ResponseBody>
where
    B: hyper::body::Body<Data = bytes::Bytes, Error = BodyError> + Send + Sync + 'static,
{
    let path = req.uri().path().to_string();
    let target = {
        let routes = routes.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let by_prefix = routes
            .iter()
            .filter_map(|r| r.prefix.as_ref().map(|p| (p, r)))
            .filter(|(p, _)| path_matches(&path, p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, r)| (r.target.clone(), r.link_name.clone()));
        by_prefix.or_else(|| routes.iter().find(|r| r.prefix.is_none()).map(|r| (r.target.clone(), r.link_name.clone())))
    };
    let Some((target, link_name)) = target else {
        return text(404, format!("no component serves `{path}` here"));
    };
    match services.local.get(&target) {
        Some(local) => serve_local(services.runtime.clone(), &target, local, req).await,
        None => {
            let config = services.runtime.config();
            let timeout = config.max_execution_time + config.max_queue_wait + std::time::Duration::from_secs(1);
            let over_wrpc = OverWrpc { wrpc: &services.wrpc, source: provider, link_name: &link_name, id: &target, timeout };
            forward(&services.calls, services.subjects.invocation(&target), &target, timeout, req, &over_wrpc).await
        }
    }
}

/// `/api` matches `/api`, `/api/`, `/api/x`, not `/apix`.
fn path_matches(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

impl FollowLinks for HttpServer {
    /// Brings listeners and routes in line with the links; a listener that cannot bind is
    /// retried every second (the address may be freed, e.g. by a previous owner stopping).
    fn reconcile(&mut self, ctx: &mut Context<LinkFollower<Self>>) {
        if !self.reconcile_once() && !self.retrying {
            self.retrying = true;
            ctx.run_later(std::time::Duration::from_secs(1), |act, ctx| {
                act.provider().retrying = false;
                act.provider().reconcile(ctx);
            });
        }
    }

    fn stop(&mut self) {
        for (_, mut l) in self.listeners.drain() {
            if let Some(stop) = l.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn prefixes() {
        assert!(path_matches("/api", "/api"));
        assert!(path_matches("/api/x", "/api/"));
        assert!(!path_matches("/apix", "/api"));
        assert!(path_matches("/anything", "/"));
    }
}
