//! `wasi:http/incoming-handler`: each request increments the counter named by its path (`/` is
//! `default`) in `wasi:keyvalue` and answers `Count: N`. A path ending `_batch/N` exercises
//! `wasi:keyvalue/batch` with N keys: sets them, reads them back with one more that is not there,
//! deletes them, reads again, and answers what it saw.

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/kv-counter", world: "counter-imports", generate_all });
}

use ::wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use bindings::wasi::keyvalue::{atomics, batch, store};

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

/// `/_batch/N`: set N keys, get them and one more, delete them, get them again.
fn batch_round(n: usize) -> Result<String, store::Error> {
    let bucket = store::open("counters")?;
    let keys: Vec<String> = (0..n).map(|i| format!("batch-{i}")).collect();
    let pairs: Vec<(String, Vec<u8>)> = keys.iter().map(|k| (k.clone(), k.as_bytes().to_vec())).collect();
    batch::set_many(&bucket, &pairs)?;
    let mut asked = keys.clone();
    asked.push("batch-missing".into());
    let got = batch::get_many(&bucket, &asked)?;
    let present = got.iter().filter(|v| matches!(v, Some((k, v)) if k.as_bytes() == v.as_slice())).count();
    batch::delete_many(&bucket, &keys)?;
    let after = batch::get_many(&bucket, &asked)?.iter().filter(|v| v.is_some()).count();
    Ok(format!("set {n}, read {present} of {}, {after} left after delete\n", asked.len()))
}

impl ::wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().trim_matches('/');
        if let Some(n) = path.split_once("_batch/").and_then(|(_, n)| n.parse().ok()) {
            return match batch_round(n) {
                Ok(text) => respond(out, 200, text),
                Err(e) => respond(out, 500, format!("key-value error: {e:?}\n")),
            };
        }
        let name = if path.is_empty() { "default".to_string() } else { path.replace('/', "_") };
        let result = store::open("counters").and_then(|bucket| atomics::increment(&bucket, &name, 1));
        match result {
            Ok(n) => respond(out, 200, format!("Count: {n}\n")),
            Err(e) => respond(out, 500, format!("key-value error: {e:?}\n")),
        }
    }
}

::wasi::http::proxy::export!(Counter);
