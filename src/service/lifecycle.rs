//! An account's life: soft delete, restore, permanent delete, role changes, and the purge of
//! accounts soft-deleted too long ago. Changes that could leave no admin lock the admins' rows first.

use secrecy::SecretString;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit::{self, Action, Actor, Caller};
use super::auth::check_password;
use super::mail;
use super::mfa::{self, Challenge, Form};
use super::rate_limit::Budget;
use super::ClientMeta;
use crate::domain::{Email, Role};
use crate::error::{AppError, AppResult};
use crate::repo::{self, users::UserRow};
use crate::state::AppState;

/// Soft delete: the account keeps its email and phone, every session is revoked, and it can be
/// restored until purged.
pub async fn soft_delete(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = lock_guarding_last_admin(&mut tx, id).await?;
    if user.is_deleted() {
        return Err(AppError::AlreadyDeleted);
    }
    if user.last_admin {
        return Err(AppError::LastAdmin);
    }
    let by_owner = matches!(caller.actor, Actor::User(who) if who == id);
    let deleted = repo::users::set_deleted(&mut *tx, id, Some(by_owner)).await?;
    let revoked = repo::sessions::revoke_all(&mut *tx, id, None).await?;
    audit::record(
        &mut tx,
        caller,
        Action::SoftDelete,
        Some(id),
        json!({"sessions_revoked": revoked}),
    )
    .await?;
    let purge_on = chrono::Utc::now()
        + chrono::Duration::days(i64::from(state.settings.users.purge_after_days));
    let ctx = mail::Context {
        purge_date: Some(purge_on.format("%Y-%m-%d").to_string()),
        // only the owner may restore it themselves
        link: by_owner.then(|| state.mail.link("restore-account", None)),
        ..mail::Context::default()
    };
    mail::notice(&mut tx, state, mail::Kind::AccountDeleted, &deleted, ctx).await?;
    tx.commit().await?;
    tracing::info!(user_id = %id, "user soft-deleted");
    Ok(())
}

