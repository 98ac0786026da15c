//! Coalesced reads. The hottest reads — every private request's session check, every inbox page —
//! are asked for by many requests at once; under load they are gathered into one query per batch
//! instead of one query (and one pool round trip) each. Nothing is cached: a read only joins a
//! query that starts after the request asked, so a change committed before a request arrives is
//! always seen (contract: "every private request sees a revoked session as dead at once").
//!
//! A task takes the waiting reads as a batch whenever one of its `in_flight` query slots is free.
//! With little traffic a batch is one read and it goes out at once (no added delay); when queries
//! are busy, new reads wait for the next free slot and go out together.
//!
//! A slot keeps its connection from batch to batch while reads keep coming, and gives it back to
//! the pool after [`HOLD_IDLE`] without any: a connection returned to sqlx's pool is pinged (one
//! more round trip, through PgBouncer one more server) every time.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::db::Db;
use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, PgConnection, Postgres};
use tokio::sync::{mpsc, oneshot};

/// A read that can be answered for many keys in one query.
pub trait BatchRead: Send + Sync + 'static {
    type Key: Eq + Hash + Clone + Send + Sync + 'static;
    type Value: Clone + Send + Sync + 'static;
    /// Most keys one query carries.
    const MAX_BATCH: usize;
    /// The name of a read's span (`<repository>.<read>`).
    const NAME: &'static str;

    /// The values of these (distinct) keys; a key without a value is absent.
    fn fetch(
        conn: &mut PgConnection,
        keys: &[Self::Key],
    ) -> impl Future<Output = sqlx::Result<Vec<(Self::Key, Self::Value)>>> + Send;
}

/// How long a query slot keeps its connection without reads.
pub const HOLD_IDLE: Duration = Duration::from_secs(1);
/// The same behind PgBouncer, where the connection also keeps its last batch's transaction (and
/// so a server) open until then: see [`fetch`].
const PINNED_HOLD_IDLE: Duration = Duration::from_millis(10);

/// A `values` list of `rows` rows of these column types, numbered from `$1`
/// (`($1::uuid, $2::int8), ($3::uuid, $4::int8)`): the batched queries send their keys this way,
/// padded with nulls to a power of two, so PostgreSQL keeps one generic plan per size (with an
/// array parameter it re-plans every call; see `sessions::states`).
pub fn values_list(rows: usize, types: &[&str]) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(col, ty)| format!("${}::{ty}", row * types.len() + col + 1))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sizes a batched query is prepared for: 1, 2, 4, … `max`.
pub fn sizes(max: usize) -> impl Iterator<Item = usize> {
    std::iter::successors(Some(1usize), |s| Some(s * 2)).take_while(move |s| *s <= max)
}

type Reply<V> = Result<Option<V>, Arc<sqlx::Error>>;
type Waiters<V> = Vec<oneshot::Sender<Reply<V>>>;

struct Ask<R: BatchRead> {
    key: R::Key,
    reply: oneshot::Sender<Reply<R::Value>>,
}

/// The handle requests use; the batching task ends when the last handle is dropped.
pub struct Batcher<R: BatchRead> {
    asks: mpsc::UnboundedSender<Ask<R>>,
    counts: Arc<Counts>,
    deadline: Duration,
}

impl<R: BatchRead> Clone for Batcher<R> {
    fn clone(&self) -> Self {
        Self {
            asks: self.asks.clone(),
            counts: self.counts.clone(),
            deadline: self.deadline,
        }
    }
}

/// Reads asked for and queries run since start: their ratio is the batching at work.
#[derive(Debug, Default)]
struct Counts {
    reads: AtomicU64,
    queries: AtomicU64,
}

/// Why a read has no answer: the query failed (shared by its whole batch), no answer came within
/// the deadline (the database is down or swamped), or the batching task is gone (only while the
/// service shuts down).
#[derive(Debug)]
pub enum ReadError {
    Db(Arc<sqlx::Error>),
    TimedOut,
    Stopped,
}

impl<R: BatchRead> Batcher<R> {
    /// Starts the batching task on the current runtime; at most `in_flight` queries run at once.
    /// A read waits at most `deadline` in all (for a slot, a connection and the query), so an
    /// outage answers as fast as a pool timeout does however many reads are queued.
    pub fn spawn(db: Db, in_flight: usize, deadline: Duration) -> Self {
        let (asks, rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let in_flight = in_flight.max(1);
        let (free, slots) = mpsc::channel(in_flight);
        for _ in 0..in_flight {
            let _ = free.try_send(None);
        }
        tokio::spawn(batch_loop::<R>(
            db,
            rx,
            in_flight,
            (free, slots),
            counts.clone(),
        ));
        Self {
            asks,
            counts,
            deadline,
        }
    }

    /// (reads asked for, queries run) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.reads.load(Ordering::Relaxed),
            self.counts.queries.load(Ordering::Relaxed),
        )
    }

    /// The key's value as the database has it now; `None` when it has none. Its span covers the
    /// wait and the batch's query (which has no span of its own: it serves many requests).
    pub async fn read(&self, key: R::Key) -> Result<Option<R::Value>, ReadError> {
        crate::telemetry::db_span(R::NAME, async move {
            let (reply, answer) = oneshot::channel();
            self.asks
                .send(Ask { key, reply })
                .map_err(|_| ReadError::Stopped)?;
            tokio::time::timeout(self.deadline, answer)
                .await
                .map_err(|_| ReadError::TimedOut)?
                .map_err(|_| ReadError::Stopped)?
                .map_err(ReadError::Db)
        })
        .await
    }
}

