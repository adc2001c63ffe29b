//! `wasmcloud:messaging` 0.3.0 for components: `types` (the `client`, `message` resources),
//! `producer.send` and `request-reply` (`request`, `reply`, `request-options`), bound with
//! `bindgen!` from `wit/messaging03/`, over the same links and [`Permit`] as 0.2's consumer.
//!
//! As on a wasmCloud 1.9 host: `client.connect(name)` names the link (empty: `default`), and a
//! send or request through a client whose name is not the link the guest chose for
//! `wasmcloud:messaging/producer` (`request-reply` for requests and replies; `default` unless
//! `wasmcloud:bus` chose another) is an error naming both. `reply` answers on the reply subject
//! of the message given. Beyond 1.9: request options are honoured (the timeout, bounded by the
//! call's deadline; up to [`MAX_REPLIES`](super::permit::MAX_REPLIES) replies through the
//! built-in provider), and metadata travels as NATS headers both ways. Through an external
//! provider (wRPC, `wasmcloud:messaging/consumer@0.2.0`) metadata is refused and one reply comes
//! back; content types are not carried by NATS and are dropped.
//!
//! Bound: the messages one call holds in the host (bodies and metadata) are at most
//! [`MAX_HELD_BYTES`]; past it the call stops, naming the bound.

use bytes::Bytes;
use tracing::debug;
use wasmtime::component::{Linker, Resource};

use super::permit::{MessagingError, Outgoing, Permit, Received};
use crate::capabilities::view::{view, HasView, View};
use crate::wasm::state::GuestState;

/// The host side of `wasmcloud:messaging@0.3.0`, generated from its WIT.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/messaging03/deps/messaging",
        inline: "package trellis:host-messaging3; world imports { import wasmcloud:messaging/producer@0.3.0; import wasmcloud:messaging/request-reply@0.3.0; }",
        world: "trellis:host-messaging3/imports",
        imports: { default: async | trappable },
        with: {
            "wasmcloud:messaging/types.client": super::Client,
            "wasmcloud:messaging/types.message": super::Message,
            "wasmcloud:messaging/request-reply.request-options": super::RequestOptions,
        },
    });
}

use bindings::wasmcloud::messaging::{producer, request_reply, types};
pub use types::Error;

/// Bytes of messages (bodies, metadata) one call may hold in the host.
pub const MAX_HELD_BYTES: usize = 64 << 20;
/// Metadata entries one message may have.
pub const MAX_METADATA_ENTRIES: usize = 1024;
/// What a message costs beyond its bytes.
const MESSAGE_COST: usize = 128;
/// What a metadata entry costs beyond its bytes.
const ENTRY_COST: usize = 64;

/// A connection the guest opened: the link it names.
#[derive(Debug)]
pub struct Client {
    name: String,
}

/// A message: one the component handles or received as an answer, or one it made.
#[derive(Debug, Default)]
pub struct Message {
    topic: Option<String>,
    reply_to: Option<String>,
    content_type: Option<String>,
    data: Bytes,
    metadata: Option<Vec<(String, String)>>,
}

impl Message {
    /// A message delivered to the component.
    pub fn delivered(subject: String, body: Bytes, reply_to: Option<String>, headers: Vec<(String, String)>) -> Self {
        Self { topic: Some(subject), reply_to, data: body, metadata: (!headers.is_empty()).then_some(headers), ..Self::default() }
    }

    /// What it costs the host: its bytes, and a fixed cost for itself and each metadata entry
    /// (so a million empty entries are not free).
    fn size(&self) -> usize {
        let meta: usize = self.metadata.iter().flatten().map(|(k, v)| ENTRY_COST + k.len() + v.len()).sum();
        let strings = [&self.topic, &self.reply_to, &self.content_type].iter().map(|s| s.as_ref().map_or(0, String::len)).sum::<usize>();
        MESSAGE_COST + self.data.len() + meta + strings
    }

    fn entries(&self) -> usize {
        self.metadata.as_ref().map_or(0, Vec::len)
    }
}

impl From<Received> for Message {
    fn from(r: Received) -> Self {
        Self::delivered(r.subject, r.body, r.reply_to, r.headers)
    }
}

/// `request-options`.
#[derive(Debug, Default)]
pub struct RequestOptions {
    timeout_ms: Option<u32>,
    expected_replies: Option<u32>,
}

/// Bytes of messages the call holds.
#[derive(Debug, Default, Clone)]
struct Held(usize);

