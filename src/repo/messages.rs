//! The `messages` outbox.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

/// The channel couriers listen on; a message insert notifies it at commit.
pub const CHANNEL: &str = "messages";

pub struct NewMessage<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub user_id: Option<Uuid>,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body_text: &'a str,
    pub body_html: &'a str,
    pub message_id: &'a str,
}

pub async fn insert(db: impl PgExecutor<'_>, m: &NewMessage<'_>) -> sqlx::Result<()> {
    crate::telemetry::db_span("messages.insert", async move {
        super::db::query(
            "insert into messages (id, kind, user_id, recipient, subject, body_text, body_html, message_id)
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(m.id)
        .bind(m.kind)
        .bind(m.user_id)
        .bind(m.recipient)
        .bind(m.subject)
        .bind(m.body_text)
        .bind(m.body_html)
        .bind(m.message_id)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

pub async fn notify(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    crate::telemetry::db_span("messages.notify", async move {
        super::db::query("select pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(db)
            .await
            .map(|_| ())
    })
    .await
}

/// When the user was last written a message of this kind.
pub async fn latest_of(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    kind: &str,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    crate::telemetry::db_span("messages.latest_of", async move {
        super::db::query_scalar(
            "select max(created_at) from messages where user_id = $1 and kind = $2",
        )
        .bind(user_id)
        .bind(kind)
        .fetch_one(db)
        .await
    })
    .await
}

/// A message a courier has claimed, with what it needs to send it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub message_id: String,
    /// attempts made, this one included
    pub attempts: i32,
}

/// Claims up to `limit` due messages: each gets one more attempt and a lease of `lease_secs`
/// (it is due again then, so a courier that dies mid-send leaves it to be sent later). Rows
/// another courier is claiming are skipped.
pub async fn claim_due(
    db: impl PgExecutor<'_>,
    limit: i64,
    lease_secs: f64,
) -> sqlx::Result<Vec<Claimed>> {
    crate::telemetry::db_span("messages.claim_due", async move {
        super::db::query_as(
            "update messages m set attempts = m.attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
             where m.id in (select id from messages
                            where status = 'queued' and next_attempt_at <= now()
                            order by next_attempt_at
                            limit $1
                            for update skip locked)
             returning m.id, m.recipient, m.subject, coalesce(m.body_text, '') as body_text,
                       coalesce(m.body_html, '') as body_html, m.message_id, m.attempts",
        )
        .bind(limit)
        .bind(lease_secs)
        .fetch_all(db)
        .await
    })
    .await
}

/// Sent: the body (it may hold a live token) is erased, the metadata stays.
pub async fn mark_sent(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    crate::telemetry::db_span("messages.mark_sent", async move {
        super::db::query(
            "update messages set status = 'sent', sent_at = now(), body_text = null, body_html = null,
                    last_error = null, updated_at = now()
             where id = $1",
        )
        .bind(id)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

/// A failed attempt: retried at `retry_at`, or abandoned (`None`), body erased then too.
pub async fn mark_failed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    crate::telemetry::db_span("messages.mark_failed", async move {
        super::db::query(
            "update messages set
                 status = case when $3::timestamptz is null then 'abandoned' else 'queued' end,
                 next_attempt_at = coalesce($3, next_attempt_at),
                 body_text = case when $3::timestamptz is null then null else body_text end,
                 body_html = case when $3::timestamptz is null then null else body_html end,
                 last_error = $2, updated_at = now()
             where id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(retry_at)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

/// Sent and abandoned messages older than the retention.
pub async fn delete_finished_before(db: impl PgExecutor<'_>, days: i32) -> sqlx::Result<u64> {
    crate::telemetry::db_span("messages.delete_finished_before", async move {
        let done = super::db::query(
            "delete from messages where status <> 'queued'
             and created_at < now() - make_interval(days => $1)",
        )
        .bind(days)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}

/// Queued messages waiting now (the courier's backlog).
pub async fn backlog(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    crate::telemetry::db_span("messages.backlog", async move {
        super::db::query_scalar("select count(*) from messages where status = 'queued'")
            .fetch_one(db)
            .await
    })
    .await
}

/// Metadata only: no body ever leaves through this.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: Uuid,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub recipient: String,
    pub subject: String,
    pub status: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

pub struct Filter<'a> {
    pub user_id: Option<Uuid>,
    pub kind: Option<&'a str>,
    pub status: Option<&'a str>,
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Newest first (ids are UUIDv7).
pub async fn page(db: impl PgExecutor<'_>, f: &Filter<'_>) -> sqlx::Result<Vec<MessageRow>> {
    crate::telemetry::db_span("messages.page", async move {
        let mut q = QueryBuilder::<Postgres>::new(
            "select id, kind, user_id, recipient, subject, status, attempts, created_at, sent_at, last_error
             from messages where true",
        );
        if let Some(user_id) = f.user_id {
            q.push(" and user_id = ").push_bind(user_id);
        }
        if let Some(kind) = f.kind {
            q.push(" and kind = ").push_bind(kind);
        }
        if let Some(status) = f.status {
            q.push(" and status = ").push_bind(status);
        }
        if let Some(before) = f.before {
            q.push(" and id < ").push_bind(before);
        }
        q.push(" order by id desc limit ").push_bind(f.limit);
        crate::repo::db::built(&mut q).fetch_all(db).await
    })
    .await
}
