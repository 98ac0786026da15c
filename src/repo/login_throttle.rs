//! Password attempts counted per email, in the database so every instance sees the same lockout.
//! `failures` counts the attempts of the current window that were not right: each attempt is
//! reserved before its check, and a right password deletes the count.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Reserves one password attempt for the email before its password is checked, in one atomic
/// statement: the count goes up whether the attempt will be right or wrong, so concurrent guesses
/// cannot all pass a read-then-check. A window older than `window_secs` starts afresh. Returns the
/// attempts counted in the window, this one included, and when the window ends.
pub async fn reserve(
    db: impl PgExecutor<'_>,
    email_key: &str,
    window_secs: i64,
) -> sqlx::Result<(i32, DateTime<Utc>)> {
    crate::telemetry::db_span("login_throttle.reserve", async move {
        super::db::query_as(
            "insert into login_throttle as t (email_key, failures, window_started_at)
             values ($1, 1, now())
             on conflict (email_key) do update set
                 failures = case
                     when t.window_started_at <= now() - make_interval(secs => $2) then 1
                     else t.failures + 1 end,
                 window_started_at = case
                     when t.window_started_at <= now() - make_interval(secs => $2) then now()
                     else t.window_started_at end,
                 updated_at = now()
             returning failures, window_started_at + make_interval(secs => $2)",
        )
        .bind(email_key)
        .bind(window_secs as f64)
        .fetch_one(db)
        .await
    })
    .await
}

/// Counters whose window has passed: nothing locks any more, nothing to keep.
pub async fn delete_stale(db: impl PgExecutor<'_>, window_secs: i64) -> sqlx::Result<u64> {
    crate::telemetry::db_span("login_throttle.delete_stale", async move {
        let done = super::db::query(
            "delete from login_throttle where window_started_at < now() - make_interval(secs => $1)",
        )
        .bind(window_secs as f64)
        .execute(db)
        .await?;
        Ok(done.rows_affected())
    })
    .await
}

/// A right password ends the count.
pub async fn clear(db: impl PgExecutor<'_>, email_key: &str) -> sqlx::Result<()> {
    crate::telemetry::db_span("login_throttle.clear", async move {
        super::db::query("delete from login_throttle where email_key = $1")
            .bind(email_key)
            .execute(db)
            .await
            .map(|_| ())
    })
    .await
}

/// Hands back a reserved attempt that got no verdict.
pub async fn release(db: impl PgExecutor<'_>, email_key: &str) -> sqlx::Result<()> {
    crate::telemetry::db_span("login_throttle.release", async move {
        super::db::query(
            "update login_throttle set failures = greatest(failures - 1, 0), updated_at = now()
         where email_key = $1",
        )
        .bind(email_key)
        .execute(db)
        .await
        .map(|_| ())
    })
    .await
}
