//! The service's lifecycle: database, migrations, keys, state, listener, graceful shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ring::signature::Ed25519KeyPair;
use secrecy::ExposeSecret;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::data_key::DataKey;
use crate::auth::jwt::{self, Keys};
use crate::config::Settings;
use crate::repo;
use crate::repo::db::Db;
pub use crate::state::AppState;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The state over an existing (migrated) pool: opens the stored secrets with `auth.data_key`
/// (refusing to start when they do not open), loads the signing key, then builds the rest.
pub async fn state(settings: Settings, db: impl Into<Db>) -> anyhow::Result<AppState> {
    let db = db.into();
    let data_key =
        DataKey::from_base64(settings.auth.data_key.expose_secret()).context("auth.data_key")?;
    if data_key.id().is_none() {
        tracing::warn!(
            "auth.data_key is empty: TOTP secrets and the stored signing key are kept unencrypted"
        );
    }
    let off = settings.webauthn_origins_off_rp_id();
    if !off.is_empty() {
        tracing::warn!(
            rp_id = %settings.webauthn.rp_id,
            origins = ?off,
            "passkeys: these origins are not on webauthn.rp_id and no ceremony from them can succeed; set webauthn.rp_id (and webauthn.origins)"
        );
    }
    check_sealed_secrets(&db, &data_key).await?;
    let pkcs8 = signing_key(settings.signing_key_path().as_deref(), &db, &data_key).await?;
    let keys = Keys::from_pkcs8(&settings.auth, &pkcs8)?;
    AppState::new(settings, db, keys, data_key)
}

/// Never serve with secrets that do not open: every TOTP secret must have been sealed with this
/// key (or with none).
async fn check_sealed_secrets(db: &Db, key: &DataKey) -> anyhow::Result<()> {
    let foreign = repo::mfa::count_sealed_otherwise(db, key.id()).await?;
    if foreign > 0 {
        anyhow::bail!(
            "auth.data_key: {foreign} stored TOTP secret(s) were encrypted with another key; \
             start with the key they were encrypted with (or run `users-service rotate-data-key` with it)"
        );
    }
    Ok(())
}

/// From the PEM file when configured; otherwise the key stored in the database (sealed with
/// `auth.data_key` when set), generated and stored on first start (under an advisory lock, so
/// concurrent first starts agree).
async fn signing_key(
    key_file: Option<&Path>,
    db: &Db,
    data_key: &DataKey,
) -> anyhow::Result<Vec<u8>> {
    if let Some(path) = key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("auth.signing_key_file: cannot read {}", path.display()))?;
        let pem = pem::parse(text).context("auth.signing_key_file: not a PEM file")?;
        return Ok(pem.contents().to_vec());
    }
    let stored = match repo::signing_keys::current(db).await? {
        Some(stored) => stored,
        None => {
            let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
            let der = doc.as_ref().to_vec();
            let public = jwt::public_key(&der)?;
            let kid = jwt::kid_of(&public);
            let sealed = data_key.seal(&der, &repo::signing_keys::place(&kid))?;
            let new = repo::signing_keys::StoredKey {
                kid,
                private_der: sealed.bytes,
                key_id: sealed.key_id,
            };
            repo::signing_keys::insert_if_none(db, &new, &public).await?
        }
    };
    data_key
        .open(
            &stored.private_der,
            stored.key_id.as_deref(),
            &repo::signing_keys::place(&stored.kid),
        )
        .map_err(|e| anyhow::anyhow!("auth.data_key: the stored signing key does not open: {e}"))
}

fn connect_options(url: &str, key: &str) -> anyhow::Result<PgConnectOptions> {
    url.parse::<PgConnectOptions>()
        .with_context(|| format!("{key} is not a PostgreSQL URL"))
}

