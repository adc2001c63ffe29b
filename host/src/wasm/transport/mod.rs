//! How calls reach a component: [`local`] in-process (the components running on this host);
//! [`wrpc`] and [`wrpc_http`] (and, calling out, [`wrpc_http_call`]) over wRPC on NATS, decoding values with [`wrpc_value`] (lengths
//! never trusted) and bounding request heads with [`wrpc_head`], failing with [`wrpc_error`]; [`elsewhere`] remembers components only
//! wRPC hosts (wasmCloud 1.x) run, so link calls to them skip a round trip; [`handles`] carries
//! the handles of resources a link's target serves; [`http`] serves a component's
//! `wasi:http` export to the built-in HTTP server (and forwards to other hosts), with request
//! bodies on a clock ([`http_body`]), through reused instances where the component allows
//! ([`http_pool`]), answering for itself with [`http_response`]; [`slots`] bounds the calls that run and wait. Trellis's own request/reply over NATS is the component
//! actor's (`crate::actors::component`).

pub mod elsewhere;
pub mod handles;
pub mod http;
pub mod http_body;
pub mod http_pool;
pub mod http_response;
pub mod local;
pub mod slots;
pub mod wrpc;
pub mod wrpc_error;
pub mod wrpc_head;
pub mod wrpc_http;
pub mod wrpc_http_call;
pub mod wrpc_value;
