use axum::http::{header, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{unique_ip, TestApp, PASSWORD};

const PATH: &str = "/api/v1/public/users/login";

#[sqlx::test]
async fn login_sets_both_cookies_with_the_contract_attributes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = app.sign_up("ann@example.com").await;
    let res = app.login("ANN@example.com", PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    assert_eq!(body["user"]["id"], id);
    let access = res.set_cookie_line("access_token").unwrap();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=900",
    ] {
        assert!(
            access.split("; ").any(|a| a == attr),
            "{attr} missing in {access}"
        );
    }
    let refresh = res.set_cookie_line("refresh_token").unwrap();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/v1",
        "Max-Age=2592000",
    ] {
        assert!(
            refresh.split("; ").any(|a| a == attr),
            "{attr} missing in {refresh}"
        );
    }
    let (ua, ip): (Option<String>, Option<String>) =
        sqlx::query_as("select user_agent, ip from sessions where id = $1::uuid")
            .bind(body["session_id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(ua, None);
    assert!(ip.is_some());
}

#[sqlx::test]
async fn login_records_user_agent_and_ip_on_the_session(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let res = app
        .post(PATH)
        .json(json!({"email": "ann@example.com", "passw": PASSWORD}))
        .header("user-agent", "TestBrowser/1.0")
        .ip("198.51.100.23".parse().unwrap())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let (ua, ip): (Option<String>, Option<String>) =
        sqlx::query_as("select user_agent, ip from sessions where id = $1::uuid")
            .bind(res.json()["session_id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(ua.as_deref(), Some("TestBrowser/1.0"));
    assert_eq!(ip.as_deref(), Some("198.51.100.23"));
}

#[sqlx::test]
async fn login_with_wrong_password_or_unknown_email_is_the_same_invalid_credentials(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let wrong = app.login("ann@example.com", "not the right password").await;
    let unknown = app.login("nobody@example.com", PASSWORD).await;
    wrong.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    unknown.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(wrong.body, unknown.body);
    assert!(wrong.set_cookies().is_empty());
    assert_eq!(
        app.scalar_i64("select count(*) from sessions where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn login_of_a_soft_deleted_account_with_the_right_password_is_account_deleted(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = app.sign_up("ann@example.com").await;
    sqlx::query("update users set status = 'deleted', deleted_at = now() where id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "account_deleted");
    app.login("ann@example.com", "wrong password here")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(
        app.scalar_i64("select count(*) from sessions where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn login_of_an_account_without_a_password_is_invalid_credentials(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = app.sign_up("ann@example.com").await;
    sqlx::query("update users set password_hash = null where id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[sqlx::test]
async fn ten_wrong_passwords_from_different_ips_lock_the_account(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    for _ in 0..10 {
        app.login("ann@example.com", "wrong password here")
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // each attempt above came from its own IP: the lockout is per account, not per address
    let res = app.login("ann@example.com", PASSWORD).await;
    res.assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    let retry: u64 = res.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // the counter lives in the database, so every instance sees it
    let counted = app
        .scalar_i64(
            "select failures::bigint from login_throttle where email_key = $1",
            "ann@example.com",
        )
        .await;
    assert!(counted > 10, "{counted}");
}

#[sqlx::test]
async fn the_lockout_ends_when_the_window_passes(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.max_failed_logins", 2))).await;
    app.sign_up("ann@example.com").await;
    for _ in 0..2 {
        app.login("ann@example.com", "wrong password here").await;
    }
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    sqlx::query("update login_throttle set window_started_at = now() - interval '901 seconds'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.scalar_i64("select count(*) from login_throttle where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn unknown_emails_are_locked_out_too_so_the_lockout_reveals_nothing(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.max_failed_logins", 3))).await;
    for _ in 0..3 {
        app.login("ghost@example.com", "whatever password").await;
    }
    app.login("ghost@example.com", "whatever password")
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
}

#[sqlx::test]
async fn login_beyond_the_per_ip_budget_is_rate_limited_with_retry_after(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("rate_limit.login_per_minute", 3))).await;
    app.sign_up("ann@example.com").await;
    let ip = "203.0.113.5".parse().unwrap();
    for _ in 0..3 {
        let res = app
            .post(PATH)
            .json(json!({"email": "ann@example.com", "password": PASSWORD}))
            .ip(ip)
            .send()
            .await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let res = app
        .post(PATH)
        .json(json!({"email": "ann@example.com", "password": PASSWORD}))
        .ip(ip)
        .send()
        .await;
    res.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = res.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // another address has its own budget
    let other = app
        .post(PATH)
        .json(json!({"email": "ann@example.com", "password": PASSWORD}))
        .ip(unique_ip())
        .send()
        .await;
    assert_eq!(other.status, StatusCode::OK);
}

#[sqlx::test]
async fn forwarded_for_is_the_client_only_behind_a_trusted_proxy(pool: PgPool) {
    let app = TestApp::with(pool, |f| {
        f.merge(("rate_limit.login_per_minute", 1))
            .merge(("server.trusted_proxies", vec!["10.9.0.0/16"]))
    })
    .await;
    let proxy = "10.9.0.1".parse().unwrap();
    let body = json!({"email": "nobody@example.com", "password": PASSWORD});
    for client in ["198.51.100.1", "198.51.100.2"] {
        let res = app
            .post(PATH)
            .json(body.clone())
            .ip(proxy)
            .header("x-forwarded-for", client)
            .send()
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "each forwarded client has its own budget"
        );
    }
    let again = app
        .post(PATH)
        .json(body.clone())
        .ip(proxy)
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await;
    again.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // from an untrusted peer the header is ignored: the peer itself is the client
    let stranger = "198.51.100.77".parse().unwrap();
    let first = app
        .post(PATH)
        .json(body.clone())
        .ip(stranger)
        .header("x-forwarded-for", "1.1.1.1")
        .send()
        .await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    let second = app
        .post(PATH)
        .json(body)
        .ip(stranger)
        .header("x-forwarded-for", "2.2.2.2")
        .send()
        .await;
    second.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[sqlx::test]
async fn login_rehashes_a_password_hashed_with_old_parameters(pool: PgPool) {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let app = TestApp::new(pool).await;
    let id = app.sign_up("ann@example.com").await;
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8192, 1, 1, None).unwrap(),
    );
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let old = weak
        .hash_password(PASSWORD.as_bytes(), &salt)
        .unwrap()
        .to_string();
    sqlx::query("update users set password_hash = $2 where id = $1::uuid")
        .bind(&id)
        .bind(&old)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    let now: String = sqlx::query_scalar("select password_hash from users where id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(now.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{now}");
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}
