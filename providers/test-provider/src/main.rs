//! A provider for Trellis's tests, built with wasmCloud's provider SDK.
//!
//! It writes what happens to it as JSON lines to the file named by the `record` entry of its
//! config, so a test can see exactly what the host delivered: `init` (with the start data and
//! the environment's variable names), `link_put`, `link_del`, `config_update`, `health`,
//! `shutdown`; `init` and `link_put` include the secrets it was given (a test provider's record,
//! so a test can check them). Other config entries change its behaviour:
//! - `healthy`: `false` answers health checks unhealthy (a config update can flip it);
//! - `ignore_shutdown`: `true` keeps running after the shutdown request and ignores SIGTERM;
//! - `say`: a line printed on stdout and on stderr at start.
//!
//! It serves `wasmcloud:messaging/consumer` (publishes recorded as `published`, requests
//! answered with `reply to {body}` and recorded as `requested`), `wrpc:keyvalue/store`,
//! `atomics` and `batch` in memory, each call recorded as `kv` with the caller, operation, bucket and key, and
//! `trellis:echo/echo` over wRPC (world `echo-provider` in `wit/echo`): `echo` returns
//! its message, except `call:{component}:{message}`, which it passes on to `echo` of that
//! component over wRPC and returns the answer, and `msg:{component}:{subject}:{reply-to}:{body}`,
//! which it delivers to that component's `wasmcloud:messaging/handler` as a messaging provider
//! does and returns `ok` or the component's error, and `recurse:{component}:{depth}`, which calls
//! that component's `recurse` and returns `ok: …` or `err: …`, and
//! `http:{component}:{method}:{path}:{size}`, which sends that component a request as wasmCloud's
//! HTTP server provider does (`wrpc:http/incoming-handler`, a body of `size` bytes streamed in
//! 64 KiB chunks) and returns `{status} {content-type} {body length} {body, first 200 bytes, other
//! than printable ASCII and quotes as `.`}` or
//! `error: …`; `kvwatch:{component}:{bucket}:{key}:{value}` calls that component's
//! `wrpc:keyvalue/watcher` `on-set` (`on-delete` when the value is `-`) as a key-value provider
//! does, returning `ok` or `err: …`; `spin` never answers; `trap` fails. Each call is recorded with the caller's id.
//!
//! It serves `trellis:echo/tally`, a resource (`counter`) whose handles are its own bytes
//! (`counter-{n}`), kept between calls as a provider keeps them; each call is recorded as
//! `tally` with the caller, the operation and the handle. A counter started at `4294967295`
//! gets a 2 KiB handle (a provider handing out more than a host takes).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use anyhow::Context as _;
use wasmcloud_provider_sdk::{
    get_connection, load_host_data, run_provider, serve_provider_exports, Context, HealthCheckRequest,
    HealthCheckResponse, LinkConfig, LinkDeleteInfo, Provider, ProviderConfigUpdate, ProviderInitConfig,
};

mod bindings {
    wit_bindgen_wrpc::generate!({ world: "echo-provider", path: "../../wit/echo", generate_all });
}

use bindings::exports::trellis::echo::echo::Handler;

#[derive(Clone, Default)]
struct TestProvider {
    config: Arc<Mutex<HashMap<String, String>>>,
    /// The key-value store it serves: (bucket, key) → value.
    kv: Arc<Mutex<HashMap<(String, String), bytes::Bytes>>>,
    /// The `tally` counters it holds, by handle.
    counters: Arc<Mutex<HashMap<bytes::Bytes, u32>>>,
    /// The number of the next counter.
    next_counter: Arc<std::sync::atomic::AtomicU64>,
}

