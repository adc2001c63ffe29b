//! The example guest components, built from `components/` by this crate's build script (see
//! `components/README.md` for the two toolchain routes). Each constant is the absolute path of one
//! component file.

/// `trellis:echo/echo` (echo, guest errors, hostile behaviours).
pub const ECHO: &str = env!("TRELLIS_ACTOR_ECHO");
/// `trellis:echo/pinger`, calling `echo` through a link.
pub const PINGER: &str = env!("TRELLIS_ACTOR_PINGER");
/// `trellis:fetch/fetch`: outgoing HTTP through `wasi:http/outgoing-handler`.
pub const HTTP_FETCH: &str = env!("TRELLIS_ACTOR_HTTP_FETCH");
/// `wasmcloud:messaging/handler` answering through `wasmcloud:messaging/consumer`.
pub const MSG_ECHO: &str = env!("TRELLIS_ACTOR_MSG_ECHO");
/// `wasmcloud:messaging/incoming-handler@0.3.0` answering through `request-reply` and `producer`.
pub const MSG3_ECHO: &str = env!("TRELLIS_ACTOR_MSG3_ECHO");
/// `wasi:http/incoming-handler` counting requests in `wasi:keyvalue`.
pub const KV_COUNTER: &str = env!("TRELLIS_ACTOR_KV_COUNTER");
/// `trellis:hostile/probe`: tries to leave its sandbox; its HTTP handler sends and reads
/// bodies of any size.
pub const HOSTILE: &str = env!("TRELLIS_ACTOR_HOSTILE");
/// `wasi:http/incoming-handler` answering "Hello from Trellis".
pub const HTTP_HELLO: &str = env!("TRELLIS_ACTOR_HTTP_HELLO");

/// `trellis:schedule/handler` recording each tick it runs in `wasi:keyvalue`.
pub const TICKER: &str = env!("TRELLIS_ACTOR_TICKER");

/// `wasi:http/incoming-handler` running every `wasi:blobstore` operation on a container.
pub const BLOB_OPS: &str = env!("TRELLIS_ACTOR_BLOB_OPS");

/// `trellis:echo/tally-user`, using the `counter` resource of `trellis:echo/tally` through a
/// link.
pub const TALLY: &str = env!("TRELLIS_ACTOR_TALLY");

/// Every component, in the order `trellis-guests` prints them.
pub const ALL: &[&str] = &[ECHO, PINGER, HTTP_FETCH, MSG_ECHO, MSG3_ECHO, KV_COUNTER, HOSTILE, HTTP_HELLO, TICKER, BLOB_OPS, TALLY];

/// `wasi:http/handler@0.3.0-rc-2026-03-15` (an async export) answering "Hello from Trellis",
/// with how many requests its instance has served in `x-served-by-instance`.
pub const HTTP_HELLO_P3: &str = env!("TRELLIS_ACTOR_HTTP_HELLO_P3");

/// `wasi:http/handler@0.3.0-rc-2026-03-15` counting requests in `wasi:keyvalue`, as
/// [`KV_COUNTER`] does for 0.2.
pub const KV_COUNTER_P3: &str = env!("TRELLIS_ACTOR_KV_COUNTER_P3");
