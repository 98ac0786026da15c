//! The stored access-token signing key.

use sqlx::PgPool;

#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn current(pool: &PgPool) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar("select private_der from signing_keys order by created_at desc limit 1")
        .fetch_optional(pool)
        .await
}

/// Stores `der` unless another instance stored a key first; returns the key in force.
#[tracing::instrument(level = "debug", skip_all, fields(db.system = "postgresql"))]
pub async fn insert_if_none(
    pool: &PgPool,
    kid: &str,
    der: &[u8],
    public: &[u8],
) -> sqlx::Result<Vec<u8>> {
    let mut tx = pool.begin().await?;
    // serialises concurrent first starts; the number is arbitrary but fixed
    sqlx::query("select pg_advisory_xact_lock(7283401)")
        .execute(&mut *tx)
        .await?;
    let existing: Option<Vec<u8>> =
        sqlx::query_scalar("select private_der from signing_keys order by created_at desc limit 1")
            .fetch_optional(&mut *tx)
            .await?;
    let key = match existing {
        Some(key) => key,
        None => {
            sqlx::query(
                "insert into signing_keys (kid, private_der, public_key) values ($1, $2, $3)",
            )
            .bind(kid)
            .bind(der)
            .bind(public)
            .execute(&mut *tx)
            .await?;
            der.to_vec()
        }
    };
    tx.commit().await?;
    Ok(key)
}