impl View<'_> {
    /// Counts `more` bytes in (and `less` out) of what the call holds; past the bound, the call
    /// stops.
    fn hold(&mut self, more: usize, less: usize) -> wasmtime::Result<()> {
        let held = self.call_state::<Held>();
        let now = held.0.saturating_sub(less).saturating_add(more);
        if now > MAX_HELD_BYTES {
            return Err(wasmtime::Error::msg(format!("wasmcloud:messaging: the messages this call holds would exceed {MAX_HELD_BYTES} bytes")));
        }
        held.0 = now;
        Ok(())
    }

    /// Puts a message in the table, counted.
    fn push_message(&mut self, message: Message) -> wasmtime::Result<Resource<Message>> {
        check_entries(&message)?;
        self.hold(message.size(), 0)?;
        Ok(self.table().push(message)?)
    }

    /// Takes a message out of the table (sent, or dropped).
    fn take_message(&mut self, message: Resource<Message>) -> wasmtime::Result<Message> {
        let message = self.table().delete(message)?;
        self.hold(0, message.size())?;
        Ok(message)
    }

    /// Changes a message in place, counting its size before and after.
    fn change_message(&mut self, message: &Resource<Message>, change: impl FnOnce(&mut Message)) -> wasmtime::Result<()> {
        let before = self.table().get(message)?.size();
        let mut taken = std::mem::take(self.table().get_mut(message)?);
        change(&mut taken);
        let after = taken.size();
        let entries = check_entries(&taken);
        *self.table().get_mut(message)? = taken;
        entries?;
        self.hold(after, before)
    }

    /// The permit of a call through `client`, whose name must be the link chosen for `key`.
    fn permit_for(&mut self, client: &Resource<Client>, key: &str) -> wasmtime::Result<Result<Permit, Error>> {
        let name = self.table().get(client)?.name.clone();
        let name = if name.is_empty() { "default".to_string() } else { name };
        let chosen = self.chosen_link(key);
        if name != chosen {
            return Ok(Err(Error::Other(format!("mismatch between link name and client connection name, `{name}` != `{chosen}`"))));
        }
        Ok(Permit::new(self, &name).map_err(to_error))
    }
}

/// Stops a call whose message has more metadata entries than [`MAX_METADATA_ENTRIES`].
fn check_entries(message: &Message) -> wasmtime::Result<()> {
    if message.entries() > MAX_METADATA_ENTRIES {
        return Err(wasmtime::Error::msg(format!("wasmcloud:messaging: a message may have at most {MAX_METADATA_ENTRIES} metadata entries")));
    }
    Ok(())
}

/// Puts a message delivered to the component into its call's table (counted), for
/// `incoming-handler.handle`.
///
/// # Errors
/// Past [`MAX_HELD_BYTES`]; a full table.
pub(crate) fn deliver(state: &mut GuestState, message: Message) -> wasmtime::Result<Resource<Message>> {
    view(state).push_message(message)
}

/// The text of an `incoming-handler` error, as the provider's side of 0.2 carries it.
pub(crate) fn error_text(e: &Error) -> String {
    match e {
        Error::Timeout => "timeout".into(),
        Error::Connection(s) => format!("connection: {s}"),
        Error::PermissionDenied(s) => format!("permission denied: {s}"),
        Error::Other(s) => s.clone(),
    }
}

fn to_error(e: MessagingError) -> Error {
    match e {
        MessagingError::Denied(d) => Error::PermissionDenied(d.to_string()),
        MessagingError::Timeout { .. } => Error::Timeout,
        MessagingError::Provider(p) => Error::Connection(p.to_string()),
        MessagingError::NoLattice => Error::Connection(e.to_string()),
        other => Error::Other(other.to_string()),
    }
}

fn outgoing(subject: String, message: Message) -> Outgoing {
    if let Some(ct) = &message.content_type {
        debug!(content_type = %ct, "content-type is not carried by NATS; dropped");
    }
    Outgoing { subject, body: message.data, reply_to: None, headers: message.metadata.unwrap_or_default() }
}

/// Links one `wasmcloud:messaging` 0.3 interface (`types`, `producer`, `request-reply`).
///
/// # Errors
/// When the linker refuses a definition.
pub(crate) fn link(linker: &mut Linker<GuestState>, import: &str) -> wasmtime::Result<()> {
    if import.starts_with("wasmcloud:messaging/producer@") {
        producer::add_to_linker::<GuestState, HasView>(linker, view)
    } else if import.starts_with("wasmcloud:messaging/request-reply@") {
        request_reply::add_to_linker::<GuestState, HasView>(linker, view)
    } else {
        types::add_to_linker::<GuestState, HasView>(linker, view)
    }
}

impl types::Host for View<'_> {}

impl types::HostClient for View<'_> {
    async fn connect(&mut self, name: String) -> wasmtime::Result<Result<Resource<Client>, Error>> {
        if name.len() > crate::wasm::state::MAX_LINK_NAME_BYTES {
            return Ok(Err(Error::Other(format!("a client name of {} bytes is longer than {}", name.len(), crate::wasm::state::MAX_LINK_NAME_BYTES))));
        }
        Ok(Ok(self.table().push(Client { name })?))
    }

    async fn disconnect(&mut self, client: Resource<Client>) -> wasmtime::Result<Result<(), Error>> {
        self.table().get(&client)?;
        Ok(Ok(()))
    }

    async fn drop(&mut self, client: Resource<Client>) -> wasmtime::Result<()> {
        self.table().delete(client)?;
        Ok(())
    }
}

