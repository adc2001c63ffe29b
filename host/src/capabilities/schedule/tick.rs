//! One schedule on one host: wait for each tick, claim it, run it with retries; or follow the
//! host that claimed it and take the tick over if that host's claim lapses.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};
use trellis_messages::event::names;
use trellis_messages::schedule::{ScheduleTickFailed, TickRecord, TickState};
use wasmtime::component::Val;

use super::claims::{Claim, Claims, Progress};
use super::spec::{Missed, Schedule, Tick};
use crate::providers::CallError;
use crate::services::HostServices;

/// The export ticks call.
pub const ON_TICK: &str = "trellis:schedule/handler@0.1.0.on-tick";

/// Ticks of one schedule running (or waiting to retry) on this host at once; past this, this
/// host leaves new ticks to the others (and logs it).
const MAX_TICKS_IN_FLIGHT: usize = 8;
/// Added to every claim's deadline: the time a host may need to record how its attempt ended.
const GRACE: Duration = Duration::from_secs(2);
/// A follower looks again this long after a lease's deadline.
const FOLLOW_DELAY: Duration = Duration::from_millis(250);
/// The first retry's backoff (doubling, up to [`MAX_BACKOFF`]).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest backoff between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A tick the loop reaches later than this (a suspended machine, a clock jump) is left to the
/// missed-tick policy rather than run late.
const MAX_LATENESS_MS: u64 = 1000;

/// Milliseconds since the Unix epoch, by this host's clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Why one attempt at a tick failed: what the tick's record and `schedule_tick_failed` say.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// `on-tick` did not return within the schedule's timeout.
    #[error("`{ON_TICK}` on `{component_id}` did not return within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The component called.
        component_id: String,
        /// The schedule's timeout.
        timeout: Duration,
    },
    /// The call could not be made, trapped, or no host runs the component: the fault as given.
    #[error("{source}")]
    Call {
        /// The component called.
        component_id: String,
        /// The fault.
        #[source]
        source: CallError,
    },
    /// `on-tick` returned `err(..)`.
    #[error("`{component_id}` returned {result}")]
    Returned {
        /// The component called.
        component_id: String,
        /// What it returned, in WAVE (`err("…")`).
        result: String,
    },
}

fn backoff(attempt: u32) -> Duration {
    crate::backoff::doubling(FIRST_BACKOFF, attempt, MAX_BACKOFF)
}

/// One schedule as this host runs it.
#[derive(Debug)]
pub struct Job {
    pub services: HostServices,
    pub claims: Claims,
    pub provider_id: String,
    pub link_name: String,
    pub component_id: String,
    pub schedule: Schedule,
    /// Its record's key.
    pub key: String,
}

/// Runs `job` until aborted: first the ticks the record says are unfinished (to follow them,
/// or take them over when their lease has lapsed) and, with `missed: run-once`, the latest
/// missed tick; then every tick.
pub async fn run(job: Arc<Job>) {
    // Ticks in progress; dropped (so aborted) with this task when the schedule stops.
    let mut ticks = tokio::task::JoinSet::new();
    for tick in job.catch_up().await {
        let job = job.clone();
        ticks.spawn(async move { job.tick(tick).await });
    }
    let mut after = now_ms();
    loop {
        let Some(tick) = job.schedule.next_after(after) else {
            warn!(provider_id = %job.provider_id, link = %job.link_name, schedule = %job.schedule.text, "schedule has no further ticks");
            return;
        };
        loop {
            let now = now_ms();
            if now >= tick.at_ms {
                break;
            }
            tokio::time::sleep(Duration::from_millis(tick.at_ms - now)).await;
        }
        after = tick.at_ms.max(now_ms().saturating_sub(MAX_LATENESS_MS));
        while ticks.try_join_next().is_some() {}
        if ticks.len() < MAX_TICKS_IN_FLIGHT {
            let job = job.clone();
            ticks.spawn(async move { job.tick(tick).await });
        } else {
            warn!(
                provider_id = %job.provider_id, link = %job.link_name, component_id = %job.component_id, sequence = tick.sequence,
                "{MAX_TICKS_IN_FLIGHT} ticks of this schedule still run here; this one is left to other hosts"
            );
        }
    }
}

impl Job {
    /// The ticks to look at before the first due one: every unfinished one in the record
    /// (at most [`MAX_TICKS_IN_FLIGHT`]), and with `missed: run-once` the latest tick that fell
    /// after the record's.
    async fn catch_up(&self) -> Vec<Tick> {
        let held = match self.claims.read(&self.key).await {
            Ok(Some(found)) => found,
            Ok(None) => return Vec::new(),
            Err(e) => {
                warn!(provider_id = %self.provider_id, link = %self.link_name, "{e}");
                return Vec::new();
            }
        };
        let held = super::claims::believable(&self.key, held, now_ms(), self.deadline(Duration::ZERO));
        let mut ticks: Vec<Tick> = held.running.iter().rev().take(MAX_TICKS_IN_FLIGHT).map(|l| Tick { at_ms: l.scheduled_at_ms, sequence: l.sequence }).collect();
        if self.schedule.missed == Missed::RunOnce {
            if let Some(t) = self.schedule.latest_between(held.scheduled_at_ms, now_ms()) {
                info!(provider_id = %self.provider_id, link = %self.link_name, sequence = t.sequence, "running the latest missed tick once (missed: run-once)");
                ticks.push(t);
            }
        }
        ticks
    }

