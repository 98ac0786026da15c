//! A user's own sessions: listing, logout, revocation.

use uuid::Uuid;

use super::Principal;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::repo::{self, sessions::SessionRow};

pub async fn list(state: &AppState, p: &Principal) -> AppResult<Vec<SessionRow>> {
    Ok(repo::sessions::list_live(&state.db, p.user_id).await?)
}

pub async fn logout(state: &AppState, p: &Principal) -> AppResult<()> {
    repo::sessions::revoke(&state.db, p.session_id).await?;
    tracing::info!(session_id = %p.session_id, "logged out");
    Ok(())
}

/// Revokes one of the caller's sessions; another user's id is indistinguishable from an unknown one.
pub async fn revoke(state: &AppState, p: &Principal, id: Uuid) -> AppResult<()> {
    if !repo::sessions::revoke_own(&state.db, p.user_id, id).await? {
        return Err(AppError::session_not_found());
    }
    tracing::info!(session_id = %id, "session revoked");
    Ok(())
}

pub async fn revoke_others(state: &AppState, p: &Principal) -> AppResult<u64> {
    let n = repo::sessions::revoke_all(&state.db, p.user_id, Some(p.session_id)).await?;
    tracing::info!(revoked = n, "other sessions revoked");
    Ok(n)
}
