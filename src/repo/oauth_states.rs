//! In-flight OAuth authorizations, stored by the hash of their `state`.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OAuthStateRow {
    pub provider: String,
    pub code_verifier: String,
    pub redirect_to: String,
    pub browser_hash: Vec<u8>,
    pub link_user_id: Option<Uuid>,
}

pub struct NewState<'a> {
    pub state_hash: &'a [u8],
    pub provider: &'a str,
    pub code_verifier: &'a str,
    pub redirect_to: &'a str,
    pub browser_hash: &'a [u8],
    pub link_user_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(db: impl PgExecutor<'_>, s: &NewState<'_>) -> sqlx::Result<()> {
    crate::telemetry::db_span("oauth_states.insert", async move {
        super::db::query(
            "insert into oauth_states (state_hash, provider, code_verifier, redirect_to, browser_hash, link_user_id, expires_at)
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.state_hash)
        .bind(s.provider)
        .bind(s.code_verifier)
        .bind(s.redirect_to)
        .bind(s.browser_hash)
        .bind(s.link_user_id)
        .bind(s.expires_at)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

/// Uses a state up: returns it once, and only before it expires. Expired ones are swept meanwhile.
pub async fn take(
    db: impl PgExecutor<'_>,
    state_hash: &[u8],
) -> sqlx::Result<Option<OAuthStateRow>> {
    crate::telemetry::db_span("oauth_states.take", async move {
        super::db::query_as(
            "with swept as (delete from oauth_states where expires_at <= now() and state_hash <> $1)
             delete from oauth_states where state_hash = $1 and expires_at > now()
             returning provider, code_verifier, redirect_to, browser_hash, link_user_id",
        )
        .bind(state_hash)
        .fetch_optional(db)
        .await
    })
    .await
}

/// Sign-in flows that were never finished.
pub async fn delete_expired(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    crate::telemetry::db_span("oauth_states.delete_expired", async move {
        let done = super::db::query("delete from oauth_states where expires_at < now()")
            .execute(db)
            .await?;
        Ok(done.rows_affected())
    })
    .await
}
