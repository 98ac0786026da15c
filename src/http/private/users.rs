//! The caller's own account.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use crate::app::AppState;
use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::UserResponse;
use crate::http::extract::{CurrentUser, Json};
use crate::service::users;

#[utoipa::path(
    get, path = "/users/me", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, body = UserResponse, description = "The signed-in user"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`unauthenticated`"),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> AppResult<axum::Json<UserResponse>> {
    Ok(axum::Json(users::get(&state, p.user_id).await?.into()))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

#[utoipa::path(
    put, path = "/users/me/password", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed; every other session revoked"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`invalid_credentials` (wrong current password) or `unauthenticated`"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`origin_not_allowed`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`weak_password` or `validation_failed`"),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    Json(body): Json<ChangePasswordRequest>,
) -> AppResult<StatusCode> {
    users::change_password(&state, &p, &body.current_password, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}
