//! A database outage answers 503 quickly, and the service recovers by itself when the database
//! returns. Uses a PostgreSQL this test starts and stops itself (initdb + pg_ctl on a free port).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use figment::providers::Serialized;
use sqlx::PgPool;
use users_service::app;
use users_service::config::Settings;

use crate::helpers::{free_port, PASSWORD};

pub(crate) struct TempPostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

impl TempPostgres {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = pg_bindir();
        let port = free_port();
        let pg = Self { dir, port, bin };
        if is_root() {
            // initdb and postgres refuse to run as root
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path()));
        }
        run(&mut pg.command(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        ));
        pg.ctl_start();
        pg
    }

    pub(crate) fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub(crate) fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args);
        cmd
    }

    pub(crate) fn ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        run(&mut self.command(
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        ));
    }

    pub(crate) fn stop(&self) {
        run(&mut self.command(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        ));
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/users_outage", self.port)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

fn pg_bindir() -> PathBuf {
    let from_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .and_then(|o| {
            o.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        });
    from_config
        .filter(|p| p.join("initdb").exists())
        .or_else(|| {
            std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .flatten()
                .map(|e| e.path().join("bin"))
                .find(|p| p.join("initdb").exists())
        })
        .unwrap_or_else(|| Path::new("/usr/bin").to_path_buf())
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// The `pool` argument is unused: this test owns its own server. Taking it keeps the test on the
// same harness (and DATABASE_URL check) as the rest.
#[sqlx::test]
async fn a_database_outage_is_503_and_the_service_recovers_without_restart(_pool: PgPool) {
    let pg = TempPostgres::start();
    let figment = Settings::figment(None)
        .merge(Serialized::default("database.url", pg.url()))
        .merge(Serialized::default("database.acquire_timeout_secs", 1));
    let settings = Settings::from_figment(figment).unwrap();
    let pool = app::migrate(&settings).await.unwrap();
    let state = users_service::app::state(settings, pool).await.unwrap();
    let app = crate::helpers::TestApp::from_state(state).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/api/v1/private/users/me")
            .bearer(&access)
            .send()
            .await
            .status,
        StatusCode::OK
    );

    pg.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let res = app
            .get("/api/v1/private/users/me")
            .bearer(&access)
            .send()
            .await;
        res.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    app.get("/health/ready")
        .send()
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(app.get("/health/live").send().await.status, StatusCode::OK);
    // a scrape still answers, with the pool gauges as they are
    let scrape = app.get("/metrics").send().await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert!(scrape
        .text()
        .contains("db_pool_connections{state=\"in_use\"}"));
    assert!(scrape
        .text()
        .contains("http_requests_total{method=\"GET\",route=\"/health/ready\",status=\"503\"} 1"));

    pg.ctl_start();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = app
            .get("/api/v1/private/users/me")
            .bearer(&access)
            .send()
            .await
            .status;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered within 10 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.get("/health/ready").send().await.status, StatusCode::OK);
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}
