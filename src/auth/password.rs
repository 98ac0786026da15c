//! argon2id hashing and the password policy. Hashing runs on the blocking pool behind a semaphore
//! sized to the cores, so a login flood neither stalls the runtime nor holds 19 MiB per waiting
//! request. A running hash takes an argon2 memory arena (19 MiB) from a free list and gives it
//! back, so a busy service reuses at most one arena per core (letting argon2 allocate per call made
//! the allocator keep hundreds of MiB after a flood); once no hash has run for `ARENA_IDLE` the
//! arenas are freed, so a service that is not signing anyone in holds none.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use std::sync::Mutex;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use prometheus_client::metrics::histogram::Histogram;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::AuthSettings;
use crate::error::{AppError, AppResult};
use crate::telemetry::{self, spawn_blocking_in_span};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

/// Free arenas are released once no hash has run for this long.
const ARENA_IDLE: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Arc<Semaphore>,
    /// requests waiting for a permit now, and how many may
    waiting: AtomicUsize,
    hash_seconds: Histogram,
    queue_max: usize,
    /// the arenas, and the hashes running (each holds one)
    arenas: Mutex<Arenas>,
    /// a task waits to release the arenas after `ARENA_IDLE`
    releasing: AtomicBool,
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
    /// `hash_seconds` records how long each hash takes (a metrics histogram).
    pub fn new(auth: &AuthSettings, hash_seconds: Histogram) -> anyhow::Result<Self> {
        let params = Params::new(
            auth.argon2_memory_kib,
            auth.argon2_iterations,
            auth.argon2_parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let slots = num_cpus::get().max(1);
        let mut arena = vec![Block::new(); params.block_count()];
        let dummy_hash = hash_into(&params, "dummy password for unknown accounts", &mut arena)?;
        drop(arena);
        crate::memory::return_freed_memory();
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                permits: Arc::new(Semaphore::new(slots)),
                waiting: AtomicUsize::new(0),
                hash_seconds,
                queue_max: auth.hash_queue_max,
                arenas: Mutex::new(Arenas {
                    free: Vec::with_capacity(slots),
                    lent: 0,
                    peak_lent: 0,
                    last_used: Instant::now(),
                }),
                releasing: AtomicBool::new(false),
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
        self.on_pool(move |arena| {
            check_policy(password.expose_secret(), &inputs, inner.min_score)?;
            Ok(hash_into(&inner.params, password.expose_secret(), arena)?)
        })
        .await
    }

    /// Hashes without the policy check: for rehashing a password that already passed login.
    pub async fn rehash(&self, password: &SecretString) -> AppResult<String> {
        let inner = self.inner.clone();
        let password = password.clone();
        self.on_pool(move |arena| Ok(hash_into(&inner.params, password.expose_secret(), arena)?))
            .await
    }

    /// Runs `f` on the blocking pool with a permit and that permit's arena. The permit and the
    /// arena move into the blocking task and are given back only when the hash has really ended:
    /// a client that hangs up drops this future, not the hash, so it cannot stack hashes beyond
    /// one per core. At most `auth.hash_queue_max` requests wait for a permit; more are `Busy`.
    async fn on_pool<T, F>(&self, f: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Vec<Block>) -> AppResult<T> + Send + 'static,
    {
        self.slot()
            .await?
            .run(telemetry::child_span("password.hash"), f)
            .await
    }

    /// A hashing slot, taken before the work that leads to a hash (a login reserves its attempt
    /// with one in hand), so an overloaded service turns requests away before touching the
    /// database. Waits in the bounded queue; `Busy` when it is full.
    pub async fn slot(&self) -> AppResult<HashSlot> {
        let permit = match self.inner.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = QueueSlot::take(&self.inner)?;
                self.inner
                    .permits
                    .clone()
                    .acquire_owned()
                    .await
                    .context("password semaphore closed")?
            }
        };
        Ok(HashSlot {
            permit,
            inner: self.inner.clone(),
        })
    }

    /// Arenas kept for the next hashes (none after `ARENA_IDLE` without one).
    #[cfg(test)]
    fn free_arenas(&self) -> usize {
        self.inner.arenas.lock().map_or(0, |a| a.free.len())
    }

    /// Requests waiting for a hashing slot right now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Acquire)
    }

    /// Hashes running right now, and the most that ever ran at once (never more than the cores).
    pub fn running(&self) -> (usize, usize) {
        self.inner
            .arenas
            .lock()
            .map_or((0, 0), |a| (a.lent, a.peak_lent))
    }
}