impl TestProvider {
    fn setting(&self, key: &str) -> Option<String> {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    fn record(&self, event: &str, data: Value) {
        let Some(path) = self.setting("record") else { return };
        let mut line = json!({ "event": event, "pid": std::process::id() });
        if let (Value::Object(line), Value::Object(data)) = (&mut line, data) {
            line.extend(data);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn link_json(role: &str, l: &LinkConfig<'_>) -> Value {
    json!({
        "role": role,
        "source_id": l.source_id,
        "target": l.target_id,
        "name": l.link_name,
        "config": l.config,
        // A test provider's record: the secrets it was given, so a test can check them.
        "secrets": l.secrets,
        "wit": format!("{}:{}/{}", l.wit_metadata.0, l.wit_metadata.1, l.wit_metadata.2.join(",")),
    })
}

impl Provider for TestProvider {
    async fn init(&self, init: impl ProviderInitConfig) -> anyhow::Result<()> {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = init.get_config().clone();
        let host = load_host_data()?;
        let mut env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        env.sort();
        self.record(
            "init",
            json!({
                "provider_id": init.get_provider_id(),
                "host_id": host.host_id,
                "lattice": host.lattice_rpc_prefix,
                "link_name": host.link_name,
                "instance_id": host.instance_id,
                "rpc_url": host.lattice_rpc_url,
                "links": host.link_definitions.len(),
                "config": host.config,
                // A test provider's record: the secrets it was given, so a test can check them.
                "secrets": init.get_secrets(),
                "default_rpc_timeout_ms": host.default_rpc_timeout_ms,
                "env": env,
            }),
        );
        if let Some(say) = self.setting("say") {
            println!("{say}");
            eprintln!("{say} (stderr)");
        }
        Ok(())
    }

    async fn on_config_update(&self, update: impl ProviderConfigUpdate) -> anyhow::Result<()> {
        let values = update.get_values().clone();
        self.record("config_update", json!({ "values": values }));
        let mut config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let record = config.get("record").cloned();
        *config = values;
        // Where it records is fixed at start.
        if let Some(r) = record {
            config.insert("record".into(), r);
        }
        Ok(())
    }

    async fn receive_link_config_as_source(&self, link: LinkConfig<'_>) -> anyhow::Result<()> {
        self.record("link_put", link_json("source", &link));
        Ok(())
    }

    async fn receive_link_config_as_target(&self, link: LinkConfig<'_>) -> anyhow::Result<()> {
        self.record("link_put", link_json("target", &link));
        Ok(())
    }

    async fn delete_link_as_source(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        self.record("link_del", json!({"role": "source", "source_id": info.get_source_id(), "target": info.get_target_id(), "name": info.get_link_name()}));
        Ok(())
    }

    async fn delete_link_as_target(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        self.record("link_del", json!({"role": "target", "source_id": info.get_source_id(), "target": info.get_target_id(), "name": info.get_link_name()}));
        Ok(())
    }

    async fn health_request(&self, _: &HealthCheckRequest) -> anyhow::Result<HealthCheckResponse> {
        let healthy = self.setting("healthy").as_deref() != Some("false");
        self.record("health", json!({ "healthy": healthy }));
        Ok(HealthCheckResponse { healthy, message: (!healthy).then(|| "told to be unhealthy".to_string()) })
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        self.record("shutdown", json!({}));
        Ok(())
    }
}

impl Handler<Option<Context>> for TestProvider {
    async fn echo(&self, cx: Option<Context>, message: String) -> anyhow::Result<String> {
        let caller = cx.and_then(|c| c.component).unwrap_or_default();
        self.record("echo", json!({ "caller": caller, "message": message }));
        if let Some(rest) = message.strip_prefix("msg:") {
            let mut parts = rest.splitn(4, ':');
            let (Some(component), Some(subject), Some(reply_to), Some(body)) = (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                anyhow::bail!("msg:{{component}}:{{subject}}:{{reply-to}}:{{body}}");
            };
            let client = get_connection().get_wrpc_client(component).await?;
            let msg = bindings::wasmcloud::messaging::types::BrokerMessage {
                subject: subject.to_string(),
                body: body.as_bytes().to_vec().into(),
                reply_to: Some(reply_to.to_string()),
            };
            let handled = bindings::wasmcloud::messaging::handler::handle_message(&client, None, &msg).await?;
            return Ok(match handled {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("err: {e}"),
            });
        }
        if let Some(rest) = message.strip_prefix("kvwatch:") {
            // As a key-value provider does on a watched change: `wrpc:keyvalue/watcher` of the
            // component, `on-set` (or `on-delete` when the value is `-`).
            let mut parts = rest.splitn(4, ':');
            let (Some(component), Some(bucket), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                anyhow::bail!("kvwatch:{{component}}:{{bucket}}:{{key}}:{{value}}");
            };
            let client = get_connection().get_wrpc_client(component).await?;
            let called = if value == "-" {
                bindings::wrpc::keyvalue::watcher::on_delete(&client, None, bucket, key).await
            } else {
                bindings::wrpc::keyvalue::watcher::on_set(&client, None, bucket, key, &bytes::Bytes::copy_from_slice(value.as_bytes())).await
            };
            return Ok(match called {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("err: {e:#}"),
            });
        }
        if let Some(rest) = message.strip_prefix("recurse:") {
            // A call that fails in the component (a deep recursion traps).
            let (component, depth) = rest.split_once(':').context("recurse:{component}:{depth}")?;
            let client = get_connection().get_wrpc_client(component).await?;
            let depth: u64 = depth.parse()?;
            return Ok(match bindings::trellis::echo::echo::recurse(&client, None, depth).await {
                Ok(d) => format!("ok: {d}"),
                Err(e) => format!("err: {e:#}"),
            });
        }
        if let Some(rest) = message.strip_prefix("http:") {
            let mut parts = rest.splitn(4, ':');
            let (Some(component), Some(method), Some(path), Some(size)) = (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                anyhow::bail!("http:{{component}}:{{method}}:{{path}}:{{size}}");
            };
            let client = get_connection().get_wrpc_client(component).await?;
            return http_request(&client, method, path, size.parse()?).await;
        }
        if let Some(rest) = message.strip_prefix("call:") {
            let (component, message) = rest.split_once(':').context("call:{component}:{message}")?;
            let client = get_connection().get_wrpc_client(component).await?;
            let answer = bindings::trellis::echo::echo::echo(&client, None, message).await;
            self.record("called", json!({ "component": component, "answer": answer.as_ref().map_err(|e| format!("{e:#}")).ok() }));
            return answer;
        }
        Ok(message)
    }

    async fn try_echo(&self, _: Option<Context>, message: String, fail: bool) -> anyhow::Result<Result<String, String>> {
        Ok(if fail { Err(message) } else { Ok(message) })
    }

    async fn trap(&self, _: Option<Context>, message: String) -> anyhow::Result<()> {
        anyhow::bail!("provider failed: {message}")
    }

    async fn spin(&self, _: Option<Context>) -> anyhow::Result<()> {
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn hog(&self, _: Option<Context>) -> anyhow::Result<u64> {
        Ok(0)
    }

    async fn recurse(&self, _: Option<Context>, depth: u64) -> anyhow::Result<u64> {
        Ok(depth)
    }

    async fn remember(&self, _: Option<Context>, value: String) -> anyhow::Result<String> {
        Ok(value)
    }
}

/// One request to a component's `wrpc:http/incoming-handler`, sent as wasmCloud's HTTP server
/// provider sends it (`invoke_handle_http` with the trace headers as context).
async fn http_request(client: &wasmcloud_provider_sdk::provider::WrpcClient, method: &str, path: &str, size: usize) -> anyhow::Result<String> {
    use http_body_util::BodyExt as _;
    use wrpc_interface_http::InvokeIncomingHandler as _;

    const CHUNK: usize = 64 * 1024;
    let chunks = (0..size.div_ceil(CHUNK))
        .map(move |i| Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(vec![b'x'; CHUNK.min(size - i * CHUNK)]))));
    let body = http_body_util::StreamBody::new(futures::stream::iter(chunks));
    let request = http::Request::builder().method(method).uri(path).header("x-test", "from-provider").body(body)?;
    let (response, _errors, io) = client.invoke_handle_http(Some(async_nats::HeaderMap::new()), request).await?;
    let io = io.map(tokio::spawn);
    let response = match response {
        Ok(r) => r,
        Err(code) => return Ok(format!("error: {code:?}")),
    };
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("-").replace(' ', "");
    let body = response.into_body().collect().await.map(|b| b.to_bytes());
    if let Some(io) = io {
        let _ = io.await;
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return Ok(format!("error: the body broke off: {e:#}")),
    };
    let shown: String = body[..body.len().min(200)]
        .iter()
        .map(|&b| if (b.is_ascii_graphic() && !b"'\"\\`".contains(&b)) || b == b' ' { char::from(b) } else { '.' })
        .collect::<String>()
        .trim_end_matches('.')
        .to_string();
    Ok(format!("{status} {content_type} {} {shown}", body.len()))
}

/// `wrpc:keyvalue/store`, in memory; every call recorded as `kv` with the caller and bucket.
use bindings::exports::trellis::echo::tally::Counter;
use wit_bindgen_wrpc::wrpc_transport::{ResourceBorrow, ResourceOwn};

impl TestProvider {
    fn record_tally(&self, cx: Option<Context>, op: &str, handle: &[u8]) {
        let caller = cx.and_then(|c| c.component).unwrap_or_default();
        self.record("tally", json!({ "caller": caller, "op": op, "handle": String::from_utf8_lossy(handle) }));
    }

    fn with_counter<T>(&self, handle: &[u8], f: impl FnOnce(&mut u32) -> T) -> anyhow::Result<T> {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let value = counters.get_mut(handle).ok_or_else(|| anyhow::anyhow!("no counter {:?}", String::from_utf8_lossy(handle)))?;
        Ok(f(value))
    }
}

impl bindings::exports::trellis::echo::tally::HandlerCounter<Option<Context>> for TestProvider {
    async fn new(&self, cx: Option<Context>, start: u32) -> anyhow::Result<ResourceOwn<Counter>> {
        let n = self.next_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handle = if start == u32::MAX { bytes::Bytes::from(vec![b'x'; 2048]) } else { bytes::Bytes::from(format!("counter-{n}")) };
        self.record_tally(cx, "new", &handle);
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).insert(handle.clone(), start);
        Ok(ResourceOwn::from(handle))
    }

    async fn add(&self, cx: Option<Context>, counter: ResourceBorrow<Counter>, n: u32) -> anyhow::Result<u32> {
        self.record_tally(cx, "add", counter.as_ref());
        self.with_counter(counter.as_ref(), |v| {
            *v = v.saturating_add(n);
            *v
        })
    }
}

impl bindings::exports::trellis::echo::tally::Handler<Option<Context>> for TestProvider {
    async fn peek(&self, cx: Option<Context>, counter: ResourceBorrow<Counter>) -> anyhow::Result<u32> {
        self.record_tally(cx, "peek", counter.as_ref());
        self.with_counter(counter.as_ref(), |v| *v)
    }

    async fn finish(&self, cx: Option<Context>, counter: ResourceOwn<Counter>) -> anyhow::Result<u32> {
        let handle: bytes::Bytes = counter.into();
        self.record_tally(cx, "finish", &handle);
        self.counters.lock().unwrap_or_else(|e| e.into_inner()).remove(&handle).ok_or_else(|| anyhow::anyhow!("no counter {:?}", String::from_utf8_lossy(&handle)))
    }
}

impl bindings::exports::wrpc::keyvalue::store::Handler<Option<Context>> for TestProvider {
    async fn get(&self, cx: Option<Context>, bucket: String, key: String) -> anyhow::Result<Result<Option<bytes::Bytes>, KvError>> {
        self.record_kv(cx, "get", &bucket, &key);
        Ok(Ok(self.kv.lock().unwrap_or_else(|e| e.into_inner()).get(&(bucket, key)).cloned()))
    }

    async fn set(&self, cx: Option<Context>, bucket: String, key: String, value: bytes::Bytes) -> anyhow::Result<Result<(), KvError>> {
        self.record_kv(cx, "set", &bucket, &key);
        self.kv.lock().unwrap_or_else(|e| e.into_inner()).insert((bucket, key), value);
        Ok(Ok(()))
    }

    async fn delete(&self, cx: Option<Context>, bucket: String, key: String) -> anyhow::Result<Result<(), KvError>> {
        self.record_kv(cx, "delete", &bucket, &key);
        self.kv.lock().unwrap_or_else(|e| e.into_inner()).remove(&(bucket, key));
        Ok(Ok(()))
    }

    async fn exists(&self, cx: Option<Context>, bucket: String, key: String) -> anyhow::Result<Result<bool, KvError>> {
        self.record_kv(cx, "exists", &bucket, &key);
        Ok(Ok(self.kv.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&(bucket, key))))
    }

    async fn list_keys(
        &self,
        cx: Option<Context>,
        bucket: String,
        cursor: Option<u64>,
    ) -> anyhow::Result<Result<bindings::exports::wrpc::keyvalue::store::KeyResponse, KvError>> {
        self.record_kv(cx, "list-keys", &bucket, "");
        let mut keys: Vec<String> =
            self.kv.lock().unwrap_or_else(|e| e.into_inner()).keys().filter(|(b, _)| *b == bucket).map(|(_, k)| k.clone()).collect();
        keys.sort();
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        Ok(Ok(bindings::exports::wrpc::keyvalue::store::KeyResponse { keys: keys.into_iter().skip(skip).collect(), cursor: None }))
    }
}

/// `wrpc:keyvalue/atomics`, in memory.
impl bindings::exports::wrpc::keyvalue::atomics::Handler<Option<Context>> for TestProvider {
    async fn increment(&self, cx: Option<Context>, bucket: String, key: String, delta: u64) -> anyhow::Result<Result<u64, KvError>> {
        self.record_kv(cx, "increment", &bucket, &key);
        let mut kv = self.kv.lock().unwrap_or_else(|e| e.into_inner());
        let entry = kv.entry((bucket, key)).or_insert_with(|| bytes::Bytes::from_static(b"0"));
        let n: u64 = std::str::from_utf8(entry).ok().and_then(|s| s.parse().ok()).unwrap_or(0) + delta;
        *entry = bytes::Bytes::from(n.to_string());
        Ok(Ok(n))
    }
}

/// `wrpc:keyvalue/batch`, in memory; recorded as one `kv` call per batch (the key: how many).
impl bindings::exports::wrpc::keyvalue::batch::Handler<Option<Context>> for TestProvider {
    async fn get_many(&self, cx: Option<Context>, bucket: String, keys: Vec<String>) -> anyhow::Result<Result<Vec<Option<(String, bytes::Bytes)>>, KvError>> {
        self.record_kv(cx, "get-many", &bucket, &keys.len().to_string());
        let kv = self.kv.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Ok(keys.into_iter().map(|k| kv.get(&(bucket.clone(), k.clone())).map(|v| (k, v.clone()))).collect()))
    }

