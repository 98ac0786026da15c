//! The relay: publishes the `events` outbox to RabbitMQ. Every instance runs one, and the one that
//! holds a PostgreSQL advisory lock publishes (on a connection of its own: when its instance dies
//! the connection closes, the lock is free, and another relay takes over at its next try, within
//! [`LEADER_RETRY`]). It reads events in commit order, publishes a batch with publisher confirms
//! (all in flight at once), and marks published only the events the broker acknowledged, in order:
//! after a nack, a lost channel or a crash the rest go out again (at least once, never a gap).
//! Batches overlap: while one batch's marking runs, the next is read (on from the last event
//! sent) and published.
//! Woken by `NOTIFY` on insert (then it lets [`GATHER`] pass, so that events close together go out
//! in one round); polls as a fallback. While the broker is away it backs off and
//! reconnects by itself; requests never wait for it.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::ExposeSecret;
use sqlx::{Connection as _, PgConnection};
use tokio_util::sync::CancellationToken;

use super::{drain, wait};
use crate::repo::events::{self, CHANNEL};
use crate::service::events::Envelope;
use crate::state::AppState;

/// Events one round publishes before waiting for their confirms. Between rounds the channel idles
/// while the last confirms come back and the next batch is read; 4 000 a round made that gap a
/// quarter as frequent as 1 000 did (the relay's rate over a 20 000-event backlog rose from
/// 11.8–12.6k to 13.0–14.2k events/s on the benchmark's machine), for a few MB of memory while a
/// backlog drains.
const BATCH: i64 = 4000;
/// After a `NOTIFY` wakes it, how long the relay lets more events gather before it reads (an event
/// goes out this much later at most). A round (the lock's ping, the read, the publishes and their
/// confirms, the marking) costs about the same for one event or a hundred; with a round per event,
/// publishing at sign-up rates (~110/s) cost PostgreSQL ~0.45 ms and the broker ~0.2 ms of CPU per
/// event, taken from the password hashing on the benchmark's 2 cores (sign-ups 0.92–0.95 of the rate
/// with publishing off); gathering 50 ms halved that (0.97), 200 ms left ~1 % of the CPU.
const GATHER: Duration = Duration::from_millis(100);
/// How often a relay that does not publish asks for the lock.
pub const LEADER_RETRY: Duration = Duration::from_secs(2);
/// The advisory lock the publishing relay holds ("users-service events relay").
const LOCK_KEY: i64 = 0x7573_6572_5f72_656c;
/// The first and the longest wait after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the relay unless `events.amqp_url` is empty (then events are only written and served by
/// the feed).
pub fn spawn(state: AppState, stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    if state.settings.events.amqp_url.expose_secret().is_empty() {
        tracing::info!("events.amqp_url is empty: events are written but not published");
        return None;
    }
    Some(tokio::spawn(run(state, stop)))
}

