//! The `events` outbox. Each event is numbered (`commit_seq`) when its transaction commits, one
//! writer at a time (see migrations/…_events_commit_order.sql): a visible number is never followed
//! later by a smaller one, so readers page by it and never skip an event.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

/// The channel the relay listens on; an insert notifies it at commit.
pub const CHANNEL: &str = "events_inserted";

pub struct NewEvent<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub actor: &'a str,
    pub user_id: Option<Uuid>,
    pub data: &'a Value,
}

/// Where an event sorts: its place in commit order.
pub type Position = i64;

#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: Uuid,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub user_id: Option<Uuid>,
    pub data: Value,
}

/// An unpublished event with its position (the relay reads on from the last one it sent).
#[derive(Debug, Clone, FromRow)]
pub struct Unpublished {
    #[sqlx(flatten)]
    pub event: EventRow,
    pub commit_seq: i64,
}

const COLUMNS: &str = "id, type, occurred_at, actor, user_id, data";

pub async fn insert(db: impl PgExecutor<'_>, e: &NewEvent<'_>) -> sqlx::Result<()> {
    crate::telemetry::db_span("events.insert", async move {
        super::db::query(
            "insert into events (id, type, actor, user_id, data) values ($1, $2, $3, $4, $5)",
        )
        .bind(e.id)
        .bind(e.kind)
        .bind(e.actor)
        .bind(e.user_id)
        .bind(e.data)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

/// The same event for several users (the purge), in one statement.
pub async fn insert_many(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    kind: &str,
    actor: &str,
    user_ids: &[Uuid],
    data: &Value,
) -> sqlx::Result<()> {
    crate::telemetry::db_span("events.insert_many", async move {
        super::db::query(
            "insert into events (id, type, actor, user_id, data)
             select e.id, $2, $3, e.user_id, $5 from unnest($1::uuid[], $4::uuid[]) as e (id, user_id)",
        )
        .bind(ids)
        .bind(kind)
        .bind(actor)
        .bind(user_ids)
        .bind(data)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

/// Whether `id` is a kept event (a feed cursor must be one).
pub async fn exists(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    crate::telemetry::db_span("events.exists", async move {
        super::db::query_scalar("select exists (select 1 from events where id = $1)")
            .bind(id)
            .fetch_one(db)
            .await
    })
    .await
}

/// A page of the feed: events after `after` (or from the oldest kept), in commit order.
pub async fn page(
    db: impl PgExecutor<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<EventRow>> {
    crate::telemetry::db_span("events.page", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from events
             where commit_seq > coalesce((select commit_seq from events where id = $1), 0)
             order by commit_seq
             limit $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await
    })
    .await
}

/// The oldest events not yet published, in commit order, after `after` (the last one this relay
/// sent; none: from the first unpublished).
pub async fn unpublished(
    db: impl PgExecutor<'_>,
    after: Option<Position>,
    limit: i64,
) -> sqlx::Result<Vec<Unpublished>> {
    crate::telemetry::db_span("events.unpublished", async move {
        super::db::query_as(&format!(
            "select {COLUMNS}, commit_seq from events
             where published_at is null and commit_seq > $1
             order by commit_seq
             limit $2"
        ))
        .bind(after.unwrap_or(0))
        .bind(limit)
        .fetch_all(db)
        .await
    })
    .await
}

/// Marks published the unpublished events from `first` to `last` (a batch's acknowledged prefix: no
/// other unpublished event sorts between them, since the batch was read in commit order). A range
/// over the partial index instead of one primary-key lookup per event.
pub async fn mark_published(
    db: impl PgExecutor<'_>,
    first: Position,
    last: Position,
) -> sqlx::Result<u64> {
    crate::telemetry::db_span("events.mark_published", async move {
        let done = super::db::query(
            "update events set published_at = now()
             where published_at is null and commit_seq between $1 and $2",
        )
        .bind(first)
        .bind(last)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}

/// Deletes events older than the retention, published or not (with publishing off nothing is).
pub async fn delete_older_than(db: impl PgExecutor<'_>, days: i32) -> sqlx::Result<u64> {
    crate::telemetry::db_span("events.delete_older_than", async move {
        let done = super::db::query(
            "delete from events where occurred_at < now() - make_interval(days => $1)",
        )
        .bind(days)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}

/// Events not yet published.
pub async fn count_unpublished(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    crate::telemetry::db_span("events.count_unpublished", async move {
        super::db::query_scalar("select count(*) from events where published_at is null")
            .fetch_one(db)
            .await
    })
    .await
}
