//! Internal services notify a user.

use std::borrow::Cow;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::{Validate, ValidationError};

use crate::domain::validate_title;
use crate::error::{AppResult, Problem};
use crate::http::docs::PROBLEM;
use crate::http::extract::{Json, Path};
use crate::http::private::notifications::NotificationResponse;
use crate::service::notifications::{self, Notice};
use crate::state::AppState;

/// Largest `data` object, as JSON.
const DATA_MAX_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNotification {
    /// `[a-z0-9_.]{1,64}`
    #[validate(custom(function = "valid_kind"))]
    #[schema(example = "billing.invoice_paid", pattern = "^[a-z0-9_.]{1,64}$")]
    pub kind: String,
    /// 1–200 characters once trimmed
    #[validate(custom(function = "validate_title"))]
    #[schema(example = "Your invoice was paid", min_length = 1, max_length = 200)]
    pub title: String,
    #[validate(length(max = 4000))]
    #[schema(max_length = 4000)]
    pub body: Option<String>,
    /// an `https` URL or a path starting with `/`
    #[validate(custom(function = "valid_link"))]
    #[schema(example = "/billing/invoices/42")]
    pub link: Option<String>,
    /// any JSON object up to 16 KiB
    #[validate(custom(function = "valid_data"))]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
}

fn invalid(code: &'static str, message: &'static str) -> ValidationError {
    ValidationError::new(code).with_message(Cow::Borrowed(message))
}

fn valid_kind(value: &str) -> Result<(), ValidationError> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    ok.then_some(())
        .ok_or_else(|| invalid("kind", "must match [a-z0-9_.]{1,64}"))
}

fn valid_link(value: &str) -> Result<(), ValidationError> {
    let path = value.starts_with('/') && !value.starts_with("//");
    let https = url::Url::parse(value).is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
    (value.len() <= 2048 && (path || https))
        .then_some(())
        .ok_or_else(|| invalid("link", "must be an https URL or a path starting with /"))
}

fn valid_data(value: &Map<String, Value>) -> Result<(), ValidationError> {
    let size = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
    if size > DATA_MAX_BYTES {
        return Err(invalid("data", "must be at most 16 KiB of JSON"));
    }
    // PostgreSQL keeps a number's every digit (1e308 comes back as 309 of them), and numbers near
    // the edge of a double do not read back; no notification needs them
    if !value.values().all(numbers_in_range) {
        return Err(invalid("data", "numbers must be within ±1e300"));
    }
    Ok(())
}

fn numbers_in_range(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() < 1e300),
        Value::Array(items) => items.iter().all(numbers_in_range),
        Value::Object(map) => map.values().all(numbers_in_range),
        _ => true,
    }
}

#[utoipa::path(
    post, path = "/users/{user_id}/notifications", tag = "server", security(("server_key" = [])),
    params(("user_id" = Uuid, Path, description = "user id")), request_body = NewNotification,
    responses(
        (status = 201, body = NotificationResponse, description = "Created; open streams of the user receive it"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`already_deleted`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`user_not_found`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Path(user_id): Path<Uuid>,
    Json(body): Json<NewNotification>,
) -> AppResult<(StatusCode, axum::Json<NotificationResponse>)> {
    let data = body.data.map(Value::Object);
    let n = notifications::create(
        &state,
        user_id,
        &Notice {
            kind: &body.kind,
            title: &body.title,
            body: body.body.as_deref(),
            link: body.link.as_deref(),
            data: data.as_ref(),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(n.into())))
}
