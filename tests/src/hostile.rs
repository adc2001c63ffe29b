//! Calling the `hostile` test guest (`components/hostile`), for the containment and attack tests.

use std::time::Duration;

use trellis_messages::Client;

use crate::TestLattice;

/// A client of `lattice` that waits up to 10 s for answers.
///
/// # Errors
/// When NATS cannot be reached.
pub async fn client(lattice: &TestLattice) -> anyhow::Result<Client> {
    Ok(lattice.client().await?.with_timeout(Duration::from_secs(10)))
}

/// Calls `function` of component `hostile` and returns its WAVE results, or the call's error.
///
/// # Errors
/// When the call gets no answer at all.
pub async fn probe(client: &Client, function: &str, args: &[&str]) -> anyhow::Result<Result<String, String>> {
    let response = client.call("hostile", &format!("trellis:hostile/probe.{function}"), args.iter().map(|a| a.to_string()).collect()).await?;
    Ok(match (response.results, response.error) {
        (Some(r), _) => Ok(r.join(", ")),
        (None, e) => Err(e.unwrap_or_default()),
    })
}
