//! Sessions: the caller's own (list, logout, revoke) and an admin's revocation of a user's.

use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Action, Caller};
use super::views::Session;
use super::Principal;
use crate::error::{AppError, AppResult};
use crate::repo;
use crate::state::AppState;

/// The caller's live sessions, newest first, the current one marked.
pub async fn list(state: &AppState, p: &Principal) -> AppResult<Vec<Session>> {
    let rows = repo::sessions::list_live(&state.db, p.user_id).await?;
    Ok(rows
        .into_iter()
        .map(|s| Session::new(s, p.session_id))
        .collect())
}

pub async fn logout(state: &AppState, caller: &Caller, p: &Principal) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    repo::sessions::revoke(&mut *tx, p.session_id).await?;
    audit::record(
        &mut tx,
        caller,
        Action::Logout,
        Some(p.user_id),
        json!({"session_id": p.session_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes one of the caller's sessions; another user's id is indistinguishable from an unknown one.
pub async fn revoke(state: &AppState, caller: &Caller, p: &Principal, id: Uuid) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    if !repo::sessions::revoke_own(&mut *tx, p.user_id, id).await? {
        return Err(AppError::session_not_found());
    }
    audit::record(
        &mut tx,
        caller,
        Action::SessionRevoke,
        Some(p.user_id),
        json!({"session_id": id}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes every session of the user except `keep`.
pub async fn revoke_all(
    state: &AppState,
    caller: &Caller,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> AppResult<u64> {
    let mut tx = state.db.begin().await?;
    repo::users::lock(&mut tx, user_id)
        .await?
        .ok_or_else(AppError::user_not_found)?;
    let n = repo::sessions::revoke_all(&mut *tx, user_id, keep).await?;
    audit::record(
        &mut tx,
        caller,
        Action::SessionsRevokeAll,
        Some(user_id),
        json!({"revoked": n, "kept": keep}),
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// The caller's own sessions but the current one.
pub async fn revoke_others(state: &AppState, caller: &Caller, p: &Principal) -> AppResult<u64> {
    revoke_all(state, caller, p.user_id, Some(p.session_id)).await
}
