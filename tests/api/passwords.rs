//! Password change, reset tokens (server), and reset (public and server).

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, PASSWORD};

const CHANGE: &str = "/api/v1/private/users/me/password";
const RESET_TOKEN: &str = "/api/v1/server/users/passw/reset_token";
const PUBLIC_RESET: &str = "/api/v1/public/users/passw/reset";
const SERVER_RESET: &str = "/api/v1/server/users/passw/set_new_passw";
const NEW_PASSWORD: &str = "a brand new passphrase 2026";

async fn reset_token(app: &TestApp, body: serde_json::Value) -> crate::helpers::TestResponse {
    app.post(RESET_TOKEN).server_key().json(body).send().await
}

#[sqlx::test]
async fn changing_the_password_revokes_every_other_session(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let other = app.tokens("ann@example.com", PASSWORD).await;
    let res = app
        .put(CHANGE)
        .cookies(&s)
        .json(json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert_eq!(
        app.get("/api/v1/private/users/me")
            .cookies(&s)
            .send()
            .await
            .status,
        StatusCode::OK
    );
    app.get("/api/v1/private/users/me")
        .bearer(other["access_token"].as_str().unwrap())
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(
        app.login("ann@example.com", NEW_PASSWORD).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn changing_the_password_with_a_wrong_current_one_is_invalid_credentials(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .put(CHANGE)
        .cookies(&s)
        .json(json!({"current_password": "not my password", "new_password": NEW_PASSWORD}))
        .send()
        .await;
    res.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn changing_to_a_weak_password_is_weak_password(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .put(CHANGE)
        .cookies(&s)
        .json(json!({"current_password": PASSWORD, "new_password": "12345678"}))
        .send()
        .await;
    res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn a_server_issues_a_reset_token_by_email_or_id_stored_only_as_a_hash(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = app.sign_up("ann@example.com").await;
    for body in [json!({"email": "ANN@example.com"}), json!({"user_id": id})] {
        let res = reset_token(&app, body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        let token = res.json()["reset_token"].as_str().unwrap().to_owned();
        assert!(token.len() >= 43, "at least 256 bits: {token}");
        assert!(res.json()["expires_at"].is_string());
        let as_hash = app
            .scalar_i64("select count(*) from password_reset_tokens where token_hash = sha256(convert_to($1, 'utf8'))", &token)
            .await;
        assert_eq!(as_hash, 1, "stored as its SHA-256");
        let as_text = app
            .scalar_i64("select count(*) from password_reset_tokens where token_hash = convert_to($1, 'utf8')", &token)
            .await;
        assert_eq!(as_text, 0, "the token itself is never stored");
    }
    assert_eq!(
        app.scalar_i64(
            "select count(*) from password_reset_tokens where user_id = $1::uuid",
            &id
        )
        .await,
        2
    );
}

#[sqlx::test]
async fn a_reset_token_for_an_unknown_user_is_user_not_found(pool: PgPool) {
    let app = TestApp::new(pool).await;
    reset_token(&app, json!({"email": "nobody@example.com"}))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    reset_token(&app, json!({"user_id": uuid::Uuid::new_v4()}))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    for body in [
        json!({}),
        json!({"email": "a@example.com", "user_id": uuid::Uuid::new_v4()}),
    ] {
        reset_token(&app, body)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
}

#[sqlx::test]
async fn a_public_reset_sets_the_password_and_revokes_every_session_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let token = reset_token(&app, json!({"email": "ann@example.com"}))
        .await
        .json()["reset_token"]
        .clone();
    let res = app
        .put(PUBLIC_RESET)
        .json(json!({"reset_token": token, "password": NEW_PASSWORD}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    app.get("/api/v1/private/users/me")
        .cookies(&s)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(
        app.login("ann@example.com", NEW_PASSWORD).await.status,
        StatusCode::OK
    );
    // single use
    app.put(PUBLIC_RESET)
        .json(json!({"reset_token": token, "passw": "yet another passphrase 99"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_reset_token");
}

#[sqlx::test]
async fn unknown_and_expired_reset_tokens_are_invalid_reset_token(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    app.put(PUBLIC_RESET)
        .json(json!({"reset_token": "made-up", "password": NEW_PASSWORD}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_reset_token");
    let token = reset_token(&app, json!({"email": "ann@example.com"}))
        .await
        .json()["reset_token"]
        .clone();
    sqlx::query("update password_reset_tokens set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    app.put(SERVER_RESET)
        .server_key()
        .json(json!({"reset_token": token, "password": NEW_PASSWORD}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_reset_token");
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn a_reset_to_a_weak_password_is_weak_password_and_keeps_the_token(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let token = reset_token(&app, json!({"email": "ann@example.com"}))
        .await
        .json()["reset_token"]
        .clone();
    app.put(PUBLIC_RESET)
        .json(json!({"reset_token": token, "password": "password"}))
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    let res = app
        .put(PUBLIC_RESET)
        .json(json!({"reset_token": token, "password": NEW_PASSWORD}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
}

#[sqlx::test]
async fn the_server_reset_works_like_the_public_one_and_lifts_a_lockout(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.max_failed_logins", 2))).await;
    app.sign_up("ann@example.com").await;
    for _ in 0..2 {
        app.login("ann@example.com", "wrong password here").await;
    }
    let token = reset_token(&app, json!({"email": "ann@example.com"}))
        .await
        .json()["reset_token"]
        .clone();
    let res = app
        .put(SERVER_RESET)
        .server_key()
        .json(json!({"reset_token": token, "passw": NEW_PASSWORD}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert_eq!(
        app.login("ann@example.com", NEW_PASSWORD).await.status,
        StatusCode::OK
    );
}
