//! Keeps a [`ProviderDirectory`] current with the other hosts of the lattice: their
//! `provider_started`, `provider_stopped`, `host_heartbeat` and `host_stopped` events, and at
//! start the inventory of every host that answers a ping. This host's own events are skipped:
//! the providers actor records its providers directly, so a stop here revokes at once and a
//! late heartbeat cannot bring a stopped provider back.
//!
//! Trellis hosts sign their events and control replies (`Trellis-Signature`, over subject and
//! payload); wasmCloud's hosts sign nothing. A host seen signing once (`Signers`) is believed
//! only when signed from then on, and a signed event published more than [`MAX_EVENT_SKEW`]
//! from this host's clock, or older than the last one taken from it in the same run (a
//! replay), is ignored: nobody without a Trellis host's key can speak for it once it has been
//! heard. An unsigned message from a host never seen signing is taken, as wasmCloud takes it.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde_json::Value;
use tracing::{debug, warn};
use trellis_messages::event::{names, AttributesReader as _, CloudEvent, LatticeEvent as _};
use trellis_messages::{Client, CtlResponse, Subjects};

use crate::permission::directory::{FORGET_AFTER, MAX_HOSTS};

/// A signed event published further than this from this host's clock, either way, is not
/// believed: older, it may be a replay.
pub const MAX_EVENT_SKEW: Duration = Duration::from_secs(30);

/// How far `time` is from this host's clock, either way, when that is more than
/// [`MAX_EVENT_SKEW`]: an event published then is not believed.
pub fn skewed(time: SystemTime) -> Option<Duration> {
    let off = SystemTime::now().duration_since(time).unwrap_or_else(|e| e.duration());
    (off > MAX_EVENT_SKEW).then_some(off)
}
use crate::permission::ProviderDirectory;

/// Subscribes to the lattice's events and returns the task that follows them (abort it to
/// stop).
///
/// # Errors
/// When the subscription cannot be made.
pub async fn follow(
    nats: async_nats::Client,
    subjects: Subjects,
    host_id: String,
    directory: ProviderDirectory,
) -> Result<tokio::task::JoinHandle<()>, async_nats::SubscribeError> {
    let mut events = nats.subscribe(subjects.events_wildcard()).await?;
    // One task for both, so that stopping it drops every subscription inside the runtime.
    Ok(actix::spawn(async move {
        let signers = std::sync::Mutex::new(Signers::default());
        let bootstrap = bootstrap(nats.clone(), subjects.clone(), host_id.clone(), directory.clone(), &signers);
        let follow = async {
            while let Some(msg) = events.next().await {
                let Ok(event) = serde_json::from_slice::<CloudEvent>(&msg.payload) else { continue };
                let source = event.source().as_str();
                if source == host_id {
                    continue;
                }
                if !is_host_key(source) {
                    debug!(%source, "lattice event from a source that is not a host key ignored");
                    continue;
                }
                let stamp = Stamp { time: event.time().map(|t| SystemTime::from(*t)), id: event.id(), boot: event.name() == Some(names::HOST_STARTED) };
                let believed = signers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).check(source, &msg.subject, &msg.payload, signature(&msg), Some(stamp));
                if let Err(reason) = believed {
                    warn!(%source, event = %event.ty(), "lattice event ignored: {reason}");
                    continue;
                }
                if !directory.heard(source) {
                    warn!(%source, "lattice event ignored: {} other hosts are known already", crate::permission::directory::MAX_HOSTS);
                    continue;
                }
                apply(&directory, &event);
            }
        };
        futures::join!(bootstrap, follow);
    }))
}

/// The `Trellis-Signature` header of `msg`, if it has one.
fn signature(msg: &async_nats::Message) -> Option<&str> {
    msg.headers.as_ref()?.get(trellis_messages::event::SIGNATURE_HEADER).map(|v| v.as_str())
}

