//! Refresh rotation, the reuse grace window, reuse detection and auto-refresh.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use users_service::auth::jwt::TokenKind;
use users_service::domain::Role;

use crate::helpers::{Session, TestApp, ALLOWED_ORIGIN, PASSWORD};

const REFRESH: &str = "/api/v1/public/users/refresh";
const ME: &str = "/api/v1/private/users/me";

async fn refresh_body(app: &TestApp, token: &str) -> crate::helpers::TestResponse {
    app.post(REFRESH)
        .json(json!({"refresh_token": token}))
        .send()
        .await
}

async fn session_revoked(app: &TestApp, session_id: &str) -> bool {
    sqlx::query_scalar::<_, bool>("select revoked_at is not null from sessions where id = $1::uuid")
        .bind(session_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn refresh_in_body_form_rotates_and_stores_only_a_hash(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    let old = tokens["refresh_token"].as_str().unwrap();
    let res = refresh_body(&app, old).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let new = res.json();
    let new_refresh = new["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, old);
    assert_eq!(new["session_id"], tokens["session_id"]);
    assert!(res.set_cookies().is_empty());
    let stored: Vec<u8> =
        sqlx::query_scalar("select refresh_hash from sessions where id = $1::uuid")
            .bind(tokens["session_id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 32);
    assert_ne!(stored, new_refresh.as_bytes());
    assert_eq!(
        app.get(ME)
            .bearer(new["access_token"].as_str().unwrap())
            .send()
            .await
            .status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn refresh_in_cookie_form_answers_with_rotated_cookies(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .post(REFRESH)
        .header("cookie", &format!("refresh_token={}", s.refresh))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["session_id"], s.session_id);
    let new_refresh = res.cookie("refresh_token").unwrap();
    assert_ne!(new_refresh, s.refresh);
    assert!(res.cookie("access_token").is_some());
}

#[sqlx::test]
async fn refresh_without_a_token_or_with_garbage_is_unauthenticated(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.post(REFRESH)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    refresh_body(&app, "not-a-token")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let res = app
        .post(REFRESH)
        .header("cookie", "refresh_token=forged")
        .send()
        .await;
    res.assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(res.clears_cookies());
}

#[sqlx::test]
async fn an_access_token_is_not_a_refresh_token(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    refresh_body(&app, tokens["access_token"].as_str().unwrap())
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn a_rotated_token_reused_within_the_grace_window_gets_an_access_token_only(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    let old = tokens["refresh_token"].as_str().unwrap();
    let first = refresh_body(&app, old).await.json();
    let again = refresh_body(&app, old).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    let body = again.json();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(
        app.get(ME)
            .bearer(body["access_token"].as_str().unwrap())
            .send()
            .await
            .status,
        StatusCode::OK
    );
    // the session lives on, and the successor still rotates
    assert!(!session_revoked(&app, tokens["session_id"].as_str().unwrap()).await);
    assert_eq!(
        refresh_body(&app, first["refresh_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn two_racing_refreshes_with_one_token_both_succeed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    let token = tokens["refresh_token"].as_str().unwrap();
    let (a, b) = tokio::join!(refresh_body(&app, token), refresh_body(&app, token));
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    let rotated = [a.json(), b.json()]
        .iter()
        .filter(|r| r.get("refresh_token").is_some())
        .count();
    assert_eq!(rotated, 1);
    assert!(!session_revoked(&app, tokens["session_id"].as_str().unwrap()).await);
}

#[sqlx::test]
async fn a_rotated_token_reused_after_the_grace_window_revokes_the_session(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.refresh_reuse_grace_secs", 0))).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    let old = tokens["refresh_token"].as_str().unwrap();
    let newer = refresh_body(&app, old).await.json();
    let reuse = refresh_body(&app, old).await;
    reuse.assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(session_revoked(&app, tokens["session_id"].as_str().unwrap()).await);
    // the successor dies with the session, and so do its access tokens
    refresh_body(&app, newer["refresh_token"].as_str().unwrap())
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.get(ME)
        .bearer(newer["access_token"].as_str().unwrap())
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn refresh_of_a_revoked_session_is_unauthenticated_and_clears_cookies(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    app.put("/api/v1/private/users/logout")
        .cookies(&s)
        .send()
        .await;
    let res = app
        .post(REFRESH)
        .header("cookie", &format!("refresh_token={}", s.refresh))
        .send()
        .await;
    res.assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(res.clears_cookies());
}

#[sqlx::test]
async fn refresh_in_cookie_form_from_a_foreign_origin_is_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .post(REFRESH)
        .header("cookie", &format!("refresh_token={}", s.refresh))
        .header("origin", "https://evil.example")
        .send()
        .await;
    res.assert_problem(StatusCode::FORBIDDEN, "origin_not_allowed");
    let ok = app
        .post(REFRESH)
        .header("cookie", &format!("refresh_token={}", s.refresh))
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

fn expired_access(app: &TestApp, s: &Session) -> String {
    let (token, _) = app
        .state
        .keys
        .issue(
            TokenKind::Access,
            s.user_id.parse().unwrap(),
            s.session_id.parse().unwrap(),
            Some(Role::Methodist),
            &[],
            -1,
        )
        .unwrap();
    token
}

#[sqlx::test]
async fn an_expired_access_cookie_is_refreshed_on_the_fly(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let cookie = format!(
        "access_token={}; refresh_token={}",
        expired_access(&app, &s),
        s.refresh
    );
    let res = app.get(ME).header("cookie", &cookie).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["id"], s.user_id);
    let new_refresh = res.cookie("refresh_token").unwrap();
    assert_ne!(new_refresh, s.refresh);
    let new_access = res.cookie("access_token").unwrap();
    assert_eq!(
        app.get(ME).bearer(&new_access).send().await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn a_missing_access_cookie_is_refreshed_from_the_refresh_cookie(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .get(ME)
        .header("cookie", &format!("refresh_token={}", s.refresh))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.cookie("access_token").is_some() && res.cookie("refresh_token").is_some());
}

#[sqlx::test]
async fn an_expired_access_cookie_with_a_dead_refresh_cookie_is_unauthenticated(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let expired = expired_access(&app, &s);
    app.put("/api/v1/private/users/logout")
        .cookies(&s)
        .send()
        .await;
    let res = app
        .get(ME)
        .header(
            "cookie",
            &format!("access_token={expired}; refresh_token={}", s.refresh),
        )
        .send()
        .await;
    res.assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(res.clears_cookies());
}

#[sqlx::test]
async fn a_refresh_carries_the_role_the_user_has_now(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    sqlx::query("update users set role = 'readonly'")
        .execute(&app.pool)
        .await
        .unwrap();
    let res = refresh_body(&app, tokens["refresh_token"].as_str().unwrap())
        .await
        .json();
    let access = res["access_token"].as_str().unwrap();
    let claims = app.state.keys.verify(access, TokenKind::Access).unwrap();
    assert_eq!(claims.role, Some(Role::Readonly));
}
