//! Email verification tokens, stored as SHA-256 hashes; single use, expiring, bound to an address.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

pub async fn insert(
    db: impl PgExecutor<'_>,
    hash: &[u8],
    user_id: Uuid,
    email: &str,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    crate::telemetry::db_span("verification_tokens.insert", async move {
        super::db::query(
            "insert into email_verification_tokens (token_hash, user_id, email, expires_at)
             values ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(email)
        .bind(expires_at)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}

/// Uses the token up: the user and the address it was sent to, if it was unused and unexpired.
pub async fn take(db: impl PgExecutor<'_>, hash: &[u8]) -> sqlx::Result<Option<(Uuid, String)>> {
    crate::telemetry::db_span("verification_tokens.take", async move {
        super::db::query_as(
            "update email_verification_tokens set used_at = now(), updated_at = now()
             where token_hash = $1 and used_at is null and expires_at > now()
             returning user_id, email",
        )
        .bind(hash)
        .fetch_optional(db)
        .await
    })
    .await
}

/// Used or expired tokens (the purge).
pub async fn delete_spent(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    crate::telemetry::db_span("verification_tokens.delete_spent", async move {
        let done = super::db::query(
            "delete from email_verification_tokens where used_at is not null or expires_at < now()",
        )
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}
