//! Admin tools (role `admin`; 403 `forbidden` for the others).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::domain::Role;
use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::user_json;
use crate::http::dto::{decode_cursor, encode_cursor, AuditRecord, Page, UserResponse};
use crate::http::extract::{AdminUser, Json, Path, Query};
use crate::service::linked_accounts;
use crate::service::{audit, lifecycle, mfa, sessions, users, Caller};
use crate::state::AppState;

#[utoipa::path(
    get, path = "/admin/users/{id}", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 200, body = UserResponse, description = "The user, deleted ones too"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<UserResponse>> {
    Ok(user_json(
        linked_accounts::view(&state, users::get(&state, id).await?).await?,
    ))
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// true for a permanent (hard) delete; soft by default
    #[serde(default)]
    pub permanent: bool,
}

#[utoipa::path(
    delete, path = "/admin/users/{id}", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "user id"), DeleteParams),
    responses(
        (status = 204, description = "Deleted: soft by default (restorable), permanent with `?permanent=true`"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_deleted` (soft delete of a deleted user) or `last_admin`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
    )
)]
pub async fn delete_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(params): Query<DeleteParams>,
) -> AppResult<StatusCode> {
    if params.permanent {
        lifecycle::permanent_delete(&state, &caller, id).await?;
    } else {
        lifecycle::soft_delete(&state, &caller, id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/admin/users/{id}/restore", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 200, body = UserResponse, description = "Active again"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_active`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
    )
)]
pub async fn restore_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<UserResponse>> {
    Ok(user_json(
        linked_accounts::view(&state, lifecycle::restore(&state, &caller, id).await?).await?,
    ))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

#[utoipa::path(
    put, path = "/admin/users/{id}/role", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "user id")), request_body = RoleChange,
    responses(
        (status = 200, body = UserResponse, description = "The new role; the user's sessions keep working and carry it in tokens from their next refresh"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`last_admin`: the only active admin cannot be demoted"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn set_role(
    State(state): State<AppState>,
    _admin: AdminUser,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<RoleChange>,
) -> AppResult<axum::Json<UserResponse>> {
    Ok(user_json(
        linked_accounts::view(
            &state,
            lifecycle::set_role(&state, &caller, id, body.role).await?,
        )
        .await?,
    ))
}

#[utoipa::path(
    delete, path = "/admin/users/{id}/seances", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 204, description = "Every session of the user revoked"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
    )
)]
pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    _admin: AdminUser,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    sessions::revoke_all(&state, &caller, id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete, path = "/admin/users/{id}/mfa", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses(
        (status = 204, description = "The user's two-factor sign-in is off (a lost device); every session of the user revoked (the admin's own kept)"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`mfa_not_enabled`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
    )
)]
pub async fn reset_mfa(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    mfa::admin_reset(&state, &caller, &admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// only records about this user
    pub user_id: Option<Uuid>,
    /// only this action, e.g. `auth.login`
    pub action: Option<String>,
    #[validate(range(min = 1, max = 100))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/admin/audit", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(AuditParams),
    responses(
        (status = 200, body = Page<AuditRecord>, description = "Audit records, newest first"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn audit(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(params): Query<AuditParams>,
) -> AppResult<axum::Json<Page<AuditRecord>>> {
    let before = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = params.limit.unwrap_or(20);
    let (rows, next) = audit::list(
        &state,
        params.user_id,
        params.action.as_deref(),
        before,
        limit,
    )
    .await?;
    Ok(axum::Json(Page {
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor: next.map(encode_cursor),
    }))
}
