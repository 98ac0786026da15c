//! Secrets at rest (seed 002's "CryptoManager"): TOTP secrets and the stored signing key are sealed
//! with `auth.data_key` — AES-256-GCM (ring), a random 96-bit nonce per value, and the value's
//! place (table, column, row) as associated data, so a sealed value copied to another row does not
//! open. A sealed value is stored as `nonce ‖ ciphertext ‖ tag` beside the id of the key that
//! sealed it (`key_id`, a fingerprint that reveals nothing of the key); a value stored while no
//! key was configured has no `key_id` and is kept as it is.

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// The key of `auth.data_key`, or none (secrets stored as they are).
pub struct DataKey {
    key: Option<(LessSafeKey, String)>,
    rng: SystemRandom,
}

/// A value as stored: its bytes and the id of the key that sealed them (`None`: not sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub bytes: Vec<u8>,
    pub key_id: Option<String>,
}

/// Why a stored value does not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "it was sealed with another auth.data_key (key id {found}; auth.data_key has {expected})"
    )]
    OtherKey { found: String, expected: String },
    #[error("it was sealed with auth.data_key {0}, and auth.data_key is empty")]
    NoKey(String),
    #[error("it does not decrypt with auth.data_key (altered, or moved from another row)")]
    Corrupt,
}

impl DataKey {
    /// From the base64 text of `auth.data_key` (32 bytes); empty: no key.
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::none());
        }
        let bytes = STANDARD.decode(text).context("not base64")?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        if bytes.len() != 32 {
            anyhow::bail!(
                "must be 32 bytes (base64 of 32 random bytes), not {}",
                bytes.len()
            );
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| anyhow::anyhow!("not an AES-256 key"))?;
        Ok(Self {
            key: Some((LessSafeKey::new(key), key_id(bytes))),
            rng: SystemRandom::new(),
        })
    }

    pub fn none() -> Self {
        Self {
            key: None,
            rng: SystemRandom::new(),
        }
    }

    /// The fingerprint stored beside each value this key seals.
    pub fn id(&self) -> Option<&str> {
        self.key.as_ref().map(|(_, id)| id.as_str())
    }

    /// Seals `plain` for the place named by `aad` (e.g. `totp_factors.secret:<user id>`).
    pub fn seal(&self, plain: &[u8], aad: &str) -> anyhow::Result<Sealed> {
        let Some((key, id)) = &self.key else {
            return Ok(Sealed {
                bytes: plain.to_vec(),
                key_id: None,
            });
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness for a nonce"))?;
        let mut in_out = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut in_out,
        )
        .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&in_out);
        Ok(Sealed {
            bytes,
            key_id: Some(id.clone()),
        })
    }

    /// Opens a stored value; one stored unsealed (no key id) comes back as it is.
    pub fn open(
        &self,
        stored: &[u8],
        key_id: Option<&str>,
        aad: &str,
    ) -> Result<Vec<u8>, OpenError> {
        let Some(found) = key_id else {
            return Ok(stored.to_vec());
        };
        let Some((key, expected)) = &self.key else {
            return Err(OpenError::NoKey(found.to_owned()));
        };
        if found != expected {
            return Err(OpenError::OtherKey {
                found: found.to_owned(),
                expected: expected.clone(),
            });
        }
        if stored.len() < NONCE_LEN {
            return Err(OpenError::Corrupt);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Corrupt)?;
        let mut in_out = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut in_out)
            .map_err(|_| OpenError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

/// A key's id: the first 8 bytes of SHA-256 over a label and the key, in hex.
fn key_id(key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"users-service data key id\0");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> DataKey {
        DataKey::from_bytes(&[byte; 32]).unwrap_or_else(|_| DataKey::none())
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_place() {
        let k = key(1);
        let sealed = k
            .seal(b"secret", "t.c:1")
            .unwrap_or_else(|_| unreachable!());
        assert_ne!(sealed.bytes, b"secret");
        assert_eq!(sealed.key_id.as_deref(), k.id());
        let id = sealed.key_id.as_deref();
        assert_eq!(
            k.open(&sealed.bytes, id, "t.c:1").ok().as_deref(),
            Some(&b"secret"[..])
        );
        // another row: the associated data differs
        assert!(matches!(
            k.open(&sealed.bytes, id, "t.c:2"),
            Err(OpenError::Corrupt)
        ));
        // another key
        assert!(matches!(
            key(2).open(&sealed.bytes, id, "t.c:1"),
            Err(OpenError::OtherKey { .. })
        ));
        assert!(matches!(
            DataKey::none().open(&sealed.bytes, id, "t.c:1"),
            Err(OpenError::NoKey(_))
        ));
        // altered
        let mut bytes = sealed.bytes.clone();
        bytes[14] ^= 1;
        assert!(matches!(
            k.open(&bytes, id, "t.c:1"),
            Err(OpenError::Corrupt)
        ));
    }

    #[test]
    fn each_sealing_has_its_own_nonce() {
        let k = key(3);
        let a = k.seal(b"same", "x").unwrap_or_else(|_| unreachable!());
        let b = k.seal(b"same", "x").unwrap_or_else(|_| unreachable!());
        assert_ne!(a.bytes, b.bytes);
    }

    #[test]
    fn without_a_key_values_stay_as_they_are() {
        let none = DataKey::none();
        let s = none.seal(b"plain", "x").unwrap_or_else(|_| unreachable!());
        assert_eq!(
            s,
            Sealed {
                bytes: b"plain".to_vec(),
                key_id: None
            }
        );
        assert_eq!(
            none.open(b"plain", None, "x").ok().as_deref(),
            Some(&b"plain"[..])
        );
    }

    #[test]
    fn the_key_must_be_32_bytes_of_base64() {
        assert!(DataKey::from_base64("").is_ok_and(|k| k.id().is_none()));
        assert!(DataKey::from_base64("not base64!").is_err());
        assert!(DataKey::from_base64(&STANDARD.encode([0u8; 16])).is_err());
        let err = DataKey::from_base64(&STANDARD.encode([0u8; 31]))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("32 bytes")));
        assert!(DataKey::from_base64(&STANDARD.encode([7u8; 32])).is_ok_and(|k| k.id().is_some()));
    }
}
