//! `wasmcloud:messaging/incoming-handler@0.3.0`, answering through `request-reply.reply`:
//! - `ask.<subject>`: requests `<subject>` (timeout 2 s) with the message's data and replies
//!   with the first answer's data;
//! - `pub.<subject>`: sends the data to `<subject>` through `producer.send`, with the metadata
//!   `x-trellis: yes` and the incoming message's own metadata, and replies `sent`;
//! - `client.<name>.<subject>`: sends through a client connected with `<name>` and replies
//!   `sent`, or the error's text;
//! - `hold.<n>`: makes `n` messages of 1 MiB each and keeps them (a guest holding messages);
//! - `badmeta.<subject>`: sends with metadata NATS cannot carry (`a b: x`) and replies with
//!   the error's text (or `sent`);
//! - `churn.<n>`: makes and drops `n` messages of 1 MiB, one after another, and replies `churned`;
//! - `many.<subject>`: requests `<subject>` expecting up to 3 replies within 1 s and replies
//!   `got <count>`;
//! - anything else: replies `echo3: <data>` (with the incoming metadata copied onto the reply).
//!
//! Each message is logged through `wasi:logging`.

wit_bindgen::generate!({ path: "../../wit/messaging03", world: "msg3-echo", generate_all });

use exports::wasmcloud::messaging::incoming_handler::Guest;
use wasi::logging::logging::{log, Level};
use wasmcloud::messaging::types::{Client, Error, Message};
use wasmcloud::messaging::{producer, request_reply};

struct Msg3Echo;

fn text(e: &Error) -> String {
    match e {
        Error::Timeout => "timeout".into(),
        Error::Connection(s) => format!("connection: {s}"),
        Error::PermissionDenied(s) => format!("permission denied: {s}"),
        Error::Other(s) => format!("other: {s}"),
    }
}

fn answer(to: &Message, data: &[u8]) -> Result<(), Error> {
    let reply = Message::new(data);
    if let Some(meta) = to.metadata() {
        reply.set_metadata(&meta);
    }
    request_reply::reply(to, reply)
}

impl Guest for Msg3Echo {
    fn handle(message: Message) -> Result<(), Error> {
        let topic = message.topic().unwrap_or_default();
        log(Level::Info, "msg3-echo", &format!("message on `{topic}`"));
        let data = message.data();
        if let Some(subject) = topic.strip_prefix("ask.") {
            let client = Client::connect("")?;
            let options = request_reply::RequestOptions::new();
            options.set_timeout_ms(2000);
            let outgoing = Message::new(&data);
            let replies = request_reply::request(&client, subject, &outgoing, Some(options))?;
            let first = replies.first().map(Message::data).unwrap_or_default();
            return answer(&message, &first);
        }
        if let Some(subject) = topic.strip_prefix("pub.") {
            let client = Client::connect("default")?;
            let outgoing = Message::new(&data);
            outgoing.set_content_type("text/plain");
            for (k, v) in message.metadata().unwrap_or_default() {
                outgoing.add_metadata(&k, &v);
            }
            outgoing.add_metadata("x-trellis", "yes");
            producer::send(&client, subject, outgoing)?;
            return answer(&message, b"sent");
        }
        if let Some(rest) = topic.strip_prefix("client.") {
            let (name, subject) = rest.split_once('.').unwrap_or((rest, "nowhere"));
            let sent = Client::connect(name).and_then(|c| producer::send(&c, subject, Message::new(&data)));
            return match sent {
                Ok(()) => answer(&message, b"sent"),
                Err(e) => answer(&message, text(&e).as_bytes()),
            };
        }
        if let Some(subject) = topic.strip_prefix("badmeta.") {
            let client = Client::connect("")?;
            let outgoing = Message::new(&data);
            outgoing.add_metadata("a b", "x");
            return match producer::send(&client, subject, outgoing) {
                Ok(()) => answer(&message, b"sent"),
                Err(e) => answer(&message, text(&e).as_bytes()),
            };
        }
        if let Some(n) = topic.strip_prefix("churn.") {
            let n: usize = n.parse().unwrap_or(0);
            for _ in 0..n {
                drop(Message::new(&vec![7u8; 1 << 20]));
            }
            return answer(&message, b"churned");
        }
        if let Some(subject) = topic.strip_prefix("many.") {
            let client = Client::connect("")?;
            let options = request_reply::RequestOptions::new();
            options.set_timeout_ms(1000);
            options.set_expected_replies(3);
            let replies = request_reply::request(&client, subject, &Message::new(&data), Some(options))?;
            return answer(&message, format!("got {}", replies.len()).as_bytes());
        }
        if let Some(n) = topic.strip_prefix("hold.") {
            let n: usize = n.parse().unwrap_or(0);
            let held: Vec<Message> = (0..n).map(|_| Message::new(&vec![7u8; 1 << 20])).collect();
            return answer(&message, format!("held {}", held.len()).as_bytes());
        }
        answer(&message, &[b"echo3: ".as_slice(), &data].concat())
    }
}

export!(Msg3Echo);
