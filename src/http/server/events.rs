//! The event feed: what the relay publishes, for a consumer catching up over HTTP.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::extract::Query;
use crate::service::events::{self, Envelope};
use crate::state::AppState;

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedParams {
    /// the last event id read (the previous page's `next_cursor`); none: from the oldest kept event
    pub after: Option<Uuid>,
    #[validate(range(min = 1, max = 1000))]
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
}

/// One event, as published to RabbitMQ (the message body).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventEnvelope {
    /// UUIDv7; the AMQP `message_id` (consumers drop duplicates by it)
    pub id: Uuid,
    /// the event type, also the routing key
    #[serde(rename = "type")]
    #[schema(example = "user.created")]
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    /// `user:<id>`, `server:<key name>`, `system` or `anonymous`
    #[schema(example = "server:billing")]
    pub actor: String,
    pub user_id: Option<Uuid>,
    /// per type: see the event catalogue in the README
    #[schema(value_type = Object)]
    pub data: Value,
}

impl From<Envelope> for EventEnvelope {
    fn from(e: Envelope) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            occurred_at: e.occurred_at,
            actor: e.actor,
            user_id: e.user_id,
            data: e.data,
        }
    }
}

/// A page of events, oldest first; pass `next_cursor` as `after` (null when the page is short).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventEnvelope>,
    pub next_cursor: Option<Uuid>,
}

#[utoipa::path(
    get, path = "/events", tag = "server", security(("server_key" = [])),
    params(FeedParams),
    responses(
        (status = 200, body = EventPage, description = "Events oldest first"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: `limit` outside 1–1000, or `after` not a kept event's id"),
    )
)]
pub async fn feed(
    State(state): State<AppState>,
    Query(params): Query<FeedParams>,
) -> AppResult<axum::Json<EventPage>> {
    let (items, next) = events::feed(&state, params.after, params.limit.unwrap_or(100)).await?;
    Ok(axum::Json(EventPage {
        items: items.into_iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}
