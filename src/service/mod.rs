//! The operations. Each is reached from one or more route groups and owns its transaction.

pub mod auth;
pub mod sessions;
pub mod users;

use std::net::IpAddr;

use uuid::Uuid;

use crate::domain::Role;

/// Who is calling, as far as the session record cares.
#[derive(Debug, Clone)]
pub struct ClientMeta {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

/// An authenticated user's session, as the private routes see it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
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
