//! A policy service for Trellis hosts (and wasmCloud's: the messages are the same). It answers
//! every policy request on a NATS subject: components and providers whose reference contains one
//! of the given words are denied, and so are calls whose `interface.function` does; everything
//! else is allowed. Start hosts with
//! `--policy-topic` naming the same subject. With `POLICY_SEED` (an nkey seed) in its
//! environment it signs every reply, for hosts started with `--policy-key` (the seed's public key).
//!
//! ```sh
//! cargo run -p trellis-host --example policy_service -- nats://127.0.0.1:4222 policy.default untrusted,evil
//! ```

use futures::StreamExt;
use trellis_host::trust::policy::{sign, Decision, Request, RequestBody};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(topic)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: policy_service NATS_URL TOPIC [DENIED,WORDS]");
    };
    let deny: Vec<String> = args.next().unwrap_or_default().split(',').filter(|w| !w.is_empty()).map(String::from).collect();
    let nats = async_nats::connect(url).await?;
    let mut requests = nats.subscribe(topic.clone()).await?;
    nats.flush().await?;
    println!("answering policy requests on {topic}; denying references that contain {deny:?}");
    while let Some(msg) = requests.next().await {
        let Some(reply) = msg.reply else { continue };
        let decision = match serde_json::from_slice::<Request>(&msg.payload) {
            Ok(request) => {
                let (what, reference) = match &request.request {
                    RequestBody::StartComponent(c) => (format!("component {}", c.component_id), c.image_ref.clone()),
                    RequestBody::StartProvider(p) => (format!("provider {}", p.provider_id), p.image_ref.clone()),
                    RequestBody::PerformInvocation(i) => {
                        (format!("call to {}", i.target.component_id), format!("{} {}.{}", i.target.image_ref, i.interface, i.function))
                    }
                };
                let word = deny.iter().find(|w| reference.contains(w.as_str()));
                println!("{} {what} from {reference} on host {}", if word.is_some() { "deny" } else { "allow" }, request.host.public_key);
                Decision {
                    request_id: request.request_id,
                    permitted: word.is_none(),
                    message: word.map(|w| format!("`{reference}` contains `{w}`, which this policy denies")),
                }
            }
            Err(e) => Decision { request_id: String::new(), permitted: false, message: Some(format!("not a policy request: {e}")) },
        };
        let payload = serde_json::to_vec(&decision)?;
        let mut headers = async_nats::HeaderMap::new();
        if let Ok(seed) = std::env::var("POLICY_SEED") {
            headers.insert(trellis_host::trust::policy::SIGNATURE_HEADER, sign(&seed, &payload).map_err(anyhow::Error::msg)?.as_str());
        }
        nats.publish_with_headers(reply, headers, payload.into()).await?;
    }
    Ok(())
}
