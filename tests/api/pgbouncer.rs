//! Behind PgBouncer in transaction pooling mode: Debian's `pgbouncer` (1.18, which keeps no
//! prepared statements for its clients), started here on a free port in front of the local
//! PostgreSQL, as the `postgres` user (it refuses to run as root). Few server connections for many
//! clients, so every test's statements are spread over servers shared with other clients.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use figment::providers::Serialized;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use users_service::config::Settings;

use crate::helpers::{free_port, test_figment, TestApp, ALLOWED_ORIGIN, PASSWORD};
use crate::notifications::{notify, serve, SseClient};

const ME: &str = "/api/v1/private/users/me";
const INBOX: &str = "/api/v1/private/users/me/notifications";

pub struct PgBouncer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// In transaction mode, `server_connections` per database, any database of the local server.
    pub fn start(server_connections: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let ini = dir.path().join("pgbouncer.ini");
        let log = dir.path().join("pgbouncer.log");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = host=127.0.0.1 port=5432 user=postgres\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = any\n\
                 pool_mode = transaction\n\
                 default_pool_size = {server_connections}\n\
                 max_client_conn = 500\n\
                 logfile = {}\n",
                log.display()
            ),
        )
        .unwrap();
        let exe = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("pgbouncer is installed (Debian's package; tests/run.sh installs it)");
        let mut cmd = Command::new(exe);
        if crate::outage::is_root() {
            // as the postgres user, who writes the log; set on this process (no runuser between
            // the test and pgbouncer), so killing the child stops pgbouncer
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
            };
            let (uid, gid) = (id("-u"), id("-g"));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, gid);
        }
        let child = cmd
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut bouncer = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer exited ({status}): {}", bouncer.log());
            }
            assert!(Instant::now() < deadline, "pgbouncer never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn database_of(pool: &PgPool) -> String {
    let opts: &PgConnectOptions = &pool.connect_options();
    opts.get_database().unwrap().to_owned()
}

/// The settings of a service whose `database.url` is PgBouncer, with the direct URL beside it.
fn settings_through(bouncer: &PgBouncer, database: &str) -> Settings {
    Settings::from_figment(
        test_figment()
            .merge(Serialized::default("database.url", bouncer.url(database)))
            .merge(Serialized::default("database.pgbouncer", true))
            .merge(Serialized::default(
                "database.migrate_url",
                format!("postgres://postgres@127.0.0.1:5432/{database}"),
            ))
            .merge(Serialized::default("notifications.heartbeat_secs", 1)),
    )
    .unwrap()
}

/// An app on the test's database through PgBouncer.
async fn app_through(bouncer: &PgBouncer, pool: &PgPool) -> TestApp {
    let settings = settings_through(bouncer, &database_of(pool));
    let db = users_service::app::connect(&settings).unwrap();
    TestApp::from_state(users_service::app::state(settings, db).await.unwrap()).await
}

/// The named prepared statements on each of PgBouncer's `servers` server connections: as many
/// transactions held open at once, each pinning a server of its own, each reading its session's
/// `pg_prepared_statements`.
async fn named_statements_per_server(app: &TestApp, servers: usize) -> Vec<i64> {
    let mut held = Vec::new();
    for _ in 0..servers {
        held.push(app.state.db.begin().await.unwrap());
    }
    let mut counts = Vec::new();
    for tx in &mut held {
        let (n, backend): (i64, i32) = users_service::repo::db::query_as(
            "select (select count(*) from pg_prepared_statements), pg_backend_pid()",
        )
        .fetch_one(&mut **tx)
        .await
        .unwrap();
        counts.push((backend, n));
    }
    counts.sort_unstable();
    counts.dedup_by_key(|(backend, _)| *backend);
    assert_eq!(
        counts.len(),
        servers,
        "each transaction has a server of its own"
    );
    counts.into_iter().map(|(_, n)| n).collect()
}

