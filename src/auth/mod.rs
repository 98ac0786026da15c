//! Credentials: tokens and keys, password hashing, cookies, the CSRF origin check, server API keys,
//! TOTP and the WebAuthn relying party.

pub mod cookies;
pub mod csrf;
pub mod data_key;
pub mod jwt;
pub mod password;
pub mod server_keys;
pub mod totp;
pub mod webauthn;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// A fresh secret for tokens, states and nonces: 256 random bits, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}
