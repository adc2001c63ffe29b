//! `trellis:echo/tally-user`: uses the `counter` resource of `trellis:echo/tally` through
//! whichever target its link points to; the handles are the target's.

wit_bindgen::generate!({ path: "../../wit/echo", world: "tally-component", generate_all });

use exports::trellis::echo::tally_user::Guest;
use trellis::echo::tally::{self, Counter};
use wasmcloud::bus::lattice;

struct Tally;

impl Guest for Tally {
    fn run(start: u32, adds: Vec<u32>) -> Vec<u32> {
        let counter = Counter::new(start);
        let mut seen: Vec<u32> = adds.iter().map(|n| counter.add(*n)).collect();
        seen.push(tally::peek(&counter));
        seen.push(tally::finish(counter));
        seen
    }

    fn peek_via(made_by: String, asked: String, start: u32) -> u32 {
        let tally = || vec![lattice::CallTargetInterface::new("trellis", "echo", "tally")];
        lattice::set_link_name(&made_by, tally());
        let counter = Counter::new(start);
        lattice::set_link_name(&asked, tally());
        tally::peek(&counter)
    }
}

export!(Tally);
