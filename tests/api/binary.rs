//! The real binary: start-up (database creation, migrations), subcommands, bad configuration,
//! and graceful shutdown on SIGTERM.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use crate::helpers::{free_port, PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_users-service");

/// A database name of its own on the test server; dropped when the guard goes.
pub struct FreshDb {
    name: String,
    url: String,
}

impl FreshDb {
    pub fn new(pool: &PgPool) -> Self {
        let opts: &PgConnectOptions = &pool.connect_options();
        let name = format!("users_bin_{}", uuid::Uuid::new_v4().simple());
        let url = format!(
            "postgres://{}@{}:{}/{}",
            opts.get_username(),
            opts.get_host(),
            opts.get_port(),
            name
        );
        Self { name, url }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("USERS__DATABASE__URL", &self.url)
            .env("USERS__LOG__FORMAT", "json")
            .env_remove("DATABASE_URL")
            .env_remove("USERS_CONFIG");
        cmd
    }
}

/// Drops the database even when the test failed, from a thread of its own (Drop cannot await).
impl Drop for FreshDb {
    fn drop(&mut self) {
        let maintenance = match self.url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/postgres"),
            None => return,
        };
        let sql = format!("drop database if exists {} with (force)", self.name);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&maintenance)
                    .await
                    .ok()?;
                sqlx::query(&sql).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}

fn output_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[sqlx::test]
async fn a_bad_config_value_stops_the_start_naming_the_key(_pool: PgPool) {
    let out = Command::new(BIN)
        .env("USERS__AUTH__ACCESS_TTL_SECS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.access_ttl_secs"), "{stderr}");
    let out = Command::new(BIN)
        .env("USERS__SERVER__TRUSTED_PROXIES", "not-a-net")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.trusted_proxies"));
    // a URL the Redis client cannot read (database "x") is named too, before anything starts
    let out = Command::new(BIN)
        .env("USERS__RATE_LIMIT__REDIS_URL", "redis://127.0.0.1:6379/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rate_limit.redis_url"));
}

