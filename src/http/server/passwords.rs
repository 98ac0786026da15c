//! Reset tokens for services that deliver them themselves, and setting a password with one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::domain::Email;
use crate::error::{AppError, AppResult, FieldError, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::{ResetTokenResponse, NO_STORE};
use crate::http::extract::Json;
use crate::http::public::users::ResetPasswordRequest;
use crate::service::passwords::{self, ResetTarget};
use crate::service::Caller;
use crate::state::AppState;

/// Exactly one of `email` and `user_id`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetTokenRequest {
    #[serde(default)]
    pub email: Option<Email>,
    #[serde(default)]
    pub user_id: Option<Uuid>,
}

#[utoipa::path(
    post, path = "/users/passw/reset_token", tag = "server", security(("server_key" = [])), request_body = ResetTokenRequest,
    responses(
        (status = 201, body = ResetTokenResponse, description = "A single-use reset token, for services that deliver it themselves"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn reset_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ResetTokenRequest>,
) -> AppResult<impl IntoResponse> {
    let target = match (body.email, body.user_id) {
        (Some(email), None) => ResetTarget::Email(email),
        (None, Some(id)) => ResetTarget::UserId(id),
        _ => {
            let why = "give exactly one of email and user_id";
            return Err(AppError::Validation(vec![
                FieldError::new("email", why),
                FieldError::new("user_id", why),
            ]));
        }
    };
    let (reset_token, expires_at) = passwords::issue_reset_token(&state, &caller, target).await?;
    Ok((
        StatusCode::CREATED,
        NO_STORE,
        axum::Json(ResetTokenResponse {
            reset_token,
            expires_at,
        }),
    ))
}

#[utoipa::path(
    put, path = "/users/passw/set_new_passw", tag = "server", security(("server_key" = [])), request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Password set; every session of the user revoked"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`invalid_reset_token`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`weak_password` or `validation_failed`"),
    )
)]
pub async fn set_new_password(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ResetPasswordRequest>,
) -> AppResult<StatusCode> {
    passwords::reset(&state, &caller, &body.reset_token, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}
