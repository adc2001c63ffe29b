//! `trellis:echo/pinger`: calls `trellis:echo/echo` through whichever component its link points
//! to, on whichever host runs it; reads config through `wasi:config/store`
//! and its earlier name, `wasi:config/runtime`.

wit_bindgen::generate!({ path: "../../wit/echo", world: "pinger-component", generate_all });

use exports::trellis::echo::pinger::Guest;
use trellis::echo::echo;
use self::wasi::config::{runtime, store};
use ::wasi::clocks::monotonic_clock;
use wasmcloud::bus::lattice;

struct Pinger;

impl Guest for Pinger {
    fn ping(message: String) -> String {
        echo::echo(&message)
    }

    fn ping_via(link: String, message: String) -> String {
        lattice::set_link_name(&link, vec![lattice::CallTargetInterface::new("trellis", "echo", "echo")]);
        echo::echo(&message)
    }

    fn ping_many(count: u32, message: String) -> u32 {
        for _ in 0..count {
            let _ = echo::echo(&message);
        }
        count
    }

    fn ping_timed(count: u32, message: String) -> Vec<u64> {
        (0..count)
            .map(|_| {
                let start = monotonic_clock::now();
                let _ = echo::echo(&message);
                monotonic_clock::now().saturating_sub(start)
            })
            .collect()
    }

    fn ping_spin() {
        echo::spin();
    }

    fn config(key: String) -> Option<String> {
        store::get(&key).ok().flatten()
    }

    fn runtime_config(key: String) -> Option<String> {
        runtime::get(&key).ok().flatten()
    }
}

export!(Pinger);
