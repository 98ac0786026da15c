//! Signing in with a passkey: discoverable credentials, so no email is asked for.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::users::signed_in_with_cookies;
use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::{CeremonyOptions, PasskeyAnswer, TokenResponse, NO_STORE};
use crate::http::extract::{Json, OptionalJson};
use crate::service::{linked_accounts, passkeys, ClientMeta};
use crate::state::AppState;

/// Nothing to say: the options name no user.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInOptionsRequest {}

#[utoipa::path(
    post, path = "/users/passkey/options", tag = "public",
    request_body(content = Option<SignInOptionsRequest>, description = "`{}` (or no body)"),
    responses(
        (status = 200, body = CeremonyOptions, description = "Request options: `rpId`, `challenge`, `userVerification` = `required`, no `allowCredentials`. `Cache-Control: no-store`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited`: the login's per-IP budget"),
    )
)]
pub async fn options(
    State(state): State<AppState>,
    meta: ClientMeta,
    OptionalJson(_body): OptionalJson<SignInOptionsRequest>,
) -> AppResult<Response> {
    let started = passkeys::sign_in_options(&state, &meta).await?;
    Ok((NO_STORE, axum::Json(CeremonyOptions::from(started))).into_response())
}

/// The authenticator's answer to the request options.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginRequest {
    pub challenge_id: Uuid,
    /// `AuthenticationResponseJSON`: `{id, rawId, type, response: {clientDataJSON, authenticatorData, signature, userHandle}}`
    #[schema(value_type = Object)]
    pub credential: Value,
    /// true: answer as the token route (tokens in the body, no cookies)
    #[serde(default)]
    pub tokens: bool,
}

#[utoipa::path(
    post, path = "/users/passkey/login", tag = "public", request_body = PasskeyLoginRequest,
    responses(
        (status = 200, body = PasskeyAnswer, description = "Signed in (`amr: [\"webauthn\"]`, never a TOTP step): `{user, session_id}` and cookies, \
            or with `tokens: true` the token body and no cookies. `Cache-Control: no-store`"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`unauthenticated`: an unknown, used or expired `challenge_id`; \
            `invalid_credentials`: the assertion does not verify, the credential is unknown, or its signature counter went back (audited; the passkey is suspended until registered again)"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`account_deleted`; `email_not_verified` with `auth.require_verified_email`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited`: the login's per-IP budget"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    meta: ClientMeta,
    Json(body): Json<PasskeyLoginRequest>,
) -> AppResult<Response> {
    let (user, issued) =
        passkeys::sign_in(&state, &meta, body.challenge_id, body.credential).await?;
    if body.tokens {
        return Ok((NO_STORE, axum::Json(TokenResponse::from(issued))).into_response());
    }
    let user = linked_accounts::view(&state, user).await?;
    Ok(signed_in_with_cookies(&state, user, &issued))
}
