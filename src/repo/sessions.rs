//! The `sessions` table: one row per sign-in, holding only hashes of its refresh tokens.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::batch::{sizes, values_list};
use super::linked_accounts::LinkedAccountRow;
use super::users::UserRow;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub refresh_hash: Vec<u8>,
    pub previous_refresh_hash: Option<Vec<u8>>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// the methods of the sign-in that opened it
    pub amr: Vec<String>,
}

/// What authenticating a request needs to know about its session, read in one query with the
/// session's user and the user's linked accounts (a private route needs the user anyway, and
/// `GET /users/me` shows the links).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionState {
    pub session_id: Uuid,
    pub live: bool,
    pub stale_last_seen: bool,
    pub signed_in_at: DateTime<Utc>,
    pub amr: Vec<String>,
    #[sqlx(flatten)]
    pub user: UserRow,
    #[sqlx(json)]
    pub links: Vec<LinkedAccountRow>,
}

pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub refresh_hash: &'a [u8],
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
    pub amr: &'a [&'a str],
}

const COLUMNS: &str =
    "id, user_id, refresh_hash, previous_refresh_hash, rotated_at, user_agent, ip, created_at, \
                       last_seen_at, expires_at, revoked_at, amr";

pub async fn insert(db: impl PgExecutor<'_>, s: &NewSession<'_>) -> sqlx::Result<()> {
    crate::telemetry::db_span("sessions.insert", async move {
        super::db::query(
            "insert into sessions (id, user_id, refresh_hash, user_agent, ip, expires_at, amr)
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.id)
        .bind(s.user_id)
        .bind(s.refresh_hash)
        .bind(s.user_agent)
        .bind(s.ip)
        .bind(s.expires_at)
        .bind(s.amr)
        .execute(db)
        .await?;
        Ok(())
    })
    .await
}

/// Locks the row: concurrent refreshes of one session are serialised.
pub async fn find_for_update(
    conn: &mut PgConnection,
    id: Uuid,
) -> sqlx::Result<Option<SessionRow>> {
    crate::telemetry::db_span("sessions.find_for_update", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from sessions where id = $1 for update"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await
    })
    .await
}

/// The state of several sessions in one query (see `session_reads`); unknown ids are absent.
/// A session is live when not revoked, not expired, and its user is active.
///
/// The ids go in as a `values ($1), …, ($n)` list with `n` the next power of two (padded with
/// nulls, which match nothing; at most `MAX_STATES`), so PostgreSQL keeps one generic plan per
/// size. With an array parameter (`= any($1)`) it re-plans every call, because its custom plan
/// for one id always looks cheaper than its generic plan for an array of unknown length, and the
/// planning then costs more than the query; `in ($1, …)` keeps its plan but rebuilds the list
/// for every row when the table is small enough to scan.
///
/// Not in a `db_span`: it runs in the batching task for many requests at once, outside any
/// request's trace, and each request's `sessions.state` span already covers its wait and this
/// query (a span here would be a trace of its own per batch). A `trace`-level log span only.
#[tracing::instrument(level = "trace", skip_all, fields(db.system = "postgresql"))]
pub async fn states(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<SessionState>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = &ids[..ids.len().min(MAX_STATES)];
    if super::db::behind_pgbouncer() {
        // no statement stays prepared there: the function keeps its plan (migration
        // `session_states_function`)
        return super::db::query_as("select * from session_states($1)")
            .bind(ids)
            .fetch_all(db)
            .await;
    }
    let size = ids.len().next_power_of_two();
    let sql = &STATES_SQL[size.trailing_zeros() as usize];
    let mut query = super::db::query_as(sql);
    for i in 0..size {
        query = query.bind(ids.get(i).copied());
    }
    query.fetch_all(db).await
}

/// Most ids `states` takes at once.
pub const MAX_STATES: usize = 256;
// a batch of n ids runs the statement for the next power of two (see `sizes`)
const _: () = assert!(MAX_STATES.is_power_of_two());

/// The `states` query for 1, 2, 4, … `MAX_STATES` ids.
static STATES_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    sizes(MAX_STATES)
        .map(|size| {
            format!(
                "select s.id as session_id,
                        s.revoked_at is null and s.expires_at > now() and u.status = 'active' as live,
                        s.last_seen_at < now() - interval '60 seconds' as stale_last_seen,
                        s.created_at as signed_in_at, s.amr, {}
                 from (values {}) as q (id)
                 join sessions s on s.id = q.id
                 join users u on u.id = s.user_id",
                super::users::columns_with_links("u"),
                values_list(size, &["uuid"])
            )
        })
        .collect()
});

/// `last_seen_at` is written at most once a minute, so reads stay reads.
pub async fn touch(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    crate::telemetry::db_span("sessions.touch", async move {
        super::db::query("update sessions set last_seen_at = now() where id = $1")
            .bind(id)
            .execute(db)
            .await?;
        Ok(())
    })
    .await
}

/// Replaces the refresh hash, remembers the old one for the grace window, and slides the expiry.
pub async fn rotate(
    db: impl PgExecutor<'_>,
    id: Uuid,
    new_hash: &[u8],
    previous_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    crate::telemetry::db_span("sessions.rotate", async move {
        super::db::query(
            "update sessions
             set refresh_hash = $2, previous_refresh_hash = $3, rotated_at = now(), last_seen_at = now(),
                 expires_at = $4, updated_at = now()
             where id = $1",
        )
        .bind(id)
        .bind(new_hash)
        .bind(previous_hash)
        .bind(expires_at)
        .execute(db)
        .await?;
        Ok(())
    })
    .await
}

pub async fn revoke(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    crate::telemetry::db_span("sessions.revoke", async move {
        super::db::query("update sessions set revoked_at = now(), updated_at = now() where id = $1 and revoked_at is null")
            .bind(id)
            .execute(db)
            .await?;
        Ok(())
    })
    .await
}

/// Revokes one session if it is the user's and live; false when there was none.
pub async fn revoke_own(db: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    crate::telemetry::db_span("sessions.revoke_own", async move {
        let done = super::db::query(
            "update sessions set revoked_at = now(), updated_at = now()
             where id = $1 and user_id = $2 and revoked_at is null",
        )
        .bind(id)
        .bind(user_id)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    })
    .await
}

/// Revokes every live session of the user, except `keep` when given.
pub async fn revoke_all(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> sqlx::Result<u64> {
    crate::telemetry::db_span("sessions.revoke_all", async move {
        let done = super::db::query(
            "update sessions set revoked_at = now(), updated_at = now()
             where user_id = $1 and revoked_at is null and ($2::uuid is null or id <> $2)",
        )
        .bind(user_id)
        .bind(keep)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}

/// The user's live sessions, newest first.
pub async fn list_live(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<SessionRow>> {
    crate::telemetry::db_span("sessions.list_live", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from sessions
             where user_id = $1 and revoked_at is null and expires_at > now()
             order by created_at desc, id desc"
        ))
        .bind(user_id)
        .fetch_all(db)
        .await
    })
    .await
}

/// Sessions past their expiry: no token can revive them.
pub async fn delete_expired(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    crate::telemetry::db_span("sessions.delete_expired", async move {
        let done = super::db::query("delete from sessions where expires_at < now()")
            .execute(db)
            .await?;
        Ok(done.rows_affected())
    })
    .await
}