    async fn set_many(&self, cx: Option<Context>, bucket: String, key_values: Vec<(String, bytes::Bytes)>) -> anyhow::Result<Result<(), KvError>> {
        self.record_kv(cx, "set-many", &bucket, &key_values.len().to_string());
        let mut kv = self.kv.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in key_values {
            kv.insert((bucket.clone(), k), v);
        }
        Ok(Ok(()))
    }

    async fn delete_many(&self, cx: Option<Context>, bucket: String, keys: Vec<String>) -> anyhow::Result<Result<(), KvError>> {
        self.record_kv(cx, "delete-many", &bucket, &keys.len().to_string());
        let mut kv = self.kv.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            kv.remove(&(bucket.clone(), k));
        }
        Ok(Ok(()))
    }
}

type KvError = bindings::exports::wrpc::keyvalue::store::Error;

/// `wasmcloud:messaging/consumer`, as a messaging provider serves it: publishes are recorded
/// (`published`), a request is answered with `reply to {body}`.
impl bindings::exports::wasmcloud::messaging::consumer::Handler<Option<Context>> for TestProvider {
    async fn request(
        &self,
        cx: Option<Context>,
        subject: String,
        body: bytes::Bytes,
        timeout_ms: u32,
    ) -> anyhow::Result<Result<bindings::wasmcloud::messaging::types::BrokerMessage, String>> {
        let caller = cx.and_then(|c| c.component).unwrap_or_default();
        self.record("requested", json!({ "caller": caller, "subject": subject, "timeout_ms": timeout_ms }));
        let answer = [b"reply to ".as_slice(), &body].concat();
        Ok(Ok(bindings::wasmcloud::messaging::types::BrokerMessage { subject, body: answer.into(), reply_to: None }))
    }