/// The direct connection's URL: `database.migrate_url`, or `database.url` when there is none.
fn direct_url(settings: &Settings) -> (&str, &'static str) {
    let db = &settings.database;
    match db.migrate_url.expose_secret() {
        "" => (db.url.expose_secret(), "database.url"),
        url => (url, "database.migrate_url"),
    }
}

/// A pool whose waiters give up after `database.acquire_timeout_secs`, so an outage answers 503
/// quickly instead of hanging. Connections are made lazily: the service starts and recovers on
/// its own when the database comes and goes.
fn pool_over(settings: &Settings, options: PgConnectOptions, size: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(settings.database.acquire_timeout_secs))
        // sqlx pings every connection on release already; pinging again on every acquire doubled
        // the round trips of each query. Only a connection idle for a while (through a database
        // restart, say) is checked before use.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > Duration::from_secs(5) {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
}

/// The service's database: a pool over `database.url` (PgBouncer's when `database.pgbouncer`) and,
/// when `database.migrate_url` is set, a small one straight to PostgreSQL over it.
pub fn connect(settings: &Settings) -> anyhow::Result<Db> {
    let db = &settings.database;
    let mut options = connect_options(db.url.expose_secret(), "database.url")?;
    if db.pgbouncer {
        // PgBouncer refuses startup parameters it does not know (sqlx sends extra_float_digits)
        options = options.extra_float_digits(None);
    }
    let pool = pool_over(settings, options, db.max_connections);
    if db.migrate_url.expose_secret().is_empty() {
        // not behind PgBouncer: the configuration refuses that without a direct URL
        return Ok(pool.into());
    }
    let direct = connect_options(db.migrate_url.expose_secret(), "database.migrate_url")?;
    // the LISTEN connections of the courier and the notification hub, the relay leader's, a spare
    let direct = pool_over(settings, direct, 4);
    Ok(Db::new(pool, direct, db.pgbouncer))
}

/// Creates the database if it does not exist and applies pending migrations, over the direct
/// connection.
pub async fn migrate(settings: &Settings) -> anyhow::Result<Db> {
    let (url, key) = direct_url(settings);
    if !Postgres::database_exists(url)
        .await
        .with_context(|| format!("cannot reach the database ({key})"))?
    {
        Postgres::create_database(url)
            .await
            .context("cannot create the database")?;
        tracing::info!("created the database");
    }
    let db = connect(settings)?;
    MIGRATOR
        .run(db.direct())
        .await
        .context("applying migrations")?;
    Ok(db)
}

/// Binds, logs the address, and serves until SIGTERM/SIGINT; in-flight requests then get up to
/// `server.shutdown_timeout_secs` to finish.
pub async fn serve(state: AppState, listener: TcpListener) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let grace = Duration::from_secs(state.settings.server.shutdown_timeout_secs);
    let app = crate::http::router(state.clone());
    let purge = crate::jobs::purge::spawn(state.clone());
    let stop_loops = CancellationToken::new();
    let courier = crate::jobs::courier::spawn(state.clone(), stop_loops.clone());
    let relay = crate::jobs::relay::spawn(state.clone(), stop_loops.clone());
    let limits = spawn_limit_cleanup(state);
    tracing::info!(%addr, "listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
    });
    let deadline = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result.context("server error")?,
        () = deadline => tracing::warn!("shutdown grace period over; dropping remaining requests"),
    }
    // the courier finishes the message in hand and the relay the batch in flight; the other loops
    // hold nothing worth finishing
    stop_loops.cancel();
    for task in [courier, relay].into_iter().flatten() {
        let _ = tokio::time::timeout(grace, task).await;
    }
    purge.abort();
    limits.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Forgets rate-limit state of idle clients once a minute, so memory follows the active clients.
fn spawn_limit_cleanup(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticks.tick().await;
            state.limits.retain_recent();
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Binds `server.listen` (port 0 allowed).
pub async fn bind(settings: &Settings) -> anyhow::Result<TcpListener> {
    TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.listen)",
                settings.server.listen
            )
        })
}
