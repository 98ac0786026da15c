//! Role-change requests: the user's own, and the admins' decisions.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::domain::Role;
use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::{decode_cursor, encode_cursor, Page};
use crate::http::extract::Json;
use crate::http::extract::{AdminUser, CurrentUser, OptionalJson, Path, Query};
use crate::service::role_requests::{self, Decision, RoleRequest};
use crate::service::{Caller, Principal};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleRequestResponse {
    pub id: Uuid,
    pub user_id: Uuid,
    /// the role when the user asked
    pub current_role: Role,
    pub requested_role: Role,
    pub reason: String,
    /// `pending`, `approved`, `rejected` or `cancelled`
    #[schema(example = "pending")]
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// the deciding admin
    pub decided_by: Option<Uuid>,
    pub comment: Option<String>,
}

impl From<RoleRequest> for RoleRequestResponse {
    fn from(r: RoleRequest) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            current_role: r.current_role,
            requested_role: r.requested_role,
            reason: r.reason,
            status: r.status,
            created_at: r.created_at,
            decided_at: r.decided_at,
            decided_by: r.decided_by,
            comment: r.comment,
        }
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoleRequest {
    pub role: Role,
    #[validate(custom(function = "crate::domain::validate_reason"))]
    #[schema(
        example = "I run the methodology group now",
        min_length = 1,
        max_length = 1000
    )]
    pub reason: String,
}

#[utoipa::path(
    post, path = "/users/me/role-requests", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = NewRoleRequest,
    responses(
        (status = 201, body = RoleRequestResponse, description = "Pending; every active admin is notified"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`request_pending`: the user has a pending request"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: unknown role, the role the user has, or `reason` not 1–1000 characters"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Json(body): Json<NewRoleRequest>,
) -> AppResult<(StatusCode, axum::Json<RoleRequestResponse>)> {
    let request = role_requests::create(&state, &caller, &p, body.role, &body.reason).await?;
    Ok((StatusCode::CREATED, axum::Json(request.into())))
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OwnParams {
    #[validate(range(min = 1, max = 100))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/users/me/role-requests", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(OwnParams),
    responses(
        (status = 200, body = Page<RoleRequestResponse>, description = "The user's requests, newest first"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn list_own(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    Query(params): Query<OwnParams>,
) -> AppResult<axum::Json<Page<RoleRequestResponse>>> {
    let before = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let page = role_requests::list(
        &state,
        Some(p.user_id),
        None,
        before,
        params.limit.unwrap_or(20),
    )
    .await?;
    Ok(page_json(page))
}

fn page_json(
    (items, next): (Vec<RoleRequest>, Option<Uuid>),
) -> axum::Json<Page<RoleRequestResponse>> {
    axum::Json(Page {
        items: items.into_iter().map(Into::into).collect(),
        next_cursor: next.map(encode_cursor),
    })
}

#[utoipa::path(
    delete, path = "/users/me/role-requests/{id}", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "role request id")),
    responses(
        (status = 200, body = RoleRequestResponse, description = "Cancelled"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`request_not_pending`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`role_request_not_found`: unknown, or another user's"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<RoleRequestResponse>> {
    let request = role_requests::cancel(&state, &caller, &p, id).await?;
    Ok(axum::Json(request.into()))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Approved,
    Rejected,
    Cancelled,
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AdminParams {
    pub status: Option<RequestStatus>,
    pub user_id: Option<Uuid>,
    #[validate(range(min = 1, max = 100))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/admin/role-requests", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(AdminParams),
    responses(
        (status = 200, body = Page<RoleRequestResponse>, description = "Requests, newest first"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn list_all(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(params): Query<AdminParams>,
) -> AppResult<axum::Json<Page<RoleRequestResponse>>> {
    let before = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let status = params.status.map(|s| match s {
        RequestStatus::Pending => "pending",
        RequestStatus::Approved => "approved",
        RequestStatus::Rejected => "rejected",
        RequestStatus::Cancelled => "cancelled",
    });
    let page = role_requests::list(
        &state,
        params.user_id,
        status,
        before,
        params.limit.unwrap_or(20),
    )
    .await?;
    Ok(page_json(page))
}

/// An optional note to the requester.
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    #[validate(length(max = 1000))]
    pub comment: Option<String>,
}

#[utoipa::path(
    post, path = "/admin/role-requests/{id}/approve", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "role request id")), request_body(content = Option<DecisionRequest>),
    responses(
        (status = 200, body = RoleRequestResponse, description = "Approved: the role changed in the same transaction"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`request_not_pending`, `already_deleted` (the requester) or `last_admin`"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`forbidden`: a role other than admin, or an admin deciding their own request; `origin_not_allowed` for a cookie request from a foreign origin"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`role_request_not_found`"),
    )
)]
pub async fn approve(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    caller: Caller,
    Path(id): Path<Uuid>,
    OptionalJson(body): OptionalJson<DecisionRequest>,
) -> AppResult<axum::Json<RoleRequestResponse>> {
    decide(&state, &admin, &caller, id, Decision::Approve, body).await
}

#[utoipa::path(
    post, path = "/admin/role-requests/{id}/reject", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "role request id")), request_body(content = Option<DecisionRequest>),
    responses(
        (status = 200, body = RoleRequestResponse, description = "Rejected"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`request_not_pending`"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`forbidden`: a role other than admin, or an admin deciding their own request; `origin_not_allowed` for a cookie request from a foreign origin"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`role_request_not_found`"),
    )
)]
pub async fn reject(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    caller: Caller,
    Path(id): Path<Uuid>,
    OptionalJson(body): OptionalJson<DecisionRequest>,
) -> AppResult<axum::Json<RoleRequestResponse>> {
    decide(&state, &admin, &caller, id, Decision::Reject, body).await
}

async fn decide(
    state: &AppState,
    admin: &Principal,
    caller: &Caller,
    id: Uuid,
    decision: Decision,
    body: Option<DecisionRequest>,
) -> AppResult<axum::Json<RoleRequestResponse>> {
    let comment = body.unwrap_or_default().comment;
    let request =
        role_requests::decide(state, caller, admin, id, decision, comment.as_deref()).await?;
    Ok(axum::Json(request.into()))
}
