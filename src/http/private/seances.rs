//! The caller's sessions: list, logout, revoke.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use uuid::Uuid;

use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::{SessionList, SessionResponse};
use crate::http::extract::{CurrentUser, Path};
use crate::service::{sessions, Caller};
use crate::state::AppState;

#[utoipa::path(
    put, path = "/users/logout", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "This session revoked; both cookies cleared"),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
) -> AppResult<(StatusCode, HeaderMap)> {
    sessions::logout(&state, &caller, &p).await?;
    let mut headers = HeaderMap::new();
    state.cookies.append_clear(&mut headers);
    Ok((StatusCode::NO_CONTENT, headers))
}

#[utoipa::path(
    method(get, post), path = "/users/seances", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, body = SessionList, description = "The account's live sessions, newest first"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> AppResult<axum::Json<SessionList>> {
    let items = sessions::list(&state, &p)
        .await?
        .into_iter()
        .map(SessionResponse::from)
        .collect();
    Ok(axum::Json(SessionList { items }))
}

#[utoipa::path(
    delete, path = "/users/seances/{id}", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "session id")),
    responses(
        (status = 204, description = "The session revoked (revoking the current one also clears the cookies)"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`session_not_found`: unknown, or another user's"),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<(StatusCode, HeaderMap)> {
    sessions::revoke(&state, &caller, &p, id).await?;
    let mut headers = HeaderMap::new();
    if id == p.session_id {
        state.cookies.append_clear(&mut headers);
    }
    Ok((StatusCode::NO_CONTENT, headers))
}

#[utoipa::path(
    delete, path = "/users/seances", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 204, description = "Every other session revoked; this one stays"),
    )
)]
pub async fn revoke_others(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    caller: Caller,
) -> AppResult<StatusCode> {
    sessions::revoke_others(&state, &caller, &p).await?;
    Ok(StatusCode::NO_CONTENT)
}
