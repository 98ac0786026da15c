//! Two-factor sign-in: `totp_factors` (a user's authenticator), `recovery_codes`, and
//! `mfa_challenges` (first steps waiting for their second).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// A user's authenticator; `secret` as stored (sealed when `key_id` is set).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FactorRow {
    pub user_id: Uuid,
    pub secret: Vec<u8>,
    pub key_id: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub last_step: Option<i64>,
}

/// A first step waiting for its second.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChallengeRow {
    pub user_id: Uuid,
    pub form: String,
    pub methods: Vec<String>,
    pub failures: i32,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

pub async fn factor(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Option<FactorRow>> {
    crate::telemetry::db_span("mfa.factor", async move {
        super::db::query_as(
            "select user_id, secret, key_id, confirmed_at, last_step from totp_factors where user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(db)
        .await
    })
    .await
}

/// Starts (or restarts) an enrolment: a new unconfirmed secret replaces an unconfirmed one.
/// False when a confirmed factor is there (nothing changes).
pub async fn put_pending(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    secret: &[u8],
    key_id: Option<&str>,
) -> sqlx::Result<bool> {
    crate::telemetry::db_span("mfa.put_pending", async move {
        let done = super::db::query(
            "insert into totp_factors as f (user_id, secret, key_id) values ($1, $2, $3)
             on conflict (user_id) do update
                 set secret = excluded.secret, key_id = excluded.key_id, last_step = null, updated_at = now()
                 where f.confirmed_at is null",
        )
        .bind(user_id)
        .bind(secret)
        .bind(key_id)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    })
    .await
}

/// Accepts the code of `step` once: true only when no code of this step or a later one was
/// accepted before (one statement, so two requests with one code cannot both pass).
pub async fn accept_step(db: impl PgExecutor<'_>, user_id: Uuid, step: i64) -> sqlx::Result<bool> {
    crate::telemetry::db_span("mfa.accept_step", async move {
        let done = super::db::query(
            "update totp_factors set last_step = $2, updated_at = now()
             where user_id = $1 and (last_step is null or last_step < $2)",
        )
        .bind(user_id)
        .bind(step)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    })
    .await
}

/// Confirms the enrolment and turns two-factor sign-in on for the user.
pub async fn confirm(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<()> {
    crate::telemetry::db_span("mfa.confirm", async move {
        super::db::query(
            "update totp_factors set confirmed_at = now(), updated_at = now() where user_id = $1",
        )
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
        set_enabled(conn, user_id, true).await
    })
    .await
}

/// Deletes the factor, its recovery codes and its waiting challenges, and turns two-factor sign-in
/// off for the user.
pub async fn remove(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<()> {
    crate::telemetry::db_span("mfa.remove", async move {
        for sql in [
            "delete from totp_factors where user_id = $1",
            "delete from recovery_codes where user_id = $1",
            "delete from mfa_challenges where user_id = $1",
        ] {
            super::db::query(sql)
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
        }
        set_enabled(conn, user_id, false).await
    })
    .await
}

async fn set_enabled(conn: &mut PgConnection, user_id: Uuid, on: bool) -> sqlx::Result<()> {
    super::db::query("update users set mfa_enabled = $2, updated_at = now() where id = $1")
        .bind(user_id)
        .bind(on)
        .execute(conn)
        .await
        .map(|_| ())
}

/// The user's recovery codes become these (by hash); the old ones are dead.
pub async fn replace_recovery_codes(
    conn: &mut PgConnection,
    user_id: Uuid,
    hashes: &[Vec<u8>],
) -> sqlx::Result<()> {
    crate::telemetry::db_span("mfa.replace_recovery_codes", async move {
        super::db::query("delete from recovery_codes where user_id = $1")
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        super::db::query(
            "insert into recovery_codes (user_id, code_hash) select $1, h from unnest($2::bytea[]) as h",
        )
        .bind(user_id)
        .bind(hashes)
        .execute(conn)
        .await?;
        Ok(())
    })
    .await
}

/// Uses up a recovery code; returns the unused codes left, or `None` when the code is not an
/// unused code of the user.
pub async fn use_recovery_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    hash: &[u8],
) -> sqlx::Result<Option<i64>> {
    crate::telemetry::db_span("mfa.use_recovery_code", async move {
        let done = super::db::query(
            "update recovery_codes set used_at = now()
             where user_id = $1 and code_hash = $2 and used_at is null",
        )
        .bind(user_id)
        .bind(hash)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        let left = super::db::query_scalar(
            "select count(*) from recovery_codes where user_id = $1 and used_at is null",
        )
        .bind(user_id)
        .fetch_one(conn)
        .await?;
        Ok(Some(left))
    })
    .await
}

pub async fn insert_challenge(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    user_id: Uuid,
    form: &str,
    methods: &[&str],
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    crate::telemetry::db_span("mfa.insert_challenge", async move {
        super::db::query(
            "insert into mfa_challenges (token_hash, user_id, form, methods, expires_at)
             values ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(form)
        .bind(methods)
        .bind(expires_at)
        .execute(db)
        .await?;
        Ok(())
    })
    .await
}

/// Locks the challenge: completions of one token are serialised.
pub async fn challenge_for_update(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> sqlx::Result<Option<ChallengeRow>> {
    crate::telemetry::db_span("mfa.challenge_for_update", async move {
        super::db::query_as(
            "select user_id, form, methods, failures, expires_at, used_at
             from mfa_challenges where token_hash = $1 for update",
        )
        .bind(token_hash)
        .fetch_optional(conn)
        .await
    })
    .await
}

pub async fn fail_challenge(db: impl PgExecutor<'_>, token_hash: &[u8]) -> sqlx::Result<()> {
    crate::telemetry::db_span("mfa.fail_challenge", async move {
        super::db::query("update mfa_challenges set failures = failures + 1 where token_hash = $1")
            .bind(token_hash)
            .execute(db)
            .await
            .map(|_| ())
    })
    .await
}

pub async fn use_challenge(db: impl PgExecutor<'_>, token_hash: &[u8]) -> sqlx::Result<()> {
    crate::telemetry::db_span("mfa.use_challenge", async move {
        super::db::query("update mfa_challenges set used_at = now() where token_hash = $1")
            .bind(token_hash)
            .execute(db)
            .await
            .map(|_| ())
    })
    .await
}

/// Challenges used, past their expiry or dead of wrong codes (`max_failures` of them): nothing can
/// complete them.
pub async fn delete_stale_challenges(
    db: impl PgExecutor<'_>,
    max_failures: i32,
) -> sqlx::Result<u64> {
    crate::telemetry::db_span("mfa.delete_stale_challenges", async move {
        let done = super::db::query(
            "delete from mfa_challenges
                 where expires_at < now() or used_at is not null or failures >= $1",
        )
        .bind(max_failures)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}

/// Every stored TOTP secret (for `rotate-data-key`), locked.
pub async fn all_secrets_for_update(conn: &mut PgConnection) -> sqlx::Result<Vec<FactorRow>> {
    crate::telemetry::db_span("mfa.all_secrets_for_update", async move {
        super::db::query_as(
            "select user_id, secret, key_id, confirmed_at, last_step from totp_factors for update",
        )
        .fetch_all(conn)
        .await
    })
    .await
}

pub async fn set_secret(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    secret: &[u8],
    key_id: Option<&str>,
) -> sqlx::Result<()> {
    crate::telemetry::db_span("mfa.set_secret", async move {
        super::db::query("update totp_factors set secret = $2, key_id = $3 where user_id = $1")
            .bind(user_id)
            .bind(secret)
            .bind(key_id)
            .execute(db)
            .await
            .map(|_| ())
    })
    .await
}

/// Stored TOTP secrets that the key `key_id` (none: no key) did not seal and cannot open.
pub async fn count_sealed_otherwise(
    db: impl PgExecutor<'_>,
    key_id: Option<&str>,
) -> sqlx::Result<i64> {
    crate::telemetry::db_span("mfa.count_sealed_otherwise", async move {
        super::db::query_scalar(
            "select count(*) from totp_factors where key_id is not null and key_id is distinct from $1",
        )
        .bind(key_id)
        .fetch_one(db)
        .await
    })
    .await
}
