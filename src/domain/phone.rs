//! A phone number stored as E.164: `+` and 7–15 digits. Accepted as a JSON string or number.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(into = "String")]
#[schema(value_type = String, example = "+79991234567")]
pub struct Phone(String);

impl Phone {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Separators (spaces, dashes, dots, parentheses) are dropped; a national Russian number written
    /// `8XXXXXXXXXX` becomes `+7XXXXXXXXXX`, the form the existing clients send.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (plus, rest) = match raw.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => return Err("a phone number has only digits and an optional leading +".into()),
            }
        }
        if !plus && digits.len() == 11 && digits.starts_with('8') {
            digits.replace_range(0..1, "7");
        }
        if !(7..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err("a phone number has 7 to 15 digits and does not start with 0".into());
        }
        Ok(Self(format!("+{digits}")))
    }
}

impl<'de> Deserialize<'de> for Phone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        let raw = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a phone number as a string or number")
        })? {
            Raw::Text(s) => s,
            Raw::Number(n) => n.to_string(),
        };
        Phone::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl From<Phone> for String {
    fn from(value: Phone) -> Self {
        value.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_e164() {
        assert_eq!(
            Phone::parse("+7 (999) 123-45-67").unwrap().as_str(),
            "+79991234567"
        );
        assert_eq!(
            Phone::parse("89991234567").unwrap().as_str(),
            "+79991234567"
        );
        assert_eq!(
            Phone::parse("4915112345678").unwrap().as_str(),
            "+4915112345678"
        );
    }

    #[test]
    fn accepts_a_json_number() {
        let p: Phone = serde_json::from_str("79991234567").unwrap();
        assert_eq!(p.as_str(), "+79991234567");
    }

    #[test]
    fn rejects_letters_and_bad_lengths() {
        for bad in [
            "",
            "+",
            "12345",
            "+1234567890123456",
            "phone",
            "+7999abc4567",
            "0123456789",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }
}
