//! Sign-in, tokens, refresh, sign-up and password reset.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::auth::{cookies, csrf};
use crate::domain::{validate_name, Email, Phone, Role};
use crate::error::{AppError, AppResult, Problem};
use crate::http::auth_layer::{append_auth_cookies, refused};
use crate::http::docs::PROBLEM;
use crate::http::dto::{user_json, NO_STORE};
use crate::http::dto::{
    LoginAnswer, LoginResponse, MfaCompletion, MfaRequired, RestoreAnswer, TokenAnswer,
    TokenResponse, UserResponse,
};
use crate::http::extract::{ClientIp, Json, OptionalJson};
use crate::service::auth::SignIn;
use crate::service::linked_accounts;
use crate::service::mfa::{self, Challenge, Form};
use crate::service::views::UserView;
use crate::service::{auth, lifecycle, passwords, users, Caller, ClientMeta, Issued};
use crate::state::AppState;

/// Email and password. `passw` is accepted for `password`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: Email,
    #[serde(alias = "passw")]
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[utoipa::path(
    post, path = "/users/login", tag = "public", request_body = Credentials,
    responses(
        (status = 200, body = LoginAnswer, description = "Signed in: `{user, session_id}`, `access_token` and `refresh_token` cookies set. \
            With two-factor sign-in on: `{mfa_required: true, mfa_token, expires_in}`, no cookies and no session (complete it with `login/mfa`). `Cache-Control: no-store`"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`invalid_credentials` for an unknown email and a wrong password alike"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`account_deleted`: right password, soft-deleted account; `email_not_verified`: right password, unverified address, with `auth.require_verified_email`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited` (per IP) or `too_many_attempts` (account locked); see Retry-After"),
        (status = 503, body = Problem, content_type = PROBLEM, description = "`unavailable`: the database is unreachable, or every hashing slot is busy and `auth.hash_queue_max` requests wait already (`Retry-After: 1`)"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    meta: ClientMeta,
    Json(body): Json<Credentials>,
) -> AppResult<Response> {
    let (user, signed_in) =
        auth::login(&state, Form::Login, &body.email, &body.password, &meta).await?;
    match signed_in {
        SignIn::Session(issued) => {
            let user = linked_accounts::view(&state, user).await?;
            Ok(signed_in_with_cookies(&state, user, &issued))
        }
        SignIn::SecondFactor(challenge) => Ok(mfa_required(challenge)),
    }
}

/// `{user, session_id}` with the session's cookies (login, Telegram, a completed second step).
pub fn signed_in_with_cookies(state: &AppState, user: UserView, issued: &Issued) -> Response {
    let mut headers = HeaderMap::new();
    append_auth_cookies(state, &mut headers, issued);
    let body = LoginResponse {
        user: user.into(),
        session_id: issued.principal.session_id,
    };
    (NO_STORE, headers, axum::Json(body)).into_response()
}

/// A first step's answer when the second factor is needed: no cookies, no session.
pub fn mfa_required(challenge: Challenge) -> Response {
    (NO_STORE, axum::Json(MfaRequired::from(challenge))).into_response()
}

#[utoipa::path(
    post, path = "/users/token", tag = "public", request_body = Credentials,
    responses(
        (status = 200, body = TokenAnswer, description = "Signed in; tokens in the body, no cookies (mobile and CLI clients). \
            With two-factor sign-in on: `{mfa_required: true, mfa_token, expires_in}` (complete it with `login/mfa`)"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`invalid_credentials`"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`account_deleted`; `email_not_verified` with `auth.require_verified_email`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited` or `too_many_attempts`"),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    meta: ClientMeta,
    Json(body): Json<Credentials>,
) -> AppResult<Response> {
    let (_, signed_in) =
        auth::login(&state, Form::Token, &body.email, &body.password, &meta).await?;
    Ok(match signed_in {
        SignIn::Session(issued) => {
            (NO_STORE, axum::Json(TokenResponse::from(issued))).into_response()
        }
        SignIn::SecondFactor(challenge) => mfa_required(challenge),
    })
}

/// The second step: the first step's `mfa_token` and a code from the authenticator app, or one of
/// the recovery codes.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaLoginRequest {
    pub mfa_token: String,
    /// the 6 digits the authenticator app shows
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: Option<String>,
    /// one of the recovery codes (single use), instead of `code`
    #[serde(default)]
    #[schema(example = "7k2m-9q4r-x8zt-3b6w")]
    pub recovery_code: Option<String>,
}

#[utoipa::path(
    post, path = "/users/login/mfa", tag = "public", request_body = MfaLoginRequest,
    responses(
        (status = 200, body = MfaCompletion, description = "Signed in: what the first step would have answered without two-factor — \
            login, Telegram and the Yandex callback: `{user, session_id}` and cookies; token: the token body; restore: the restored user. `Cache-Control: no-store`"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`invalid_mfa_code`: a wrong or used code (counts into the account's lockout; 5 kill the token); \
            `unauthenticated`: an unknown, used, expired or exhausted `mfa_token`"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`account_deleted`: the account was deleted since the first step"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: not 6 digits, not a recovery code's format, or both or neither given"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited` (the login's per-IP budget) or `too_many_attempts`"),
    )
)]
pub async fn login_mfa(
    State(state): State<AppState>,
    meta: ClientMeta,
    Json(body): Json<MfaLoginRequest>,
) -> AppResult<Response> {
    let proof = mfa::Proof::parse(body.code.as_deref(), body.recovery_code.as_deref())?;
    match mfa::complete(&state, &meta, &body.mfa_token, proof).await? {
        mfa::Completed::SignedIn {
            issued,
            form: mfa::Form::Token,
            ..
        } => Ok((NO_STORE, axum::Json(TokenResponse::from(issued))).into_response()),
        mfa::Completed::SignedIn { user, issued, .. } => {
            let user = linked_accounts::view(&state, *user).await?;
            Ok(signed_in_with_cookies(&state, user, &issued))
        }
        mfa::Completed::Restored(user) => {
            let view = linked_accounts::view(&state, *user).await?;
            Ok((NO_STORE, user_json(view)).into_response())
        }
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// The cookie form's answer: the new cookies carry the tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefreshedSession {
    pub session_id: Uuid,
    /// seconds until the new access token expires
    pub expires_in: i64,
}

#[utoipa::path(
    post, path = "/users/refresh", tag = "public",
    request_body(content = Option<RefreshRequest>, description = "Absent for the cookie form; `{refresh_token}` for the body form"),
    responses(
        (status = 200, body = TokenResponse, description = "Body form: new tokens (no `refresh_token` within the reuse grace window). \
            Cookie form: `RefreshedSession` and rotated cookies"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`unauthenticated`: missing, invalid, expired, revoked or reused refresh token (reuse revokes the session); cookies cleared"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`origin_not_allowed` (cookie form)"),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    method: Method,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> AppResult<Response> {
    if let Some(RefreshRequest { refresh_token }) = body {
        let issued = auth::refresh(&state, &refresh_token, ip).await?;
        return Ok((NO_STORE, axum::Json(TokenResponse::from(issued))).into_response());
    }
    let token =
        cookies::read(&headers, state.cookies.refresh_name()).ok_or(AppError::Unauthenticated)?;
    csrf::check(&method, &headers, &state.settings.server.cors_origins)?;
    let issued = match auth::refresh(&state, &token, ip).await {
        Ok(issued) => issued,
        Err(e) => return Ok(refused(&state, e, true)),
    };
    let mut out = HeaderMap::new();
    append_auth_cookies(&state, &mut out, &issued);
    let body = RefreshedSession {
        session_id: issued.principal.session_id,
        expires_in: issued.expires_in,
    };
    Ok((out, axum::Json(body)).into_response())
}

/// A new account. Aliases: `passw`, `name`/`firstname`, `lastname`, `middlename`.
/// `phone` may be a string or a number; it is stored as E.164.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
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
}

impl SignUpRequest {
    fn into_profile(self, role: Role) -> (users::Profile, SecretString) {
        let profile = users::Profile {
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            middle_name: self.middle_name,
            phone: self.phone,
            role,
        };
        (profile, self.password)
    }
}

#[utoipa::path(
    post, path = "/users/sign_up", tag = "public", request_body = SignUpRequest,
    responses(
        (status = 201, body = UserResponse, description = "Created, with role `auth.default_role`"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`sign_up_disabled` when `auth.public_sign_up` is false"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`email_taken` or `phone_taken`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed` or `weak_password`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited`"),
    )
)]
pub async fn sign_up(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<SignUpRequest>,
) -> AppResult<(StatusCode, axum::Json<UserResponse>)> {
    let (profile, password) = body.into_profile(state.settings.auth.default_role);
    let user = users::public_sign_up(&state, &caller, profile, &password).await?;
    Ok((StatusCode::CREATED, user_json(UserView::new_user(user))))
}

