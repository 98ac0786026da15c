//! Routes of a signed-in user.

pub mod admin;
pub mod linked_accounts;
pub mod messages;
pub mod mfa;
pub mod notifications;
pub mod role_requests;
pub mod seances;
pub mod users;
