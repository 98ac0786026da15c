//! AppState: everything a request needs, shared behind one `Arc` and passed with axum's `State`.
//! It sits at the service layer: it imports the building blocks the services use (auth, config,
//! repositories, providers, rate limits) and nothing of HTTP or start-up.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::repo::db::Db;
use secrecy::ExposeSecret;
use tokio::sync::Semaphore;

use crate::auth::cookies::CookieJar;
use crate::auth::data_key::DataKey;
use crate::auth::jwt::Keys;
use crate::auth::password::Passwords;
use crate::auth::server_keys::ServerKeys;
use crate::auth::webauthn::RelyingParty;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::providers::yandex::YandexClient;
use crate::repo::batch::{BatchRead, Batcher};
use crate::repo::notifications::{PageReads, VersionReads};
use crate::repo::search_terms::SearchTerms;
use crate::repo::session_reads::SessionReads;
use crate::service::mail::Templates;
use crate::service::notifications::{Hub, InboxPages};
use crate::service::rate_limit::Limits;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: Db,
    /// the private routes' session checks, batched (see `repo::session_reads`)
    pub session_reads: SessionReads,
    /// inbox pages, batched the same way
    pub notification_pages: PageReads,
    /// inbox versions, batched the same way (see `InboxPages`)
    pub inbox_versions: VersionReads,
    /// the first inbox pages this instance has answered
    pub inbox_pages: InboxPages,
    pub keys: Keys,
    /// seals and opens the secrets stored at rest (`auth.data_key`)
    pub data_key: DataKey,
    pub passwords: Passwords,
    /// the WebAuthn relying party (`webauthn.*`)
    pub webauthn: RelyingParty,
    pub cookies: CookieJar,
    pub server_keys: ServerKeys,
    pub limits: Limits,
    pub yandex: YandexClient,
    /// the mail templates (`email.templates_dir` over the built-in ones)
    pub mail: Templates,
    /// forgot-password requests being worked on after their 202 (bounded: see `passwords::forgot`)
    pub forgot_jobs: Arc<Semaphore>,
    pub metrics: Metrics,
    /// how rare each trigram of the users' search text is (admin search asks the index for the
    /// rarest part of its text)
    pub search_terms: SearchTerms,
    /// this instance's open notification streams and the one connection listening for them
    pub notification_hub: Hub,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Builds the state over an existing (migrated) pool and the loaded signing key
    /// (`app::state` does both).
    pub fn new(settings: Settings, db: Db, keys: Keys, data_key: DataKey) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let passwords = Passwords::new(&settings.auth, metrics.hash_duration.clone())?;
        Ok(Self(Arc::new(Inner {
            cookies: CookieJar::new(&settings),
            server_keys: ServerKeys::new(&settings.server_api.keys),
            limits: Limits::new(
                settings.rate_limit.login_per_minute,
                settings.rate_limit.redis_url.expose_secret(),
                &settings.rate_limit.redis_prefix,
                metrics.rate_limit_backend_errors.clone(),
            )?,
            yandex: YandexClient::new(&settings.oauth)?,
            webauthn: RelyingParty::new(
                &settings.webauthn.rp_id,
                &settings.webauthn.rp_name,
                settings.webauthn_origins(),
            )?,
            mail: Templates::load(&settings.email)?,
            forgot_jobs: Arc::new(Semaphore::new(FORGOT_JOBS)),
            metrics,
            search_terms: SearchTerms::default(),
            notification_hub: Hub::default(),
            session_reads: batched(&db, &settings),
            notification_pages: batched(&db, &settings),
            inbox_versions: batched(&db, &settings),
            inbox_pages: InboxPages::new(INBOX_PAGES_BYTES),
            keys,
            data_key,
            passwords,
            db,
            settings,
        })))
    }
}

/// Forgot-password requests worked on at once after their answer; more are dropped (the per-IP
/// budget keeps real users far below it).
const FORGOT_JOBS: usize = 64;

/// A batched read (see `repo::batch`) with as many queries in flight as `session_read_slots`,
/// each read waiting at most the pool's acquire time.
fn batched<R: BatchRead>(db: &Db, settings: &Settings) -> Batcher<R> {
    Batcher::spawn(
        db.clone(),
        session_read_slots(db),
        Duration::from_secs(settings.database.acquire_timeout_secs),
    )
}

/// The first inbox pages kept, in bytes (a page of 20 notifications is about 6 KiB).
const INBOX_PAGES_BYTES: u64 = 16 << 20;

/// Session checks (and inbox pages) in flight at once: one per core keeps PostgreSQL busy without
/// splitting the batches that form under load into single checks. Behind PgBouncer each query is
/// a transaction of its own, several round trips through the pooler, so one query at a time,
/// carrying all the reads that wait, does more than several smaller ones (GET me through
/// PgBouncer on two cores, alternating runs: 10 606 and 11 853 req/s with one, 8 264 and 9 298
/// with two, 7 768 and 7 942 with three).
fn session_read_slots(db: &Db) -> usize {
    if db.behind_pgbouncer() {
        return 1;
    }
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
