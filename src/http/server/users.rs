//! Account operations for internal services (the seed's server API).

use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::domain::{validate_name, Email, Phone, Role};
use crate::error::{AppError, AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::user_json;
use crate::http::dto::UserResponse;
use crate::http::extract::{contacts_rejection, nullable, Json, Path};
use crate::service::linked_accounts;
use crate::service::views::UserView;
use crate::service::{lifecycle, users, Caller};
use crate::state::AppState;

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

impl ServerSignUpRequest {
    fn into_profile(self, default_role: Role) -> (users::Profile, SecretString) {
        let profile = users::Profile {
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            middle_name: self.middle_name,
            phone: self.phone,
            role: self.role.unwrap_or(default_role),
        };
        (profile, self.password)
    }
}

#[utoipa::path(
    post, path = "/users/sign_up", tag = "server", security(("server_key" = [])), request_body = ServerSignUpRequest,
    responses(
        (status = 201, body = UserResponse, description = "Created"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`email_taken` or `phone_taken`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed` or `weak_password`"),
    )
)]
pub async fn sign_up(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ServerSignUpRequest>,
) -> AppResult<(StatusCode, axum::Json<UserResponse>)> {
    let (profile, password) = body.into_profile(state.settings.auth.default_role);
    let user = users::sign_up(&state, &caller, profile, &password).await?;
    Ok((StatusCode::CREATED, user_json(UserView::new_user(user))))
}

/// A user without a password; it signs in after a password reset.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: Email,
    #[serde(default)]
    pub phone: Option<Phone>,
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
    pub role: Option<Role>,
}

impl CreateUserRequest {
    fn into_profile(self, default_role: Role) -> users::Profile {
        users::Profile {
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            middle_name: self.middle_name,
            phone: self.phone,
            role: self.role.unwrap_or(default_role),
        }
    }
}

#[utoipa::path(
    post, path = "/users/create_user", tag = "server", security(("server_key" = [])), request_body = CreateUserRequest,
    responses(
        (status = 201, body = UserResponse, description = "Created without a password"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`email_taken` or `phone_taken`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`invalid_contacts` (bad email or phone) or `validation_failed`"),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateUserRequest>, AppError>,
) -> AppResult<(StatusCode, axum::Json<UserResponse>)> {
    let Json(body) = body.map_err(contacts_rejection)?;
    let profile = body.into_profile(state.settings.auth.default_role);
    let user = users::create_without_password(&state, &caller, profile).await?;
    Ok((StatusCode::CREATED, user_json(UserView::new_user(user))))
}

#[utoipa::path(
    get, path = "/users/{user_id}", tag = "server", security(("server_key" = [])),
    params(("user_id" = Uuid, Path, description = "user id")),
    responses(
        (status = 200, body = UserResponse, description = "The user with linked accounts (deleted users too)"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: not a UUID"),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    Path(user_id): Path<Uuid>,
) -> AppResult<axum::Json<UserResponse>> {
    Ok(user_json(
        linked_accounts::view(&state, users::get(&state, user_id).await?).await?,
    ))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIdRequest {
    pub user_id: Uuid,
}

#[utoipa::path(
    put, path = "/users/recovery-user", tag = "server", security(("server_key" = [])), request_body = UserIdRequest,
    responses(
        (status = 200, body = UserResponse, description = "Restored"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_active`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn recovery_user(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<UserIdRequest>,
) -> AppResult<axum::Json<UserResponse>> {
    Ok(user_json(
        linked_accounts::view(
            &state,
            lifecycle::restore(&state, &caller, body.user_id).await?,
        )
        .await?,
    ))
}

#[utoipa::path(
    delete, path = "/users/delete-user-temporarily", tag = "server", security(("server_key" = [])), request_body = UserIdRequest,
    responses(
        (status = 204, description = "Soft-deleted; every session revoked"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_deleted` or `last_admin`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn delete_temporarily(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<UserIdRequest>,
) -> AppResult<StatusCode> {
    lifecycle::soft_delete(&state, &caller, body.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete, path = "/users/delete-user-permanently", tag = "server", security(("server_key" = [])), request_body = UserIdRequest,
    responses(
        (status = 204, description = "Deleted with its sessions and linked accounts"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`last_admin`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn delete_permanently(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<UserIdRequest>,
) -> AppResult<StatusCode> {
    lifecycle::permanent_delete(&state, &caller, body.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The full name: `first_name` is set; an absent optional name is kept, `null` clears it.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FullNameRequest {
    pub user_id: Uuid,
    #[serde(alias = "name", alias = "firstname")]
    #[validate(custom(function = "validate_name"))]
    pub first_name: String,
    #[serde(default, alias = "lastname", deserialize_with = "nullable")]
    #[validate(length(max = 100))]
    #[schema(value_type = Option<String>)]
    pub last_name: Option<Option<String>>,
    #[serde(default, alias = "middlename", deserialize_with = "nullable")]
    #[validate(length(max = 100))]
    #[schema(value_type = Option<String>)]
    pub middle_name: Option<Option<String>>,
}

#[utoipa::path(
    put, path = "/users/change-fullname", tag = "server", security(("server_key" = [])), request_body = FullNameRequest,
    responses(
        (status = 200, body = UserResponse, description = "The updated user"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_deleted`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn change_fullname(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<FullNameRequest>,
) -> AppResult<axum::Json<UserResponse>> {
    let change = users::NameChange {
        first_name: Some(body.first_name),
        last_name: body.last_name,
        middle_name: body.middle_name,
    };
    Ok(user_json(
        linked_accounts::view(
            &state,
            users::update_profile(&state, &caller, body.user_id, change).await?,
        )
        .await?,
    ))
}

/// New email and/or phone (`phone: null` removes it).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactsRequest {
    pub user_id: Uuid,
    #[serde(default)]
    pub email: Option<Email>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<Phone>>,
}

#[utoipa::path(
    put, path = "/users/change-contacts", tag = "server", security(("server_key" = [])), request_body = ContactsRequest,
    responses(
        (status = 200, body = UserResponse, description = "The updated user"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_deleted`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`email_taken` or `phone_taken`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`invalid_contacts` or `validation_failed`"),
    )
)]
pub async fn change_contacts(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<ContactsRequest>, AppError>,
) -> AppResult<axum::Json<UserResponse>> {
    let Json(body) = body.map_err(contacts_rejection)?;
    let change = users::ContactChange {
        email: body.email,
        phone: body.phone,
    };
    let user = users::change_contacts(&state, &caller, body.user_id, change, None).await?;
    Ok(user_json(linked_accounts::view(&state, user).await?))
}
