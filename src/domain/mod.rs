//! Value types parsed at the edge: once a handler holds one, it is valid.

mod email;
mod phone;
mod role;
mod social;
mod status;

pub use email::Email;
pub use phone::Phone;
pub use role::Role;
pub use social::SocialNetwork;
pub use status::UserStatus;

use std::borrow::Cow;

use validator::ValidationError;

/// Person names: 1–100 characters after trimming (`validator` custom rule).
pub fn validate_name(value: &str) -> Result<(), ValidationError> {
    let len = value.trim().chars().count();
    if (1..=100).contains(&len) {
        Ok(())
    } else {
        Err(ValidationError::new("name")
            .with_message(Cow::Borrowed("must have 1 to 100 characters")))
    }
}

/// A role request's reason: 1 to 1000 characters once trimmed.
pub fn validate_reason(value: &str) -> Result<(), ValidationError> {
    let len = value.trim().chars().count();
    if (1..=1000).contains(&len) {
        Ok(())
    } else {
        Err(ValidationError::new("reason")
            .with_message(Cow::Borrowed("must have 1 to 1000 characters")))
    }
}

/// Trims a name; an optional one left empty becomes absent.
pub fn clean_name(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}
