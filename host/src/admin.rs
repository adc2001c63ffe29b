//! The operator's HTTP endpoints, on `--http-admin` and `--metrics-addr`: `/livez` (the process
//! answers), `/readyz` (the host has joined the lattice, its subscriptions are in place on the
//! server and it has replayed the lattice's links and config; not while it stops) and
//! `/metrics` (Prometheus's text format). HTTP/1.1, at most 16 connections, GET only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use tracing::debug;

use crate::metrics::Metrics;

/// Connections the endpoints hold at once; probes and scrapers are few.
const MAX_CONNECTIONS: usize = 16;

/// What `/readyz` answers from: set by the host as it starts and stops.
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<Flags>);

#[derive(Debug, Default)]
struct Flags {
    joined: AtomicBool,
    links_replayed: AtomicBool,
    configs_replayed: AtomicBool,
    stopping: AtomicBool,
}

impl Health {
    /// The host has joined: subscribed, its subscriptions confirmed by the server, announced.
    pub fn joined(&self) {
        self.0.joined.store(true, Ordering::Release);
    }

    /// The links bucket's history has been applied to the host's view.
    pub fn links_replayed(&self) {
        self.0.links_replayed.store(true, Ordering::Release);
    }

    /// The configs bucket's history has been applied to the host's view.
    pub fn configs_replayed(&self) {
        self.0.configs_replayed.store(true, Ordering::Release);
    }

    /// The host has begun to stop.
    pub fn stopping(&self) {
        self.0.stopping.store(true, Ordering::Release);
    }

    /// What the host still waits for before it is ready (empty: ready).
    pub fn waiting_for(&self) -> Vec<&'static str> {
        let f = &self.0;
        let mut waiting = Vec::new();
        if f.stopping.load(Ordering::Acquire) {
            waiting.push("the host is stopping");
        }
        if !f.joined.load(Ordering::Acquire) {
            waiting.push("joining the lattice");
        }
        if !f.links_replayed.load(Ordering::Acquire) {
            waiting.push("replaying the lattice's links");
        }
        if !f.configs_replayed.load(Ordering::Acquire) {
            waiting.push("replaying the lattice's config");
        }
        waiting
    }
}

/// Serves the endpoints on `addr` until the task is aborted; other paths get 404.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn serve(addr: SocketAddr, metrics: Metrics, health: Health) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!(%peer, "admin connection refused: too many open");
                continue;
            };
            let (metrics, health) = (metrics.clone(), health.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let response = answer(&request, &metrics, &health);
                    async move { response }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(Duration::from_secs(10))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(io, service);
                if let Err(e) = tokio::time::timeout(Duration::from_secs(60), conn).await.unwrap_or(Ok(())) {
                    debug!(%peer, error = %e, "admin connection ended with an error");
                }
            });
        }
    });
    Ok((bound, task))
}

fn answer<B>(request: &hyper::Request<B>, metrics: &Metrics, health: &Health) -> Result<hyper::Response<Full<Bytes>>, hyper::http::Error> {
    let respond = |status: u16, kind: &'static str, body: String| {
        hyper::Response::builder().status(status).header("content-type", kind).body(Full::new(Bytes::from(body)))
    };
    const JSON: &str = "application/json";
    if request.method() != hyper::Method::GET {
        return respond(405, "text/plain", "only GET is served here\n".into());
    }
    match request.uri().path() {
        "/metrics" => respond(200, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.render()),
        "/livez" => respond(200, JSON, serde_json::json!({ "status": "ok" }).to_string()),
        "/readyz" => match health.waiting_for() {
            waiting if waiting.is_empty() => respond(200, JSON, serde_json::json!({ "status": "ok" }).to_string()),
            waiting => respond(503, JSON, serde_json::json!({ "status": "failure", "waiting_for": waiting }).to_string()),
        },
        _ => respond(404, "text/plain", "served here: GET /livez, /readyz, /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_joined_and_replayed_and_not_while_stopping() {
        let health = Health::default();
        assert_eq!(health.waiting_for().len(), 3);
        health.joined();
        health.links_replayed();
        assert_eq!(health.waiting_for(), ["replaying the lattice's config"]);
        health.configs_replayed();
        assert!(health.waiting_for().is_empty());
        health.stopping();
        assert_eq!(health.waiting_for(), ["the host is stopping"]);
    }

    #[test]
    fn routes() {
        let (metrics, health) = (Metrics::disabled(), Health::default());
        let get = |path: &str| answer(&hyper::Request::get(path).body(()).expect("request"), &metrics, &health).expect("response").status().as_u16();
        assert_eq!(get("/livez"), 200);
        assert_eq!(get("/readyz"), 503);
        assert_eq!(get("/metrics"), 200);
        assert_eq!(get("/other"), 404);
        let post = hyper::Request::post("/livez").body(()).expect("request");
        assert_eq!(answer(&post, &metrics, &health).expect("response").status().as_u16(), 405);
    }
}
