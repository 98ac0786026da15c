//! Telegram Login Widget payloads already used, by SHA-256 of their hash.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Remembers a payload until it would be stale anyway; false when it was used before.
pub async fn remember(
    db: impl PgExecutor<'_>,
    hash_digest: &[u8],
    expires_at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    crate::telemetry::db_span("telegram_logins.remember", async move {
        let done = super::db::query(
            "insert into telegram_logins (hash_digest, expires_at) values ($1, $2)
             on conflict (hash_digest) do nothing",
        )
        .bind(hash_digest)
        .bind(expires_at)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    })
    .await
}

pub async fn delete_expired(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    crate::telemetry::db_span("telegram_logins.delete_expired", async move {
        let done = super::db::query("delete from telegram_logins where expires_at < now()")
            .execute(db)
            .await?;
        Ok(done.rows_affected())
    })
    .await
}
