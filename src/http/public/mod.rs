//! Routes that need no credentials.

pub mod health;
pub mod oauth;
pub mod users;
