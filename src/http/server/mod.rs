//! Routes for internal services holding a server API key.

pub mod passwords;
pub mod users;
