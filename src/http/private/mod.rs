//! Routes of a signed-in user.

pub mod admin;
pub mod export;
pub mod linked_accounts;
pub mod messages;
pub mod mfa;
pub mod notifications;
pub mod passkeys;
pub mod role_requests;
pub mod seances;
pub mod users;
