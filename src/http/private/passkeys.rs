//! The caller's passkeys: registration (options, then the authenticator's answer), the list, rename
//! and delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::{CeremonyOptions, NO_STORE};
use crate::http::extract::{CurrentUser, Json, Path};
use crate::service::passkeys;
use crate::service::views::Passkey;
use crate::service::Caller;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyResponse {
    pub id: Uuid,
    #[schema(example = "Passkey")]
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<Passkey> for PasskeyResponse {
    fn from(p: Passkey) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyList {
    pub items: Vec<PasskeyResponse>,
}

#[utoipa::path(
    post, path = "/users/me/passkeys/registration/options", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, body = CeremonyOptions, description = "Creation options: `rp.id` = `webauthn.rp_id`, `user.id` an opaque handle, \
            `excludeCredentials` = the caller's passkeys, `residentKey` = `required`, `userVerification` = `required`, ES256 and EdDSA. `Cache-Control: no-store`"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`reauthentication_required`: the session's sign-in is older than `auth.reauth_window_secs`"),
    )
)]
pub async fn registration_options(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> AppResult<impl IntoResponse> {
    let started = passkeys::registration_options(&state, &p).await?;
    Ok((NO_STORE, axum::Json(CeremonyOptions::from(started))))
}

/// The authenticator's answer to the registration options.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    pub challenge_id: Uuid,
    /// `RegistrationResponseJSON`: `{id, rawId, type, response: {clientDataJSON, attestationObject}}`
    #[schema(value_type = Object)]
    pub credential: Value,
    /// 1–64 characters (stored trimmed); default "Passkey"
    #[serde(default)]
    #[validate(custom(function = "crate::domain::validate_passkey_name"))]
    #[schema(example = "Laptop", min_length = 1, max_length = 64)]
    pub name: Option<String>,
}

#[utoipa::path(
    post, path = "/users/me/passkeys/registration", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = RegistrationRequest,
    responses(
        (status = 201, body = PasskeyResponse, description = "Registered; audited, evented (`user.passkey_added`) and mailed as a notice"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`invalid_passkey`: an unknown, used or expired `challenge_id`, or an answer that does not verify \
            (wrong challenge, origin or rp id hash, no user verification, an unsupported algorithm, a credential registered already)"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: a bad `name`"),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Json(body): Json<RegistrationRequest>,
) -> AppResult<impl IntoResponse> {
    let name = passkeys::name(body.name.as_deref());
    let passkey = passkeys::register(
        &state,
        &caller,
        &p,
        body.challenge_id,
        body.credential,
        name,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PasskeyResponse::from(passkey)),
    ))
}

#[utoipa::path(
    get, path = "/users/me/passkeys", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, body = PasskeyList, description = "The caller's passkeys, newest first"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> AppResult<axum::Json<PasskeyList>> {
    let items = passkeys::list(&state, p.user_id).await?;
    Ok(axum::Json(PasskeyList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// 1–64 characters (stored trimmed)
    #[validate(custom(function = "crate::domain::validate_passkey_name"))]
    #[schema(example = "Work laptop", min_length = 1, max_length = 64)]
    pub name: String,
}

#[utoipa::path(
    patch, path = "/users/me/passkeys/{id}", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "passkey id")),
    request_body = RenameRequest,
    responses(
        (status = 200, body = PasskeyResponse, description = "Renamed (audited)"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`passkey_not_found`: unknown, or another user's"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: a name that is not 1–64 characters"),
    )
)]
pub async fn rename(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<RenameRequest>,
) -> AppResult<axum::Json<PasskeyResponse>> {
    let name = passkeys::name(Some(&body.name));
    let passkey = passkeys::rename(&state, &caller, p.user_id, id, name).await?;
    Ok(axum::Json(passkey.into()))
}

#[utoipa::path(
    delete, path = "/users/me/passkeys/{id}", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "passkey id")),
    responses(
        (status = 204, description = "Deleted; audited, evented (`user.passkey_removed`) and mailed as a notice"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`last_login_method`: no password, no linked identity and no other usable (not suspended) passkey; a suspended passkey can always be deleted"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`passkey_not_found`: unknown, or another user's"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    passkeys::delete(&state, &caller, p.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
