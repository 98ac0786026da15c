//! Routes of a signed-in user.

pub mod admin;
pub mod linked_accounts;
pub mod messages;
pub mod seances;
pub mod users;