/// A hashing slot in hand: at most one per core exists. It goes into the blocking task with its
/// arena and is given back only when the hash has really ended, so a request dropped mid-hash
/// (its client gone) cannot free it early and stack hashes beyond one per core.
pub struct HashSlot {
    permit: OwnedSemaphorePermit,
    inner: Arc<Inner>,
}

impl HashSlot {
    /// Verifies against `hash`, or against the dummy hash when there is none (unknown email, or an
    /// account without a password), so the time taken reveals nothing.
    pub async fn verify(self, password: &SecretString, hash: Option<&str>) -> AppResult<Verdict> {
        let span = telemetry::child_span("password.verify");
        let inner = self.inner.clone();
        let password = password.clone();
        let hash = hash.map(str::to_owned);
        self.run(span, move |arena| {
            let (stored, real) = match &hash {
                Some(h) => (h.as_str(), true),
                None => (inner.dummy_hash.as_str(), false),
            };
            let parsed = PasswordHash::new(stored)
                .map_err(|e| anyhow::anyhow!("stored password hash is unreadable: {e}"))?;
            let ok = verify_into(&parsed, password.expose_secret(), arena)?;
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

    /// Runs `f` in the blocking pool; `span` (a child of the request's span) ends with it.
    async fn run<T, F>(self, span: Option<telemetry::OpenSpan>, f: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Vec<Block>) -> AppResult<T> + Send + 'static,
    {
        let HashSlot { permit, inner } = self;
        release_when_idle(&inner);
        spawn_blocking_in_span(move || {
            let _span = span;
            let mut lent = Lent::take(&inner);
            let started = std::time::Instant::now();
            let outcome = f(&mut lent.arena);
            inner.hash_seconds.observe(started.elapsed().as_secs_f64());
            drop(lent);
            drop(permit);
            outcome
        })
        .await
        .context("password task panicked")?
    }
}

struct Arenas {
    /// not in use (at most one per permit)
    free: Vec<Vec<Block>>,
    /// in use by a running hash now, and the most ever at once (never more than the cores)
    lent: usize,
    peak_lent: usize,
    /// when one was last taken or given back
    last_used: Instant,
}

/// An arena lent to a running hash: a free one, or a new one (the first hashes after a quiet spell
/// allocate theirs, on the blocking pool). Given back, and the hash counted as ended, when dropped:
/// a hash that panicked gives its arena back too.
struct Lent<'a> {
    inner: &'a Inner,
    arena: Vec<Block>,
}

impl<'a> Lent<'a> {
    fn take(inner: &'a Inner) -> Self {
        let free = inner.arenas.lock().ok().and_then(|mut arenas| {
            arenas.lent += 1;
            arenas.peak_lent = arenas.peak_lent.max(arenas.lent);
            arenas.last_used = Instant::now();
            arenas.free.pop()
        });
        let arena = free.unwrap_or_else(|| vec![Block::new(); inner.params.block_count()]);
        Self { inner, arena }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Ok(mut arenas) = self.inner.arenas.lock() {
            arenas.free.push(std::mem::take(&mut self.arena));
            arenas.lent = arenas.lent.saturating_sub(1);
            arenas.last_used = Instant::now();
        }
    }
}

/// Frees the free arenas once none has been lent for `ARENA_IDLE` (one waiting task at most).
fn release_when_idle(inner: &Arc<Inner>) {
    if inner.releasing.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut wait = ARENA_IDLE;
        loop {
            tokio::time::sleep(wait).await;
            let Some(inner) = weak.upgrade() else { return };
            let Ok(mut arenas) = inner.arenas.lock() else {
                return;
            };
            let idle = arenas.last_used.elapsed();
            if idle >= ARENA_IDLE && arenas.lent == 0 {
                let released = std::mem::take(&mut arenas.free);
                inner.releasing.store(false, Ordering::Release);
                drop(arenas);
                // freeing and purging 19 MiB blocks is the blocking pool's work
                tokio::task::spawn_blocking(move || {
                    drop(released);
                    crate::memory::return_freed_memory();
                });
                return;
            }
            wait = ARENA_IDLE
                .saturating_sub(idle)
                .max(Duration::from_millis(100));
        }
    });
}

/// A place in the queue for a hashing slot, given back when dropped (the permit came, or the
/// client went away while waiting).
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(inner: &'a Inner) -> AppResult<Self> {
        let before = inner.waiting.fetch_add(1, Ordering::AcqRel);
        if before >= inner.queue_max {
            inner.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(AppError::Busy);
        }
        Ok(Self(&inner.waiting))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Hashes into a PHC string, with `arena` as argon2's memory.
fn hash_into(params: &Params, password: &str, arena: &mut [Block]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2(params)
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, arena)
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("{e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("{e}"))?),
    };
    Ok(phc.to_string())
}

