//! Two-factor sign-in of the caller's account: enrol, confirm, new recovery codes, turn off.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::NO_STORE;
use crate::http::extract::{CurrentUser, Json};
use crate::service::mfa::{self, Proof};
use crate::service::Caller;
use crate::state::AppState;

/// A new enrolment's secret: type it into the authenticator app, or show `otpauth_uri` as a QR code.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrolmentResponse {
    /// base32, no padding
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
    #[schema(
        example = "otpauth://totp/users-service:ann%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=users-service"
    )]
    pub otpauth_uri: String,
}

#[utoipa::path(
    post, path = "/users/me/mfa/totp", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 201, body = EnrolmentResponse, description = "A new secret (an earlier unconfirmed enrolment is replaced); confirm it with a code. `Cache-Control: no-store`"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`reauthentication_required`: the session's sign-in is older than `auth.reauth_window_secs`"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`mfa_already_enabled`"),
    )
)]
pub async fn enrol(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
) -> AppResult<impl IntoResponse> {
    let enrolment = mfa::enrol(&state, &caller, &p).await?;
    Ok((
        StatusCode::CREATED,
        NO_STORE,
        axum::Json(EnrolmentResponse {
            secret: enrolment.secret,
            otpauth_uri: enrolment.otpauth_uri,
        }),
    ))
}

/// A code from the authenticator app.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// the 6 digits the authenticator app shows
    #[schema(example = "123456")]
    pub code: String,
}

/// Ten single-use recovery codes, shown this once (stored hashed).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    #[schema(example = json!(["7k2m-9q4r-x8zt-3b6w"]))]
    pub recovery_codes: Vec<String>,
}

#[utoipa::path(
    post, path = "/users/me/mfa/totp/confirm", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, body = RecoveryCodes, description = "Two-factor sign-in is on from now; the recovery codes are shown once. `Cache-Control: no-store`"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`invalid_mfa_code` (counts into the account's lockout), or `mfa_not_enrolled`: no enrolment waits for a code (none started, or confirmed already)"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: not 6 digits"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`too_many_attempts`"),
    )
)]
pub async fn confirm(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Json(body): Json<CodeRequest>,
) -> AppResult<impl IntoResponse> {
    let code = Proof::code(&body.code)?;
    let recovery_codes = mfa::confirm(&state, &caller, &p, &code).await?;
    Ok((NO_STORE, axum::Json(RecoveryCodes { recovery_codes })))
}

#[utoipa::path(
    post, path = "/users/me/mfa/recovery-codes", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, body = RecoveryCodes, description = "Ten new recovery codes; the old ones are dead. `Cache-Control: no-store`"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`invalid_mfa_code` (counts into the account's lockout) or `mfa_not_enabled`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: not 6 digits"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`too_many_attempts`"),
    )
)]
pub async fn regenerate_codes(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Json(body): Json<CodeRequest>,
) -> AppResult<impl IntoResponse> {
    let code = Proof::code(&body.code)?;
    let recovery_codes = mfa::regenerate_codes(&state, &caller, &p, &code).await?;
    Ok((NO_STORE, axum::Json(RecoveryCodes { recovery_codes })))
}

/// A code from the authenticator app, or one of the recovery codes.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
}

#[utoipa::path(
    delete, path = "/users/me/mfa", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = DisableRequest,
    responses(
        (status = 204, description = "Two-factor sign-in off; secret and recovery codes deleted; every other session of the account revoked"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`invalid_mfa_code` (counts into the account's lockout) or `mfa_not_enabled`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: not 6 digits, not a recovery code, or both or neither given"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`too_many_attempts`"),
    )
)]
pub async fn disable(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Json(body): Json<DisableRequest>,
) -> AppResult<StatusCode> {
    let proof = Proof::parse(body.code.as_deref(), body.recovery_code.as_deref())?;
    mfa::disable(&state, &caller, &p, proof).await?;
    Ok(StatusCode::NO_CONTENT)
}
