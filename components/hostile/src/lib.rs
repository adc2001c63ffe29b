//! A hostile guest for the containment tests. `trellis:hostile/probe` tries what an attacker's
//! component would: open any key-value store by name, publish or request on any subject, send
//! HTTP without a link, wait in a host call past the deadline. Its `wasi:http/incoming-handler`
//! answers `/big/N` with an N-byte body, `/sleep/MS` after waiting MS milliseconds in a host
//! call, and any other request with the size of the body it read.

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/hostile", world: "hostile", generate_all });
}

use ::wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam, Scheme};
use bindings::exports::trellis::hostile::probe::Guest;
use bindings::wasi::keyvalue::store;
use bindings::wasmcloud::messaging::consumer;
use bindings::wasmcloud::messaging::types::BrokerMessage;

struct Hostile;

fn kv_error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no-such-store".into(),
        store::Error::AccessDenied => "access-denied".into(),
        store::Error::Other(m) => format!("other: {m}"),
    }
}

impl Guest for Hostile {
    fn kv_list(identifier: String) -> Result<Vec<String>, String> {
        let bucket = store::open(&identifier).map_err(kv_error)?;
        Ok(bucket.list_keys(None).map_err(kv_error)?.keys)
    }

    fn kv_page(identifier: String, cursor: Option<u64>) -> Result<(u32, Option<u64>), String> {
        let bucket = store::open(&identifier).map_err(kv_error)?;
        let page = bucket.list_keys(cursor).map_err(kv_error)?;
        Ok((page.keys.len() as u32, page.cursor))
    }

    fn kv_set(identifier: String, key: String, value: String) -> Result<(), String> {
        let bucket = store::open(&identifier).map_err(kv_error)?;
        bucket.set(&key, value.as_bytes()).map_err(kv_error)
    }

    fn publish(subject: String, body: String) -> Result<(), String> {
        consumer::publish(&BrokerMessage { subject, body: body.into_bytes(), reply_to: None })
    }

    fn request(subject: String, body: String, timeout_ms: u32) -> Result<String, String> {
        let reply = consumer::request(&subject, body.as_bytes(), timeout_ms)?;
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }

    fn fetch(url: String) -> Result<u16, String> {
        let (scheme, rest) = url.split_once("://").ok_or("the URL needs a scheme")?;
        let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
        let request = OutgoingRequest::new(Fields::new());
        request.set_method(&Method::Get).map_err(|()| "method")?;
        request.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http })).map_err(|()| "scheme")?;
        request.set_authority(Some(authority)).map_err(|()| "authority")?;
        request.set_path_with_query(Some(&path)).map_err(|()| "path")?;
        let pending = ::wasi::http::outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
        pending.subscribe().block();
        let response = pending.get().ok_or("no response")?.map_err(|()| "taken twice")?.map_err(|e| format!("{e:?}"))?;
        Ok(response.status())
    }

    fn ambient(tcp_target: String) -> Vec<String> {
        vec![
            format!("env: {}", ::wasi::cli::environment::get_environment().len()),
            format!("args: {}", ::wasi::cli::environment::get_arguments().len()),
            format!("preopens: {}", ::wasi::filesystem::preopens::get_directories().len()),
            format!("tcp: {}", tcp_connect(&tcp_target)),
        ]
    }

    fn count_items(items: Vec<u32>) -> u32 {
        items.len() as u32
    }

    fn choose_links(name_len: u32, interfaces: u32, key_len: u32, rounds: u32) {
        use bindings::wasmcloud::bus::lattice::{set_link_name, CallTargetInterface};
        let name = "n".repeat(name_len as usize);
        let pad = "p".repeat(key_len as usize);
        for _ in 0..rounds {
            let targets: Vec<CallTargetInterface> =
                (0..interfaces).map(|i| CallTargetInterface::new("acme", &format!("{pad}{i}"), "thing")).collect();
            set_link_name(&name, targets);
        }
    }

    fn log_flood(lines: u32, bytes: u32) {
        use bindings::wasi::logging::logging::{log, Level};
        let message = "m".repeat(bytes as usize);
        for _ in 0..lines {
            log(Level::Info, "flood", &message);
        }
    }

    fn sleep(ms: u64) {
        ::wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
    }
}

/// Tries a TCP connection to `target` (`a.b.c.d:port`) and says how it went.
fn tcp_connect(target: &str) -> String {
    use ::wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    let Some((ip, port)) = target.split_once(':') else { return "bad target".into() };
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    let (Ok(port), [a, b, c, d]) = (port.parse::<u16>(), octets.as_slice()) else { return "bad target".into() };
    let network = ::wasi::sockets::instance_network::instance_network();
    let socket = match ::wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        Ok(s) => s,
        Err(e) => return format!("create failed: {e:?}"),
    };
    let address = IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address: (*a, *b, *c, *d) });
    if let Err(e) = socket.start_connect(&network, address) {
        return format!("connect failed: {e:?}");
    }
    socket.subscribe().block();
    match socket.finish_connect() {
        Ok(_) => "connected".into(),
        Err(e) => format!("connect failed: {e:?}"),
    }
}

bindings::export!(Hostile with_types_in bindings);

fn respond(out: ResponseOutparam, status: u16, size: usize, text: Option<String>) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = body.write() {
        match text {
            Some(t) => {
                let _ = stream.blocking_write_and_flush(t.as_bytes());
            }
            None => {
                let chunk = vec![b'x'; 4096];
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if stream.blocking_write_and_flush(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

impl ::wasi::exports::http::incoming_handler::Guest for Hostile {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if let Some(n) = path.strip_prefix("/big/").and_then(|n| n.parse::<usize>().ok()) {
            return respond(out, 200, n, None);
        }
        if let Some(ms) = path.strip_prefix("/sleep/").and_then(|n| n.parse::<u64>().ok()) {
            ::wasi::clocks::monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
            return respond(out, 200, 0, Some("awake\n".into()));
        }
        let mut read = 0usize;
        if let Ok(body) = request.consume() {
            if let Ok(stream) = body.stream() {
                while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                    read += chunk.len();
                }
            }
        }
        respond(out, 200, 0, Some(format!("read {read} bytes\n")))
    }
}

::wasi::http::proxy::export!(Hostile);
