//! SQL, one async fn per query, over any executor; rows are `FromRow` structs, never responses.

pub mod audit;
pub mod batch;
pub mod db;
pub mod events;
pub mod linked_accounts;
pub mod login_throttle;
pub mod messages;
pub mod mfa;
pub mod notifications;
pub mod oauth_states;
pub mod passkeys;
pub mod reset_tokens;
pub mod role_requests;
pub mod search_terms;
pub mod session_reads;
pub mod sessions;
pub mod signing_keys;
pub mod telegram_logins;
pub mod users;
pub mod verification_tokens;

/// `columns` (`"a, b, c"`) of the table aliased `alias` (`"t.a, t.b, t.c"`).
fn prefix_columns(columns: &str, alias: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
