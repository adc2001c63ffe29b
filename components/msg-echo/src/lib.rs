//! `wasmcloud:messaging/handler`: a message with a reply subject is answered with
//! `echo: <body>`; a message on `ask.<subject>` sends a request to `<subject>` through
//! `wasmcloud:messaging/consumer` and replies with the answer. Each message is logged through
//! `wasi:logging`.

wit_bindgen::generate!({ path: "../../wit/messaging", world: "msg-echo", generate_all });

use exports::wasmcloud::messaging::handler::Guest;
use wasi::logging::logging::{log, Level};
use wasmcloud::messaging::consumer;
use wasmcloud::messaging::types::BrokerMessage;

struct MsgEcho;

impl Guest for MsgEcho {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        log(Level::Info, "msg-echo", &format!("message on `{}`", msg.subject));
        let Some(reply_to) = msg.reply_to else { return Ok(()) };
        let body = match msg.subject.strip_prefix("ask.") {
            Some(subject) => consumer::request(subject, &msg.body, 2000)?.body,
            None => [b"echo: ".as_slice(), &msg.body].concat(),
        };
        consumer::publish(&BrokerMessage { subject: reply_to, body, reply_to: None })
    }
}

export!(MsgEcho);
