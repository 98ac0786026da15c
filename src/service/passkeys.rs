//! Passkeys (WebAuthn): registration by a signed-in user, the list with rename and delete, and the
//! discoverable sign-in.
//!
//! Each ceremony's state is stored server-side (`webauthn_challenges`, 300 s, taken once whatever
//! the answer), so any instance can finish a ceremony another started. Authenticators know the
//! user by a random handle (`users.webauthn_handle`), never the user id or email. A passkey sign-in
//! proves possession and user verification: it opens a session with `amr: ["webauthn"]` and never
//! asks for the TOTP step.

use chrono::{Duration, Utc};
use rand::RngCore;
use serde_json::{json, Value};
use uuid::Uuid;
use webauthn_rs_core::proto::{AuthenticationState, Credential, RegistrationState};

use super::audit::{self, Action, Caller};
use super::mail::{self, Kind};
use super::rate_limit::Budget;
use super::views::Passkey;
use super::{auth, users, ClientMeta, Issued, Principal};
use crate::auth::webauthn::{Assertion, Refused, CEREMONY_SECS};
use crate::error::{AppError, AppResult};
use crate::repo::passkeys::{self as repo, Ceremony};
use crate::repo::users::UserRow;
use crate::state::AppState;

/// A started ceremony: its id and the options for `navigator.credentials`.
#[derive(Debug)]
pub struct Started {
    pub challenge_id: Uuid,
    pub public_key: Value,
}

/// The name a passkey gets when none is given.
pub const DEFAULT_NAME: &str = "Passkey";

/// The name a passkey is stored under (validated by `domain::validate_passkey_name`): trimmed, or
/// the default when none is given.
pub fn name(given: Option<&str>) -> String {
    given.map_or(DEFAULT_NAME, str::trim).to_owned()
}

fn expires_at() -> chrono::DateTime<Utc> {
    Utc::now() + Duration::seconds(CEREMONY_SECS as i64)
}

fn not_found() -> AppError {
    AppError::NotFound("passkey_not_found", "no such passkey")
}

/// Registration options for the caller (a sign-in within `auth.reauth_window_secs`), excluding the
/// passkeys they have.
pub async fn registration_options(state: &AppState, p: &Principal) -> AppResult<Started> {
    p.require_recent_sign_in(state.settings.auth.reauth_window_secs)?;
    let mut tx = state.db.begin().await?;
    let user = users::live_user(&mut tx, p.user_id).await?;
    // the handle is made at the first registration (the user's row is locked), then only read
    let handle = match repo::handle(&mut *tx, user.id).await? {
        Some(handle) => handle,
        None => {
            let mut fresh = vec![0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut fresh);
            repo::set_handle(&mut *tx, user.id, &fresh).await?;
            fresh
        }
    };
    let exclude = repo::list(&mut *tx, user.id)
        .await?
        .into_iter()
        .filter(|p| p.suspended_at.is_none())
        .map(|p| p.credential_id)
        .collect();
    let display_name = display_name(&user);
    let (public_key, ceremony) = state
        .webauthn
        .start_registration(&handle, &user.email, &display_name, exclude)
        .map_err(AppError::Internal)?;
    let challenge_id = Uuid::now_v7();
    let ceremony = serde_json::to_value(ceremony).map_err(|e| AppError::Internal(e.into()))?;
    repo::insert_challenge(
        &mut *tx,
        challenge_id,
        Some(user.id),
        Ceremony::Registration,
        &ceremony,
        expires_at(),
    )
    .await?;
    tx.commit().await?;
    Ok(Started {
        challenge_id,
        public_key,
    })
}

