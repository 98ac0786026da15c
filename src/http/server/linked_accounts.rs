//! Linked social accounts of any user, for internal services.

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
use crate::http::extract::Json;
use crate::service::{linked_accounts, Caller};
use crate::state::AppState;

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerLinkRequest {
    pub user_id: Uuid,
    pub social_network: SocialNetwork,
    #[validate(length(min = 1, max = 2048))]
    pub connection_link: String,
    #[serde(default)]
    #[validate(length(max = 200))]
    pub connected_for: Option<String>,
}

#[utoipa::path(
    post, path = "/users/link-social-network", tag = "server", security(("server_key" = [])), request_body = ServerLinkRequest,
    responses(
        (status = 201, body = LinkedAccountResponse, description = "Linked"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_deleted`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`link_exists`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`link_not_of_network` or `validation_failed`"),
    )
)]
pub async fn link(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ServerLinkRequest>,
) -> AppResult<(StatusCode, axum::Json<LinkedAccountResponse>)> {
    let row = linked_accounts::link(
        &state,
        &caller,
        body.user_id,
        body.social_network,
        &body.connection_link,
        body.connected_for.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(row.into())))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlinkRequest {
    pub user_id: Uuid,
    pub linked_account_id: Uuid,
}

#[utoipa::path(
    delete, path = "/users/unlink-social-network", tag = "server", security(("server_key" = [])), request_body = UnlinkRequest,
    responses(
        (status = 204, description = "Unlinked"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_deleted` or `last_login_method`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found` or `linked_account_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn unlink(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<UnlinkRequest>,
) -> AppResult<StatusCode> {
    linked_accounts::unlink(&state, &caller, body.user_id, body.linked_account_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `reason` becomes the linked account's `connected_for`.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    pub user_id: Uuid,
    pub linked_account_id: Uuid,
    #[validate(length(max = 200))]
    pub reason: Option<String>,
}

#[utoipa::path(
    put, path = "/users/change-social-network-connection-reason", tag = "server", security(("server_key" = [])),
    request_body = ReasonRequest,
    responses(
        (status = 200, body = LinkedAccountResponse, description = "Updated"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_deleted`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found` or `linked_account_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn change_reason(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ReasonRequest>,
) -> AppResult<axum::Json<LinkedAccountResponse>> {
    let row = linked_accounts::update_connected_for(
        &state,
        &caller,
        body.user_id,
        body.linked_account_id,
        body.reason.as_deref(),
    )
    .await?;
    Ok(axum::Json(row.into()))
}
