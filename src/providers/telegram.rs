//! The Telegram Login Widget check: the data-check-string (every field but `hash`, sorted by key,
//! `key=value` joined by newlines) signed with HMAC-SHA256 keyed by SHA-256(bot token).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// True when `hash` signs `fields` with `bot_token` and `auth_date` is within `max_age_secs` of `now`.
pub fn verify(
    fields: &BTreeMap<String, String>,
    hash: &str,
    bot_token: &str,
    max_age_secs: i64,
    now: i64,
) -> bool {
    let Some(auth_date) = fields.get("auth_date").and_then(|d| d.parse::<i64>().ok()) else {
        return false;
    };
    // a little clock skew is allowed into the future, none past the age limit; an absurd date
    // (far past or future, near the ends of i64) is simply not fresh
    let fresh = auth_date > 0
        && now
            .checked_sub(auth_date)
            .is_some_and(|age| (-60..=max_age_secs).contains(&age));
    if !fresh {
        return false;
    }
    let Ok(expected) = hex::decode(hash) else {
        return false;
    };
    let signed = sign(fields, bot_token);
    expected.len() == signed.len() && bool::from(signed.ct_eq(&expected))
}

/// The HMAC of the data-check-string; public for tests that play the widget.
pub fn sign(fields: &BTreeMap<String, String>, bot_token: &str) -> Vec<u8> {
    let check_string = fields
        .iter()
        .filter(|(k, _)| k.as_str() != "hash")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n");
    let key = Sha256::digest(bot_token.as_bytes());
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return Vec::new();
    };
    mac.update(check_string.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(auth_date: i64) -> BTreeMap<String, String> {
        [("id", "42"), ("first_name", "Ann"), ("username", "ann")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .chain([("auth_date".to_owned(), auth_date.to_string())])
            .collect()
    }

    #[test]
    fn accepts_a_fresh_correctly_signed_payload_only() {
        let f = fields(1_000);
        let hash = hex::encode(sign(&f, "123:bot"));
        assert!(verify(&f, &hash, "123:bot", 86400, 1_100));
        assert!(
            !verify(&f, &hash, "123:other", 86400, 1_100),
            "another bot's token"
        );
        assert!(!verify(&f, &hash, "123:bot", 50, 1_100), "stale");
        let mut tampered = f.clone();
        tampered.insert("id".into(), "43".into());
        assert!(!verify(&tampered, &hash, "123:bot", 86400, 1_100));
        assert!(!verify(&f, "zz", "123:bot", 86400, 1_100));
    }

    #[test]
    fn an_absurd_auth_date_is_refused_without_overflow() {
        for date in [i64::MIN, i64::MAX, -1, 1_100 + 61, 1_100 - 86_401] {
            let f = fields(date);
            let hash = hex::encode(sign(&f, "123:bot"));
            assert!(!verify(&f, &hash, "123:bot", 86400, 1_100), "{date}");
        }
    }
}
