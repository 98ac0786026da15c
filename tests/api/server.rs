//! Server routes: key checks and server sign-up.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, PASSWORD, SERVER_KEY};

const SIGN_UP: &str = "/api/v1/server/users/sign_up";

#[sqlx::test]
async fn server_routes_without_or_with_a_wrong_key_are_unauthenticated(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let body = json!({"email": "a@example.com", "password": PASSWORD, "first_name": "A"});
    app.post(SIGN_UP)
        .json(body.clone())
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let wrong = format!("{SERVER_KEY}x");
    for key in [wrong.as_str(), &SERVER_KEY[..SERVER_KEY.len() - 1], ""] {
        app.post(SIGN_UP)
            .bearer(key)
            .json(body.clone())
            .send()
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    app.post(SIGN_UP)
        .header("authorization", &format!("Basic {SERVER_KEY}"))
        .json(body)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn server_sign_up_creates_a_user_with_the_given_role(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = app
        .post(SIGN_UP)
        .server_key()
        .json(
            json!({"email": "a@example.com", "passw": PASSWORD, "firstname": "A", "role": "admin"}),
        )
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(res.json()["role"], "admin");
    let default = app
        .post(SIGN_UP)
        .server_key()
        .json(json!({"email": "b@example.com", "password": PASSWORD, "first_name": "B"}))
        .send()
        .await;
    assert_eq!(default.json()["role"], "methodist");
    assert_eq!(
        app.login("a@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn server_sign_up_works_when_public_sign_up_is_disabled(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.public_sign_up", false))).await;
    let res = app
        .post(SIGN_UP)
        .server_key()
        .json(json!({"email": "a@example.com", "password": PASSWORD, "first_name": "A"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
}

#[sqlx::test]
async fn server_sign_up_has_the_conflict_and_validation_errors(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("a@example.com").await;
    app.post(SIGN_UP)
        .server_key()
        .json(json!({"email": "A@example.com", "password": PASSWORD, "first_name": "A"}))
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT, "email_taken");
    let bad_role = app
        .post(SIGN_UP)
        .server_key()
        .json(json!({"email": "b@example.com", "password": PASSWORD, "first_name": "B", "role": "root"}))
        .send()
        .await;
    bad_role.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(bad_role.json()["errors"][0]["field"], "role");
    app.post(SIGN_UP)
        .server_key()
        .json(json!({"email": "b@example.com", "password": "weakweak", "first_name": "B"}))
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
}
