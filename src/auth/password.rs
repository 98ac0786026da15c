//! argon2id hashing and the password policy. Hashing runs on the blocking pool behind a semaphore
//! sized to the cores, so a login flood neither stalls the runtime nor holds 19 MiB per waiting request.

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::AuthSettings;
use crate::error::{AppError, AppResult};
use crate::telemetry::spawn_blocking_in_span;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Semaphore,
    min_score: u8,
    /// Verified against when the email is unknown, so both paths cost one hash.
    dummy_hash: String,
}

/// What a login learns from a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Wrong,
    Right { needs_rehash: bool },
}

impl Passwords {
    pub fn new(auth: &AuthSettings) -> anyhow::Result<Self> {
        let params = Params::new(
            auth.argon2_memory_kib,
            auth.argon2_iterations,
            auth.argon2_parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let dummy_hash = hash_blocking(&params, "dummy password for unknown accounts")?;
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                permits: Semaphore::new(num_cpus::get().max(1)),
                min_score: auth.min_password_score,
                dummy_hash,
            }),
        })
    }

    /// Checks the policy (length, not the email, zxcvbn score) and hashes. `inputs` are words the
    /// user is known by (email, names) that make a password guessable.
    pub async fn hash_new(&self, password: &SecretString, inputs: &[&str]) -> AppResult<String> {
        let inner = self.inner.clone();
        let password = password.clone();
        let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        self.on_pool(move || {
            check_policy(password.expose_secret(), &inputs, inner.min_score)?;
            Ok(hash_blocking(&inner.params, password.expose_secret())?)
        })
        .await
    }

    /// Verifies against `hash`, or against the dummy hash when there is none (unknown email, or an
    /// account without a password), so the time taken reveals nothing.
    pub async fn verify(&self, password: &SecretString, hash: Option<&str>) -> AppResult<Verdict> {
        let inner = self.inner.clone();
        let password = password.clone();
        let hash = hash.map(str::to_owned);
        self.on_pool(move || {
            let (stored, real) = match &hash {
                Some(h) => (h.as_str(), true),
                None => (inner.dummy_hash.as_str(), false),
            };
            let parsed = PasswordHash::new(stored)
                .map_err(|e| anyhow::anyhow!("stored password hash is unreadable: {e}"))?;
            let ok = argon2(&inner.params)
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok();
            Ok(if ok && real {
                Verdict::Right {
                    needs_rehash: !same_params(&parsed, &inner.params),
                }
            } else {
                Verdict::Wrong
            })
        })
        .await
    }

    /// Hashes without the policy check: for rehashing a password that already passed login.
    pub async fn rehash(&self, password: &SecretString) -> AppResult<String> {
        let inner = self.inner.clone();
        let password = password.clone();
        self.on_pool(move || Ok(hash_blocking(&inner.params, password.expose_secret())?))
            .await
    }

    async fn on_pool<T, F>(&self, f: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> AppResult<T> + Send + 'static,
    {
        let permit = self
            .inner
            .permits
            .acquire()
            .await
            .context("password semaphore closed")?;
        let result = spawn_blocking_in_span(f)
            .await
            .context("password task panicked")?;
        drop(permit);
        result
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

fn same_params(hash: &PasswordHash<'_>, params: &Params) -> bool {
    hash.algorithm == Algorithm::Argon2id.ident()
        && hash.version == Some(Version::V0x13.into())
        && Params::try_from(hash).is_ok_and(|p| {
            p.m_cost() == params.m_cost()
                && p.t_cost() == params.t_cost()
                && p.p_cost() == params.p_cost()
        })
}

/// The contract's rules: 8–128 characters, not the email, zxcvbn score at least `min_score`.
pub fn check_policy(password: &str, inputs: &[String], min_score: u8) -> AppResult<()> {
    let len = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return Err(AppError::WeakPassword(format!(
            "a password has {MIN_LEN} to {MAX_LEN} characters"
        )));
    }
    if inputs
        .iter()
        .any(|i| i.eq_ignore_ascii_case(password.trim()))
    {
        return Err(AppError::WeakPassword(
            "the password must not be the email".into(),
        ));
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let score = u8::from(zxcvbn::zxcvbn(password, &inputs).score());
    if score < min_score {
        return Err(AppError::WeakPassword(
            "the password is too easy to guess; use a longer or less common one".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(email: &str) -> Vec<String> {
        vec![email.to_owned()]
    }

    #[test]
    fn policy_rejects_short_long_common_and_email() {
        for bad in ["short", "password", "12345678", "qwertyuiop"] {
            assert!(check_policy(bad, &inputs("a@b.cd"), 2).is_err(), "{bad}");
        }
        assert!(check_policy(&"x".repeat(129), &[], 0).is_err());
        assert!(check_policy("ann@example.com", &inputs("ann@example.com"), 0).is_err());
        assert!(check_policy("correct horse battery staple", &inputs("a@b.cd"), 2).is_ok());
    }

    #[test]
    fn detects_old_parameters() {
        let old = Params::new(4096, 1, 1, None).unwrap();
        let new = Params::new(19456, 2, 1, None).unwrap();
        let hash = hash_blocking(&old, "pw").unwrap();
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(!same_params(&parsed, &new));
        assert!(same_params(&parsed, &old));
    }
}
