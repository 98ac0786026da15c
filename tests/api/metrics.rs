//! `GET /metrics`: every series the contract lists, labelled by route template, never a raw path.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, PASSWORD};

async fn scrape(app: &TestApp) -> String {
    let res = app.get("/metrics").send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    res.text()
}

/// The value of the sample whose line starts with `series` (name and labels as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[sqlx::test]
async fn the_scrape_has_every_listed_series(pool: PgPool) {
    let app = TestApp::new(pool).await;
    // a family shows once it has a sample: a sign-up, a sign-in, a request
    app.signed_in("ann@example.com").await;
    app.get("/health/live").send().await;
    let text = scrape(&app).await;
    for series in [
        "http_requests_total",
        "http_request_duration_seconds",
        "users_sign_ins_total",
        "users_sign_ups_total",
        "password_hash_duration_seconds",
        "password_hash_waiting",
        "db_pool_connections",
        "outbox_pending",
        "messages_sent_total",
        "events_published_total",
        "users_service_build_info",
    ] {
        assert!(
            text.contains(&format!("# TYPE {series} ")),
            "{series} missing:\n{text}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &text,
            &format!("users_service_build_info{{version=\"{version}\"}}")
        ),
        Some(1.0)
    );
    assert!(sample(&text, "db_pool_connections{state=\"idle\"}").is_some());
    assert!(sample(&text, "db_pool_connections{state=\"in_use\"}").is_some());
    assert_eq!(sample(&text, "password_hash_waiting"), Some(0.0));
    for result in ["sent", "retry", "abandoned"] {
        assert!(sample(
            &text,
            &format!("messages_sent_total{{result=\"{result}\"}}")
        )
        .is_some());
    }
}

#[sqlx::test]
async fn requests_are_counted_by_route_template_or_unmatched(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("admin@example.com", "admin").await;
    let id = uuid::Uuid::now_v7();
    for _ in 0..2 {
        app.get(&format!("/api/v1/private/admin/users/{id}"))
            .bearer(&admin.access)
            .send()
            .await
            .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    }
    app.get("/no/such/path/0192c0de").send().await;
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "http_requests_total{method=\"GET\",route=\"/api/v1/private/admin/users/{id}\",status=\"404\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(1.0)
    );
    assert!(
        !text.contains(&id.to_string()),
        "a raw path leaked into a label"
    );
    assert!(!text.contains("0192c0de"));
    assert!(text.contains(
        "http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/private/admin/users/{id}\"} 2"
    ));
}

#[sqlx::test]
async fn sign_ins_sign_ups_and_hashing_are_counted(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.max_failed_logins", 2))).await;
    app.sign_up("ann@example.com").await;
    app.post("/api/v1/server/users/create_user")
        .server_key()
        .json(json!({"email": "srv@example.com", "first_name": "Srv"}))
        .send()
        .await;
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    for _ in 0..2 {
        app.login("ann@example.com", "wrong password here").await;
    }
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    let text = scrape(&app).await;
    let count = |labels: &str| sample(&text, &format!("users_sign_ins_total{{{labels}}}"));
    assert_eq!(
        count("method=\"password\",result=\"success\""),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count("method=\"password\",result=\"invalid_credentials\""),
        Some(2.0)
    );
    assert_eq!(count("method=\"password\",result=\"locked\""), Some(1.0));
    assert_eq!(
        sample(&text, "users_sign_ups_total{source=\"public\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "users_sign_ups_total{source=\"server\"}"),
        Some(1.0)
    );
    // sign-up, one right and two wrong passwords: four hashes
    assert_eq!(
        sample(&text, "password_hash_duration_seconds_count"),
        Some(4.0)
    );
    // the welcome mail waits (no courier in this test)
    assert_eq!(
        sample(&text, "outbox_pending{outbox=\"messages\"}"),
        Some(1.0)
    );
}

#[sqlx::test]
async fn metrics_can_be_turned_off(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("metrics.enabled", false))).await;
    app.get("/metrics")
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
}
