//! Bad input is a problem+json answer that changes nothing; never a 500.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, PASSWORD};

const SIGN_UP: &str = "/api/v1/public/users/sign_up";

#[sqlx::test]
async fn malformed_json_is_malformed_body(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for body in [
        "{",
        "{\"email\": }",
        "[1,2",
        "nonsense",
        "{\"email\":\"a@b.cd\"} trailing",
    ] {
        app.post(SIGN_UP)
            .raw("application/json", body)
            .send()
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "malformed_body");
    }
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn a_body_of_the_wrong_shape_is_validation_failed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for body in ["[]", "42", "null", "\"text\""] {
        app.post(SIGN_UP)
            .raw("application/json", body)
            .send()
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
}

#[sqlx::test]
async fn a_body_that_is_not_json_is_unsupported_media_type(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = app
        .post(SIGN_UP)
        .raw("text/plain", "email=a@b.cd")
        .send()
        .await;
    res.assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let missing = app.post("/api/v1/public/users/login").send().await;
    missing.assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
}

#[sqlx::test]
async fn an_oversized_body_is_payload_too_large(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let huge =
        json!({"email": "a@example.com", "password": PASSWORD, "first_name": "x".repeat(70_000)});
    app.post(SIGN_UP)
        .json(huge)
        .send()
        .await
        .assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[sqlx::test]
async fn unknown_routes_are_404_and_wrong_methods_405_as_problems(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.get("/api/v1/public/nothing-here")
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    // an unknown private path is 404, not 401: auth runs only on routes that exist
    app.get("/api/v1/private/nothing-here")
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/v1/public/users/login")
        .send()
        .await
        .assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[sqlx::test]
async fn problems_have_the_rfc_9457_shape(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let res = app
        .post(SIGN_UP)
        .json(json!({"email": "ann@example.com", "password": PASSWORD, "first_name": "Ann"}))
        .send()
        .await;
    let body = res.json();
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["title"], "Conflict");
    assert_eq!(body["status"], 409);
    assert_eq!(body["code"], "email_taken");
    assert_eq!(body["detail"], "email is already taken");
}
