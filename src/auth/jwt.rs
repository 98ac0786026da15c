//! Ed25519 signing keys, access and refresh token claims, encode/decode, and the JWKS document.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::AuthSettings;
use crate::domain::Role;

const VERIFIED_CACHE_SIZE: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// Claims of both tokens; `typ` keeps a refresh token from being used as an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub sid: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// access tokens: the methods of the sign-in that opened the session (RFC 8176)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub typ: TokenKind,
}

/// Why a token was refused: only expiry is told apart, because an expired access token with a live
/// refresh cookie is refreshed instead of refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid,
}

pub struct Keys {
    /// Access tokens whose signature was checked already, by SHA-256 of the token: an Ed25519
    /// verification was the largest cost of a private request (bench/PROFILE.md). Expiry is still
    /// checked on every use, and revocation is the session's business, checked per request.
    verified: Mutex<HashMap<[u8; 32], Claims>>,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_raw: Vec<u8>,
    access: Validation,
    refresh: Validation,
    issuer: String,
    audience: String,
}

impl TokenKind {
    /// The JOSE `typ` header (RFC 8725 §3.11, RFC 9068 for access tokens): a verifier that checks it
    /// cannot take one kind for the other.
    pub fn typ(self) -> &'static str {
        match self {
            TokenKind::Access => "at+jwt",
            TokenKind::Refresh => "refresh+jwt",
        }
    }
}

impl Keys {
    pub fn from_pkcs8(auth: &AuthSettings, pkcs8: &[u8]) -> anyhow::Result<Self> {
        let public_raw = public_key(pkcs8)?;
        // refresh tokens are addressed to this service alone (`aud` = issuer), so a service that
        // checks `aud` against `auth.audience` refuses one
        let validation = |audience: &str| {
            let mut v = Validation::new(Algorithm::EdDSA);
            v.leeway = 0;
            v.set_issuer(&[&auth.issuer]);
            v.set_audience(&[audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            v
        };
        Ok(Self {
            verified: Mutex::new(HashMap::new()),
            kid: kid_of(&public_raw),
            encoding: EncodingKey::from_ed_der(pkcs8),
            decoding: DecodingKey::from_ed_der(&public_raw),
            public_raw,
            access: validation(&auth.audience),
            refresh: validation(&auth.issuer),
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs a new token; returns it with its claims.
    pub fn issue(
        &self,
        kind: TokenKind,
        user_id: Uuid,
        session_id: Uuid,
        role: Option<Role>,
        amr: &[String],
        ttl_secs: i64,
    ) -> anyhow::Result<(String, Claims)> {
        let now = Utc::now().timestamp();
        let audience = match kind {
            TokenKind::Access => &self.audience,
            TokenKind::Refresh => &self.issuer,
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: audience.clone(),
            sub: user_id,
            sid: session_id,
            role,
            amr: amr.to_vec(),
            iat: now,
            exp: now + ttl_secs,
            jti: Uuid::new_v4(),
            typ: kind,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some(kind.typ().to_owned());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).context("signing a token")?;
        Ok((token, claims))
    }

    /// Verifies algorithm, `kid`, signature, `iss`, `aud`, `exp` (no leeway) and the token kind.
    /// An access token's signature is checked once; later uses only check its expiry.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        if kind != TokenKind::Access {
            return self.verify_signed(token, kind);
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.verified.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some(claims) = cached {
            return if claims.exp <= Utc::now().timestamp() {
                Err(TokenError::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = self.verify_signed(token, kind)?;
        if let Ok(mut verified) = self.verified.lock() {
            // bounded: forgetting everything now and then costs one verification per live token
            if verified.len() >= VERIFIED_CACHE_SIZE {
                verified.clear();
            }
            verified.insert(key, claims.clone());
        }
        Ok(claims)
    }

    fn verify_signed(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA
            || header.kid.as_deref() != Some(self.kid.as_str())
            || header.typ.as_deref() != Some(kind.typ())
        {
            return Err(TokenError::Invalid);
        }
        let validation = match kind {
            TokenKind::Access => &self.access,
            TokenKind::Refresh => &self.refresh,
        };
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        // decode checks exp with `now > exp`; the contract wants a token dead at `exp` itself
        if data.claims.exp <= Utc::now().timestamp() {
            return Err(TokenError::Expired);
        }
        if data.claims.typ != kind || (kind == TokenKind::Access && data.claims.role.is_none()) {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }

    /// The JSON Web Key Set other services verify access tokens with.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(&self.public_raw),
            }]
        })
    }
}

pub fn public_key(pkcs8: &[u8]) -> anyhow::Result<Vec<u8>> {
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
        .map_err(|_| anyhow::anyhow!("the signing key is not a PKCS#8 Ed25519 key"))?;
    Ok(pair.public_key().as_ref().to_vec())
}

/// A stable key id: the first 16 bytes of the public key's SHA-256, base64url.
pub fn kid_of(public: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..16])
}

/// Tokens and reset secrets are stored only as this hash.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn keys() -> Keys {
        let settings = Settings::load(None).unwrap();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Keys::from_pkcs8(&settings.auth, pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn a_cached_access_token_still_expires() {
        let keys = keys();
        let (token, _) = keys
            .issue(
                TokenKind::Access,
                Uuid::new_v4(),
                Uuid::new_v4(),
                Some(Role::Readonly),
                &[],
                60,
            )
            .unwrap();
        assert!(keys.verify(&token, TokenKind::Access).is_ok());
        assert!(
            keys.verify(&token, TokenKind::Access).is_ok(),
            "from the cache"
        );
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        keys.verified.lock().unwrap().get_mut(&key).unwrap().exp = Utc::now().timestamp();
        assert_eq!(
            keys.verify(&token, TokenKind::Access).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn tokens_are_typed_and_refresh_tokens_are_addressed_to_the_issuer() {
        let keys = keys();
        let settings = Settings::load(None).unwrap();
        let (access, _) = keys
            .issue(
                TokenKind::Access,
                Uuid::new_v4(),
                Uuid::new_v4(),
                Some(Role::Readonly),
                &[],
                60,
            )
            .unwrap();
        let (refresh, claims) = keys
            .issue(
                TokenKind::Refresh,
                Uuid::new_v4(),
                Uuid::new_v4(),
                None,
                &[],
                60,
            )
            .unwrap();
        let typ = |t: &str| jsonwebtoken::decode_header(t).unwrap().typ.unwrap();
        assert_eq!(typ(&access), "at+jwt");
        assert_eq!(typ(&refresh), "refresh+jwt");
        assert_eq!(claims.aud, settings.auth.issuer);
        assert_ne!(claims.aud, settings.auth.audience);
    }

    #[test]
    fn the_cache_never_admits_a_refresh_token_as_access() {
        let keys = keys();
        let (refresh, _) = keys
            .issue(
                TokenKind::Refresh,
                Uuid::new_v4(),
                Uuid::new_v4(),
                None,
                &[],
                60,
            )
            .unwrap();
        assert!(keys.verify(&refresh, TokenKind::Refresh).is_ok());
        assert_eq!(
            keys.verify(&refresh, TokenKind::Access).unwrap_err(),
            TokenError::Invalid
        );
        assert!(keys.verified.lock().unwrap().is_empty());
    }
}
