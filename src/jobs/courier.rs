//! The courier: sends the `messages` outbox over SMTP. Every instance runs one; each message is
//! claimed by one courier at a time (`FOR UPDATE SKIP LOCKED` and a lease), so it is sent once per
//! attempt and at least once overall. Woken by `NOTIFY` on insert, and polls as a fallback.

use std::time::Duration;

use chrono::Utc;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use super::wait;
use crate::repo::messages::{self, Claimed, CHANNEL};
use crate::state::AppState;

/// Messages one claim takes; several are sent at once.
const BATCH: i64 = 32;
/// How long a claimed message is reserved for its courier.
const LEASE_SECS: f64 = 120.0;
/// The longest wait between two attempts.
const MAX_BACKOFF_SECS: u64 = 900;

/// Starts the courier unless `email.smtp_url` is empty (then messages wait as `queued`).
pub fn spawn(state: AppState, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let url = state.settings.email.smtp_url.expose_secret().to_owned();
    if url.is_empty() {
        tracing::warn!("email.smtp_url is empty: the courier is off, mail waits as queued");
        return None;
    }
    let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(&url) {
        Ok(builder) => builder
            .timeout(Some(Duration::from_secs(state.settings.email.timeout_secs)))
            .build(),
        Err(e) => {
            tracing::error!(error = %e, "email.smtp_url is not usable: the courier is off");
            return None;
        }
    };
    Some(tokio::spawn(run(state, transport, stop)))
}

async fn run(
    state: AppState,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    stop: CancellationToken,
) {
    let poll = Duration::from_secs(state.settings.email.poll_interval_secs);
    let mut listener = state.db.listen(CHANNEL).await;
    loop {
        // send everything due; a full batch means there may be more
        loop {
            match send_due(&state, &transport).await {
                Ok(n) if n as i64 == BATCH && !stop.is_cancelled() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "courier: claiming messages failed");
                    break;
                }
            }
        }
        if stop.is_cancelled() {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(poll) => {
                // no listener (the database was down when it was made): try again each poll
                if listener.is_none() {
                    listener = state.db.listen(CHANNEL).await;
                }
            }
            woke = wait(&mut listener) => {
                if !woke {
                    // the listening connection broke: polling covers until it is back
                    listener = state.db.listen(CHANNEL).await;
                }
            }
        }
    }
}

/// Claims one batch and sends it; returns how many were claimed. A send in progress is always
/// finished (shutdown only stops the next claim).
async fn send_due(
    state: &AppState,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
) -> anyhow::Result<usize> {
    let claimed = messages::claim_due(&state.db, BATCH, LEASE_SECS).await?;
    let n = claimed.len();
    let sends = claimed.into_iter().map(|m| deliver(state, transport, m));
    futures::future::join_all(sends).await;
    Ok(n)
}

async fn deliver(state: &AppState, transport: &AsyncSmtpTransport<Tokio1Executor>, m: Claimed) {
    let email = &state.settings.email;
    let outcome = match build(&email.from, &m) {
        Ok(message) => transport.send(message).await.map(|_| ()).map_err(|e| {
            let permanent = e.is_permanent();
            (e.to_string(), permanent)
        }),
        // an address the SMTP library refuses will never be sent
        Err(e) => Err((e, true)),
    };
    let result = match outcome {
        Ok(()) => {
            state.metrics.message("sent");
            tracing::info!(message = %m.id, attempts = m.attempts, "mail sent");
            messages::mark_sent(&state.db, m.id).await
        }
        Err((error, permanent)) => {
            let retry_at = (!permanent && m.attempts < email.max_attempts)
                .then(|| Utc::now() + backoff(email.retry_base_secs, m.attempts));
            match retry_at {
                Some(_) => {
                    tracing::warn!(message = %m.id, attempts = m.attempts, %error, "mail not sent; will retry")
                }
                None => {
                    tracing::warn!(message = %m.id, attempts = m.attempts, %error, "mail abandoned")
                }
            }
            messages::mark_failed(&state.db, m.id, &error, retry_at).await
        }
    };
    if let Err(e) = result {
        // the lease runs out and the message is tried again: at least once, never lost
        tracing::warn!(message = %m.id, error = %e, "courier: recording the outcome failed");
    }
}

fn build(from: &str, m: &Claimed) -> Result<Message, String> {
    let from: Mailbox = from.parse().map_err(|e| format!("email.from: {e}"))?;
    let to: Mailbox = m.recipient.parse().map_err(|e| format!("recipient: {e}"))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(m.subject.clone())
        .message_id(Some(m.message_id.clone()))
        .multipart(MultiPart::alternative_plain_html(
            m.body_text.clone(),
            m.body_html.clone(),
        ))
        .map_err(|e| format!("building the message: {e}"))
}

/// Exponential with full jitter: the first retry within `base` seconds, doubling, at most 900 s.
fn backoff(base: u64, attempts: i32) -> chrono::Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    let ceiling = base.saturating_mul(1u64 << exp).clamp(1, MAX_BACKOFF_SECS);
    let millis = rand::thread_rng().gen_range(ceiling * 500..=ceiling * 1000);
    chrono::Duration::milliseconds(millis as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempts in 1..=12 {
            let ceiling = (2u64 << (attempts - 1)).min(MAX_BACKOFF_SECS) as i64;
            let d = backoff(2, attempts).num_milliseconds();
            assert!(d <= ceiling * 1000 && d >= ceiling * 500, "{attempts}: {d}");
        }
    }
}
