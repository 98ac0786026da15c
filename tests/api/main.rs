//! The integration suite: one binary, one module per area. Every test gets its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod binary;
mod errors;
mod health;
mod login;
mod outage;
mod passwords;
mod refresh;
mod security;
mod server;
mod sessions;
mod sign_up;
mod tokens;
