//! CSRF origin check, CORS, and secrets kept out of logs.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{captured_logs, TestApp, ALLOWED_ORIGIN, PASSWORD};

const LOGOUT: &str = "/api/v1/private/users/logout";

#[sqlx::test]
async fn a_cookie_request_from_a_foreign_origin_is_origin_not_allowed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    app.put(LOGOUT)
        .cookies(&s)
        .header("origin", "https://evil.example")
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "origin_not_allowed");
    app.delete("/api/v1/private/users/seances")
        .cookies(&s)
        .header("referer", "https://evil.example/attack.html")
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "origin_not_allowed");
    // nothing happened: the session is alive
    assert_eq!(
        app.get("/api/v1/private/users/me")
            .cookies(&s)
            .send()
            .await
            .status,
        StatusCode::OK
    );
    // safe methods are not checked; the allowed origin passes
    let read = app
        .get("/api/v1/private/users/me")
        .cookies(&s)
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(read.status, StatusCode::OK);
    let ok = app
        .put(LOGOUT)
        .cookies(&s)
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
}

#[sqlx::test]
async fn bearer_requests_are_not_subject_to_the_origin_check(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .put(LOGOUT)
        .bearer(&s.access)
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
}

#[sqlx::test]
async fn cors_allows_credentials_for_configured_origins_only(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let preflight = |origin: &'static str| {
        app.req(axum::http::Method::OPTIONS, "/api/v1/public/users/login")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight(ALLOWED_ORIGIN).await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );
    assert_eq!(allowed.headers["access-control-allow-credentials"], "true");
    let foreign = preflight("https://evil.example").await;
    assert!(foreign.headers.get("access-control-allow-origin").is_none());
}

#[sqlx::test]
async fn logs_never_contain_passwords_tokens_or_cookies(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let password = format!("secret-{}-passphrase", uuid::Uuid::new_v4());
    let new_password = format!("other-{}-passphrase", uuid::Uuid::new_v4());
    let sign_up = app
        .post("/api/v1/public/users/sign_up")
        .json(json!({"email": "log@example.com", "password": password, "first_name": "Log"}))
        .send()
        .await;
    assert_eq!(sign_up.status, StatusCode::CREATED);
    let wrong = app
        .login("log@example.com", "a wrong password for logs")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let login = app.login("log@example.com", &password).await;
    let access = login.cookie("access_token").unwrap();
    let refresh = login.cookie("refresh_token").unwrap();
    let me = app
        .get("/api/v1/private/users/me")
        .bearer(&access)
        .send()
        .await;
    assert_eq!(me.status, StatusCode::OK);
    let cookie = app
        .get("/api/v1/private/users/me")
        .header(
            "cookie",
            &format!("access_token={access}; refresh_token={refresh}"),
        )
        .send()
        .await;
    assert_eq!(cookie.status, StatusCode::OK);
    let refreshed = app
        .post("/api/v1/public/users/refresh")
        .json(json!({"refresh_token": refresh}))
        .send()
        .await;
    let refreshed_token = refreshed.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reset = app
        .post("/api/v1/server/users/passw/reset_token")
        .server_key()
        .json(json!({"email": "log@example.com"}))
        .send()
        .await;
    let reset_token = reset.json()["reset_token"].as_str().unwrap().to_owned();
    let done = app
        .put("/api/v1/public/users/passw/reset")
        .json(json!({"reset_token": reset_token, "password": new_password}))
        .send()
        .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT);

    let logs = captured_logs();
    assert!(logs.contains("login succeeded"), "the capture works");
    for secret in [
        password.as_str(),
        new_password.as_str(),
        "a wrong password for logs",
        &access,
        &refresh,
        &refreshed_token,
        &reset_token,
        crate::helpers::SERVER_KEY,
        PASSWORD,
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}
