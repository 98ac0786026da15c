//! The stored access-token signing key (sealed with `auth.data_key` when `key_id` is set).

use sqlx::PgConnection;

use super::db::Db;

/// A stored key: its `kid`, the PKCS#8 document as stored, and the id of the data key that sealed it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    pub kid: String,
    pub private_der: Vec<u8>,
    pub key_id: Option<String>,
}

/// The associated data a key is sealed for: its place.
pub fn place(kid: &str) -> String {
    format!("signing_keys.private_der:{kid}")
}

const CURRENT: &str =
    "select kid, private_der, key_id from signing_keys order by created_at desc limit 1";

pub async fn current(pool: &Db) -> sqlx::Result<Option<StoredKey>> {
    crate::telemetry::db_span("signing_keys.current", async move {
        super::db::query_as(CURRENT).fetch_optional(pool).await
    })
    .await
}

/// Stores `new` unless another instance stored a key first; returns the key in force.
pub async fn insert_if_none(pool: &Db, new: &StoredKey, public: &[u8]) -> sqlx::Result<StoredKey> {
    crate::telemetry::db_span("signing_keys.insert_if_none", async move {
        let mut tx = pool.begin().await?;
        // serialises concurrent first starts; the number is arbitrary but fixed
        super::db::query("select pg_advisory_xact_lock(7283401)")
            .execute(&mut *tx)
            .await?;
        let existing: Option<StoredKey> = super::db::query_as(CURRENT)
            .fetch_optional(&mut *tx)
            .await?;
        let key = match existing {
            Some(key) => key,
            None => {
                super::db::query(
                    "insert into signing_keys (kid, private_der, public_key, key_id) values ($1, $2, $3, $4)",
                )
                .bind(&new.kid)
                .bind(&new.private_der)
                .bind(public)
                .bind(&new.key_id)
                .execute(&mut *tx)
                .await?;
                new.clone()
            }
        };
        tx.commit().await?;
        Ok(key)
    })
    .await
}

/// Every stored key (for `rotate-data-key`), locked.
pub async fn all_for_update(conn: &mut PgConnection) -> sqlx::Result<Vec<StoredKey>> {
    crate::telemetry::db_span("signing_keys.all_for_update", async move {
        super::db::query_as("select kid, private_der, key_id from signing_keys for update")
            .fetch_all(conn)
            .await
    })
    .await
}

pub async fn set_sealed(conn: &mut PgConnection, key: &StoredKey) -> sqlx::Result<()> {
    crate::telemetry::db_span("signing_keys.set_sealed", async move {
        super::db::query("update signing_keys set private_der = $2, key_id = $3 where kid = $1")
            .bind(&key.kid)
            .bind(&key.private_der)
            .bind(&key.key_id)
            .execute(conn)
            .await
            .map(|_| ())
    })
    .await
}
