//! `trellis:schedule/handler`: each tick increments `tick-{link}-{sequence}` and
//! `attempt-{link}-{sequence}` in `wasi:keyvalue` (a value above 1 in `tick-…` would be a
//! duplicate delivery), and `ticks-{link}` (all ticks run). The payload steers it:
//! `fail` returns an error every time; `fail-once` fails the first attempt of each tick only;
//! `slow` makes the first attempt of each tick count `started-{link}-{sequence}` and then take
//! 3 s (so a test can kill its host mid-tick); `trap` panics (a trap, not an error value).

mod bindings {
    wit_bindgen::generate!({ path: "../../wit/ticker", world: "ticker", generate_all });
    use super::Ticker;
    export!(Ticker);
}

use bindings::exports::trellis::schedule::handler::{Guest, TickInfo};
use bindings::wasi::keyvalue::{atomics, store};

struct Ticker;

impl Guest for Ticker {
    fn on_tick(tick: TickInfo) -> Result<(), String> {
        let bucket = store::open("ticks").map_err(|e| format!("open: {e:?}"))?;
        let key = format!("{}-{}", tick.link_name, tick.sequence);
        atomics::increment(&bucket, &format!("attempt-{key}"), 1).map_err(|e| format!("increment: {e:?}"))?;
        if tick.payload == "slow" && tick.attempt == 1 {
            atomics::increment(&bucket, &format!("started-{key}"), 1).map_err(|e| format!("increment: {e:?}"))?;
            ::wasi::clocks::monotonic_clock::subscribe_duration(3_000_000_000).block();
        }
        if tick.payload == "trap" {
            panic!("told to trap (tick {})", tick.sequence);
        }
        let fail = match tick.payload.as_str() {
            "fail" => true,
            "fail-once" => tick.attempt == 1,
            _ => false,
        };
        if fail {
            return Err(format!("told to fail (tick {}, attempt {})", tick.sequence, tick.attempt));
        }
        atomics::increment(&bucket, &format!("tick-{key}"), 1).map_err(|e| format!("increment: {e:?}"))?;
        atomics::increment(&bucket, &format!("ticks-{}", tick.link_name), 1).map_err(|e| format!("increment: {e:?}"))?;
        Ok(())
    }
}