impl types::HostMessage for View<'_> {
    async fn new(&mut self, data: Vec<u8>) -> wasmtime::Result<Resource<Message>> {
        self.push_message(Message { data: data.into(), ..Message::default() })
    }

    async fn topic(&mut self, message: Resource<Message>) -> wasmtime::Result<Option<String>> {
        Ok(self.table().get(&message)?.topic.clone())
    }

    async fn content_type(&mut self, message: Resource<Message>) -> wasmtime::Result<Option<String>> {
        Ok(self.table().get(&message)?.content_type.clone())
    }

    async fn set_content_type(&mut self, message: Resource<Message>, content_type: String) -> wasmtime::Result<()> {
        self.change_message(&message, |m| m.content_type = Some(content_type))
    }

    async fn data(&mut self, message: Resource<Message>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table().get(&message)?.data.to_vec())
    }

    async fn set_data(&mut self, message: Resource<Message>, data: Vec<u8>) -> wasmtime::Result<()> {
        self.change_message(&message, |m| m.data = data.into())
    }

    async fn metadata(&mut self, message: Resource<Message>) -> wasmtime::Result<Option<Vec<(String, String)>>> {
        Ok(self.table().get(&message)?.metadata.clone())
    }

    async fn add_metadata(&mut self, message: Resource<Message>, key: String, value: String) -> wasmtime::Result<()> {
        // Overwrites a value of the same key, as the interface says.
        self.change_message(&message, |m| {
            let meta = m.metadata.get_or_insert_with(Vec::new);
            meta.retain(|(k, _)| *k != key);
            meta.push((key, value));
        })
    }

    async fn set_metadata(&mut self, message: Resource<Message>, meta: Vec<(String, String)>) -> wasmtime::Result<()> {
        self.change_message(&message, |m| m.metadata = Some(meta))
    }

    async fn remove_metadata(&mut self, message: Resource<Message>, key: String) -> wasmtime::Result<()> {
        self.change_message(&message, |m| {
            if let Some(meta) = &mut m.metadata {
                meta.retain(|(k, _)| *k != key);
            }
        })
    }

    async fn drop(&mut self, message: Resource<Message>) -> wasmtime::Result<()> {
        self.take_message(message)?;
        Ok(())
    }
}

impl producer::Host for View<'_> {
    async fn send(&mut self, client: Resource<Client>, topic: String, message: Resource<Message>) -> wasmtime::Result<Result<(), Error>> {
        let message = self.take_message(message)?;
        let permit = match self.permit_for(&client, "wasmcloud:messaging/producer")? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(permit.publish(outgoing(topic, message)).await.map_err(to_error))
    }
}

impl request_reply::Host for View<'_> {
    async fn request(
        &mut self,
        client: Resource<Client>,
        topic: String,
        message: Resource<Message>,
        options: Option<Resource<RequestOptions>>,
    ) -> wasmtime::Result<Result<Vec<Resource<Message>>, Error>> {
        let options = options.map(|o| self.table().delete(o)).transpose()?.unwrap_or_default();
        let m = self.table().get(&message)?;
        let copy = Message { data: m.data.clone(), metadata: m.metadata.clone(), content_type: m.content_type.clone(), ..Message::default() };
        let permit = match self.permit_for(&client, "wasmcloud:messaging/request-reply")? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let answers = match permit.request(outgoing(topic, copy), options.timeout_ms, options.expected_replies.unwrap_or(1)).await {
            Ok(a) => a,
            Err(e) => return Ok(Err(to_error(e))),
        };
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(self.push_message(answer.into())?);
        }
        Ok(Ok(out))
    }

    async fn reply(&mut self, reply_to: Resource<Message>, message: Resource<Message>) -> wasmtime::Result<Result<(), Error>> {
        let message = self.take_message(message)?;
        let Some(subject) = self.table().get(&reply_to)?.reply_to.clone() else {
            return Ok(Err(Error::Other("the message has no reply subject".into())));
        };
        let link = self.chosen_link("wasmcloud:messaging/request-reply").to_string();
        let permit = match Permit::new(self, &link) {
            Ok(p) => p,
            Err(e) => return Ok(Err(to_error(e))),
        };
        Ok(permit.publish(outgoing(subject, message)).await.map_err(to_error))
    }
}

impl request_reply::HostRequestOptions for View<'_> {
    async fn new(&mut self) -> wasmtime::Result<Resource<RequestOptions>> {
        Ok(self.table().push(RequestOptions::default())?)
    }

    async fn set_timeout_ms(&mut self, options: Resource<RequestOptions>, timeout_ms: u32) -> wasmtime::Result<()> {
        self.table().get_mut(&options)?.timeout_ms = Some(timeout_ms);
        Ok(())
    }

    async fn set_expected_replies(&mut self, options: Resource<RequestOptions>, expected: u32) -> wasmtime::Result<()> {
        self.table().get_mut(&options)?.expected_replies = Some(expected);
        Ok(())
    }

    async fn drop(&mut self, options: Resource<RequestOptions>) -> wasmtime::Result<()> {
        self.table().delete(options)?;
        Ok(())
    }
}
