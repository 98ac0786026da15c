//! The `linked_accounts` table: links added by hand, and provider identities (`external_id` set).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::domain::SocialNetwork;

/// Also read as JSON, aggregated into a session's state (`sessions::states`).
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct LinkedAccountRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub social_network: SocialNetwork,
    pub connection_link: String,
    pub connected_for: Option<String>,
    pub external_id: Option<String>,
    pub connected_at: DateTime<Utc>,
}

pub struct NewLink<'a> {
    pub user_id: Uuid,
    pub social_network: SocialNetwork,
    pub connection_link: &'a str,
    pub connected_for: Option<&'a str>,
    pub external_id: Option<&'a str>,
}

const COLUMNS: &str =
    "id, user_id, social_network, connection_link, connected_for, external_id, connected_at";

pub async fn insert(db: impl PgExecutor<'_>, l: &NewLink<'_>) -> sqlx::Result<LinkedAccountRow> {
    crate::telemetry::db_span("linked_accounts.insert", async move {
        super::db::query_as(&format!(
            "insert into linked_accounts (id, user_id, social_network, connection_link, connected_for, external_id)
             values ($1, $2, $3, $4, $5, $6)
             returning {COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(l.user_id)
        .bind(l.social_network)
        .bind(l.connection_link)
        .bind(l.connected_for)
        .bind(l.external_id)
        .fetch_one(db)
        .await
    })
    .await
}

/// The linked accounts of several users in one query, oldest first.
pub async fn for_users(
    db: impl PgExecutor<'_>,
    user_ids: &[Uuid],
) -> sqlx::Result<Vec<LinkedAccountRow>> {
    crate::telemetry::db_span("linked_accounts.for_users", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from linked_accounts where user_id = any($1) order by connected_at, id"
        ))
        .bind(user_ids)
        .fetch_all(db)
        .await
    })
    .await
}

/// One of the user's linked accounts; none when unknown or another user's.
pub async fn find_own(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<LinkedAccountRow>> {
    crate::telemetry::db_span("linked_accounts.find_own", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from linked_accounts where id = $1 and user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(db)
        .await
    })
    .await
}

pub async fn find_identity(
    db: impl PgExecutor<'_>,
    network: SocialNetwork,
    external_id: &str,
) -> sqlx::Result<Option<LinkedAccountRow>> {
    crate::telemetry::db_span("linked_accounts.find_identity", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from linked_accounts where social_network = $1 and external_id = $2"
        ))
        .bind(network)
        .bind(external_id)
        .fetch_optional(db)
        .await
    })
    .await
}

/// How many provider identities the user has (ways to sign in besides a password).
pub async fn count_identities(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    crate::telemetry::db_span("linked_accounts.count_identities", async move {
        super::db::query_scalar(
            "select count(*) from linked_accounts where user_id = $1 and external_id is not null",
        )
        .bind(user_id)
        .fetch_one(db)
        .await
    })
    .await
}

pub async fn set_connected_for(
    db: impl PgExecutor<'_>,
    id: Uuid,
    connected_for: Option<&str>,
) -> sqlx::Result<LinkedAccountRow> {
    crate::telemetry::db_span("linked_accounts.set_connected_for", async move {
        super::db::query_as(&format!(
            "update linked_accounts set connected_for = $2, updated_at = now() where id = $1 returning {COLUMNS}"
        ))
        .bind(id)
        .bind(connected_for)
        .fetch_one(db)
        .await
    })
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    crate::telemetry::db_span("linked_accounts.delete", async move {
        super::db::query("delete from linked_accounts where id = $1")
            .bind(id)
            .execute(db)
            .await
            .map(|_| ())
    })
    .await
}
