//! Purges accounts soft-deleted longer than `users.purge_after_days`, and sweeps records that can no
//! longer do anything (expired sessions, lockout counters, flow states, tokens), every
//! `users.purge_interval_secs`. Every instance runs it; row locks make each purge happen once.

use std::time::Duration;

use crate::service::lifecycle;
use crate::state::AppState;

pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(state.settings.users.purge_interval_secs);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            // an outage is retried at the next tick
            if let Err(e) = lifecycle::purge_expired(&state).await {
                tracing::warn!(error = %e, "purge job failed");
            }
            if let Err(e) = lifecycle::sweep_stale_records(&state).await {
                tracing::warn!(error = %e, "sweeping stale records failed");
            }
        }
    })
}
