//! Failed-login counting per email, in the database so every instance sees the same lockout.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// The email's counter: `None` when it has none (no recent failures); otherwise until when it is
/// locked out, if it is.
pub async fn status(
    db: impl PgExecutor<'_>,
    email_key: &str,
) -> sqlx::Result<Option<Option<DateTime<Utc>>>> {
    sqlx::query_scalar(
        "select case when locked_until > now() then locked_until end
         from login_throttle where email_key = $1",
    )
    .bind(email_key)
    .fetch_optional(db)
    .await
}

/// Counts one failure inside the current window (a new window starts once the old one has passed).
/// The `max`th failure locks the email for `window_secs` and starts the count afresh.
/// Every expression reads the old row, so the statement is one atomic step under concurrency.
pub async fn record_failure(
    db: impl PgExecutor<'_>,
    email_key: &str,
    max: i32,
    window_secs: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into login_throttle as t (email_key, failures, window_started_at, locked_until)
         values ($1,
                 case when $2 <= 1 then 0 else 1 end,
                 now(),
                 case when $2 <= 1 then now() + make_interval(secs => $3) end)
         on conflict (email_key) do update set
             failures = case
                 when t.window_started_at <= now() - make_interval(secs => $3) then least(1, $2 - 1)
                 when t.failures + 1 >= $2 then 0
                 else t.failures + 1 end,
             locked_until = case
                 when t.window_started_at > now() - make_interval(secs => $3) and t.failures + 1 >= $2
                     then now() + make_interval(secs => $3)
                 else t.locked_until end,
             window_started_at = case
                 when t.window_started_at <= now() - make_interval(secs => $3) or t.failures + 1 >= $2 then now()
                 else t.window_started_at end,
             updated_at = now()",
    )
    .bind(email_key)
    .bind(max)
    .bind(window_secs as f64)
    .execute(db)
    .await
    .map(|_| ())
}

/// A right password ends the count.
pub async fn clear(db: impl PgExecutor<'_>, email_key: &str) -> sqlx::Result<()> {
    sqlx::query("delete from login_throttle where email_key = $1")
        .bind(email_key)
        .execute(db)
        .await
        .map(|_| ())
}
