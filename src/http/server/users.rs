//! Account operations for internal services.

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::app::AppState;
use crate::domain::{clean_name, validate_name, Email, Phone, Role};
use crate::error::{AppError, AppResult, FieldError, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::{ResetTokenResponse, UserResponse};
use crate::http::extract::{Json, ServerClient};
use crate::http::public::users::ResetPasswordRequest;
use crate::service::users::{self, ResetTarget};

/// As the public sign-up, plus an optional `role` (default `auth.default_role`).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSignUpRequest {
    pub email: Email,
    #[serde(alias = "passw")]
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    #[serde(alias = "name", alias = "firstname")]
    #[validate(custom(function = "validate_name"))]
    pub first_name: String,
    #[serde(default, alias = "lastname")]
    #[validate(length(max = 100))]
    pub last_name: Option<String>,
    #[serde(default, alias = "middlename")]
    #[validate(length(max = 100))]
    pub middle_name: Option<String>,
    #[serde(default)]
    pub phone: Option<Phone>,
    #[serde(default)]
    pub role: Option<Role>,
}

#[utoipa::path(
    post, path = "/users/sign_up", tag = "server", security(("server_key" = [])), request_body = ServerSignUpRequest,
    responses(
        (status = 201, body = UserResponse, description = "Created"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`unauthenticated`: missing or wrong server key"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`email_taken` or `phone_taken`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed` or `weak_password`"),
    )
)]
pub async fn sign_up(
    State(state): State<AppState>,
    client: ServerClient,
    Json(body): Json<ServerSignUpRequest>,
) -> AppResult<(StatusCode, axum::Json<UserResponse>)> {
    let new = users::SignUp {
        role: body.role.unwrap_or(state.settings.auth.default_role),
        email: body.email,
        password: body.password,
        first_name: body.first_name.trim().to_owned(),
        last_name: clean_name(body.last_name),
        middle_name: clean_name(body.middle_name),
        phone: body.phone,
    };
    let user = users::sign_up(&state, new).await?;
    tracing::info!(server_key = %client.name, user_id = %user.id, "server created a user");
    Ok((StatusCode::CREATED, axum::Json(user.into())))
}

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
        (status = 401, body = Problem, content_type = PROBLEM, description = "`unauthenticated`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn reset_token(
    State(state): State<AppState>,
    _client: ServerClient,
    Json(body): Json<ResetTokenRequest>,
) -> AppResult<(StatusCode, axum::Json<ResetTokenResponse>)> {
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
    let (reset_token, expires_at) = users::issue_reset_token(&state, target).await?;
    Ok((
        StatusCode::CREATED,
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
        (status = 401, body = Problem, content_type = PROBLEM, description = "`unauthenticated`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`weak_password` or `validation_failed`"),
    )
)]
pub async fn set_new_password(
    State(state): State<AppState>,
    _client: ServerClient,
    Json(body): Json<ResetPasswordRequest>,
) -> AppResult<StatusCode> {
    users::reset_password(&state, &body.reset_token, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}
