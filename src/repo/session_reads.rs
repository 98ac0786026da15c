//! Coalesced session reads. Every private request checks its session in the database; under load
//! those checks are gathered into one query (`sessions::states`) instead of one query (and one pool
//! round trip) each. Nothing is cached: a check only joins a query that starts after the request
//! asked, so a revocation committed before a request arrives is always seen (contract: "every
//! private request sees a revoked session as dead at once").
//!
//! A task takes the waiting checks as a batch whenever one of its `in_flight` query slots is free.
//! With little traffic a batch is one check and it goes out at once (no added delay); when queries
//! are busy, new checks wait for the next free slot and go out together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

use super::sessions::{self, SessionState};

/// Most checks one query carries.
const MAX_BATCH: usize = sessions::MAX_STATES;

type Reply = Result<Option<SessionState>, Arc<sqlx::Error>>;

struct Check {
    session_id: Uuid,
    reply: oneshot::Sender<Reply>,
}

/// The handle requests use; the batching task ends when the last handle is dropped.
#[derive(Clone)]
pub struct SessionReads {
    checks: mpsc::UnboundedSender<Check>,
    counts: Arc<Counts>,
    deadline: Duration,
}

/// Checks asked for and queries run since start: their ratio is the batching at work.
#[derive(Debug, Default)]
struct Counts {
    checks: AtomicU64,
    queries: AtomicU64,
}

/// Why a check has no answer: the query failed (shared by its whole batch), no answer came within
/// the deadline (the database is down or swamped), or the batching task is gone (only while the
/// service shuts down).
#[derive(Debug)]
pub enum ReadError {
    Db(Arc<sqlx::Error>),
    TimedOut,
    Stopped,
}

impl SessionReads {
    /// Starts the batching task on the current runtime; at most `in_flight` queries run at once.
    /// A check waits at most `deadline` in all (for a slot, a connection and the query), so an
    /// outage answers as fast as a pool timeout does however many checks are queued.
    pub fn spawn(db: PgPool, in_flight: usize, deadline: Duration) -> Self {
        let (checks, rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        tokio::spawn(batch_loop(db, rx, slots, counts.clone()));
        Self {
            checks,
            counts,
            deadline,
        }
    }

    /// (checks asked for, queries run) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.checks.load(Ordering::Relaxed),
            self.counts.queries.load(Ordering::Relaxed),
        )
    }

    /// The session's state as the database has it now; `None` when there is no such session.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
    pub async fn read(&self, session_id: Uuid) -> Result<Option<SessionState>, ReadError> {
        let (reply, answer) = oneshot::channel();
        self.checks
            .send(Check { session_id, reply })
            .map_err(|_| ReadError::Stopped)?;
        tokio::time::timeout(self.deadline, answer)
            .await
            .map_err(|_| ReadError::TimedOut)?
            .map_err(|_| ReadError::Stopped)?
            .map_err(ReadError::Db)
    }
}

async fn batch_loop(
    db: PgPool,
    mut rx: mpsc::UnboundedReceiver<Check>,
    slots: Arc<Semaphore>,
    counts: Arc<Counts>,
) {
    loop {
        // wait for a free slot first, so that checks arriving meanwhile join the next batch
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(check) => batch.push(check),
                Err(_) => break,
            }
        }
        counts
            .checks
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counts.queries.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(checks = batch.len(), "session checks batched");
        let db = db.clone();
        tokio::spawn(async move {
            answer(&db, batch).await;
            drop(slot);
        });
    }
}

async fn answer(db: &PgPool, batch: Vec<Check>) {
    // one row per session, however many requests wait on it: clones only for the extra waiters
    let mut waiting: HashMap<Uuid, Vec<oneshot::Sender<Reply>>> = HashMap::new();
    for check in batch {
        waiting
            .entry(check.session_id)
            .or_default()
            .push(check.reply);
    }
    let ids: Vec<Uuid> = waiting.keys().copied().collect();
    match sessions::states(db, &ids).await {
        Ok(rows) => {
            for row in rows {
                let Some(mut replies) = waiting.remove(&row.session_id) else {
                    continue;
                };
                let last = replies.pop();
                for reply in replies {
                    let _ = reply.send(Ok(Some(row.clone())));
                }
                if let Some(reply) = last {
                    let _ = reply.send(Ok(Some(row)));
                }
            }
            // the ids the query did not find
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
