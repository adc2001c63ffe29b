//! `wasi:http/incoming-handler`: `GET /ops/{container}` runs every `wasi:blobstore` operation
//! on that container — create, write, list a page at a time, has, info, a ranged read, copy,
//! move, delete-objects, clear, container info, delete, exists — and answers a line per step,
//! or 500 with the step that failed and the host's error. `GET /big/{container}` writes a
//! 17 MiB object, asks for it whole with `consume-sync` (which must refuse it: it returns at
//! most 16 MiB), then streams it with `consume-async` and answers both outcomes.

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/blob-ops", world: "blob-imports", generate_all });
}

use ::wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use bindings::wasi::blobstore::blobstore;
use bindings::wasi::blobstore::container::Container;
use bindings::wasi::blobstore::types::{IncomingValue, ObjectId, OutgoingValue};

struct Ops;

fn respond(out: ResponseOutparam, status: u16, body: String) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.as_bytes().chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// A step's error, naming the step.
fn at<T>(step: &str, r: Result<T, String>) -> Result<T, String> {
    r.map_err(|e| format!("{step}: {e}"))
}

/// Stores `data` as `name`, trying up to three times: a write through a provider can fail
/// when the provider's transport loses part of the stream (the host says so; see
/// `capabilities/blobstore/provider.rs`).
fn write(c: &Container, name: &str, data: &[u8]) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..3 {
        match write_once(c, name, data) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Stores `data` as `name`: `write-data` first, then the body, then `finish`.
fn write_once(c: &Container, name: &str, data: &[u8]) -> Result<(), String> {
    let value = OutgoingValue::new_outgoing_value();
    let body = value.outgoing_value_write_body().map_err(|()| "no body stream".to_string())?;
    c.write_data(name, &value)?;
    for chunk in data.chunks(4096) {
        body.blocking_write_and_flush(chunk).map_err(|e| format!("{e:?}"))?;
    }
    drop(body);
    OutgoingValue::finish(value)
}

/// Bytes `start..end` of `name`, whole.
fn read(c: &Container, name: &str, start: u64, end: u64) -> Result<String, String> {
    let value = c.get_data(name, start, end)?;
    let bytes = IncomingValue::incoming_value_consume_sync(value)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Every object name, read two at a time, sorted.
fn names(c: &Container) -> Result<Vec<String>, String> {
    let stream = c.list_objects()?;
    let mut all = Vec::new();
    loop {
        let (mut page, done) = stream.read_stream_object_names(2)?;
        all.append(&mut page);
        if done {
            break;
        }
    }
    all.sort();
    Ok(all)
}

fn id(container: &str, object: &str) -> ObjectId {
    ObjectId { container: container.to_string(), object: object.to_string() }
}

fn script(name: &str) -> Result<String, String> {
    let mut out = String::new();
    let c = at("create-container", blobstore::create_container(name))?;
    for (object, data) in [("a", "alpha"), ("b", "bravo"), ("c", "charlie")] {
        at("write-data", write(&c, object, data.as_bytes()))?;
    }
    out += &format!("names {:?}\n", at("list-objects", names(&c))?);
    out += &format!("has a {} z {}\n", at("has-object", c.has_object("a"))?, at("has-object", c.has_object("z"))?);
    out += &format!("c is {} bytes\n", at("object-info", c.object_info("c"))?.size);
    out += &format!("c 1..4 {:?}\n", at("get-data", read(&c, "c", 1, 4))?);
    at("copy-object", blobstore::copy_object(&id(name, "a"), &id(name, "d")))?;
    at("move-object", blobstore::move_object(&id(name, "b"), &id(name, "e")))?;
    out += &format!("after copy and move {:?}\n", at("list-objects", names(&c))?);
    out += &format!("e is {:?}\n", at("get-data", read(&c, "e", 0, u64::MAX))?);
    at("delete-objects", c.delete_objects(&["c".to_string(), "d".to_string()]))?;
    at("delete-object", c.delete_object("never-there"))?;
    out += &format!("after delete {:?}\n", at("list-objects", names(&c))?);
    at("clear", c.clear())?;
    out += &format!("after clear {:?}\n", at("list-objects", names(&c))?);
    out += &format!("container {}\n", at("info", c.info())?.name);
    drop(c);
    at("delete-container", blobstore::delete_container(name))?;
    out += &format!("exists {}\n", at("container-exists", blobstore::container_exists(name))?);
    Ok(out)
}

/// 17 MiB written, refused by `consume-sync`, read whole by `consume-async`.
fn big(name: &str) -> Result<String, String> {
    const SIZE: usize = 17 << 20;
    let c = at("create-container", blobstore::create_container(name))?;
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    at("write-data", write(&c, "big", &data))?;
    let sync = match IncomingValue::incoming_value_consume_sync(at("get-data", c.get_data("big", 0, u64::MAX))?) {
        Ok(bytes) => format!("returned {} bytes", bytes.len()),
        Err(e) => format!("refused: {e}"),
    };
    let stream = at("consume-async", IncomingValue::incoming_value_consume_async(at("get-data", c.get_data("big", 0, u64::MAX))?))?;
    let (mut read, mut same) = (0usize, true);
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => {
                same &= chunk.iter().enumerate().all(|(i, b)| *b == ((read + i) % 251) as u8);
                read += chunk.len();
            }
            Err(bindings::wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("consume-async read after {read} bytes: {e:?}")),
        }
    }
    drop(stream);
    drop(c);
    at("delete-container", blobstore::delete_container(name))?;
    Ok(format!("consume-sync {sync}\nconsume-async read {read} bytes, as written: {same}\n"))
}

impl ::wasi::exports::http::incoming_handler::Guest for Ops {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let answer = if let Some(container) = path.strip_prefix("/ops/") {
            script(container)
        } else if let Some(container) = path.strip_prefix("/big/") {
            big(container)
        } else {
            return respond(out, 404, "GET /ops/{container} or /big/{container}\n".into());
        };
        match answer {
            Ok(text) => respond(out, 200, text),
            Err(e) => respond(out, 500, format!("{e}\n")),
        }
    }
}

::wasi::http::proxy::export!(Ops);