fn display_name(user: &UserRow) -> String {
    let name = [Some(user.first_name.as_str()), user.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if name.is_empty() {
        user.email.clone()
    } else {
        name
    }
}

/// Verifies the authenticator's answer and keeps the passkey. Any failure (an unknown, used or
/// expired challenge, an answer that does not verify, a credential registered already) is 400
/// `invalid_passkey` and changes nothing but the spent challenge.
pub async fn register(
    state: &AppState,
    caller: &Caller,
    p: &Principal,
    challenge_id: Uuid,
    answer: Value,
    name: String,
) -> AppResult<Passkey> {
    let challenge = repo::take_challenge(
        &state.db,
        challenge_id,
        Ceremony::Registration,
        Some(p.user_id),
    )
    .await?
    .ok_or_else(|| AppError::InvalidPasskey("unknown, used or expired challenge_id".into()))?;
    // a state this version cannot read (stored by another version during a rolling upgrade): the
    // client starts the ceremony again
    let ceremony: RegistrationState = serde_json::from_value(challenge.state.0).map_err(|e| {
        tracing::warn!(error = %e, "a stored registration ceremony does not read");
        AppError::InvalidPasskey("the ceremony is unknown, used or expired; start it again".into())
    })?;
    let credential = state
        .webauthn
        .finish_registration(answer, &ceremony)
        .map_err(|e| AppError::InvalidPasskey(e.to_string()))?;
    let stored = serde_json::to_value(&credential).map_err(|e| AppError::Internal(e.into()))?;
    let mut tx = state.db.begin().await?;
    let user = users::live_user(&mut tx, p.user_id).await?;
    let row = repo::insert(
        &mut *tx,
        Uuid::now_v7(),
        user.id,
        credential.cred_id.as_ref(),
        &stored,
        &name,
    )
    .await?
    .ok_or_else(|| AppError::InvalidPasskey("this credential is registered already".into()))?;
    let passkey = Passkey::from(row);
    let details = json!({"passkey_id": passkey.id, "passkey": passkey});
    audit::record(
        &mut tx,
        caller,
        Action::PasskeyRegister,
        Some(user.id),
        details,
    )
    .await?;
    notice(&mut tx, state, Kind::PasskeyAdded, &user, &passkey.name).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, passkey_id = %passkey.id, "passkey registered");
    Ok(passkey)
}

async fn notice(
    conn: &mut sqlx::PgConnection,
    state: &AppState,
    kind: Kind,
    user: &UserRow,
    passkey_name: &str,
) -> AppResult<()> {
    let ctx = mail::Context {
        passkey_name: Some(passkey_name.to_owned()),
        ..Default::default()
    };
    mail::notice(conn, state, kind, user, ctx).await
}

