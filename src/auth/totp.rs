//! The second factor's arithmetic: TOTP codes (RFC 6238 — HMAC-SHA-1, 6 digits, 30-second steps —
//! computed by `totp-rs`), and recovery codes (16 characters of Crockford's base32, 80 bits,
//! shown as `xxxx-xxxx-xxxx-xxxx`, stored as SHA-256 hashes).

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// A new secret's length: 160 bits, as RFC 4226 recommends.
const SECRET_BYTES: usize = 20;
/// Recovery codes per user.
pub const RECOVERY_CODES: usize = 10;
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const RECOVERY_LEN: usize = 16;

pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// The secret as an authenticator app takes it typed in: base32, no padding.
pub fn base32(secret: &[u8]) -> String {
    Secret::Raw(secret.to_vec()).to_encoded().to_string()
}

fn totp(secret: &[u8], issuer: &str, account: &str, digits: usize) -> anyhow::Result<TOTP> {
    // a label may not hold a colon (it separates the issuer from the account)
    let issuer = issuer.replace(':', " ");
    let account = account.replace(':', " ");
    TOTP::new(
        Algorithm::SHA1,
        digits,
        1,
        STEP_SECS,
        secret.to_vec(),
        Some(issuer),
        account,
    )
    .map_err(|e| anyhow::anyhow!("totp: {e}"))
}

/// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…` for a QR code.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<String> {
    Ok(totp(secret, issuer, account, DIGITS)?.get_url())
}

/// The code of a step (for tests and for clients that want to show one).
pub fn code_at(secret: &[u8], step: u64) -> anyhow::Result<String> {
    Ok(totp(secret, "", "x", DIGITS)?.generate(step * STEP_SECS))
}

/// The step of `now` (Unix seconds).
pub fn step_of(now_secs: u64) -> u64 {
    now_secs / STEP_SECS
}

/// The step whose code `code` is, among the step of `now` and the one before and after it (one
/// step of clock skew); the newest when several match. Compared in constant time.
pub fn matching_step(secret: &[u8], code: &str, now_secs: u64) -> anyhow::Result<Option<u64>> {
    let t = totp(secret, "", "x", DIGITS)?;
    let now = step_of(now_secs);
    let mut found = None;
    for step in [now.saturating_sub(1), now, now + 1] {
        let expected = t.generate(step * STEP_SECS);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    Ok(found)
}

/// A well-formed TOTP code: exactly six ASCII digits.
pub fn is_code(code: &str) -> bool {
    code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// Ten fresh recovery codes, formatted for people.
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; RECOVERY_LEN];
            rng.fill_bytes(&mut bytes);
            let chars: Vec<char> = bytes
                .iter()
                .map(|b| RECOVERY_ALPHABET[(b & 31) as usize] as char)
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// A recovery code as typed (any case, with or without hyphens and spaces, `i`/`l` for `1` and `o`
/// for `0`) in its canonical form; `None` when it cannot be one.
pub fn normalize_recovery_code(code: &str) -> Option<String> {
    let canonical: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_lowercase() {
            'i' | 'l' => '1',
            'o' => '0',
            c => c,
        })
        .collect();
    let ok = canonical.len() == RECOVERY_LEN
        && canonical.bytes().all(|b| RECOVERY_ALPHABET.contains(&b));
    ok.then_some(canonical)
}

/// How a recovery code is stored: SHA-256 over the user and the canonical code (80 random bits
/// need no slow hash).
pub fn recovery_code_hash(user_id: Uuid, canonical: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(user_id.as_bytes());
    h.update(canonical.as_bytes());
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: the seed "12345678901234567890", 8 digits.
    #[test]
    fn rfc_6238_test_vectors() {
        let seed = b"12345678901234567890";
        let t = totp(seed, "", "x", 8).expect("totp");
        for (time, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(t.generate(time), code, "T = {time}");
        }
    }

    #[test]
    fn one_step_of_skew_is_tolerated_and_two_are_not() {
        let secret = new_secret();
        let now = 1_700_000_000u64;
        let step = step_of(now);
        for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let s = (step as i64 + offset) as u64;
            let code = code_at(&secret, s).expect("code");
            let found = matching_step(&secret, &code, now).expect("check");
            if accepted {
                assert_eq!(found, Some(s), "offset {offset}");
            } else {
                assert_ne!(found, Some(s), "offset {offset}");
            }
        }
        assert_eq!(matching_step(&secret, "abcdef", now).expect("check"), None);
    }

    #[test]
    fn codes_and_uris_are_well_formed() {
        assert!(is_code("012345"));
        for bad in ["12345", "1234567", "12345a", "١٢٣٤٥٦", ""] {
            assert!(!is_code(bad), "{bad}");
        }
        let secret = new_secret();
        let uri = otpauth_uri(&secret, "users-service", "ann@example.com").expect("uri");
        assert!(
            uri.starts_with("otpauth://totp/users-service:ann%40example.com?secret="),
            "{uri}"
        );
        assert!(
            uri.contains(&format!("secret={}", base32(&secret))),
            "{uri}"
        );
        assert!(uri.contains("issuer=users-service"), "{uri}");
    }

    #[test]
    fn recovery_codes_are_80_bits_and_read_forgivingly() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 19, "{code}");
            assert_eq!(normalize_recovery_code(code).map(|c| c.len()), Some(16));
        }
        let typed = codes[0].to_uppercase().replace('-', " ");
        assert_eq!(
            normalize_recovery_code(&typed),
            normalize_recovery_code(&codes[0])
        );
        assert_eq!(normalize_recovery_code("0000-1111-2222-333"), None);
        assert_eq!(normalize_recovery_code("0000-1111-2222-333u"), None);
        assert_eq!(
            normalize_recovery_code("IOlo-1111-2222-3333").as_deref(),
            Some("1010111122223333")
        );
    }
}