/// Why a message from another host is not believed.
#[derive(Debug, thiserror::Error)]
enum Disbelief {
    #[error("unsigned, from a host whose messages are signed")]
    Unsigned,
    #[error(transparent)]
    Signature(#[from] crate::identity::SignatureError),
    #[error("a signed event without a readable time")]
    NoTime,
    #[error("published {0:?} from this host's clock, more than {MAX_EVENT_SKEW:?} (a replay, or a clock to fix)")]
    Skewed(Duration),
    #[error("{MAX_HOSTS} signing hosts are known already")]
    TooMany,
    #[error("older than the last event taken from that host (a replay)")]
    Replay,
}

/// The hosts seen signing their messages, with the time of the last signed event taken from
/// each and when each was last heard; forgotten after [`FORGET_AFTER`] of silence, at most
/// [`MAX_HOSTS`].
#[derive(Debug, Default)]
struct Signers {
    hosts: HashMap<String, Signer>,
    /// When hosts silent for [`FORGET_AFTER`] were last forgotten.
    swept: Option<Instant>,
}

/// How often silent signing hosts are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Signer {
    /// The time of the last event taken in the current run.
    last_event: Option<SystemTime>,
    /// The time of the last `host_started` taken.
    last_boot: Option<SystemTime>,
    /// The ids of the last events taken, so one can be taken once only.
    recent: std::collections::VecDeque<String>,
    heard: Instant,
}

/// Event ids remembered per host (a heartbeat every 30 s and a few events between).
const RECENT_EVENTS: usize = 256;

/// What an event says of itself, by which replays are told.
#[derive(Debug, Clone, Copy)]
struct Stamp<'a> {
    /// When it says it was published (`None`: unreadable).
    time: Option<SystemTime>,
    /// Its CloudEvents id.
    id: &'a str,
    /// A `host_started`, which begins a new run whose clock may be behind the last.
    boot: bool,
}

impl Signers {
    /// Whether to believe a message from host `source` on `subject` with `payload` and
    /// `signature` (its `Trellis-Signature`); an event has its `stamp`, a reply (signed for
    /// this host's own inbox, so never a replay) none.
    fn check(&mut self, source: &str, subject: &str, payload: &[u8], signature: Option<&str>, stamp: Option<Stamp<'_>>) -> Result<(), Disbelief> {
        // Forgetting walks every host: once in a while, not for every event.
        if self.swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            self.hosts.retain(|_, s| s.heard.elapsed() < FORGET_AFTER);
            self.swept = Some(Instant::now());
        }
        let Some(signature) = signature else {
            return match self.hosts.contains_key(source) {
                true => Err(Disbelief::Unsigned),
                false => Ok(()),
            };
        };
        crate::identity::verify_message(source, subject, payload, signature)?;
        if let Some(Stamp { time, .. }) = stamp {
            let time = time.ok_or(Disbelief::NoTime)?;
            if let Some(off) = skewed(time) {
                return Err(Disbelief::Skewed(off));
            }
        }
        if !self.hosts.contains_key(source) && self.hosts.len() >= MAX_HOSTS {
            return Err(Disbelief::TooMany);
        }
        let signer = self.hosts.entry(source.to_string()).or_insert(Signer { last_event: None, last_boot: None, recent: Default::default(), heard: Instant::now() });
        if let Some(Stamp { time: Some(time), id, boot }) = stamp {
            let replay = signer.recent.iter().any(|seen| seen == id)
                || if boot { signer.last_boot.is_some_and(|b| time <= b) } else { signer.last_event.is_some_and(|l| time < l) };
            if replay {
                return Err(Disbelief::Replay);
            }
            if boot {
                signer.last_boot = Some(time);
                signer.last_event = Some(time);
            } else {
                signer.last_event = signer.last_event.max(Some(time));
            }
            if signer.recent.len() >= RECENT_EVENTS {
                signer.recent.pop_front();
            }
            signer.recent.push_back(id.to_string());
        }
        signer.heard = Instant::now();
        Ok(())
    }
}

/// Whether `source` is a host's public key (`N…`), as every host's events name it.
fn is_host_key(source: &str) -> bool {
    nkeys::KeyPair::from_public_key(source).is_ok_and(|k| k.key_pair_type() == nkeys::KeyPairType::Server)
}

