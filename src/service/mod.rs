//! The operations. Each is reached from one or more route groups, owns its transaction, and
//! records its state changes in the audit log within that transaction.

pub mod audit;
pub mod auth;
pub mod events;
pub mod export;
pub mod lifecycle;
pub mod linked_accounts;
pub mod mail;
pub mod mfa;
pub mod notifications;
pub mod oauth;
pub mod passkeys;
pub mod passwords;
pub mod rate_limit;
pub mod role_requests;
pub mod secrets;
pub mod sessions;
pub mod users;
pub mod views;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use audit::{Actor, Caller};

use crate::domain::Role;
use crate::error::{AppError, AppResult};

/// Who is calling, as far as the session record cares.
#[derive(Debug, Clone)]
pub struct ClientMeta {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

/// An authenticated user's session, as the private routes see it. `role` is the user's role now
/// (read with the session), so a demotion takes effect on this service at once.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
    /// when the session signed in (password or provider; a refresh does not count)
    pub signed_in_at: DateTime<Utc>,
    /// the methods of that sign-in (`pwd`, `otp`, `recovery`, `yandex`, `telegram`): the access
    /// token's `amr`
    pub amr: Vec<String>,
}

impl Principal {
    /// A change that attaches a sign-in identity needs a sign-in within `auth.reauth_window_secs`.
    pub fn require_recent_sign_in(&self, window_secs: i64) -> AppResult<()> {
        if Utc::now() - self.signed_in_at > chrono::Duration::seconds(window_secs) {
            return Err(AppError::ReauthenticationRequired);
        }
        Ok(())
    }
}

/// Tokens handed out by sign-in or refresh. `refresh_token` is `None` when a rotated token was
/// presented again within the grace window: the racing request that rotated it holds the successor.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub principal: Principal,
    pub expires_in: i64,
}

/// A batched read (`repo::batch`) that got no answer: 503 for an outage or a swamped database, as
/// the pool's own errors are.
pub(crate) fn read_failed(e: crate::repo::batch::ReadError) -> AppError {
    use crate::repo::batch::ReadError;
    match e {
        ReadError::Db(e) => AppError::from_db(&e)
            .unwrap_or_else(|| AppError::Internal(anyhow::anyhow!("batched read: {e}"))),
        ReadError::TimedOut | ReadError::Stopped => AppError::Unavailable,
    }
}

/// Splits a page fetched with `limit + 1` rows into the page and the id to continue before.
pub fn split_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> Uuid,
) -> (Vec<T>, Option<Uuid>) {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(id);
        (rows, next)
    } else {
        (rows, None)
    }
}
