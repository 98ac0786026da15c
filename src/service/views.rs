//! What the services hand to the routes: plain data with domain types, built from rows here so
//! that hashes, counters and token digests stay in the repository layer.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{Role, SocialNetwork, UserStatus};
use crate::repo::{
    audit::AuditRow, linked_accounts::LinkedAccountRow, messages::MessageRow, passkeys::PasskeyRow,
    sessions::SessionRow, users::UserRow,
};

/// A user as the contract's user object shows them (responses serialise it as `UserResponse`, the
/// events as this; `events::an_events_user_is_the_user_object_of_the_api` keeps them equal).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub phone: Option<String>,
    pub first_name: String,
    pub last_name: Option<String>,
    pub middle_name: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub email_verified: bool,
}

impl From<UserRow> for User {
    fn from(u: UserRow) -> Self {
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
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkedAccount {
    pub id: Uuid,
    pub social_network: SocialNetwork,
    pub connection_link: String,
    pub connected_for: Option<String>,
    pub connected_at: DateTime<Utc>,
}

impl From<LinkedAccountRow> for LinkedAccount {
    fn from(l: LinkedAccountRow) -> Self {
        Self {
            id: l.id,
            social_network: l.social_network,
            connection_link: l.connection_link,
            connected_for: l.connected_for,
            connected_at: l.connected_at,
        }
    }
}

/// A user with their linked accounts, as responses show them.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    #[serde(flatten)]
    pub user: User,
    #[serde(rename = "linked_accounts")]
    pub links: Vec<LinkedAccount>,
}

impl UserView {
    pub fn new(user: UserRow, links: Vec<LinkedAccountRow>) -> Self {
        Self {
            user: user.into(),
            links: links.into_iter().map(Into::into).collect(),
        }
    }

    /// A user created a moment ago has no linked accounts yet: no query needed.
    pub fn new_user(user: UserRow) -> Self {
        Self::new(user, Vec::new())
    }
}

/// One of the caller's live sessions.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// the session this request was made with
    pub current: bool,
    /// the methods of the sign-in that opened it
    pub amr: Vec<String>,
}

impl Session {
    pub fn new(s: SessionRow, current: Uuid) -> Self {
        Self {
            current: s.id == current,
            id: s.id,
            user_agent: s.user_agent,
            ip: s.ip,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            amr: s.amr,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_user_id: Option<Uuid>,
    pub ip: Option<String>,
    pub details: serde_json::Value,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
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

/// A mail's metadata: never its body or a token.
#[derive(Debug, Clone)]
pub struct MessageEntry {
    pub id: Uuid,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub recipient: String,
    pub subject: String,
    pub status: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl From<MessageRow> for MessageEntry {
    fn from(m: MessageRow) -> Self {
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

/// A passkey as the list shows it: its name and dates, never its key or counter.
#[derive(Debug, Clone, Serialize)]
pub struct Passkey {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<PasskeyRow> for Passkey {
    fn from(p: PasskeyRow) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        }
    }
}
