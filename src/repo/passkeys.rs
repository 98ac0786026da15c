//! Passkeys: `passkeys` (a user's credentials), `webauthn_challenges` (ceremonies under way) and
//! the users' opaque WebAuthn handles.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// A stored passkey; `credential` is webauthn-rs-core's `Credential` (public key and counter).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasskeyRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub credential_id: Vec<u8>,
    pub credential: Json<Value>,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, user_id, credential_id, credential, name, created_at, last_used_at, suspended_at";

/// The ceremony a challenge belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceremony {
    Registration,
    Authentication,
}

impl Ceremony {
    fn as_str(self) -> &'static str {
        match self {
            Ceremony::Registration => "registration",
            Ceremony::Authentication => "authentication",
        }
    }
}

/// A used challenge: the ceremony's state.
#[derive(Debug, sqlx::FromRow)]
pub struct ChallengeRow {
    pub state: Json<Value>,
}

/// A passkey and the handle its user is known to authenticators by.
#[derive(Debug, sqlx::FromRow)]
pub struct OwnedPasskey {
    #[sqlx(flatten)]
    pub passkey: PasskeyRow,
    pub owner_handle: Option<Vec<u8>>,
}

/// The user's handle, if they have one.
pub async fn handle(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Option<Vec<u8>>> {
    crate::telemetry::db_span("passkeys.handle", async move {
        super::db::query_scalar("select webauthn_handle from users where id = $1")
            .bind(user_id)
            .fetch_one(db)
            .await
    })
    .await
}

/// Gives the user their handle (at their first registration; the caller holds the user's row).
pub async fn set_handle(db: impl PgExecutor<'_>, user_id: Uuid, handle: &[u8]) -> sqlx::Result<()> {
    crate::telemetry::db_span("passkeys.set_handle", async move {
        super::db::query("update users set webauthn_handle = $2 where id = $1")
            .bind(user_id)
            .bind(handle)
            .execute(db)
            .await?;
        Ok(())
    })
    .await
}

pub async fn insert_challenge(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Option<Uuid>,
    ceremony: Ceremony,
    state: &Value,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    crate::telemetry::db_span("passkeys.insert_challenge", async move {
        super::db::query(
            "insert into webauthn_challenges (id, user_id, ceremony, state, expires_at) \
             values ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(user_id)
        .bind(ceremony.as_str())
        .bind(Json(state))
        .bind(expires_at)
        .execute(db)
        .await?;
        Ok(())
    })
    .await
}

/// Takes a live challenge of this ceremony (and, for a registration, this user): deleted as it is
/// read, so it is used once whatever the answer.
pub async fn take_challenge(
    db: impl PgExecutor<'_>,
    id: Uuid,
    ceremony: Ceremony,
    user_id: Option<Uuid>,
) -> sqlx::Result<Option<ChallengeRow>> {
    crate::telemetry::db_span("passkeys.take_challenge", async move {
        super::db::query_as(
            "delete from webauthn_challenges where id = $1 and ceremony = $2 \
               and user_id is not distinct from $3 and expires_at > now() \
             returning state",
        )
        .bind(id)
        .bind(ceremony.as_str())
        .bind(user_id)
        .fetch_optional(db)
        .await
    })
    .await
}

pub async fn delete_expired_challenges(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    crate::telemetry::db_span("passkeys.delete_expired_challenges", async move {
        Ok(
            super::db::query("delete from webauthn_challenges where expires_at <= now()")
                .execute(db)
                .await?
                .rows_affected(),
        )
    })
    .await
}

/// A user's passkeys, newest first.
pub async fn list(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<PasskeyRow>> {
    crate::telemetry::db_span("passkeys.list", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from passkeys where user_id = $1 order by created_at desc, id desc"
        ))
        .bind(user_id)
        .fetch_all(db)
        .await
    })
    .await
}

pub async fn find_own(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<PasskeyRow>> {
    crate::telemetry::db_span("passkeys.find_own", async move {
        super::db::query_as(&format!(
            "select {COLUMNS} from passkeys where id = $1 and user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(db)
        .await
    })
    .await
}

/// The passkey with this credential id and its user's handle, the passkey locked for the sign-in
/// that uses it.
pub async fn lock_by_credential(
    conn: &mut PgConnection,
    credential_id: &[u8],
) -> sqlx::Result<Option<OwnedPasskey>> {
    crate::telemetry::db_span("passkeys.lock_by_credential", async move {
        super::db::query_as(&format!(
            "select {}, u.webauthn_handle as owner_handle
             from passkeys p join users u on u.id = p.user_id
             where p.credential_id = $1 for update of p",
            super::prefix_columns(COLUMNS, "p")
        ))
        .bind(credential_id)
        .fetch_optional(conn)
        .await
    })
    .await
}

/// A new passkey; a credential registered already is refused (None), except the user's own
/// suspended one, which registering again replaces (its counter starts over, it is usable again).
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Uuid,
    credential_id: &[u8],
    credential: &Value,
    name: &str,
) -> sqlx::Result<Option<PasskeyRow>> {
    crate::telemetry::db_span("passkeys.insert", async move {
        super::db::query_as(&format!(
            "insert into passkeys (id, user_id, credential_id, credential, name) \
             values ($1, $2, $3, $4, $5) \
             on conflict (credential_id) do update \
               set credential = excluded.credential, name = excluded.name, suspended_at = null \
               where passkeys.user_id = excluded.user_id and passkeys.suspended_at is not null \
             returning {COLUMNS}"
        ))
        .bind(id)
        .bind(user_id)
        .bind(credential_id)
        .bind(Json(credential))
        .bind(name)
        .fetch_optional(db)
        .await
    })
    .await
}

pub async fn rename(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
    name: &str,
) -> sqlx::Result<Option<PasskeyRow>> {
    crate::telemetry::db_span("passkeys.rename", async move {
        super::db::query_as(&format!(
            "update passkeys set name = $3 where id = $1 and user_id = $2 returning {COLUMNS}"
        ))
        .bind(id)
        .bind(user_id)
        .bind(name)
        .fetch_optional(db)
        .await
    })
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    crate::telemetry::db_span("passkeys.delete", async move {
        super::db::query("delete from passkeys where id = $1")
            .bind(id)
            .execute(db)
            .await?;
        Ok(())
    })
    .await
}

/// The user's passkeys that can sign in (not suspended).
pub async fn count_usable(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    crate::telemetry::db_span("passkeys.count_usable", async move {
        super::db::query_scalar(
            "select count(*) from passkeys where user_id = $1 and suspended_at is null",
        )
        .bind(user_id)
        .fetch_one(db)
        .await
    })
    .await
}

/// A verified sign-in: the credential's new counter and flags, and when it was used.
pub async fn used(db: impl PgExecutor<'_>, id: Uuid, credential: &Value) -> sqlx::Result<()> {
    crate::telemetry::db_span("passkeys.used", async move {
        super::db::query("update passkeys set credential = $2, last_used_at = now() where id = $1")
            .bind(id)
            .bind(Json(credential))
            .execute(db)
            .await?;
        Ok(())
    })
    .await
}

/// Its counter went back: refused until registered again.
pub async fn suspend(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    crate::telemetry::db_span("passkeys.suspend", async move {
        super::db::query(
            "update passkeys set suspended_at = now() where id = $1 and suspended_at is null",
        )
        .bind(id)
        .execute(db)
        .await?;
        Ok(())
    })
    .await
}