#[sqlx::test]
async fn migrate_creates_the_database_and_applies_the_migrations(pool: PgPool) {
    let db = FreshDb::new(&pool);
    let out = db.command(&["migrate"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = sqlx::PgPool::connect(&db.url).await.unwrap();
    let roles: Vec<String> = sqlx::query_scalar("select name from roles order by name")
        .fetch_all(&check)
        .await
        .unwrap();
    assert_eq!(roles, ["admin", "methodist", "readonly"]);
    check.close().await;
    drop(db);
}

#[sqlx::test]
async fn create_admin_reads_the_password_from_stdin(pool: PgPool) {
    let db = FreshDb::new(&pool);
    let out = output_with_stdin(
        db.command(&["create-admin", "--email", "root@example.com"]),
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // logs go to stdout too; the id is the last line
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let check = sqlx::PgPool::connect(&db.url).await.unwrap();
    let role: String = sqlx::query_scalar(
        "select role from users where id = $1::uuid and email = 'root@example.com'",
    )
    .bind(&id)
    .fetch_one(&check)
    .await
    .unwrap();
    assert_eq!(role, "admin");
    let weak = output_with_stdin(
        db.command(&["create-admin", "--email", "two@example.com"]),
        "123\n",
    );
    assert!(!weak.status.success());
    check.close().await;
    drop(db);
}

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub async fn start(db: &FreshDb) -> Self {
        Self::start_with(db, &[]).await
    }

    /// Starts the binary with extra `USERS__...` settings and waits until it is ready.
    pub async fn start_with(db: &FreshDb, env: &[(&str, &str)]) -> Self {
        Self::start_logging(db, env, Stdio::null()).await
    }

    /// `start_with`, its log lines (stdout) going to `log`.
    pub async fn start_logging(db: &FreshDb, env: &[(&str, &str)], log: Stdio) -> Self {
        let port = free_port();
        let child = db
            .command(&[])
            .envs(env.iter().copied())
            .env("USERS__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("USERS__RATE_LIMIT__LOGIN_PER_MINUTE", "1000")
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client
                .get(format!("{}/health/ready", server.base))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }
}

impl Server {
    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, Self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        tokio::task::spawn_blocking(move || {
            let status = self.child.wait().unwrap();
            (status, self)
        })
        .await
        .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[sqlx::test]
async fn sigterm_lets_in_flight_logins_finish_and_exits_zero(pool: PgPool) {
    let db = FreshDb::new(&pool);
    let server = Server::start(&db).await;
    let client = reqwest::Client::new();
    let sign_up = client
        .post(format!("{}/api/v1/public/users/sign_up", server.base))
        .json(&json!({"email": "ann@example.com", "password": PASSWORD, "first_name": "Ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_up.status(), 201);

    let logins: Vec<_> = (0..10)
        .map(|_| {
            let request = client
                .post(format!("{}/api/v1/public/users/login", server.base))
                .json(&json!({"email": "ann@example.com", "password": PASSWORD}));
            tokio::spawn(request.send())
        })
        .collect();
    // ten argon2 verifications on two permits take well over this: the logins are in flight
    tokio::time::sleep(Duration::from_millis(30)).await;
    let stopped = tokio::spawn(server.terminate());

    for login in logins {
        let res = login
            .await
            .unwrap()
            .expect("an in-flight request was dropped");
        assert_eq!(res.status(), 200);
    }
    let status = stopped.await.unwrap();
    assert_eq!(status.0.code(), Some(0));
    let refused = reqwest::Client::new()
        .get(format!("{}/health/live", status.1.base))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "new connections are refused after shutdown"
    );
    drop(status);
    drop(db);
}

#[sqlx::test]
async fn a_config_file_is_layered_over_the_defaults_by_flag_or_env(_pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "auth:\n  lockout_secs: 0\n").unwrap();
    let by_flag = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(by_flag.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&by_flag.stderr).contains("auth.lockout_secs"));
    let by_env = Command::new(BIN)
        .env("USERS_CONFIG", &file)
        .output()
        .unwrap();
    assert_eq!(by_env.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&by_env.stderr).contains("auth.lockout_secs"));
    // the environment overrides the file
    let fixed = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .env("USERS__AUTH__LOCKOUT_SECS", "60")
        .env("USERS__SERVER__LISTEN", "not-an-address")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&fixed.stderr);
    assert!(
        !stderr.contains("auth.lockout_secs") && stderr.contains("server.listen"),
        "{stderr}"
    );
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Asks `/health/live` while `busy()` holds, `every` apart; each answer must come (within 10 s) and
/// be 200. Returns how many probes were made.
pub async fn probe_liveness_while(base: &str, every: Duration, busy: impl Fn() -> bool) -> usize {
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut probes = 0;
    while busy() {
        let live = probe
            .get(format!("{base}/health/live"))
            .send()
            .await
            .expect("liveness did not answer");
        assert_eq!(live.status(), 200);
        probes += 1;
        tokio::time::sleep(every).await;
    }
    probes
}

#[sqlx::test]
async fn rotate_data_key_reseals_the_secrets_and_a_wrong_key_stops_the_start(pool: PgPool) {
    use base64::Engine;
    let key = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let db = FreshDb::new(&pool);
    let with_key = |args: &[&str], k: &str| {
        let mut cmd = db.command(args);
        cmd.env("USERS__AUTH__DATA_KEY", k)
            .env("USERS__SERVER__LISTEN", "127.0.0.1:0");
        cmd
    };
    // the first start stores the signing key sealed with the first key
    let out = output_with_stdin(
        with_key(&["create-admin", "--email", "keys@example.com"], &key(1)),
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated = output_with_stdin(
        with_key(&["rotate-data-key"], &key(1)),
        &format!("{}\n", key(2)),
    );
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        said.contains("re-encrypted 1 signing key(s) and 0 TOTP secret(s)"),
        "{said}"
    );
    let check = sqlx::PgPool::connect(&db.url).await.unwrap();
    let key_id: Option<String> = sqlx::query_scalar("select key_id from signing_keys")
        .fetch_one(&check)
        .await
        .unwrap();
    let second = users_service::auth::data_key::DataKey::from_base64(&key(2)).unwrap();
    assert_eq!(key_id.as_deref(), second.id());
    // the old key no longer starts the service, and names the setting
    let stale = with_key(&["serve"], &key(1)).output().unwrap();
    assert!(!stale.status.success());
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(stderr.contains("auth.data_key"), "{stderr}");
    // a rotation from the wrong key changes nothing
    let wrong = output_with_stdin(with_key(&["rotate-data-key"], &key(1)), "\n");
    assert!(!wrong.status.success());
    let unchanged: Option<String> = sqlx::query_scalar("select key_id from signing_keys")
        .fetch_one(&check)
        .await
        .unwrap();
    assert_eq!(unchanged, key_id);
    // a malformed new key is refused before anything is read
    let malformed = output_with_stdin(with_key(&["rotate-data-key"], &key(2)), "short\n");
    assert!(!malformed.status.success());
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("new data key"));
    check.close().await;
    drop(db);
}

/// The settings the Kubernetes base and the production overlay set (ConfigMap data and the
/// overlay's patches to it), loaded as the service loads `USERS__…` variables: an unknown or bad
/// key there would stop every pod at start.
#[test]
fn the_deploy_manifests_set_only_settings_the_service_accepts() {
    use figment::providers::{Format, Yaml};
    use figment::Figment;
    use std::collections::BTreeMap;

    #[derive(serde::Deserialize)]
    struct Patch {
        patch: String,
    }
    #[derive(serde::Deserialize)]
    struct Op {
        path: String,
        #[serde(default)]
        value: Option<figment::value::Value>,
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let base: BTreeMap<String, String> =
        Figment::from(Yaml::file(format!("{root}/deploy/k8s/base/configmap.yaml")))
            .extract_inner("data")
            .unwrap();
    let patches: Vec<Patch> = Figment::from(Yaml::file(format!(
        "{root}/deploy/k8s/overlays/production/kustomization.yaml"
    )))
    .extract_inner("patches")
    .unwrap();
    let mut production = base.clone();
    for p in patches {
        let ops: Vec<Op> = Figment::from(Yaml::string(&format!("ops: {}", indent(&p.patch))))
            .extract_inner("ops")
            .unwrap();
        for op in ops {
            let value = op.value.and_then(|v| v.into_string());
            if let (Some(key), Some(value)) = (op.path.strip_prefix("/data/"), value) {
                production.insert(key.to_owned(), value);
            }
        }
    }
    assert!(
        production.len() > base.len(),
        "the overlay's settings were read"
    );
    for (name, vars) in [("base", base), ("production", production)] {
        let mut figment = crate::helpers::test_figment();
        for (key, value) in &vars {
            let Some(path) = key.strip_prefix("USERS__") else {
                continue;
            };
            let path = path.to_lowercase().replace("__", ".");
            let value: figment::value::Value = value.parse().unwrap();
            figment = figment.merge((path, value));
        }
        if name == "production" {
            // the overlay's Secret holds the direct URL its PgBouncer set-up needs (and says so)
            let overlay = std::fs::read_to_string(format!(
                "{root}/deploy/k8s/overlays/production/kustomization.yaml"
            ))
            .unwrap();
            assert!(overlay.contains("USERS__DATABASE__MIGRATE_URL="));
            figment = figment.merge((
                "database.migrate_url",
                "postgres://users@postgres-primary.identity:5432/users_service",
            ));
        }
        if let Err(e) = users_service::config::Settings::from_figment(figment) {
            panic!("{name}: {e}");
        }
    }
}

/// A YAML block sequence given as a string, nested under a key.
fn indent(block: &str) -> String {
    let lines: Vec<String> = block.lines().map(|l| format!("  {l}")).collect();
    format!("\n{}", lines.join("\n"))
}

/// Migrations that have shipped are never edited: a database that applied one refuses to start
/// when its text changes (sqlx compares checksums). Change the schema with a new migration and add
/// its line here. Each line: the version and the start of its SHA-384.
const SHIPPED_MIGRATIONS: &[(i64, &str)] = &[
    (20261121000001, "a8fb50abecdd5c0a"),
    (20261121000002, "b96d1a3dede0fd66"),
    (20261121000003, "956a6bfbcd37429f"),
    (20261130000001, "cb362bc904e4e852"),
    (20261130000002, "1b4e751d3ac8dea0"),
    (20261130000003, "b03d1e0ad59713b3"),
    (20261130000004, "e415273ffb1ebf14"),
    (20261130000005, "0020a6c14421dcd8"),
    (20261130000006, "8dae7fbcfb8abaf7"),
    (20261130000007, "ace8c7d1501431b8"),
    (20261130000008, "795de1c66b73947f"),
    (20261130000009, "e2117c1fc11bd28c"),
    (20261130000010, "d41d13816df59da1"),
];

#[test]
fn shipped_migrations_are_never_edited() {
    let shipped: Vec<(i64, String)> = users_service::app::MIGRATOR
        .iter()
        .map(|m| {
            let hex: String = m.checksum.iter().map(|b| format!("{b:02x}")).collect();
            (m.version, hex[..16].to_owned())
        })
        .collect();
    let expected: Vec<(i64, String)> = SHIPPED_MIGRATIONS
        .iter()
        .map(|(v, h)| (*v, (*h).to_owned()))
        .collect();
    assert_eq!(shipped, expected);
}
