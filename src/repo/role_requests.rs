//! Role-change requests.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::Role;

#[derive(Debug, Clone, FromRow)]
pub struct RoleRequestRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub from_role: Role,
    pub requested_role: Role,
    pub reason: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<Uuid>,
    pub comment: Option<String>,
}

const COLUMNS: &str =
    "id, user_id, from_role, requested_role, reason, status, created_at, decided_at, decided_by, comment";

/// Inserts a pending request; `None` when the user has one pending already (the partial unique
/// index decides, so two concurrent requests cannot both pass).
pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    from_role: Role,
    requested_role: Role,
    reason: &str,
) -> sqlx::Result<Option<RoleRequestRow>> {
    crate::telemetry::db_span("role_requests.insert", async move {
        super::db::query_as(&format!(
            "insert into role_requests (id, user_id, from_role, requested_role, reason)
             values ($1, $2, $3, $4, $5)
             on conflict (user_id) where status = 'pending' do nothing
             returning {COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(user_id)
        .bind(from_role)
        .bind(requested_role)
        .bind(reason)
        .fetch_optional(db)
        .await
    })
    .await
}

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<RoleRequestRow>> {
    crate::telemetry::db_span("role_requests.find", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from role_requests where id = $1"
        ))
        .bind(id)
        .fetch_optional(db)
        .await
    })
    .await
}

/// Locks the request for a decision: two admins deciding at once serialise here.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<RoleRequestRow>> {
    crate::telemetry::db_span("role_requests.lock", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from role_requests where id = $1 for update"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await
    })
    .await
}

/// Sets the outcome of a pending request (`approved`, `rejected` or `cancelled`).
pub async fn decide(
    db: impl PgExecutor<'_>,
    id: Uuid,
    status: &str,
    decided_by: Option<Uuid>,
    comment: Option<&str>,
) -> sqlx::Result<RoleRequestRow> {
    crate::telemetry::db_span("role_requests.decide", async move {
        super::db::query_as(&format!(
            "update role_requests
             set status = $2, decided_at = now(), decided_by = $3, comment = $4
             where id = $1 returning {COLUMNS}"
        ))
        .bind(id)
        .bind(status)
        .bind(decided_by)
        .bind(comment)
        .fetch_one(db)
        .await
    })
    .await
}

/// A page newest first, optionally of one user and of one status.
pub async fn page(
    db: impl PgExecutor<'_>,
    user_id: Option<Uuid>,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<RoleRequestRow>> {
    crate::telemetry::db_span("role_requests.page", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from role_requests
             where ($1::uuid is null or user_id = $1)
               and ($2::text is null or status = $2)
               and ($3::uuid is null or id < $3)
             order by id desc
             limit $4"
        ))
        .bind(user_id)
        .bind(status)
        .bind(before)
        .bind(limit)
        .fetch_all(db)
        .await
    })
    .await
}