/// A reset token and the new password (`passw` is accepted for `password`).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    pub reset_token: String,
    #[serde(alias = "passw")]
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[utoipa::path(
    put, path = "/users/passw/reset", tag = "public", request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Password set; every session of the user revoked"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`invalid_reset_token`: unknown, used or expired"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`weak_password` or `validation_failed`"),
    )
)]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ResetPasswordRequest>,
) -> AppResult<StatusCode> {
    passwords::reset(&state, &caller, &body.reset_token, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/users/restore", tag = "public", request_body = Credentials,
    responses(
        (status = 200, body = RestoreAnswer, description = "The soft-deleted account is active again (sign in next). \
            With two-factor sign-in on: `{mfa_required: true, mfa_token, expires_in}`, and `login/mfa` restores it"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_active`: the account is not deleted"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`invalid_credentials`"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`account_deleted`: an admin or a server deleted it; they restore it"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited` or `too_many_attempts` (shares the login lockout)"),
    )
)]
pub async fn restore(
    State(state): State<AppState>,
    meta: ClientMeta,
    Json(body): Json<Credentials>,
) -> AppResult<Response> {
    match lifecycle::restore_with_password(&state, &meta, &body.email, &body.password).await? {
        lifecycle::Restored::User(user) => {
            Ok(user_json(linked_accounts::view(&state, *user).await?).into_response())
        }
        lifecycle::Restored::SecondFactor(challenge) => Ok(mfa_required(challenge)),
    }
}
