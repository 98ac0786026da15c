//! The append-only audit log.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_user_id: Option<Uuid>,
    pub ip: Option<String>,
    pub details: serde_json::Value,
}

pub struct NewAudit<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target_user_id: Option<Uuid>,
    pub ip: Option<&'a str>,
    pub details: &'a serde_json::Value,
}

pub async fn insert(db: impl PgExecutor<'_>, a: &NewAudit<'_>) -> sqlx::Result<()> {
    crate::telemetry::db_span("audit.insert", async move {
        super::db::query(
            "insert into audit_log (id, actor, action, target_user_id, ip, details) values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::now_v7())
        .bind(a.actor)
        .bind(a.action)
        .bind(a.target_user_id)
        .bind(a.ip)
        .bind(a.details)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

/// The same record about each of `targets`.
pub async fn insert_many(
    db: impl PgExecutor<'_>,
    actor: &str,
    action: &str,
    targets: &[Uuid],
    ip: Option<&str>,
    details: &serde_json::Value,
) -> sqlx::Result<()> {
    crate::telemetry::db_span("audit.insert_many", async move {
        let ids: Vec<Uuid> = targets.iter().map(|_| Uuid::now_v7()).collect();
        super::db::query(
            "insert into audit_log (id, actor, action, target_user_id, ip, details)
             select id, $3, $4, target, $5, $6 from unnest($1::uuid[], $2::uuid[]) as t (id, target)",
        )
        .bind(&ids)
        .bind(targets)
        .bind(actor)
        .bind(action)
        .bind(ip)
        .bind(details)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

/// Newest first; `before` is the last id of the previous page (ids are time-ordered UUIDv7).
pub async fn page(
    db: impl PgExecutor<'_>,
    user_id: Option<Uuid>,
    action: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<AuditRow>> {
    crate::telemetry::db_span("audit.page", async move {
        super::db::query_as(
            "select id, at, actor, action, target_user_id, ip, details from audit_log
             where ($1::uuid is null or target_user_id = $1)
               and ($2::text is null or action = $2)
               and ($3::uuid is null or id < $3)
             order by id desc
             limit $4",
        )
        .bind(user_id)
        .bind(action)
        .bind(before)
        .bind(limit)
        .fetch_all(db)
        .await
    })
    .await
}

/// How many `user.export` records `actor` wrote in the last hour, and the oldest one's time, under
/// a lock on the actor's exports held to the end of the transaction (so the export budget counted
/// here cannot be overspent by concurrent exports). The action is a literal, matching the partial
/// index `audit_log_export_idx`.
pub async fn recent_exports(
    conn: &mut PgConnection,
    actor: &str,
) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    crate::telemetry::db_span("audit.recent_exports", async move {
        super::db::query("select pg_advisory_xact_lock(hashtextextended('user.export ' || $1, 0))")
            .bind(actor)
            .execute(&mut *conn)
            .await?;
        super::db::query_as(
            "select count(*), min(at) from audit_log
         where actor = $1 and action = 'user.export' and at > now() - interval '1 hour'",
        )
        .bind(actor)
        .fetch_one(conn)
        .await
    })
    .await
}
