//! `trellis:fetch/fetch.get(url)`: an outgoing HTTP GET through `wasi:http/outgoing-handler`,
//! which the host allows only when the component is linked to an HTTP client provider.

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/fetch", world: "fetcher" });
}

use ::wasi::http::outgoing_handler;
use ::wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};
use bindings::exports::trellis::fetch::fetch::Guest;

struct Fetch;

fn get(url: &str) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or("the URL needs a scheme")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "method")?;
    request.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http })).map_err(|()| "scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "authority")?;
    request.set_path_with_query(Some(&path)).map_err(|()| "path")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let body = response.consume().map_err(|()| "body")?;
    let stream = body.stream().map_err(|()| "stream")?;
    let mut out = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    Ok(format!("{} {}", response.status(), String::from_utf8_lossy(&out)))
}

impl Guest for Fetch {
    fn get(url: String) -> Result<String, String> {
        get(&url)
    }
}

bindings::export!(Fetch with_types_in bindings);
