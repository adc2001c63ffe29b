//! Built-in capability providers.
//!
//! | reference | kind | how it works |
//! |---|---|---|
//! | `wasmcloud+builtin://http-server`, `trellis://http-server` | [`ProviderKind::HttpServer`] | an actor that follows its links (source = the provider) and serves each linked component's `wasi:http/incoming-handler` on the address in the link's source config |
//! | `wasmcloud+builtin://http-client`, `trellis://http-client` | [`ProviderKind::HttpClient`] | in-process: a component linked to it for `wasi:http/outgoing-handler` may send requests; others get `HTTP-request-denied` |
//! | `wasmcloud+builtin://keyvalue-nats`, `trellis://keyvalue` | [`ProviderKind::KeyValue`] | in-process: `wasi:keyvalue/store` + `atomics` on the JetStream KV bucket named by the link's target config (`bucket`) |
//!
//! | `wasmcloud+builtin://messaging-nats`, `trellis://messaging` | [`ProviderKind::Messaging`] | an actor that follows its links (`wasmcloud:messaging/handler`) and delivers the messages of each link's `subscriptions` to the component; components linked to it for `wasmcloud:messaging/consumer` publish and request |
//!
//! Any other reference names an external provider executable ([`external`]), started and
//! supervised as its own process.
//!
//! Providers that run in-process are still started, listed and stopped like any provider, so
//! tools see them; their work happens in the host functions guests call, without a NATS hop.

pub mod external;
pub mod http_server;
pub mod messaging;

pub use crate::capability::kind::ProviderKind;
