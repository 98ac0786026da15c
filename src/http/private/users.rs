//! The caller's own account, and the admins' user search.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use crate::domain::{validate_name, Email, Phone, Role, UserStatus};
use crate::error::{AppError, AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::user_json;
use crate::http::dto::{decode_cursor, encode_cursor, Page, UserResponse};
use crate::http::extract::{
    contacts_rejection, nullable, AdminUser, CurrentUser, Json, SessionUser,
};
use crate::service::linked_accounts;
use crate::service::{lifecycle, passwords, users, Caller};
use crate::state::AppState;

#[utoipa::path(
    get, path = "/users/me", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, body = UserResponse, description = "The signed-in user"),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    SessionUser(user): SessionUser,
) -> AppResult<axum::Json<UserResponse>> {
    match user {
        Some(view) => Ok(axum::Json(view.into())),
        None => Ok(user_json(
            linked_accounts::view(&state, users::get(&state, p.user_id).await?).await?,
        )),
    }
}

/// Names to change: an absent field is kept; `null` clears an optional one.
/// Aliases: `name`/`firstname`, `lastname`, `middlename`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    #[serde(default, alias = "name", alias = "firstname")]
    #[validate(custom(function = "validate_name"))]
    pub first_name: Option<String>,
    #[serde(default, alias = "lastname", deserialize_with = "nullable")]
    #[validate(length(max = 100))]
    #[schema(value_type = Option<String>)]
    pub last_name: Option<Option<String>>,
    #[serde(default, alias = "middlename", deserialize_with = "nullable")]
    #[validate(length(max = 100))]
    #[schema(value_type = Option<String>)]
    pub middle_name: Option<Option<String>>,
}

impl From<ProfileChange> for users::NameChange {
    fn from(c: ProfileChange) -> Self {
        Self {
            first_name: c.first_name,
            last_name: c.last_name,
            middle_name: c.middle_name,
        }
    }
}

#[utoipa::path(
    patch, path = "/users/me", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = ProfileChange,
    responses(
        (status = 200, body = UserResponse, description = "The updated user"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn update_me(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Json(body): Json<ProfileChange>,
) -> AppResult<axum::Json<UserResponse>> {
    let user = users::update_profile(&state, &caller, p.user_id, body.into()).await?;
    Ok(user_json(linked_accounts::view(&state, user).await?))
}

/// New email and/or phone (`phone: null` removes it), proven with the current password.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactsChange {
    #[serde(default)]
    pub email: Option<Email>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<Phone>>,
    #[serde(alias = "passw")]
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
}

#[utoipa::path(
    put, path = "/users/me/contacts", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = ContactsChange,
    responses(
        (status = 200, body = UserResponse, description = "The updated user"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`invalid_credentials` (wrong current password) or `unauthenticated`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited` (per-IP budget of password checks) or `too_many_attempts` (wrong current passwords count into the login lockout); see Retry-After"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`email_taken` or `phone_taken`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`invalid_contacts` (bad email or phone) or `validation_failed`"),
    )
)]
pub async fn change_contacts(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    body: Result<Json<ContactsChange>, AppError>,
) -> AppResult<axum::Json<UserResponse>> {
    let Json(body) = body.map_err(contacts_rejection)?;
    let change = users::ContactChange {
        email: body.email,
        phone: body.phone,
    };
    let user = users::change_contacts(
        &state,
        &caller,
        p.user_id,
        change,
        Some(&body.current_password),
    )
    .await?;
    Ok(user_json(linked_accounts::view(&state, user).await?))
}

#[utoipa::path(
    delete, path = "/users/me", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Soft-deleted: every session revoked, cookies cleared; restorable with `public/users/restore`"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`last_admin`: the only active admin cannot delete itself"),
    )
)]
pub async fn delete_me(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
) -> AppResult<(StatusCode, HeaderMap)> {
    lifecycle::soft_delete(&state, &caller, p.user_id).await?;
    let mut headers = HeaderMap::new();
    state.cookies.append_clear(&mut headers);
    Ok((StatusCode::NO_CONTENT, headers))
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
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited` (per-IP budget of password checks) or `too_many_attempts` (wrong current passwords count into the login lockout); see Retry-After"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`weak_password` or `validation_failed`"),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Json(body): Json<ChangePasswordRequest>,
) -> AppResult<StatusCode> {
    passwords::change(
        &state,
        &caller,
        &p,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Search: `query` matches a case-insensitive substring of email, phone or names.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    #[serde(default)]
    #[validate(length(max = 200))]
    pub query: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub status: Option<UserStatus>,
    #[serde(default)]
    #[validate(range(min = 1, max = 100))]
    #[schema(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[utoipa::path(
    put, path = "/users/any", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = SearchRequest,
    responses(
        (status = 200, body = Page<UserResponse>, description = "Matching users, newest first"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed` (e.g. a bad cursor or limit)"),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    _admin: AdminUser,
    Json(body): Json<SearchRequest>,
) -> AppResult<axum::Json<Page<UserResponse>>> {
    let filter = users::UserFilter {
        before: body.cursor.as_deref().map(decode_cursor).transpose()?,
        query: body.query,
        role: body.role,
        status: body.status,
        limit: body.limit.unwrap_or(20),
    };
    let (views, next) = users::search(&state, &filter).await?;
    Ok(axum::Json(Page {
        items: views.into_iter().map(Into::into).collect(),
        next_cursor: next.map(encode_cursor),
    }))
}

#[utoipa::path(
    post, path = "/users/me/email/verification", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 202, description = "An `email_verification` mail with a new link is on its way (at most one per `email.min_interval_secs`)"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_verified`"),
    )
)]
pub async fn request_verification(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
) -> AppResult<StatusCode> {
    users::request_verification(&state, &caller, p.user_id).await?;
    Ok(StatusCode::ACCEPTED)
}
