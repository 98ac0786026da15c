//! Routes that need no credentials.

pub mod email;
pub mod health;
pub mod metrics;
pub mod oauth;
pub mod passkeys;
pub mod users;