#[sqlx::test]
async fn the_sign_in_flow_and_30_concurrent_session_checks_work_through_pgbouncer(pool: PgPool) {
    let bouncer = PgBouncer::start(2);
    let app = app_through(&bouncer, &pool).await;
    // sign up and in, a wrong password (its audit record and event in one transaction)
    let s = app.signed_in("ann@example.com").await;
    let res = app.login("ann@example.com", "not the password").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
    let failed: i64 =
        sqlx::query_scalar("select count(*) from audit_log where action = 'auth.login_failed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(failed, 1);
    let res = app.get(ME).cookies(&s).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["email"], "ann@example.com");
    // the inbox through the pooler: its version and page reads (a kept page, then a change)
    let n = notify(&app, &s.user_id, json!({"kind": "k", "title": "hello"})).await;
    for _ in 0..2 {
        let res = app.get(INBOX).bearer(&s.access).send().await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert!(
            res.json()["items"][0]["read_at"].is_null(),
            "{}",
            res.text()
        );
    }
    let res = app
        .put(&format!("{INBOX}/{}/read", n["id"].as_str().unwrap()))
        .bearer(&s.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = app.get(INBOX).bearer(&s.access).send().await;
    assert!(
        res.json()["items"][0]["read_at"].is_string(),
        "{}",
        res.text()
    );
    // 30 session checks at once, over 16 client connections and 2 servers
    let others = [
        app.signed_in("bob@example.com").await,
        app.signed_in("eve@example.com").await,
    ];
    let sessions = [&s, &others[0], &others[1]];
    let checks = (0..30).map(|i| app.get(ME).cookies(sessions[i % 3]).send());
    for res in futures::future::join_all(checks).await {
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    }
    // the batched checks leave their last transaction open for the next batch's `begin`, and
    // roll it back (freeing its server) once they stop (`repo::batch::fetch`)
    let stopped = Instant::now();
    loop {
        let open: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and state like 'idle in transaction%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(2),
            "{open} transactions still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a refresh rotates through the pooler too
    let res = app
        .post("/api/v1/public/users/refresh")
        .header("cookie", &format!("refresh_token={}", s.refresh))
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let rotated: Vec<u8> =
        sqlx::query_scalar("select refresh_hash from sessions where id = $1::uuid")
            .bind(&s.session_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rotated.len(), 32);
    // no statement of this service outlived its transaction, on either server
    assert_eq!(named_statements_per_server(&app, 2).await, vec![0, 0]);
    // logout, then the session is dead at once
    let res = app
        .put("/api/v1/private/users/logout")
        .cookies(&s)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let res = app.get(ME).bearer(&s.access).send().await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
    let revoked: bool =
        sqlx::query_scalar("select revoked_at is not null from sessions where id = $1::uuid")
            .bind(&s.session_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(revoked);
}

/// What the setting guards against: a client that keeps named statements breaks behind the same
/// PgBouncer (so the test above would fail without `database.pgbouncer`).
#[sqlx::test]
async fn named_statements_collide_behind_pgbouncer_without_the_setting(pool: PgPool) {
    let bouncer = PgBouncer::start(2);
    let opts: PgConnectOptions = bouncer
        .url(&database_of(&pool))
        .parse::<PgConnectOptions>()
        .unwrap()
        .extra_float_digits(None);
    let plain = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_lazy_with(opts);
    let queries = (0..40).map(|i| {
        sqlx::query_scalar::<_, i32>("select $1::int4 + 1")
            .bind(i)
            .fetch_one(&plain)
    });
    let failures = futures::future::join_all(queries)
        .await
        .into_iter()
        .filter(Result::is_err)
        .count();
    assert!(failures > 0, "every named statement found its server");
}

#[sqlx::test]
async fn a_stream_behind_pgbouncer_listens_on_the_direct_connection(pool: PgPool) {
    let bouncer = PgBouncer::start(2);
    let app = app_through(&bouncer, &pool).await;
    let base = serve(&app).await;
    let ann = app.signed_in("ann@example.com").await;
    let mut stream = SseClient::open(&base, &ann.access, None).await;
    let created = notify(&app, &ann.user_id, json!({"kind": "k", "title": "through"})).await;
    let e = stream
        .notification(Duration::from_secs(5))
        .await
        .expect("the notification arrives");
    assert_eq!(e.id.as_deref(), created["id"].as_str());
    // and the inbox pages (batched reads) come through the pooler
    let res = app
        .get("/api/v1/private/users/me/notifications")
        .bearer(&ann.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["items"][0]["title"], "through");
}

#[sqlx::test]
async fn a_new_database_is_created_and_migrated_over_migrate_url(_pool: PgPool) {
    let bouncer = PgBouncer::start(2);
    let name = format!("users_pgb_{}", uuid::Uuid::new_v4().simple());
    let settings = settings_through(&bouncer, &name);
    let db = users_service::app::migrate(&settings).await.unwrap();
    let app = TestApp::from_state(users_service::app::state(settings, db).await.unwrap()).await;
    app.sign_up("ann@example.com").await;
    let res = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        applied,
        users_service::app::MIGRATOR.iter().count() as i64,
        "every migration, applied directly"
    );
    app.state.db.close().await;
    app.pool.close().await;
    drop(app);
    drop(bouncer);
    let admin = PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(&admin)
        .await
        .unwrap();
}

#[test]
fn pgbouncer_without_a_direct_url_is_refused_naming_the_key() {
    let err = Settings::from_figment(
        test_figment().merge(Serialized::default("database.pgbouncer", true)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("database.migrate_url"), "{err}");
}