/// Recomputes a stored hash with its own parameters (old ones too) and compares in constant time.
fn verify_into(
    stored: &PasswordHash<'_>,
    password: &str,
    arena: &mut [Block],
) -> anyhow::Result<bool> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("stored password hash: {e}");
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
        return Err(anyhow::anyhow!("stored password hash has no salt or hash"));
    };
    let params = Params::try_from(stored).map_err(|e| err(&e))?;
    let algorithm = Algorithm::try_from(stored.algorithm).map_err(|e| err(&e))?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| err(&e))?
        .unwrap_or_default();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| err(&e))?;
    let mut out = vec![0u8; expected.len()];
    let mut bigger;
    let memory: &mut [Block] = if arena.len() >= params.block_count() {
        arena
    } else {
        // a hash made with more memory than configured now: verified once, then upgraded
        bigger = vec![Block::new(); params.block_count()];
        &mut bigger
    };
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, memory)
        .map_err(|e| err(&e))?;
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
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
        let hash = hash_into(&old, "pw", &mut vec![Block::new(); old.block_count()]).unwrap();
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(!same_params(&parsed, &new));
        assert!(same_params(&parsed, &old));
    }
}

#[cfg(test)]
mod arena_tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[tokio::test(start_paused = true)]
    async fn arenas_are_reused_while_hashing_and_freed_after_a_quiet_spell() {
        let settings = crate::config::Settings::load(None).unwrap();
        let passwords = Passwords::new(&settings.auth, Histogram::new([0.1].into_iter())).unwrap();
        assert_eq!(passwords.free_arenas(), 0, "none before the first hash");
        let pw = SecretString::from("correct horse battery staple");
        let hashes = (0..3).map(|_| passwords.rehash(&pw));
        futures::future::try_join_all(hashes).await.unwrap();
        let kept = passwords.free_arenas();
        assert!((1..=num_cpus::get()).contains(&kept), "{kept} arenas kept");
        tokio::time::sleep(ARENA_IDLE / 2).await;
        passwords.rehash(&pw).await.unwrap();
        tokio::time::sleep(ARENA_IDLE / 2 + Duration::from_secs(1)).await;
        assert_eq!(
            passwords.free_arenas(),
            kept,
            "a hash within the spell keeps them"
        );
        tokio::time::sleep(ARENA_IDLE).await;
        assert_eq!(
            passwords.free_arenas(),
            0,
            "freed after {ARENA_IDLE:?} without a hash"
        );
        passwords.rehash(&pw).await.unwrap();
        assert_eq!(
            passwords.free_arenas(),
            1,
            "the next hash allocates one again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hash_that_panics_gives_its_slot_and_arena_back() {
        let settings = crate::config::Settings::load(None).unwrap();
        let passwords = Passwords::new(&settings.auth, Histogram::new([0.1].into_iter())).unwrap();
        let slot = passwords.slot().await.unwrap();
        let failed = slot
            .run(None, |_| -> AppResult<()> { panic!("a hash that panics") })
            .await;
        assert!(failed.is_err());
        assert_eq!(passwords.running().0, 0, "the hash is counted as ended");
        assert_eq!(passwords.free_arenas(), 1, "its arena is back");
        assert_eq!(passwords.inner.permits.available_permits(), num_cpus::get());
        tokio::time::sleep(ARENA_IDLE + Duration::from_secs(1)).await;
        assert_eq!(
            passwords.free_arenas(),
            0,
            "and freed after the quiet spell"
        );
    }

    #[test]
    fn arena_hashes_are_standard_phc_strings_both_ways() {
        let params = Params::new(19456, 2, 1, None).unwrap();
        let mut arena = vec![Block::new(); params.block_count()];
        let ours = hash_into(&params, "pw-1", &mut arena).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            argon2(&params).verify_password(b"pw-1", &parsed).is_ok(),
            "the crate verifies ours"
        );
        assert!(verify_into(&parsed, "pw-1", &mut arena).unwrap());
        assert!(!verify_into(&parsed, "pw-2", &mut arena).unwrap());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = argon2(&params)
            .hash_password(b"pw-3", &salt)
            .unwrap()
            .to_string();
        assert!(
            verify_into(&PasswordHash::new(&theirs).unwrap(), "pw-3", &mut arena).unwrap(),
            "we verify the crate's"
        );
        let bigger = Params::new(32768, 2, 1, None).unwrap();
        let big = argon2(&bigger)
            .hash_password(b"pw-4", &salt)
            .unwrap()
            .to_string();
        assert!(verify_into(&PasswordHash::new(&big).unwrap(), "pw-4", &mut arena).unwrap());
    }
}
