//! Value types parsed at the edge: once a handler holds one, it is valid.

/// Stores an enum as the builtin `text` type: written as its `as_str`, read through `FromStr` (an
/// unknown value is a decode error). A derived `#[sqlx(type_name = "text")]` makes each connection
/// look the type up by name once, with a named statement that behind PgBouncer outlives its
/// transaction on whichever server ran it.
macro_rules! text_column {
    ($t:ty) => {
        impl sqlx::Type<sqlx::Postgres> for $t {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $t {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?.parse()?)
            }
        }
    };
}

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
    trimmed_length(value, 100, "name", "must have 1 to 100 characters")
}

/// A role request's reason: 1 to 1000 characters once trimmed.
pub fn validate_reason(value: &str) -> Result<(), ValidationError> {
    trimmed_length(value, 1000, "reason", "must have 1 to 1000 characters")
}

/// A notification's title: 1 to 200 characters once trimmed.
pub fn validate_title(value: &str) -> Result<(), ValidationError> {
    trimmed_length(value, 200, "title", "must have 1 to 200 characters")
}

/// A passkey's name: 1 to 64 characters once trimmed, none of them control characters (it is
/// shown in lists and mailed in notices).
pub fn validate_passkey_name(value: &str) -> Result<(), ValidationError> {
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new("name").with_message(Cow::Borrowed(
            "must have 1 to 64 characters, no control characters",
        )));
    }
    trimmed_length(value, 64, "name", "must have 1 to 64 characters")
}

/// 1 to `max` characters once trimmed (the stored form).
fn trimmed_length(
    value: &str,
    max: usize,
    code: &'static str,
    message: &'static str,
) -> Result<(), ValidationError> {
    if (1..=max).contains(&value.trim().chars().count()) {
        Ok(())
    } else {
        Err(ValidationError::new(code).with_message(Cow::Borrowed(message)))
    }
}

/// Trims a name; an optional one left empty becomes absent.
pub fn clean_name(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}