/// The user's passkeys, newest first.
pub async fn list(state: &AppState, user_id: Uuid) -> AppResult<Vec<Passkey>> {
    let rows = repo::list(&state.db, user_id).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn rename(
    state: &AppState,
    caller: &Caller,
    user_id: Uuid,
    id: Uuid,
    name: String,
) -> AppResult<Passkey> {
    let mut tx = state.db.begin().await?;
    let row = repo::rename(&mut *tx, user_id, id, &name)
        .await?
        .ok_or_else(not_found)?;
    let details = json!({"passkey_id": id, "name": name});
    audit::record(
        &mut tx,
        caller,
        Action::PasskeyRename,
        Some(user_id),
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(row.into())
}

/// Deletes a passkey; removing the last way to sign in (no password, no identity, no other usable
/// passkey) is 400 `last_login_method` — a suspended passkey signs in to nothing, so it can always
/// go. The user's row is locked, so two concurrent removals cannot both pass the check.
pub async fn delete(state: &AppState, caller: &Caller, user_id: Uuid, id: Uuid) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = users::live_user(&mut tx, user_id).await?;
    let row = repo::find_own(&mut *tx, user_id, id)
        .await?
        .ok_or_else(not_found)?;
    if row.suspended_at.is_none()
        && user.password_hash.is_none()
        && repo::count_usable(&mut *tx, user_id).await? <= 1
        && crate::repo::linked_accounts::count_identities(&mut *tx, user_id).await? == 0
    {
        return Err(AppError::LastLoginMethod);
    }
    repo::delete(&mut *tx, id).await?;
    let passkey = Passkey::from(row);
    let details = json!({"passkey_id": id, "passkey": passkey});
    audit::record(
        &mut tx,
        caller,
        Action::PasskeyDelete,
        Some(user_id),
        details,
    )
    .await?;
    notice(&mut tx, state, Kind::PasskeyRemoved, &user, &passkey.name).await?;
    tx.commit().await?;
    Ok(())
}

/// Options for a discoverable sign-in: no `allowCredentials`, so they name no user. Within the
/// login's per-IP budget.
pub async fn sign_in_options(state: &AppState, meta: &ClientMeta) -> AppResult<Started> {
    state.limits.check(Budget::Login, meta.ip).await?;
    let (public_key, ceremony) = state.webauthn.start_sign_in().map_err(AppError::Internal)?;
    let challenge_id = Uuid::now_v7();
    let ceremony = serde_json::to_value(ceremony).map_err(|e| AppError::Internal(e.into()))?;
    repo::insert_challenge(
        &state.db,
        challenge_id,
        None,
        Ceremony::Authentication,
        &ceremony,
        expires_at(),
    )
    .await?;
    Ok(Started {
        challenge_id,
        public_key,
    })
}

/// A discoverable sign-in: the challenge (unknown, used or expired: 401 `unauthenticated`), then
/// the assertion against the passkey it names (unknown, suspended, or not verifying: 401
/// `invalid_credentials`; a counter that went back suspends the passkey and is audited).
pub async fn sign_in(
    state: &AppState,
    meta: &ClientMeta,
    challenge_id: Uuid,
    answer: Value,
) -> AppResult<(UserRow, Issued)> {
    state.limits.check(Budget::Login, meta.ip).await?;
    let outcome = sign_in_in(state, meta, challenge_id, answer).await;
    if let Some(result) = auth::sign_in_result(&outcome) {
        state.metrics.sign_in("passkey", result);
    }
    outcome
}

async fn sign_in_in(
    state: &AppState,
    meta: &ClientMeta,
    challenge_id: Uuid,
    answer: Value,
) -> AppResult<(UserRow, Issued)> {
    let challenge = repo::take_challenge(&state.db, challenge_id, Ceremony::Authentication, None)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    // a state this version cannot read (stored by another version during a rolling upgrade): the
    // client starts the ceremony again
    let ceremony: AuthenticationState = serde_json::from_value(challenge.state.0).map_err(|e| {
        tracing::warn!(error = %e, "a stored sign-in ceremony does not read; asking for a new one");
        AppError::Unauthenticated
    })?;
    let caller = Caller::anonymous(meta.ip);
    let assertion = Assertion::parse(answer).map_err(|_| AppError::InvalidCredentials)?;
    let mut tx = state.db.begin().await?;
    let Some(found) = repo::lock_by_credential(&mut tx, assertion.credential_id()).await? else {
        return Err(AppError::InvalidCredentials);
    };
    let row = found.passkey;
    // the handle the authenticator returns must be the user's: a credential answers for its user
    // (a discoverable sign-in always carries one, and every passkey's owner has one)
    let same_user = matches!(
        (assertion.user_handle(), found.owner_handle.as_deref()),
        (Some(given), Some(owner)) if given == owner
    );
    if !same_user || row.suspended_at.is_some() {
        return Err(AppError::InvalidCredentials);
    }
    let stored: Credential = serde_json::from_value(row.credential.0)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("a stored passkey: {e}")))?;
    let user = crate::repo::users::find_by_id(&mut *tx, row.user_id)
        .await?
        .ok_or(AppError::InvalidCredentials)?;
    let credential = match state.webauthn.finish_sign_in(&assertion, ceremony, stored) {
        Ok(credential) => credential,
        Err(Refused::CounterWentBack) => {
            repo::suspend(&mut *tx, row.id).await?;
            let details = json!({"passkey_id": row.id, "reason": "signature counter did not grow: possibly a cloned authenticator"});
            let action = Action::PasskeyCounterRegression;
            audit::record(&mut tx, &caller, action, Some(user.id), details).await?;
            tx.commit().await?;
            tracing::warn!(user_id = %user.id, passkey_id = %row.id, "a passkey's signature counter went back; suspended");
            return Err(AppError::InvalidCredentials);
        }
        Err(Refused::Invalid(why)) => {
            let details = json!({"passkey_id": row.id, "reason": why});
            audit::record(
                &mut tx,
                &caller,
                Action::LoginFailed,
                Some(user.id),
                details,
            )
            .await?;
            tx.commit().await?;
            return Err(AppError::InvalidCredentials);
        }
    };
    if user.is_deleted() {
        return Err(AppError::AccountDeleted);
    }
    if state.settings.auth.require_verified_email && !user.email_verified {
        return Err(AppError::EmailNotVerified);
    }
    let stored = serde_json::to_value(&credential).map_err(|e| AppError::Internal(e.into()))?;
    repo::used(&mut *tx, row.id, &stored).await?;
    // audited once, as `auth.login` with `amr: ["webauthn"]` and the passkey's id
    let issued =
        auth::open_session(&mut tx, state, &user, meta, &["webauthn"], Some(row.id)).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, session_id = %issued.principal.session_id, "signed in with a passkey");
    Ok((user, issued))
}
