//! Mail the public asks for: a password reset link, and proving an address with its link.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use crate::domain::Email;
use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::{user_json, UserResponse};
use crate::http::extract::{ClientIp, Json};
use crate::service::{linked_accounts, passwords, users, Caller};
use crate::state::AppState;

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    pub email: Email,
}

#[utoipa::path(
    post, path = "/users/passw/forgot", tag = "public", request_body = ForgotRequest,
    responses(
        (status = 202, description = "Always, whether or not the address has an account: an active account gets a \
            `password_reset` mail with a single-use link (`auth.reset_token_ttl_secs`), at most one per `email.min_interval_secs`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited` (per IP); see Retry-After"),
    )
)]
pub async fn forgot(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<ForgotRequest>,
) -> AppResult<StatusCode> {
    passwords::forgot(&state, ip, body.email).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    /// the token from the verification link
    #[validate(length(min = 1, max = 200))]
    pub token: String,
}

#[utoipa::path(
    post, path = "/users/email/verify", tag = "public", request_body = VerifyEmailRequest,
    responses(
        (status = 200, body = UserResponse, description = "The user, `email_verified: true`"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`invalid_verification_token`: unknown, used, expired, or for an address the account no longer has"),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<VerifyEmailRequest>,
) -> AppResult<axum::Json<UserResponse>> {
    let user = users::verify_email(&state, &caller, &body.token).await?;
    Ok(user_json(linked_accounts::view(&state, user).await?))
}
