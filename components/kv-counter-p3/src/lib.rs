//! `wasi:http/handler@0.3.0-rc-2026-03-15`, an async export: each request increments the
//! counter named by its path (`/` is `default`) in `wasi:keyvalue` (the same 0.2 draft
//! interfaces a 0.2 component imports, called from the async handler) and answers `Count: N`.

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/kv-counter", world: "counter-imports", generate_all });
}

use bindings::wasi::keyvalue::{atomics, store};
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen as rt, wit_future, wit_stream};

wasip3::http::service::export!(Counter);

struct Counter;

impl wasip3::exports::http::handler::Guest for Counter {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().trim_matches('/').to_string();
        let name = if path.is_empty() { "default".to_string() } else { path.replace('/', "_") };
        let (status, text) = match store::open("counters").and_then(|bucket| atomics::increment(&bucket, &name, 1)) {
            Ok(n) => (200, format!("Count: {n}\n")),
            Err(e) => (500, format!("key-value error: {e:?}\n")),
        };
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let (mut body_tx, body_rx) = wit_stream::new();
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
        let _ = response.set_status_code(status);
        drop(trailers_tx);
        rt::spawn(async move {
            let _ = body_tx.write_all(text.into_bytes()).await;
        });
        Ok(response)
    }
}