async fn run(state: AppState, stop: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    // a follower keeps one connection to ask for the lock on, instead of a new one every try
    let mut waiting: Option<PgConnection> = None;
    while !stop.is_cancelled() {
        let Some(lock) = lead(&state, &mut waiting).await else {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(LEADER_RETRY) => continue,
            }
        };
        tracing::info!("events relay: publishing (this instance holds the relay lock)");
        match publish_while_leading(&state, lock, &stop, &mut backoff).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "events relay: stopped publishing")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A connection holding the relay lock, or none when another relay holds it (the connection it
/// asked on is kept in `waiting` for the next try) or the database is away (it is dropped).
async fn lead(state: &AppState, waiting: &mut Option<PgConnection>) -> Option<PgConnection> {
    let mut conn = match waiting.take() {
        Some(conn) => conn,
        None => PgConnection::connect_with(&state.db.direct().connect_options())
            .await
            .ok()?,
    };
    let got: bool = crate::repo::db::query_scalar("select pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut conn)
        .await
        .ok()?;
    if got {
        return Some(conn);
    }
    *waiting = Some(conn);
    None
}

/// Publishes until stopped (Ok) or until the broker, the database or the lock's connection fails
/// (Err: the caller backs off and tries to lead again).
async fn publish_while_leading(
    state: &AppState,
    mut lock: PgConnection,
    stop: &CancellationToken,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let settings = &state.settings.events;
    let (_amqp, channel) = open(settings.amqp_url.expose_secret(), &settings.exchange).await?;
    let poll = Duration::from_secs(settings.poll_interval_secs);
    let mut listener = state.db.listen(CHANNEL).await;
    // the position of the last event sent in this term, and the marking of the last batch
    let mut after: Option<events::Position> = None;
    let mut marking: Option<tokio::task::JoinHandle<sqlx::Result<()>>> = None;
    loop {
        // still the leader: the lock lives as long as this connection
        lock.ping().await?;
        let batch = events::unpublished(&state.db, after, BATCH).await?;
        let full = batch.len() as i64 == BATCH;
        if !batch.is_empty() {
            let (acked, range, failure) = publish(&channel, &settings.exchange, batch).await;
            // the previous batch's marking first (at most one in flight), then this one's in the
            // background while the next batch is read and published
            if let Some(previous) = marking.take() {
                previous.await??;
            }
            if let Some((first, last)) = range {
                state.metrics.events_published.inc_by(acked as u64);
                let db = state.db.clone();
                marking = Some(tokio::spawn(async move {
                    events::mark_published(&db, first, last).await.map(|_| ())
                }));
            }
            if let Some(e) = failure {
                if let Some(m) = marking.take() {
                    m.await??;
                }
                return Err(e);
            }
            after = range.map(|(_, last)| last).or(after);
            *backoff = MIN_BACKOFF;
        }
        if !full {
            if let Some(m) = marking.take() {
                m.await??;
            }
        }
        if stop.is_cancelled() {
            // a full batch's marking may still be in flight: the broker has those events
            if let Some(m) = marking.take() {
                m.await??;
            }
            return Ok(());
        }
        if full {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(poll) => {
                if listener.is_none() {
                    listener = state.db.listen(CHANNEL).await;
                }
            }
            woke = wait(&mut listener) => {
                if woke {
                    tokio::select! {
                        // the last batch's marking was awaited above
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(GATHER) => {}
                    }
                    // what came during the gather is read by this round
                    if let Some(l) = listener.as_mut() {
                        drain(l);
                    }
                } else {
                    listener = state.db.listen(CHANNEL).await;
                }
            }
        }
    }
}

/// A confirming channel to the broker, with the exchange declared.
async fn open(url: &str, exchange: &str) -> anyhow::Result<(Connection, Channel)> {
    let conn = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("users-service events relay".into()),
    )
    .await?;
    let channel = conn.create_channel().await?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((conn, channel))
}

/// Publishes a batch with every message in flight at once and waits for the confirms: how many
/// the broker acknowledged before the first it did not (only those may be marked published), the
/// positions of the first and last of them, and what went wrong, if anything.
async fn publish(
    channel: &Channel,
    exchange: &str,
    batch: Vec<events::Unpublished>,
) -> (
    usize,
    Option<(events::Position, events::Position)>,
    Option<anyhow::Error>,
) {
    let mut pending = Vec::with_capacity(batch.len());
    let mut failure = None;
    for row in batch {
        let position = row.commit_seq;
        let id = row.event.id;
        let envelope = Envelope::from(row.event);
        let properties = BasicProperties::default()
            .with_message_id(id.to_string().into())
            .with_type(envelope.kind.clone().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_timestamp(envelope.occurred_at.timestamp().max(0) as u64);
        let body = match serde_json::to_vec(&envelope) {
            Ok(body) => body,
            Err(e) => {
                failure = Some(e.into());
                break;
            }
        };
        match channel
            .basic_publish(
                exchange.into(),
                envelope.kind.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
        {
            Ok(confirm) => pending.push((id, position, confirm)),
            Err(e) => {
                failure = Some(anyhow::Error::from(e));
                break;
            }
        }
    }
    // the messages published before a publishing failure still count, in order, up to the first
    // the broker did not acknowledge
    let mut acked = 0;
    let mut range: Option<(events::Position, events::Position)> = None;
    let mut refused = None;
    for (id, position, confirm) in pending {
        match confirm.await {
            Ok(c) if c.is_ack() && refused.is_none() => {
                acked += 1;
                range = Some((range.map_or(position, |(first, _)| first), position));
            }
            Ok(c) if c.is_ack() => {}
            Ok(_) => {
                refused.get_or_insert_with(|| anyhow::anyhow!("the broker refused event {id}"));
            }
            Err(e) => {
                refused.get_or_insert(e.into());
            }
        }
    }
    (acked, range, refused.or(failure))
}
