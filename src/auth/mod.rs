//! Credentials: tokens and keys, password hashing, cookies, the CSRF origin check, server API keys.

pub mod cookies;
pub mod csrf;
pub mod jwt;
pub mod password;
pub mod server_keys;
