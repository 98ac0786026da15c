//! One error type for the whole service. Each variant maps to a status and a stable `code`;
//! `IntoResponse` writes RFC 9457 problem+json. Internal detail is logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid input field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The problem+json body every error answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[schema(example = "about:blank")]
    pub r#type: &'static str,
    #[schema(example = "Conflict")]
    pub title: String,
    #[schema(example = 409)]
    pub status: u16,
    #[schema(example = "email is already taken")]
    pub detail: String,
    #[schema(example = "email_taken")]
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    MalformedBody(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("the email or phone is not valid")]
    InvalidContacts(Vec<FieldError>),
    #[error("this route does not allow this method")]
    MethodNotAllowed,
    #[error("request bodies must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("{0}")]
    WeakPassword(String),
    #[error("missing, invalid or expired credentials")]
    Unauthenticated,
    /// The session behind the credentials is dead (revoked, expired, reused, its user deleted):
    /// 401 `unauthenticated` like any bad credential; the auth layer also clears the cookies of a
    /// caller that came with them.
    #[error("missing, invalid or expired credentials")]
    SessionEnded,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("this role is not allowed to do this")]
    Forbidden,
    #[error("this origin may not send credentialed requests")]
    OriginNotAllowed,
    #[error("the account is deleted; restore it first")]
    AccountDeleted,
    #[error("public sign-up is disabled")]
    SignUpDisabled,
    #[error("the reset token is unknown, used or expired")]
    InvalidResetToken,
    #[error("the account is already active")]
    AlreadyActive,
    #[error("the account is deleted")]
    AlreadyDeleted,
    #[error("this would leave no active admin")]
    LastAdmin,
    #[error("this would leave the account with no way to sign in")]
    LastLoginMethod,
    #[error("{0}")]
    LinkNotOfNetwork(String),
    #[error("the sign-in provider failed; try again")]
    ProviderError,
    #[error("the sign-in attempt is unknown, used, expired or from another browser")]
    InvalidState,
    #[error("{1}")]
    NotFound(&'static str, &'static str),
    #[error("{1}")]
    Conflict(&'static str, &'static str),
    #[error("too many requests; retry later")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many failed logins for this account; retry later")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("a dependency is unavailable; retry later")]
    Unavailable,
    /// Every password-hashing slot is busy and the queue for them is full.
    #[error("the service is busy; retry in a second")]
    Busy,
    #[error("this needs a recent sign-in; sign in again")]
    ReauthenticationRequired,
    #[error("the verification token is unknown, used, expired or for another address")]
    InvalidVerificationToken,
    #[error("the email address is verified already")]
    AlreadyVerified,
    #[error("verify your email address first: follow the link in the mail we sent")]
    EmailNotVerified,
    #[error("the request is decided or cancelled already")]
    RequestNotPending,
    #[error("two-factor sign-in is on already; turn it off first")]
    MfaAlreadyEnabled,
    #[error("no two-factor enrolment to confirm; start one first")]
    MfaNotEnrolled,
    #[error("two-factor sign-in is not on")]
    MfaNotEnabled,
    /// a wrong code on a private route
    #[error("the code is wrong, used already, or too old")]
    InvalidMfaCode,
    /// a wrong code completing a sign-in (401, like a wrong password)
    #[error("the code is wrong, used already, or too old")]
    MfaCodeRejected,
    /// a passkey registration whose answer does not verify, or whose ceremony is unknown
    #[error("the passkey did not verify: {0}")]
    InvalidPasskey(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn user_not_found() -> Self {
        AppError::NotFound("user_not_found", "no such user")
    }

    pub fn session_not_found() -> Self {
        AppError::NotFound("session_not_found", "no such session")
    }

    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use AppError::*;
        match self {
            MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed_body"),
            Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            InvalidContacts(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_contacts"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            WeakPassword(_) => (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"),
            Unauthenticated | SessionEnded => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            AccountDeleted => (StatusCode::FORBIDDEN, "account_deleted"),
            SignUpDisabled => (StatusCode::FORBIDDEN, "sign_up_disabled"),
            InvalidResetToken => (StatusCode::BAD_REQUEST, "invalid_reset_token"),
            AlreadyActive => (StatusCode::BAD_REQUEST, "already_active"),
            AlreadyDeleted => (StatusCode::BAD_REQUEST, "already_deleted"),
            LastAdmin => (StatusCode::BAD_REQUEST, "last_admin"),
            LastLoginMethod => (StatusCode::BAD_REQUEST, "last_login_method"),
            LinkNotOfNetwork(_) => (StatusCode::UNPROCESSABLE_ENTITY, "link_not_of_network"),
            ProviderError => (StatusCode::BAD_GATEWAY, "provider_error"),
            InvalidState => (StatusCode::BAD_REQUEST, "invalid_state"),
            NotFound(code, _) => (StatusCode::NOT_FOUND, code),
            Conflict(code, _) => (StatusCode::CONFLICT, code),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            Unavailable | Busy => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ReauthenticationRequired => (StatusCode::FORBIDDEN, "reauthentication_required"),
            InvalidVerificationToken => (StatusCode::BAD_REQUEST, "invalid_verification_token"),
            AlreadyVerified => (StatusCode::BAD_REQUEST, "already_verified"),
            EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified"),
            RequestNotPending => (StatusCode::BAD_REQUEST, "request_not_pending"),
            MfaAlreadyEnabled => (StatusCode::CONFLICT, "mfa_already_enabled"),
            MfaNotEnrolled => (StatusCode::BAD_REQUEST, "mfa_not_enrolled"),
            MfaNotEnabled => (StatusCode::BAD_REQUEST, "mfa_not_enabled"),
            InvalidMfaCode => (StatusCode::BAD_REQUEST, "invalid_mfa_code"),
            MfaCodeRejected => (StatusCode::UNAUTHORIZED, "invalid_mfa_code"),
            InvalidPasskey(_) => (StatusCode::BAD_REQUEST, "invalid_passkey"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            AppError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            AppError::Unavailable => tracing::warn!("dependency unavailable"),
            _ => {}
        }
        let errors = match &self {
            AppError::Validation(errors) | AppError::InvalidContacts(errors) => {
                Some(errors.clone())
            }
            _ => None,
        };
        let problem = Problem {
            r#type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            code,
            errors,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let AppError::RateLimited { retry_after_secs }
        | AppError::TooManyAttempts { retry_after_secs } = self
        {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        if let AppError::Unavailable = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        if let AppError::Busy = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::from_db(&e).unwrap_or_else(|| AppError::Internal(e.into()))
    }
}

impl AppError {
    /// What a database error means to a client; `None` when it is the service's own fault (500).
    /// Takes a reference so one failed query can answer every request that was waiting on it.
    pub fn from_db(e: &sqlx::Error) -> Option<Self> {
        use sqlx::Error::*;
        match e {
            PoolTimedOut | PoolClosed | Io(_) | Tls(_) | WorkerCrashed => {
                Some(AppError::Unavailable)
            }
            Database(db) => {
                if let Some(conflict) = db.constraint().and_then(unique_conflict) {
                    return Some(conflict);
                }
                // class 08: connection exceptions; 57P0x: the server is shutting down or restarting;
                // class 22: data the database refuses (a value the edge checks let through)
                match db.code().as_deref() {
                    Some(c) if c.starts_with("08") || c.starts_with("57P") => {
                        Some(AppError::Unavailable)
                    }
                    Some(c) if c.starts_with("22") => {
                        Some(AppError::Validation(vec![FieldError::new(
                            "body",
                            "a value is not acceptable",
                        )]))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Named unique and foreign-key constraints (see migrations/) and what a violation means to a
/// client.
fn unique_conflict(constraint: &str) -> Option<AppError> {
    match constraint {
        "users_email_key" => Some(AppError::Conflict("email_taken", "email is already taken")),
        "users_phone_key" => Some(AppError::Conflict("phone_taken", "phone is already taken")),
        "linked_accounts_link_key" | "linked_accounts_external_key" => Some(AppError::Conflict(
            "link_exists",
            "this account is already linked",
        )),
        // the user was permanently deleted between the check and the insert
        "notifications_user_id_fkey" => Some(AppError::user_not_found()),
        _ => None,
    }
}
