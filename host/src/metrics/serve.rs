//! The `/metrics` endpoint: Prometheus's text format over HTTP/1.1, at most 16 connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use super::Metrics;

/// Serves `metrics` at `http://{addr}/metrics` until the task is aborted; other paths get 404.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Scrapers are few; a small bound keeps a flood of connections from costing more.
        let slots = Arc::new(tokio::sync::Semaphore::new(16));
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!(%peer, "metrics connection refused: too many open");
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let response = if request.uri().path() == "/metrics" && request.method() == hyper::Method::GET {
                            hyper::Response::builder()
                                .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                                .body(Full::new(Bytes::from(metrics.render())))
                        } else {
                            hyper::Response::builder().status(404).body(Full::new(Bytes::from_static(b"only GET /metrics is served here\n")))
                        };
                        response
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(Duration::from_secs(10))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(io, service);
                if let Err(e) = tokio::time::timeout(Duration::from_secs(60), conn).await.unwrap_or(Ok(())) {
                    debug!(%peer, error = %e, "metrics connection ended with an error");
                }
            });
        }
    });
    Ok((bound, task))
}
