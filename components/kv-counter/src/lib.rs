//! `wasi:http/incoming-handler`: each request increments the counter named by its path (`/` is
//! `default`) in `wasi:keyvalue` and answers `Count: N`.

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/kv-counter", world: "counter-imports", generate_all });
}

use ::wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use bindings::wasi::keyvalue::{atomics, store};

struct Counter;

fn respond(out: ResponseOutparam, status: u16, body: String) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        let _ = stream.blocking_write_and_flush(body.as_bytes());
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

impl ::wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().trim_matches('/');
        let name = if path.is_empty() { "default".to_string() } else { path.replace('/', "_") };
        let result = store::open("counters").and_then(|bucket| atomics::increment(&bucket, &name, 1));
        match result {
            Ok(n) => respond(out, 200, format!("Count: {n}\n")),
            Err(e) => respond(out, 500, format!("key-value error: {e:?}\n")),
        }
    }
}

::wasi::http::proxy::export!(Counter);
