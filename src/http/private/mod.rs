//! Routes of a signed-in user.

pub mod admin;
pub mod seances;
pub mod users;
