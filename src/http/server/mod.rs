//! Routes for internal services holding a server API key.

pub mod events;
pub mod linked_accounts;
pub mod notifications;
pub mod passwords;
pub mod users;
