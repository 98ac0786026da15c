//! Response bodies, built from rows so that hashes and counters cannot leak into them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Role, SocialNetwork, UserStatus};
use crate::error::{AppError, FieldError};
use crate::service::mfa::Challenge;
use crate::service::passkeys::Started;
use crate::service::views::{AuditEntry, LinkedAccount, Session, UserView};
use crate::service::Issued;

/// A linked social account (see the linked-accounts routes).
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkedAccountResponse {
    pub id: Uuid,
    pub social_network: SocialNetwork,
    #[schema(example = "https://vk.com/ann")]
    pub connection_link: String,
    pub connected_for: Option<String>,
    pub connected_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    #[schema(example = "ann@example.com")]
    pub email: String,
    #[schema(example = "+79991234567")]
    pub phone: Option<String>,
    #[schema(example = "Ann")]
    pub first_name: String,
    pub last_name: Option<String>,
    pub middle_name: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// the address is proven: a verification link was followed, or a provider vouched for it
    pub email_verified: bool,
    pub linked_accounts: Vec<LinkedAccountResponse>,
}

impl From<LinkedAccount> for LinkedAccountResponse {
    fn from(l: LinkedAccount) -> Self {
        Self {
            id: l.id,
            social_network: l.social_network,
            connection_link: l.connection_link,
            connected_for: l.connected_for,
            connected_at: l.connected_at,
        }
    }
}

impl From<UserView> for UserResponse {
    fn from(UserView { user: u, links }: UserView) -> Self {
        Self {
            id: u.id,
            email: u.email,
            phone: u.phone,
            first_name: u.first_name,
            last_name: u.last_name,
            middle_name: u.middle_name,
            role: u.role,
            status: u.status,
            created_at: u.created_at,
            updated_at: u.updated_at,
            deleted_at: u.deleted_at,
            email_verified: u.email_verified,
            linked_accounts: links.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserResponse,
    pub session_id: Uuid,
}

/// Tokens in the body, for clients without cookies. `refresh_token` is absent when a rotated
/// token was presented again within the grace window: keep the successor you already hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// seconds until the access token expires
    #[schema(example = 900)]
    pub expires_in: i64,
    pub session_id: Uuid,
}

impl From<Issued> for TokenResponse {
    fn from(i: Issued) -> Self {
        Self {
            access_token: i.access_token,
            refresh_token: i.refresh_token,
            token_type: "Bearer",
            expires_in: i.expires_in,
            session_id: i.principal.session_id,
        }
    }
}

/// A first step's answer for an account with two-factor sign-in on: no session yet; complete it
/// with `POST /api/v1/public/users/login/mfa`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaRequired {
    /// always true
    pub mfa_required: bool,
    /// single use; dies after 5 wrong codes
    pub mfa_token: String,
    /// seconds the token lives
    #[schema(example = 300)]
    pub expires_in: i64,
}

impl From<Challenge> for MfaRequired {
    fn from(c: Challenge) -> Self {
        Self {
            mfa_required: true,
            mfa_token: c.token,
            expires_in: c.expires_in,
        }
    }
}

/// The login's answer: signed in, or a second factor is needed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    SignedIn(LoginResponse),
    SecondFactor(MfaRequired),
}

/// The token route's answer: tokens, or a second factor is needed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TokenAnswer {
    Tokens(TokenResponse),
    SecondFactor(MfaRequired),
}

/// The public restore's answer: the restored user, or a second factor is needed (its completion
/// restores).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RestoreAnswer {
    Restored(UserResponse),
    SecondFactor(MfaRequired),
}

/// What a completed second step answers: what its first step would have answered without
/// two-factor (login, Telegram and Yandex: `{user, session_id}` and cookies; token: the token
/// body; restore: the restored user).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MfaCompletion {
    SignedIn(LoginResponse),
    Tokens(TokenResponse),
    Restored(UserResponse),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    pub id: Uuid,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// true for the session this request was made with
    pub current: bool,
    /// the methods of the sign-in that opened the session: `pwd`, `otp`, `recovery`, `yandex`,
    /// `telegram` (as the access token's `amr`)
    #[schema(example = json!(["pwd", "otp"]))]
    pub amr: Vec<String>,
}

impl From<Session> for SessionResponse {
    fn from(s: Session) -> Self {
        Self {
            current: s.current,
            id: s.id,
            user_agent: s.user_agent,
            ip: s.ip,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            amr: s.amr,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetTokenResponse {
    pub reset_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A page of results; pass `next_cursor` back as `cursor` for the next one (null on the last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Cursors are opaque to clients: the base64url of the last row's id.
pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub fn decode_cursor(cursor: &str) -> Result<Uuid, AppError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| {
            AppError::Validation(vec![FieldError::new(
                "cursor",
                "not a cursor this service issued",
            )])
        })
}

/// One audit record.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// `user:<id>`, `server:<key name>`, `system` (the purge job) or `anonymous` (failed sign-in)
    #[schema(example = "user:0192c0de-0000-7000-8000-000000000000")]
    pub actor: String,
    #[schema(example = "user.role_change")]
    pub action: String,
    pub target_user_id: Option<Uuid>,
    pub ip: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditEntry> for AuditRecord {
    fn from(r: AuditEntry) -> Self {
        Self {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target_user_id: r.target_user_id,
            ip: r.ip,
            details: r.details,
        }
    }
}

/// On every answer that carries a token (RFC 6749 §5.1): no cache may keep it.
pub const NO_STORE: [(axum::http::HeaderName, &str); 1] =
    [(axum::http::header::CACHE_CONTROL, "no-store")];

/// A user's response body.
pub fn user_json(view: UserView) -> axum::Json<UserResponse> {
    axum::Json(view.into())
}

/// A passkey sign-in's answer: as the login (`{user, session_id}` and cookies), or with
/// `tokens: true` as the token route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PasskeyAnswer {
    SignedIn(LoginResponse),
    Tokens(TokenResponse),
}

/// A started ceremony: pass `public_key` to `navigator.credentials` (after decoding its base64url
/// fields, or with `PublicKeyCredential.parse*OptionsFromJSON`), and send the answer back with
/// `challenge_id` within 300 s.
#[derive(Debug, Serialize, ToSchema)]
pub struct CeremonyOptions {
    pub challenge_id: Uuid,
    /// `PublicKeyCredentialCreationOptionsJSON` (registration) or
    /// `PublicKeyCredentialRequestOptionsJSON` (sign-in); binary fields base64url without padding
    #[schema(value_type = Object)]
    pub public_key: serde_json::Value,
}

impl From<Started> for CeremonyOptions {
    fn from(s: Started) -> Self {
        Self {
            challenge_id: s.challenge_id,
            public_key: s.public_key,
        }
    }
}
