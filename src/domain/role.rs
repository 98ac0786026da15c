//! The roles the contract names; the `roles` table is seeded with the same three.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Stored as text (the `roles` table holds the names); decoding an unknown name is an error, so a
/// bad value never reaches a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Methodist,
    Readonly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Methodist => "methodist",
            Role::Readonly => "readonly",
        }
    }
}

text_column!(Role);

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "methodist" => Ok(Role::Methodist),
            "readonly" => Ok(Role::Readonly),
            other => Err(format!("unknown role `{other}`")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for role in [Role::Admin, Role::Methodist, Role::Readonly] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
