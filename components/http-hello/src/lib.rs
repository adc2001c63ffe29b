//! `wasi:http/incoming-handler`: answers every request with `Hello from Trellis`, and says in
//! `x-served-by-instance` how many requests its instance has served (always 1 on a fresh
//! instance per request), except two paths for fault tests: a path containing `/trap` panics,
//! one containing `/slow` never answers.

use std::sync::atomic::{AtomicU64, Ordering};

use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

/// Requests this instance has taken, this one included.
static SERVED: AtomicU64 = AtomicU64::new(0);

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.path_with_query().unwrap_or_default();
        if path.contains("/trap") {
            panic!("asked to trap");
        }
        if path.contains("/slow") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let _ = headers.set("x-served-by-instance", &[served.to_string().into_bytes()]);
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(b"Hello from Trellis\n");
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

wasi::http::proxy::export!(Hello);
