//! The integration suite: one binary, one module per area. Every test gets its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// the tests read and write their databases directly (never through PgBouncer)
#![allow(clippy::disallowed_methods)]

mod authenticator;
mod helpers;

mod accounts;
mod admin;
mod architecture;
mod audit;
pub mod binary;
mod errors;
mod events;
mod export;
mod hardening;
mod health;
mod linked_accounts;
mod login;
mod mail;
mod metrics;
pub(crate) mod mfa;
mod notifications;
pub(crate) mod oauth;
pub(crate) mod outage;
mod passkeys;
mod passwords;
mod pgbouncer;
mod purge;
mod refresh;
mod reliability;
mod role_requests;
mod scale_out;
mod security;
mod server;
mod server_accounts;
mod sessions;
mod sign_up;
mod smtp;
mod tokens;
mod traces;
