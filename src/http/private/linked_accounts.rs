//! The caller's linked social accounts.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::domain::SocialNetwork;
use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::LinkedAccountResponse;
use crate::http::extract::{CurrentUser, Json, Path};
use crate::service::{linked_accounts, Caller};
use crate::state::AppState;

/// A profile page to link: an `https` URL on one of the network's hosts (or their `www.` form).
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLinkRequest {
    pub social_network: SocialNetwork,
    #[validate(length(min = 1, max = 2048))]
    #[schema(example = "https://vk.com/ann")]
    pub connection_link: String,
    #[serde(default)]
    #[validate(length(max = 200))]
    #[schema(example = "teaching")]
    pub connected_for: Option<String>,
}

#[utoipa::path(
    post, path = "/users/me/linked-accounts", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    request_body = NewLinkRequest,
    responses(
        (status = 201, body = LinkedAccountResponse, description = "Linked"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`link_exists`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`link_not_of_network` or `validation_failed`"),
    )
)]
pub async fn link(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Json(body): Json<NewLinkRequest>,
) -> AppResult<(StatusCode, axum::Json<LinkedAccountResponse>)> {
    let row = linked_accounts::link(
        &state,
        &caller,
        p.user_id,
        body.social_network,
        &body.connection_link,
        body.connected_for.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(row.into())))
}

/// What the account is connected for; `null` clears it.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectedForRequest {
    #[validate(length(max = 200))]
    pub connected_for: Option<String>,
}

#[utoipa::path(
    patch, path = "/users/me/linked-accounts/{id}", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "linked account id")), request_body = ConnectedForRequest,
    responses(
        (status = 200, body = LinkedAccountResponse, description = "Updated"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`linked_account_not_found`: unknown, or another user's"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ConnectedForRequest>,
) -> AppResult<axum::Json<LinkedAccountResponse>> {
    let row = linked_accounts::update_connected_for(
        &state,
        &caller,
        p.user_id,
        id,
        body.connected_for.as_deref(),
    )
    .await?;
    Ok(axum::Json(row.into()))
}

#[utoipa::path(
    delete, path = "/users/me/linked-accounts/{id}", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "linked account id")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`last_login_method`: no password and this is the only identity"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`linked_account_not_found`: unknown, or another user's"),
    )
)]
pub async fn unlink(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    linked_accounts::unlink(&state, &caller, p.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