    async fn publish(&self, cx: Option<Context>, msg: bindings::wasmcloud::messaging::types::BrokerMessage) -> anyhow::Result<Result<(), String>> {
        let caller = cx.and_then(|c| c.component).unwrap_or_default();
        let body = String::from_utf8_lossy(&msg.body).to_string();
        self.record("published", json!({ "caller": caller, "subject": msg.subject, "body": body, "reply_to": msg.reply_to }));
        Ok(Ok(()))
    }
}

impl TestProvider {
    fn record_kv(&self, cx: Option<Context>, op: &str, bucket: &str, key: &str) {
        let caller = cx.and_then(|c| c.component).unwrap_or_default();
        self.record("kv", json!({ "op": op, "caller": caller, "bucket": bucket, "key": key }));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let provider = TestProvider::default();
    let shutdown = run_provider(provider.clone(), "trellis-test-provider").await?;
    let stubborn = provider.setting("ignore_shutdown").as_deref() == Some("true");
    if stubborn {
        // SIGTERM is caught and ignored: only SIGKILL ends this process.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let recorder = provider.clone();
        tokio::spawn(async move {
            while term.recv().await.is_some() {
                recorder.record("sigterm_ignored", json!({}));
            }
        });
    }
    let connection = get_connection();
    let client = connection.get_wrpc_client(connection.provider_key()).await?;
    serve_provider_exports(&client, provider, shutdown, bindings::serve).await?;
    if stubborn {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    }
    Ok(())
}
