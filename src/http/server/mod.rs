//! Routes for internal services holding a server API key.

pub mod users;
