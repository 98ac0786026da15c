//! Password reset tokens, stored as SHA-256 hashes; single use and expiring.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

pub async fn insert(
    db: impl PgExecutor<'_>,
    hash: &[u8],
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    crate::telemetry::db_span("reset_tokens.insert", async move {
        super::db::query(
            "insert into password_reset_tokens (token_hash, user_id, expires_at) values ($1, $2, $3)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(expires_at)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

/// The user a usable (unused, unexpired) token belongs to, without using it.
pub async fn usable_user(db: impl PgExecutor<'_>, hash: &[u8]) -> sqlx::Result<Option<Uuid>> {
    crate::telemetry::db_span("reset_tokens.usable_user", async move {
        super::db::query_scalar(
            "select user_id from password_reset_tokens where token_hash = $1 and used_at is null and expires_at > now()",
        )
        .bind(hash)
        .fetch_optional(db)
        .await
    })
    .await
}

/// Marks the token used; false if it was used or expired meanwhile (the race between two resets).
pub async fn consume(db: impl PgExecutor<'_>, hash: &[u8]) -> sqlx::Result<bool> {
    crate::telemetry::db_span("reset_tokens.consume", async move {
        let done = super::db::query(
            "update password_reset_tokens set used_at = now(), updated_at = now()
             where token_hash = $1 and used_at is null and expires_at > now()",
        )
        .bind(hash)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    })
    .await
}

/// Used or expired reset tokens.
pub async fn delete_spent(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    crate::telemetry::db_span("reset_tokens.delete_spent", async move {
        let done = super::db::query(
            "delete from password_reset_tokens where used_at is not null or expires_at < now()",
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}

/// Every unused token of the user dies: a new token, a reset, a password or email change.
pub async fn kill_unused(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<u64> {
    crate::telemetry::db_span("reset_tokens.kill_unused", async move {
        let done = super::db::query(
            "update password_reset_tokens set used_at = now(), updated_at = now()
             where user_id = $1 and used_at is null",
        )
        .bind(user_id)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}