/// A query slot: the connection its last batch ran on, if it kept one.
type Slot = Option<PoolConnection<Postgres>>;

/// Gives its slot back to the free list however the batch ends (a panic included).
struct Lent {
    slot: Slot,
    free: mpsc::Sender<Slot>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        let _ = self.free.try_send(self.slot.take());
    }
}

async fn batch_loop<R: BatchRead>(
    db: Db,
    mut rx: mpsc::UnboundedReceiver<Ask<R>>,
    in_flight: usize,
    (free, mut slots): (mpsc::Sender<Slot>, mpsc::Receiver<Slot>),
    counts: Arc<Counts>,
) {
    let hold = if db.behind_pgbouncer() {
        PINNED_HOLD_IDLE
    } else {
        HOLD_IDLE
    };
    loop {
        // wait for a free slot first, so that reads arriving meanwhile join the next batch
        let Some(mut slot) = slots.recv().await else {
            return;
        };
        let first = loop {
            match tokio::time::timeout(hold, rx.recv()).await {
                Ok(first) => break first,
                Err(_) => {
                    // quiet: the slots waiting give their connections back to the pool (one still
                    // answering gives its back at the next quiet spell)
                    slot = None;
                    let mut waiting = 1;
                    while let Ok(other) = slots.try_recv() {
                        drop(other);
                        waiting += 1;
                    }
                    for _ in 1..waiting {
                        let _ = free.try_send(None);
                    }
                    if waiting == in_flight {
                        break rx.recv().await;
                    }
                }
            }
        };
        let Some(first) = first else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < R::MAX_BATCH {
            match rx.try_recv() {
                Ok(ask) => batch.push(ask),
                Err(_) => break,
            }
        }
        counts
            .reads
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counts.queries.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(reads = batch.len(), "reads batched");
        let db = db.clone();
        let mut lent = Lent {
            slot,
            free: free.clone(),
        };
        tokio::spawn(async move {
            answer::<R>(&db, &mut lent.slot, batch).await;
        });
    }
}

/// One batch's query on the slot's connection (taken from the pool when it has none; dropped
/// after an error, which may have left it unusable).
///
/// Behind PgBouncer the query runs in a transaction of its own, so that sqlx's two round trips
/// (prepare, then bind and execute) share a server. A read has nothing to commit: the transaction
/// is dropped, its `rollback` queued, and it goes out with the next batch's `begin` in one round
/// trip (three per batch instead of five with a commit and the pool's ping), or when the slot
/// gives the connection back after [`PINNED_HOLD_IDLE`]. Under load that server would be busy
/// with the batches anyway; once reads stop it is free again within that spell.
async fn fetch<R: BatchRead>(
    db: &Db,
    slot: &mut Slot,
    keys: &[R::Key],
) -> sqlx::Result<Vec<(R::Key, R::Value)>> {
    let conn = match slot {
        Some(conn) => conn,
        None => slot.insert(db.acquire().await?),
    };
    if !db.behind_pgbouncer() {
        return R::fetch(conn, keys).await;
    }
    let mut tx = conn.begin().await?;
    R::fetch(&mut tx, keys).await
}

async fn answer<R: BatchRead>(db: &Db, slot: &mut Slot, batch: Vec<Ask<R>>) {
    // one answer per key, however many requests wait on it: clones only for the extra waiters
    let mut waiting: HashMap<R::Key, Waiters<R::Value>> = HashMap::new();
    for ask in batch {
        waiting.entry(ask.key).or_default().push(ask.reply);
    }
    let keys: Vec<R::Key> = waiting.keys().cloned().collect();
    let found = fetch::<R>(db, slot, &keys).await;
    if found.is_err() {
        *slot = None;
    }
    match found {
        Ok(found) => {
            for (key, value) in found {
                let Some(mut replies) = waiting.remove(&key) else {
                    continue;
                };
                let last = replies.pop();
                for reply in replies {
                    let _ = reply.send(Ok(Some(value.clone())));
                }
                if let Some(reply) = last {
                    let _ = reply.send(Ok(Some(value)));
                }
            }
            // the keys the query found nothing for
            for reply in waiting.into_values().flatten() {
                let _ = reply.send(Ok(None));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for reply in waiting.into_values().flatten() {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lists_number_their_parameters_row_by_row() {
        assert_eq!(values_list(1, &["uuid"]), "($1::uuid)");
        assert_eq!(
            values_list(2, &["int4", "uuid"]),
            "($1::int4, $2::uuid), ($3::int4, $4::uuid)"
        );
        assert_eq!(sizes(8).collect::<Vec<_>>(), [1, 2, 4, 8]);
        assert_eq!(sizes(6).collect::<Vec<_>>(), [1, 2, 4]);
    }
}
