//! A user's data export: one JSON document (an attachment) of everything held about them, each
//! part serialised by the response type its own route answers with.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::messages::MessageRecord;
use super::notifications::NotificationResponse;
use super::passkeys::PasskeyResponse;
use super::role_requests::RoleRequestResponse;
use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::{
    AuditRecord, LinkedAccountResponse, SessionResponse, UserResponse, NO_STORE,
};
use crate::http::extract::{AdminUser, CurrentUser, Path};
use crate::service::export::{self, Export};
use crate::service::Caller;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct MfaState {
    pub enabled: bool,
}

/// Everything the service holds about a user, and no secret (no hash, token, TOTP secret,
/// recovery code or key).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportDocument {
    pub exported_at: DateTime<Utc>,
    pub user: UserResponse,
    /// the live sessions
    pub sessions: Vec<SessionResponse>,
    pub linked_accounts: Vec<LinkedAccountResponse>,
    pub passkeys: Vec<PasskeyResponse>,
    pub mfa: MfaState,
    pub role_requests: Vec<RoleRequestResponse>,
    pub notifications: Vec<NotificationResponse>,
    /// the mail sent to the user: metadata, as the admins' list shows it
    pub messages: Vec<MessageRecord>,
    /// the audit records whose target is the user, newest first
    pub audit: Vec<AuditRecord>,
}

impl From<Export> for ExportDocument {
    fn from(e: Export) -> Self {
        let linked_accounts = e.user.links.iter().cloned().map(Into::into).collect();
        Self {
            exported_at: e.exported_at,
            user: e.user.into(),
            sessions: e.sessions.into_iter().map(Into::into).collect(),
            linked_accounts,
            passkeys: e.passkeys.into_iter().map(Into::into).collect(),
            mfa: MfaState {
                enabled: e.mfa_enabled,
            },
            role_requests: e.role_requests.into_iter().map(Into::into).collect(),
            notifications: e.notifications.into_iter().map(Into::into).collect(),
            messages: e.messages.into_iter().map(Into::into).collect(),
            audit: e.audit.into_iter().map(Into::into).collect(),
        }
    }
}

fn attachment(user_id: Uuid, export: Export) -> Response {
    let disposition = format!("attachment; filename=\"users-service-export-{user_id}.json\"");
    (
        NO_STORE,
        [(header::CONTENT_DISPOSITION, disposition)],
        axum::Json(ExportDocument::from(export)),
    )
        .into_response()
}

#[utoipa::path(
    get, path = "/users/me/export", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, body = ExportDocument, description = "Everything held about the caller, as an attachment (`Content-Disposition`); audited"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited`: more than `rate_limit.export_per_hour` exports in an hour; see Retry-After"),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
) -> AppResult<Response> {
    let export = export::export(&state, &caller, p.user_id, Some(p.session_id)).await?;
    Ok(attachment(p.user_id, export))
}

#[utoipa::path(
    get, path = "/admin/users/{id}/export", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 200, body = ExportDocument, description = "Everything held about the user (deleted ones too), as an attachment; audited"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`forbidden`: not an admin"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited`: more than `rate_limit.export_per_hour` exports by this admin in an hour"),
    )
)]
pub async fn admin(
    State(state): State<AppState>,
    _admin: AdminUser,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<Response> {
    let export = export::export(&state, &caller, id, None).await?;
    Ok(attachment(id, export))
}
