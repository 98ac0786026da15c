//! The outbox as admins see it: metadata of every mail, never a body or a token.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::error::AppResult;
use crate::http::dto::{decode_cursor, encode_cursor, Page};
use crate::http::extract::{AdminUser, Query};
use crate::service::mail::{self, MessageFilter};
use crate::service::views::MessageEntry;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Sent,
    Abandoned,
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MessageParams {
    /// only mail about this user
    pub user_id: Option<Uuid>,
    /// only this kind, e.g. `password_reset`
    #[validate(length(max = 64))]
    pub kind: Option<String>,
    pub status: Option<MessageStatus>,
    #[validate(range(min = 1, max = 100))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// One mail's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageRecord {
    pub id: Uuid,
    #[schema(example = "password_reset")]
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub recipient: String,
    pub subject: String,
    /// `queued`, `sent` or `abandoned`
    #[schema(example = "sent")]
    pub status: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl From<MessageEntry> for MessageRecord {
    fn from(m: MessageEntry) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            user_id: m.user_id,
            recipient: m.recipient,
            subject: m.subject,
            status: m.status,
            attempts: m.attempts,
            created_at: m.created_at,
            sent_at: m.sent_at,
            last_error: m.last_error,
        }
    }
}

#[utoipa::path(
    get, path = "/admin/messages", tag = "private", security(("bearer" = []), ("access_cookie" = [])),
    params(MessageParams),
    responses(
        (status = 200, body = Page<MessageRecord>, description = "Mail metadata, newest first"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(params): Query<MessageParams>,
) -> AppResult<axum::Json<Page<MessageRecord>>> {
    let filter = MessageFilter {
        user_id: params.user_id,
        kind: params.kind,
        status: params.status.map(|s| {
            match s {
                MessageStatus::Queued => "queued",
                MessageStatus::Sent => "sent",
                MessageStatus::Abandoned => "abandoned",
            }
            .to_owned()
        }),
        before: params.cursor.as_deref().map(decode_cursor).transpose()?,
        limit: params.limit.unwrap_or(20),
    };
    let (items, next) = mail::list(&state, &filter).await?;
    Ok(axum::Json(Page {
        items: items.into_iter().map(Into::into).collect(),
        next_cursor: next.map(encode_cursor),
    }))
}
