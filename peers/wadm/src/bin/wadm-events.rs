//! Reads lattice events, one CloudEvent as JSON per line (as hosts publish them on
//! `wasmbus.evt.{lattice}.>`), and parses each with wadm's own event types
//! (`wadm::events::Event::try_from`). Prints one line per event: `ok TYPE` or `err TYPE: why`.

use std::io::BufRead;

fn main() -> anyhow::Result<()> {
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: cloudevents::Event = match serde_json::from_str(&line) {
            Ok(e) => e,
            Err(e) => {
                println!("err ?: not a CloudEvent: {e}");
                continue;
            }
        };
        let ty = cloudevents::AttributesReader::ty(&event).to_string();
        match wadm::events::Event::try_from(event) {
            Ok(_) => println!("ok {ty}"),
            Err(e) => println!("err {ty}: {e:?}"),
        }
    }
    Ok(())
}
