//! Routes of a signed-in user.

pub mod seances;
pub mod users;
