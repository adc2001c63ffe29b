//! `wasi:http/handler@0.3.0-rc-2026-03-15`, an async export: answers every request with
//! `Hello from Trellis`, and says in `x-served-by-instance` how many requests this instance has
//! answered (1 on a fresh instance: the reuse tests read it). Paths for fault tests: `/trap`
//! panics, `/spin` never yields, `/spin-after` answers, waits 0.3 s and then never yields, `/sleep` waits 1 s on the clock (other requests on the same
//! instance go on meanwhile), `/listen` tries to open a listening TCP socket and answers what
//! happened.

use std::sync::atomic::{AtomicU64, Ordering};

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Hello);

/// Requests this instance has taken, this one included.
static SERVED: AtomicU64 = AtomicU64::new(0);

struct Hello;

impl wasip3::exports::http::handler::Guest for Hello {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.get_path_with_query().unwrap_or_default();
        if path.contains("/trap") {
            panic!("asked to trap");
        }
        if path.contains("/spin-after") {
            return Ok(respond("spinning after this answer\n".into(), served, true));
        }
        if path.contains("/spin") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if path.contains("/listen") {
            return Ok(text(listen(), served));
        }
        if path.contains("/sleep") {
            wasip3::clocks::monotonic_clock::wait_for(1_000_000_000).await;
        }
        Ok(text("Hello from Trellis\n".into(), served))
    }
}

/// A plain-text response, with this instance's count of requests.
fn text(body: String, served: u64) -> Response {
    respond(body, served, false)
}

/// [`text`], and with `then_spin` a loop that never yields once the body is sent.
fn respond(body: String, served: u64, then_spin: bool) -> Response {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let _ = headers.set("x-served-by-instance", &[served.to_string().into_bytes()]);
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    drop(trailers_tx);
    wit_bindgen::spawn(async move {
        let _ = body_tx.write_all(body.into_bytes()).await;
        drop(body_tx);
        if !then_spin {
            return;
        }
        // Once its request is over (as the host sees it), start spinning.
        wasip3::clocks::monotonic_clock::wait_for(300_000_000).await;
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    });
    response
}

/// Tries to listen on TCP (what a guest must not be able to do).
fn listen() -> String {
    use wasip3::sockets::types::{IpAddressFamily, TcpSocket};
    let socket = match TcpSocket::create(IpAddressFamily::Ipv4) {
        Ok(s) => s,
        Err(e) => return format!("create failed: {e:?}\n"),
    };
    match socket.listen() {
        Ok(_) => "listening\n".into(),
        Err(e) => format!("listen failed: {e:?}\n"),
    }
}
