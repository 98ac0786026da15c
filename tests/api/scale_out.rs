//! Two instances on one database: what one does, the other sees. Budgets are shared through the
//! real Redis (127.0.0.1:6379) under a key prefix of each test's own.

use std::net::IpAddr;

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{free_port, TestApp, TestResponse, PASSWORD};

/// An instance with these settings, and a second one over the same database and settings.
async fn two(pool: PgPool, settings: &[(&str, serde_json::Value)]) -> (TestApp, TestApp) {
    let settings: Vec<(String, serde_json::Value)> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let a = TestApp::with(pool, move |mut f| {
        for (k, v) in settings {
            f = f.merge((k, v));
        }
        f
    })
    .await;
    let b = TestApp::from_state(
        users_service::app::state(a.state.settings.clone(), a.pool.clone())
            .await
            .unwrap(),
    )
    .await;
    (a, b)
}

fn prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

async fn login_from(app: &TestApp, ip: IpAddr) -> TestResponse {
    app.post("/api/v1/public/users/login")
        .ip(ip)
        // a new address each time: the per-account lockout stays out of the way
        .json(json!({"email": format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple()), "password": "not the password"}))
        .send()
        .await
}

#[sqlx::test]
async fn a_budget_is_shared_through_redis_and_not_without_it(pool: PgPool) {
    let (a, b) = two(
        pool.clone(),
        &[
            ("rate_limit.login_per_minute", json!(3)),
            ("rate_limit.redis_url", json!("redis://127.0.0.1:6379/0")),
            ("rate_limit.redis_prefix", json!(prefix())),
        ],
    )
    .await;
    // the connection is made in the background: wait until a check no longer fails open
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    let probe: IpAddr = "198.51.100.250".parse().unwrap();
    let errors = || async {
        a.scrape_counter("rate_limit_backend_errors_total").await
            + b.scrape_counter("rate_limit_backend_errors_total").await
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let before = errors().await;
        login_from(&a, probe).await;
        login_from(&b, probe).await;
        if errors().await == before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Redis never answered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for (app, n) in [(&a, 1), (&b, 2), (&a, 3)] {
        let res = login_from(app, ip).await;
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "call {n}: {}",
            res.text()
        );
    }
    let res = login_from(&b, ip).await;
    res.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(res.headers.contains_key("retry-after"));

    // in process: each instance counts alone
    let (c, d) = two(pool, &[("rate_limit.login_per_minute", json!(3))]).await;
    for app in [&c, &c, &c, &d, &d, &d] {
        assert_eq!(login_from(app, ip).await.status, StatusCode::UNAUTHORIZED);
    }
    login_from(&c, ip)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[sqlx::test]
async fn a_redis_that_does_not_answer_fails_open_and_is_counted(pool: PgPool) {
    let port = free_port();
    let (a, _) = two(
        pool,
        &[
            ("rate_limit.login_per_minute", json!(1)),
            (
                "rate_limit.redis_url",
                json!(format!("redis://127.0.0.1:{port}/0")),
            ),
        ],
    )
    .await;
    let ip: IpAddr = "198.51.100.8".parse().unwrap();
    for _ in 0..4 {
        assert_eq!(login_from(&a, ip).await.status, StatusCode::UNAUTHORIZED);
    }
    assert!(a.scrape_counter("rate_limit_backend_errors_total").await >= 4.0);
    // the lockout lives in PostgreSQL and still holds
    a.sign_up("ann@example.com").await;
}

#[sqlx::test]
async fn an_ipv6_network_shares_one_budget(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("rate_limit.login_per_minute", 2))).await;
    for ip in ["2001:db8:5:6::1", "2001:db8:5:6:ffff::2"] {
        assert_eq!(
            login_from(&app, ip.parse().unwrap()).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    login_from(&app, "2001:db8:5:6::3".parse().unwrap())
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // the next /64 is someone else
    assert_eq!(
        login_from(&app, "2001:db8:5:7::1".parse().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // an IPv4-mapped address is its IPv4 address
    for _ in 0..2 {
        assert_eq!(
            login_from(&app, "203.0.113.9".parse().unwrap())
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    login_from(&app, "::ffff:203.0.113.9".parse().unwrap())
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[sqlx::test]
async fn a_logout_on_one_instance_is_dead_on_the_other_at_once(pool: PgPool) {
    let (a, b) = two(pool, &[]).await;
    let ann = a.signed_in("ann@example.com").await;
    let me = "/api/v1/private/users/me";
    assert_eq!(
        b.get(me).bearer(&ann.access).send().await.status,
        StatusCode::OK
    );
    assert_eq!(
        a.put("/api/v1/private/users/logout")
            .bearer(&ann.access)
            .send()
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    b.get(me)
        .bearer(&ann.access)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn the_lockout_holds_across_instances(pool: PgPool) {
    let (a, b) = two(pool, &[("auth.max_failed_logins", json!(3))]).await;
    a.sign_up("ann@example.com").await;
    for app in [&a, &b, &a] {
        app.login("ann@example.com", "wrong password here").await;
    }
    b.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
}

#[sqlx::test]
async fn the_purge_runs_once_per_account_with_two_instances(pool: PgPool) {
    let (a, b) = two(pool, &[]).await;
    sqlx::query(
        "insert into users (id, email, first_name, role, status, deleted_at)
         select gen_random_uuid(), 'gone' || g || '@example.com', 'G', 'readonly', 'deleted',
                now() - interval '40 days'
         from generate_series(1, 300) g",
    )
    .execute(&a.pool)
    .await
    .unwrap();
    let (x, y) = tokio::join!(
        users_service::service::lifecycle::purge_expired(&a.state),
        users_service::service::lifecycle::purge_expired(&b.state)
    );
    assert_eq!(x.unwrap() + y.unwrap(), 300);
    let records = a
        .scalar_i64(
            "select count(*) from audit_log where action = 'user.permanent_delete' and $1 = $1",
            "",
        )
        .await;
    assert_eq!(records, 300);
    let events = a
        .scalar_i64(
            "select count(distinct user_id) + count(*) from events where type = 'user.purged' and $1 = $1",
            "",
        )
        .await;
    assert_eq!(events, 600, "one event per account");
    let left = a
        .scalar_i64(
            "select count(*) from users where status = 'deleted' and $1 = $1",
            "",
        )
        .await;
    assert_eq!(left, 0);
}
