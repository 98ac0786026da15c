//! Health probes and the JWKS document.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppError, AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[utoipa::path(get, path = "/health/live", tag = "ops", responses((status = 200, body = Health, description = "The process runs")))]
pub async fn live() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

#[utoipa::path(
    get, path = "/health/ready", tag = "ops",
    responses(
        (status = 200, body = Health, description = "The database answers"),
        (status = 503, body = Problem, content_type = PROBLEM, description = "`unavailable`: the database does not answer"),
    )
)]
pub async fn ready(State(state): State<AppState>) -> AppResult<axum::Json<Health>> {
    let ping = sqlx::raw_sql("select 1").execute(&state.db);
    match tokio::time::timeout(
        Duration::from_secs(state.settings.database.acquire_timeout_secs),
        ping,
    )
    .await
    {
        Ok(Ok(_)) => Ok(axum::Json(Health { status: "ok" })),
        _ => Err(AppError::Unavailable),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyHealthResult {
    #[schema(example = "OK")]
    pub status: &'static str,
}

/// The exact body existing ops probes expect.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyHealth {
    #[schema(example = 200)]
    pub status: u16,
    pub result: LegacyHealthResult,
}

#[utoipa::path(post, path = "/api/v1/healthcheck", tag = "ops", responses((status = 200, body = LegacyHealth, description = "The process runs")))]
pub async fn healthcheck() -> axum::Json<LegacyHealth> {
    axum::Json(LegacyHealth {
        status: 200,
        result: LegacyHealthResult { status: "OK" },
    })
}

#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "ops",
    responses((status = 200, body = Object, description = "JSON Web Key Set (Ed25519, `kid`) that verifies access tokens"))
)]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(state.keys.jwks()),
    )
}
