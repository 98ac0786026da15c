//! A user's data export: everything the service holds about them, as the routes show each part
//! (the HTTP layer serialises these views with the routes' own response types), and no secret.
//!
//! An export is audited and spends the caller's budget, `rate_limit.export_per_hour` exports in
//! any hour, counted from the audit log (so every instance shares it). The parts are read in one
//! REPEATABLE READ snapshot, so they agree with each other.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Action, Caller};
use super::notifications::Notification;
use super::role_requests::RoleRequest;
use super::views::{AuditEntry, MessageEntry, Passkey, Session, UserView};
use crate::error::{AppError, AppResult};
use crate::repo;
use crate::state::AppState;

/// Everything held about one user.
#[derive(Debug)]
pub struct Export {
    pub exported_at: DateTime<Utc>,
    pub user: UserView,
    pub sessions: Vec<Session>,
    pub passkeys: Vec<Passkey>,
    pub mfa_enabled: bool,
    pub role_requests: Vec<RoleRequest>,
    pub notifications: Vec<Notification>,
    pub messages: Vec<MessageEntry>,
    pub audit: Vec<AuditEntry>,
}

/// Everything (no page limit: an export is the whole of it).
const ALL: i64 = i64::MAX;

/// The export of `user_id`: the caller's own, or for an admin any user's, deleted ones included;
/// 404 `user_not_found`. `current_session` marks the caller's session among the user's. The budget
/// and the audit record are committed before the read: an export that then fails (an outage)
/// still counts.
pub async fn export(
    state: &AppState,
    caller: &Caller,
    user_id: Uuid,
    current_session: Option<Uuid>,
) -> AppResult<Export> {
    spend_budget(state, caller, user_id).await?;
    let mut tx = state.db.begin().await?;
    crate::repo::db::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let found = repo::users::find_with_links(&mut *tx, user_id)
        .await?
        .ok_or_else(AppError::user_not_found)?;
    let mfa_enabled = found.user.mfa_enabled;
    let user = UserView::new(found.user, found.links);
    let sessions = repo::sessions::list_live(&mut *tx, user_id)
        .await?
        .into_iter()
        .map(|s| Session::new(s, current_session.unwrap_or_default()))
        .collect();
    let passkeys = repo::passkeys::list(&mut *tx, user_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let role_requests = repo::role_requests::page(&mut *tx, Some(user_id), None, None, ALL)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let notifications = repo::notifications::all_of(&mut *tx, user_id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let filter = repo::messages::Filter {
        user_id: Some(user_id),
        kind: None,
        status: None,
        before: None,
        limit: ALL,
    };
    let messages = repo::messages::page(&mut *tx, &filter)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let audit = repo::audit::page(&mut *tx, Some(user_id), None, None, ALL)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    tx.commit().await?;
    Ok(Export {
        exported_at: Utc::now(),
        user,
        sessions,
        passkeys,
        mfa_enabled,
        role_requests,
        notifications,
        messages,
        audit,
    })
}

/// One export of the caller's hourly budget, recorded in the audit log (which is the count), or
/// 429 `rate_limited` with when the oldest export of the hour leaves it. The caller's exports are
/// serialised by an advisory lock, so concurrent ones cannot overspend. The user must exist.
async fn spend_budget(state: &AppState, caller: &Caller, user_id: Uuid) -> AppResult<()> {
    let actor = caller.actor.to_string();
    let mut tx = state.db.begin().await?;
    if repo::users::find_by_id(&mut *tx, user_id).await?.is_none() {
        return Err(AppError::user_not_found());
    }
    let (count, oldest) = repo::audit::recent_exports(&mut tx, &actor).await?;
    if count >= i64::from(state.settings.rate_limit.export_per_hour) {
        let frees_at = oldest.unwrap_or_else(Utc::now) + Duration::hours(1);
        let secs = (frees_at - Utc::now()).num_seconds().max(1);
        return Err(AppError::RateLimited {
            retry_after_secs: secs as u64,
        });
    }
    audit::record(&mut tx, caller, Action::Export, Some(user_id), json!({})).await?;
    tx.commit().await?;
    Ok(())
}