/// Applies one event of another host.
fn apply(directory: &ProviderDirectory, event: &CloudEvent) {
    let host = event.source().as_str();
    let data = event.json();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match event.name() {
        Some(names::PROVIDER_STARTED) => {
            if let (Some(id), Some(reference)) =
                (text(data, "provider_id"), text(data, "image_ref").or_else(|| text(data, "provider_ref")))
            {
                directory.add(host, &id, &reference);
            }
        }
        Some(names::PROVIDER_STOPPED) => {
            if let Some(id) = text(data, "provider_id") {
                directory.remove(host, &id);
            }
        }
        Some(names::HOST_HEARTBEAT) => directory.set_host(host, providers_of(data)),
        Some(names::HOST_STOPPED) => directory.remove_host(host),
        _ => {}
    }
}

/// `(id, image_ref)` of the `providers` list of a heartbeat or inventory.
fn providers_of(data: &Value) -> Vec<(String, String)> {
    data.get("providers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| Some((p.get("id")?.as_str()?.to_string(), p.get("image_ref")?.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Learns what the hosts already running have, without waiting for their next heartbeat.
async fn bootstrap(nats: async_nats::Client, subjects: Subjects, host_id: String, directory: ProviderDirectory, signers: &std::sync::Mutex<Signers>) {
    let client = Client::new(nats.clone(), subjects.prefix(), subjects.lattice())
        .with_timeout(Duration::from_secs(2))
        .with_gather(Duration::from_millis(500));
    let hosts = match client.ping_hosts().await {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "cannot list the lattice's hosts; their providers are learnt from their heartbeats");
            return;
        }
    };
    for host in hosts.into_iter().filter(|h| h.id != host_id && is_host_key(&h.id)) {
        if !directory.heard(&host.id) {
            continue;
        }
        let asked = nats.send_request(subjects.host_get(&host.id), async_nats::Request::new().timeout(Some(Duration::from_secs(2))));
        let reply = match tokio::time::timeout(Duration::from_secs(2), asked).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                debug!(host = %host.id, error = %e, "no inventory");
                continue;
            }
            Err(_) => continue,
        };
        // A reply is signed for this request's own inbox: it cannot be a replay.
        let believed = signers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).check(&host.id, &reply.subject, &reply.payload, signature(&reply), None);
        if let Err(reason) = believed {
            warn!(host = %host.id, "inventory ignored: {reason}");
            continue;
        }
        let Ok(answer) = serde_json::from_slice::<CtlResponse<Value>>(&reply.payload) else { continue };
        if let Some(inventory) = answer.response.filter(|_| answer.success) {
            directory.set_host(&host.id, providers_of(&inventory));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_update_the_directory() {
        let d = ProviderDirectory::default();
        let ev = |name: &str, data: Value| trellis_messages::event::new_event("H2", name, data);
        apply(&d, &ev("provider_started", json!({"provider_id": "kv", "image_ref": "trellis://keyvalue"})));
        assert!(d.kind_of("kv").is_some());
        apply(&d, &ev("provider_stopped", json!({"provider_id": "kv"})));
        assert!(d.kind_of("kv").is_none());
        apply(&d, &ev("host_heartbeat", json!({"providers": [{"id": "m", "image_ref": "trellis://messaging"}]})));
        assert!(d.kind_of("m").is_some());
        apply(&d, &ev("host_stopped", json!({})));
        assert!(d.kind_of("m").is_none());
        apply(&d, &ev("provider_started", json!("not an object")));
    }

    #[test]
    fn a_host_seen_signing_is_believed_only_signed_and_never_replayed() {
        let host = crate::identity::HostIdentity::new(None, None).expect("a key");
        let (id, subject) = (host.id(), "wasmbus.evt.a.host_heartbeat");
        let base = SystemTime::now() - Duration::from_secs(10);
        let ids: Vec<String> = (0..12).map(|i| format!("event-{i}")).collect();
        let at = |s: u64, n: usize| Some(Stamp { time: Some(base + Duration::from_secs(s)), id: &ids[n], boot: false });
        let boot = |s: u64, n: usize| Some(Stamp { time: Some(base + Duration::from_secs(s)), id: &ids[n], boot: true });
        let mut signers = Signers::default();
        // Unsigned, as wasmCloud's hosts send: taken while the host has not been seen signing.
        assert!(signers.check(&id, subject, b"1", None, at(1, 1)).is_ok());
        let signed = |payload: &[u8]| host.sign_message(subject, payload);
        assert!(signers.check(&id, subject, b"2", Some(&signed(b"2")), at(2, 2)).is_ok());
        // From then on: unsigned, wrongly signed, signed for another subject, older, the same
        // event again: not taken.
        assert!(matches!(signers.check(&id, subject, b"3", None, at(3, 3)), Err(Disbelief::Unsigned)));
        let forger = crate::identity::HostIdentity::new(None, None).expect("a key");
        assert!(matches!(signers.check(&id, subject, b"3", Some(&forger.sign_message(subject, b"3")), at(3, 3)), Err(Disbelief::Signature(_))), "another key");
        assert!(matches!(signers.check(&id, "wasmbus.evt.b.host_heartbeat", b"3", Some(&signed(b"3")), at(3, 3)), Err(Disbelief::Signature(_))), "another subject");
        assert!(matches!(signers.check(&id, subject, b"1", Some(&signed(b"1")), at(1, 1)), Err(Disbelief::Replay)), "older");
        assert!(matches!(signers.check(&id, subject, b"2", Some(&signed(b"2")), at(2, 2)), Err(Disbelief::Replay)), "the same time and id");
        assert!(signers.check(&id, subject, b"4", Some(&signed(b"4")), at(4, 4)).is_ok());
        // Outside the clock window either way, or without a readable time: not taken.
        let far = |d: Duration, ahead: bool| Some(Stamp { time: Some(if ahead { SystemTime::now() + d } else { SystemTime::now() - d }), id: "far", boot: false });
        assert!(matches!(signers.check(&id, subject, b"5", Some(&signed(b"5")), far(MAX_EVENT_SKEW * 2, false)), Err(Disbelief::Skewed(_))), "too old");
        assert!(matches!(signers.check(&id, subject, b"5", Some(&signed(b"5")), far(MAX_EVENT_SKEW * 2, true)), Err(Disbelief::Skewed(_))), "too far ahead");
        let untimed = Some(Stamp { time: None, id: "untimed", boot: false });
        assert!(matches!(signers.check(&id, subject, b"5", Some(&signed(b"5")), untimed), Err(Disbelief::NoTime)));
        // A new run (`host_started`) may begin behind the last run's clock; the same start
        // again, or an earlier one, is a replay.
        assert!(signers.check(&id, subject, b"6", Some(&signed(b"6")), boot(3, 6)).is_ok(), "a restart");
        assert!(signers.check(&id, subject, b"7", Some(&signed(b"7")), at(3, 7)).is_ok(), "its events");
        assert!(matches!(signers.check(&id, subject, b"6", Some(&signed(b"6")), boot(3, 8)), Err(Disbelief::Replay)), "its start again");
        assert!(matches!(signers.check(&id, subject, b"9", Some(&signed(b"9")), boot(1, 9)), Err(Disbelief::Replay)), "an earlier start");
        // A reply (no stamp) signed by the host is taken; another host's unsigned ones still are.
        assert!(signers.check(&id, "_INBOX.x", b"{}", Some(&host.sign_message("_INBOX.x", b"{}")), None).is_ok());
        assert!(signers.check(&forger.id(), subject, b"8", None, at(5, 10)).is_ok());
    }

    #[test]
    fn only_host_keys_are_sources() {
        assert!(is_host_key(&nkeys::KeyPair::new_server().public_key()));
        for bad in ["H2", "", &nkeys::KeyPair::new_account().public_key(), "NOTAKEY"] {
            assert!(!is_host_key(bad), "{bad}");
        }
    }
}
