//! The `notifications` inbox.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

/// The channel every insert notifies (payload `<user id> <notification id>`).
pub const CHANNEL: &str = "notifications";

#[derive(Debug, Clone, FromRow)]
pub struct NotificationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub title: String,
    pub body: Option<String>,
    pub link: Option<String>,
    pub data: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, user_id, kind, title, body, link, data, created_at, read_at";

pub struct NewNotification<'a> {
    pub user_id: Uuid,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: Option<&'a str>,
    pub link: Option<&'a str>,
    pub data: Option<&'a Value>,
}

#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn insert(
    db: impl PgExecutor<'_>,
    n: &NewNotification<'_>,
) -> sqlx::Result<NotificationRow> {
    sqlx::query_as(&format!(
        "insert into notifications (id, user_id, kind, title, body, link, data)
         values ($1, $2, $3, $4, $5, $6, $7) returning {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(n.user_id)
    .bind(n.kind)
    .bind(n.title)
    .bind(n.body)
    .bind(n.link)
    .bind(n.data)
    .fetch_one(db)
    .await
}

/// `n` for each of several users (every active admin) in one statement; `n.user_id` is not used.
#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn insert_many(
    db: impl PgExecutor<'_>,
    user_ids: &[Uuid],
    n: &NewNotification<'_>,
) -> sqlx::Result<u64> {
    let ids: Vec<Uuid> = user_ids.iter().map(|_| Uuid::now_v7()).collect();
    let done = sqlx::query(
        "insert into notifications (id, user_id, kind, title, body, link, data)
         select n.id, n.user_id, $3, $4, $5, $6, $7
         from unnest($1::uuid[], $2::uuid[]) as n (id, user_id)",
    )
    .bind(&ids)
    .bind(user_ids)
    .bind(n.kind)
    .bind(n.title)
    .bind(n.body)
    .bind(n.link)
    .bind(n.data)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A page of the user's notifications, newest first, before `before`. Each combination of filters
/// is its own statement (no `$2 is null or …`), so each keeps one cheap generic plan on its index:
/// with the optional filter in the SQL, PostgreSQL judged the generic plan worse and planned every
/// call anew (0.5 ms a call, more than the query).
#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn page(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    unread_only: bool,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "select {COLUMNS} from notifications where user_id = "
    ));
    q.push_bind(user_id);
    if unread_only {
        q.push(" and read_at is null");
    }
    if let Some(before) = before {
        q.push(" and id < ").push_bind(before);
    }
    q.push(" order by id desc limit ").push_bind(limit);
    q.build_query_as().fetch_all(db).await
}

/// The user's notifications created after `after`, oldest first (a stream's replay).
#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn after(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    after: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from notifications where user_id = $1 and id > $2 order by id limit $3"
    ))
    .bind(user_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// These notifications (those that still exist), oldest first: what a stream's instance hands
/// to its streams, read once however many streams each has.
#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn by_ids(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<NotificationRow>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from notifications where id = any($1) order by id"
    ))
    .bind(ids)
    .fetch_all(db)
    .await
}

#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn unread_count(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar("select count(*) from notifications where user_id = $1 and read_at is null")
        .bind(user_id)
        .fetch_one(db)
        .await
}

/// Marks one read (keeping an earlier time); none when unknown or another user's.
#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn mark_read(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<NotificationRow>> {
    sqlx::query_as(&format!(
        "update notifications set read_at = coalesce(read_at, now())
         where id = $1 and user_id = $2 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn mark_all_read(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "update notifications set read_at = now() where user_id = $1 and read_at is null",
    )
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn delete_own(db: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query("delete from notifications where id = $1 and user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes read notifications older than the retention.
#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn delete_read_before(db: impl PgExecutor<'_>, days: i32) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "delete from notifications
         where read_at is not null and created_at < now() - make_interval(days => $1)",
    )
    .bind(days)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
