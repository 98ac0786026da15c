//! The caller's notifications: the inbox and its live stream (Server-Sent Events).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::dto::{decode_cursor, encode_cursor, Page};
use crate::http::extract::{CurrentUser, Path, Query};
use crate::service::notifications::{self, Notification, StreamItem};
use crate::state::AppState;

/// One notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationResponse {
    pub id: Uuid,
    /// set by whoever notifies, e.g. `role_request.approved`
    #[schema(example = "role_request.approved")]
    pub kind: String,
    #[schema(example = "Your role request was approved")]
    pub title: String,
    pub body: Option<String>,
    /// an `https` URL or a path of the frontend
    pub link: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    pub created_at: DateTime<Utc>,
    /// null while unread
    pub read_at: Option<DateTime<Utc>>,
}

impl From<Notification> for NotificationResponse {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id,
            kind: n.kind,
            title: n.title,
            body: n.body,
            link: n.link,
            data: n.data,
            created_at: n.created_at,
            read_at: n.read_at,
        }
    }
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NotificationParams {
    /// only unread ones
    pub unread: Option<bool>,
    #[validate(range(min = 1, max = 100))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/users/me/notifications", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(NotificationParams),
    responses(
        (status = 200, body = Page<NotificationResponse>, description = "Newest first"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    Query(params): Query<NotificationParams>,
) -> AppResult<Response> {
    let before = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let body = notifications::page(
        &state,
        p.user_id,
        params.unread.unwrap_or(false),
        before,
        params.limit.unwrap_or(20),
        |items, next| {
            let page = Page {
                items: items.into_iter().map(NotificationResponse::from).collect(),
                next_cursor: next.map(encode_cursor),
            };
            Ok(serde_json::to_vec(&page)
                .map_err(anyhow::Error::from)?
                .into())
        },
    )
    .await?;
    // a first page is answered as rendered when it was read (see `notifications::page`)
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub count: i64,
}

#[utoipa::path(
    get, path = "/users/me/notifications/unread_count", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 200, body = UnreadCount, description = "Unread notifications")),
)]
pub async fn unread_count(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> AppResult<axum::Json<UnreadCount>> {
    let count = notifications::unread_count(&state, p.user_id).await?;
    Ok(axum::Json(UnreadCount { count }))
}

#[utoipa::path(
    put, path = "/users/me/notifications/{id}/read", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "notification id")),
    responses(
        (status = 200, body = NotificationResponse, description = "Read (a second call keeps the first time)"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`notification_not_found`: unknown, or another user's"),
    )
)]
pub async fn mark_read(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<NotificationResponse>> {
    let n = notifications::mark_read(&state, p.user_id, id).await?;
    Ok(axum::Json(n.into()))
}

#[utoipa::path(
    put, path = "/users/me/notifications/read", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    responses((status = 204, description = "Every unread notification is read")),
)]
pub async fn mark_all_read(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
) -> AppResult<StatusCode> {
    notifications::mark_all_read(&state, p.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete, path = "/users/me/notifications/{id}", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("id" = Uuid, Path, description = "notification id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`notification_not_found`: unknown, or another user's"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    Path(id): Path<Uuid>,
) -> AppResult<StatusCode> {
    notifications::delete(&state, p.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The live stream. Each new notification as `event: notification`, `id: <id>`, `data: <the
/// notification JSON>`; a `:` comment line every `notifications.heartbeat_secs`. Send
/// `Last-Event-ID` to first receive what was created after that notification. The stream ends when
/// the session is revoked or expires, when the client falls too far behind, or when the instance
/// loses its database listener; reconnect with `Last-Event-ID` and nothing is missed.
#[utoipa::path(
    get, path = "/users/me/notifications/stream", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(("Last-Event-ID" = Option<Uuid>, Header, description = "replay notifications created after this one")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "Server-Sent Events: `event: notification`, `id`, `data` (a notification); `:` heartbeats"),
        (status = 503, body = Problem, content_type = PROBLEM, description = "`unavailable`: the database is away"),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    CurrentUser(p): CurrentUser,
    headers: HeaderMap,
) -> AppResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<Uuid>().ok());
    let events = notifications::stream(&state, &p, last).await?.map(|item| {
        Ok(match item {
            StreamItem::Notification(n) => {
                let id = n.id.to_string();
                Event::default()
                    .event("notification")
                    .id(id)
                    .json_data(NotificationResponse::from(n))
                    .unwrap_or_else(|_| Event::default().comment(""))
            }
            StreamItem::Heartbeat => Event::default().comment(""),
        })
    });
    Ok(Sse::new(events))
}