/// Brings a soft-deleted account back; 400 `already_active` when it is not deleted.
pub async fn restore(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<UserRow> {
    let mut tx = state.db.begin().await?;
    let user = repo::users::lock(&mut tx, id)
        .await?
        .ok_or_else(AppError::user_not_found)?;
    let user = restore_in(&mut tx, caller, &user).await?;
    tx.commit().await?;
    Ok(user)
}

/// As [`restore`], in the caller's transaction, of a user it read (locked or just proven).
pub(super) async fn restore_in(
    conn: &mut PgConnection,
    caller: &Caller,
    user: &UserRow,
) -> AppResult<UserRow> {
    if !user.is_deleted() {
        return Err(AppError::AlreadyActive);
    }
    let restored = repo::users::set_deleted(&mut *conn, user.id, None).await?;
    audit::record(conn, caller, Action::Restore, Some(user.id), json!({})).await?;
    tracing::info!(user_id = %user.id, "user restored");
    Ok(restored)
}

/// What the public restore answers: the restored user, or (two-factor on) a challenge for the
/// second step, which restores it.
#[derive(Debug)]
pub enum Restored {
    User(Box<UserRow>),
    SecondFactor(Challenge),
}

/// Self-service restore: the email and password prove the owner (with the login's lockout and
/// timing rules), then as [`restore`]. Only an account its owner deleted: one an admin or a server
/// deleted stays deleted here (403 `account_deleted`) and is restored by them.
pub async fn restore_with_password(
    state: &AppState,
    meta: &ClientMeta,
    email: &Email,
    password: &SecretString,
) -> AppResult<Restored> {
    state.limits.check(Budget::Restore, meta.ip).await?;
    let user = check_password(state, meta, email, password).await?;
    if user.is_deleted() && !user.deleted_by_owner {
        repo::login_throttle::clear(&state.db, &email.key()).await?;
        return Err(AppError::AccountDeleted);
    }
    if user.mfa_enabled && user.is_deleted() {
        // the count of wrong attempts stays until the second step completes
        let challenge = mfa::challenge(state, &user, Form::Restore, &["pwd"]).await?;
        return Ok(Restored::SecondFactor(challenge));
    }
    repo::login_throttle::clear(&state.db, &email.key()).await?;
    let caller = Caller::user(user.id, meta.ip);
    Ok(Restored::User(Box::new(
        restore(state, &caller, user.id).await?,
    )))
}

/// Permanent delete: sessions, reset tokens and linked accounts go with the user.
pub async fn permanent_delete(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = lock_guarding_last_admin(&mut tx, id).await?;
    if user.last_admin {
        return Err(AppError::LastAdmin);
    }
    repo::users::delete(&mut *tx, id).await?;
    audit::record(
        &mut tx,
        caller,
        Action::PermanentDelete,
        Some(id),
        json!({"email": user.row.email}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %id, "user permanently deleted");
    Ok(())
}

/// Changes the role; the user's tokens carry it from their next refresh. The last active admin
/// cannot be demoted.
pub async fn set_role(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    role: Role,
) -> AppResult<UserRow> {
    let mut tx = state.db.begin().await?;
    let updated = change_role(&mut tx, caller, id, role).await?;
    tx.commit().await?;
    Ok(updated)
}

/// [`set_role`] inside the caller's transaction (an approved role request changes the role with
/// its decision): the last-admin guard, the change and its audit record.
pub(super) async fn change_role(
    conn: &mut PgConnection,
    caller: &Caller,
    id: Uuid,
    role: Role,
) -> AppResult<UserRow> {
    let user = lock_guarding_last_admin(conn, id).await?;
    if user.last_admin && role != Role::Admin {
        return Err(AppError::LastAdmin);
    }
    let from = user.row.role;
    let updated = repo::users::set_role(&mut *conn, id, role).await?;
    audit::record(
        conn,
        caller,
        Action::RoleChange,
        Some(id),
        json!({"from": from, "to": role}),
    )
    .await?;
    Ok(updated)
}

/// Permanently deletes accounts soft-deleted more than `users.purge_after_days` ago, in batches.
/// Safe with several instances: each batch claims its rows with `FOR UPDATE SKIP LOCKED`.
pub async fn purge_expired(state: &AppState) -> AppResult<u64> {
    const BATCH: i64 = 100;
    let days = state.settings.users.purge_after_days;
    let mut purged = 0;
    loop {
        let mut tx = state.db.begin().await?;
        let ids = repo::users::claim_purgeable(&mut tx, days, BATCH).await?;
        if ids.is_empty() {
            // nothing to purge: no statement more (the events trigger would notify the relays)
            break;
        }
        repo::users::delete_many(&mut *tx, &ids).await?;
        let details = json!({"reason": "purge"});
        audit::record_many(
            &mut tx,
            &Caller::system(),
            Action::PermanentDelete,
            &ids,
            details,
        )
        .await?;
        tx.commit().await?;
        purged += ids.len() as u64;
        if (ids.len() as i64) < BATCH {
            break;
        }
    }
    if purged > 0 {
        tracing::info!(purged, "purged soft-deleted accounts");
    }
    Ok(purged)
}

/// What the purge also removed: records that can no longer do anything.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub sessions: u64,
    pub lockout_counters: u64,
    pub flow_states: u64,
    pub reset_tokens: u64,
    pub telegram_logins: u64,
    pub verification_tokens: u64,
    pub messages: u64,
    pub events: u64,
    pub notifications: u64,
    pub mfa_challenges: u64,
    pub webauthn_challenges: u64,
}

/// Deletes sessions past their expiry, lockout counters past their window, expired sign-in flow
/// states, used or expired reset tokens and two-factor challenges, stale Telegram payloads, and mail and events past their
/// retention, so no table grows without
/// bound. Each is one statement; several instances running it at once only repeat deletes.
pub async fn sweep_stale_records(state: &AppState) -> AppResult<Swept> {
    let db = &state.db;
    let swept = Swept {
        sessions: repo::sessions::delete_expired(db).await?,
        lockout_counters: repo::login_throttle::delete_stale(db, state.settings.auth.lockout_secs)
            .await?,
        flow_states: repo::oauth_states::delete_expired(db).await?,
        reset_tokens: repo::reset_tokens::delete_spent(db).await?,
        telegram_logins: repo::telegram_logins::delete_expired(db).await?,
        verification_tokens: repo::verification_tokens::delete_spent(db).await?,
        messages: repo::messages::delete_finished_before(db, state.settings.email.retention_days)
            .await?,
        events: repo::events::delete_older_than(db, state.settings.events.retention_days).await?,
        notifications: repo::notifications::delete_read_before(
            db,
            state.settings.notifications.retention_days,
        )
        .await?,
        mfa_challenges: repo::mfa::delete_stale_challenges(db, super::mfa::MAX_CODE_FAILURES)
            .await?,
        webauthn_challenges: repo::passkeys::delete_expired_challenges(db).await?,
    };
    if swept != Swept::default() {
        tracing::info!(?swept, "swept stale records");
    }
    Ok(swept)
}

struct Guarded {
    row: UserRow,
    /// the user is the only active admin
    last_admin: bool,
}

impl std::ops::Deref for Guarded {
    type Target = UserRow;

    fn deref(&self) -> &UserRow {
        &self.row
    }
}

/// Locks the active admins (always first, so concurrent changes serialise in one order), then the
/// user; tells whether the user is the last active admin.
async fn lock_guarding_last_admin(conn: &mut PgConnection, id: Uuid) -> AppResult<Guarded> {
    let admins = repo::users::lock_active_admins(conn).await?;
    let row = repo::users::lock(conn, id)
        .await?
        .ok_or_else(AppError::user_not_found)?;
    let last_admin = admins == [id];
    Ok(Guarded { row, last_admin })
}