    fn record(&self, tick: Tick) -> TickRecord {
        TickRecord {
            provider_id: self.provider_id.clone(),
            link_name: self.link_name.clone(),
            component_id: self.component_id.clone(),
            schedule: self.schedule.text.clone(),
            sequence: tick.sequence,
            scheduled_at_ms: tick.at_ms,
            host_id: self.services.host_id.clone(),
            attempt: 1,
            state: TickState::Running,
            updated_at_ms: now_ms(),
            error: None,
            next_at_ms: self.schedule.next_after(tick.at_ms.max(now_ms())).map(|t| t.at_ms),
            running: Vec::new(),
        }
    }

    /// The deadline of a lease taken now, with `wait` before the attempt starts.
    fn deadline(&self, wait: Duration) -> u64 {
        now_ms() + (wait + self.schedule.timeout + GRACE).as_millis() as u64
    }

    /// Claims `tick` and runs it; when another host holds it, follows that host's lease and
    /// takes the tick over if the lease lapses.
    async fn tick(&self, tick: Tick) {
        loop {
            let fresh = self.record(tick);
            match self.claims.claim(&self.key, tick, &fresh, now_ms(), self.deadline(Duration::ZERO)).await {
                Ok(Claim::Won { attempt }) => {
                    if attempt > 1 {
                        info!(provider_id = %self.provider_id, link = %self.link_name, sequence = tick.sequence, attempt, "took over a tick whose lease lapsed");
                    }
                    return self.own(tick, attempt).await;
                }
                Ok(Claim::Held(lease)) => {
                    let wait = Duration::from_millis(lease.deadline_ms.saturating_sub(now_ms())) + FOLLOW_DELAY;
                    debug!(sequence = tick.sequence, by = %lease.host_id, ?wait, "tick held by another host; following it");
                    tokio::time::sleep(wait).await;
                }
                Ok(Claim::Gone) => return debug!(sequence = tick.sequence, "tick claimed elsewhere and ended"),
                Err(e) => return warn!(provider_id = %self.provider_id, link = %self.link_name, sequence = tick.sequence, "tick not claimed: {e}"),
            }
        }
    }

    /// Runs `tick`, which this host holds, from `attempt`, retrying with backoff.
    async fn own(&self, tick: Tick, mut attempt: u32) {
        loop {
            // The record and the `schedule_tick_failed` event carry the error as text.
            let result = self.invoke(tick, attempt).await.map_err(|e| e.to_string());
            let last = attempt > self.schedule.retries;
            match result {
                Ok(()) => {
                    self.note(tick, Progress { attempt, state: TickState::Succeeded, deadline_ms: 0, error: None }).await;
                    return;
                }
                Err(error) if last => {
                    warn!(provider_id = %self.provider_id, link = %self.link_name, component_id = %self.component_id, sequence = tick.sequence, attempt, "tick failed; no retries left: {error}");
                    if !self.note(tick, Progress { attempt, state: TickState::Failed, deadline_ms: 0, error: Some(error.clone()) }).await {
                        return;
                    }
                    let failed = ScheduleTickFailed {
                        provider_id: self.provider_id.clone(),
                        link_name: self.link_name.clone(),
                        component_id: self.component_id.clone(),
                        sequence: tick.sequence,
                        scheduled_at_ms: tick.at_ms,
                        attempts: attempt,
                        error,
                        host_id: self.services.host_id.clone(),
                    };
                    self.services.events.publish_logged(names::SCHEDULE_TICK_FAILED, failed).await;
                    return;
                }
                Err(error) => {
                    let wait = backoff(attempt);
                    debug!(sequence = tick.sequence, attempt, ?wait, "tick failed, retrying: {error}");
                    attempt += 1;
                    let progress = Progress { attempt, state: TickState::Running, deadline_ms: self.deadline(wait), error: Some(error) };
                    if !self.note(tick, progress).await {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Writes `progress` into the record. `false` when this host no longer holds the tick
    /// (another took it over after its lease lapsed): it stops running it.
    async fn note(&self, tick: Tick, progress: Progress) -> bool {
        match self.claims.progress(&self.key, tick, &self.services.host_id, &progress, now_ms()).await {
            Ok(true) => true,
            Ok(false) => {
                info!(provider_id = %self.provider_id, link = %self.link_name, sequence = tick.sequence, "this host no longer holds the tick (taken over); it stops running it");
                false
            }
            // The bucket is unreachable: go on; if the lease lapses meanwhile, another host
            // may run the tick again (at least once rather than never).
            Err(e) => {
                warn!(provider_id = %self.provider_id, link = %self.link_name, "{e}");
                true
            }
        }
    }

    /// One attempt: calls the component's `on-tick`, bounded by the schedule's timeout.
    async fn invoke(&self, tick: Tick, attempt: u32) -> Result<(), TickError> {
        let info = Val::Record(vec![
            ("scheduled-at-ms".into(), Val::U64(tick.at_ms)),
            ("sequence".into(), Val::U64(tick.sequence)),
            ("attempt".into(), Val::U32(attempt)),
            ("link-name".into(), Val::String(self.link_name.clone())),
            ("payload".into(), Val::String(self.schedule.payload.clone())),
        ]);
        let timeout = self.schedule.timeout;
        let call = crate::providers::invoke_component(&self.services, &self.component_id, ON_TICK, info, "schedule", Some(timeout));
        let result = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| TickError::Timeout { component_id: self.component_id.clone(), timeout })?
            .map_err(|source| TickError::Call { component_id: self.component_id.clone(), source })?;
        if result.starts_with("err(") {
            return Err(TickError::Returned { component_id: self.component_id.clone(), result });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
