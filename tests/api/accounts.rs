//! Self-service account changes: profile, contacts, soft delete and restore.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, PASSWORD};

const ME: &str = "/api/v1/private/users/me";
const CONTACTS: &str = "/api/v1/private/users/me/contacts";
const RESTORE: &str = "/api/v1/public/users/restore";

#[sqlx::test]
async fn patching_me_changes_only_the_given_names(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .req(axum::http::Method::PATCH, ME)
        .cookies(&s)
        .json(json!({"lastname": "Smith", "middle_name": "M"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let user = res.json();
    assert_eq!(
        (user["first_name"].as_str(), user["last_name"].as_str()),
        (Some("Ann"), Some("Smith"))
    );
    let cleared = app
        .req(axum::http::Method::PATCH, ME)
        .cookies(&s)
        .json(json!({"first_name": " Anna ", "middle_name": null}))
        .send()
        .await
        .json();
    assert_eq!(cleared["first_name"], "Anna");
    assert_eq!(cleared["last_name"], "Smith");
    assert!(cleared["middle_name"].is_null());
    assert_eq!(
        app.audit_actions(&s.user_id)
            .await
            .iter()
            .filter(|a| *a == "user.profile_update")
            .count(),
        2
    );
}

#[sqlx::test]
async fn patching_me_with_a_blank_name_is_validation_failed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .req(axum::http::Method::PATCH, ME)
        .cookies(&s)
        .json(json!({"first_name": " "}))
        .send()
        .await;
    res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(
        app.get(ME).cookies(&s).send().await.json()["first_name"],
        "Ann"
    );
}

#[sqlx::test]
async fn changing_contacts_needs_the_current_password(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .put(CONTACTS)
        .cookies(&s)
        .json(json!({"email": "new@example.com", "phone": "+7 999 000 11 22", "current_password": PASSWORD}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        (res.json()["email"].as_str(), res.json()["phone"].as_str()),
        (Some("new@example.com"), Some("+79990001122"))
    );
    assert_eq!(
        app.login("new@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    let removed = app
        .put(CONTACTS)
        .cookies(&s)
        .json(json!({"phone": null, "current_password": PASSWORD}))
        .send()
        .await;
    assert!(removed.json()["phone"].is_null());
    app.put(CONTACTS)
        .cookies(&s)
        .json(json!({"email": "other@example.com", "current_password": "not my password"}))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(
        app.get(ME).cookies(&s).send().await.json()["email"],
        "new@example.com"
    );
}

#[sqlx::test]
async fn changing_contacts_to_taken_ones_is_a_conflict(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.post("/api/v1/public/users/sign_up")
        .json(json!({"email": "bob@example.com", "password": PASSWORD, "first_name": "Bob", "phone": "+79990000001"}))
        .send()
        .await;
    let s = app.signed_in("ann@example.com").await;
    app.put(CONTACTS)
        .cookies(&s)
        .json(json!({"email": "BOB@example.com", "current_password": PASSWORD}))
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT, "email_taken");
    app.put(CONTACTS)
        .cookies(&s)
        .json(json!({"phone": 79990000001u64, "current_password": PASSWORD}))
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT, "phone_taken");
    app.put(CONTACTS)
        .cookies(&s)
        .json(json!({"phone": "call me", "current_password": PASSWORD}))
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_contacts");
    let unchanged = app.get(ME).cookies(&s).send().await.json();
    assert_eq!(unchanged["email"], "ann@example.com");
    assert!(unchanged["phone"].is_null());
}

#[sqlx::test]
async fn deleting_me_soft_deletes_revokes_everything_and_clears_cookies(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let other = app.tokens("ann@example.com", PASSWORD).await;
    let res = app.delete(ME).cookies(&s).send().await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(res.clears_cookies());
    let (status, deleted_at): (String, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("select status, deleted_at from users where id = $1::uuid")
            .bind(&s.user_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(status, "deleted");
    assert!(deleted_at.is_some());
    app.get(ME)
        .bearer(other["access_token"].as_str().unwrap())
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "account_deleted");
    // the email stays reserved
    app.post("/api/v1/public/users/sign_up")
        .json(json!({"email": "ann@example.com", "password": PASSWORD, "first_name": "Ann"}))
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT, "email_taken");
}

#[sqlx::test]
async fn a_soft_deleted_user_restores_with_email_and_password(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    app.delete(ME).cookies(&s).send().await;
    app.post(RESTORE)
        .json(json!({"email": "ann@example.com", "password": "not my password"}))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let res = app
        .post(RESTORE)
        .json(json!({"email": "ann@example.com", "passw": PASSWORD}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["status"], "active");
    assert!(res.json()["deleted_at"].is_null());
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    app.post(RESTORE)
        .json(json!({"email": "ann@example.com", "password": PASSWORD}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_active");
    app.post(RESTORE)
        .json(json!({"email": "nobody@example.com", "password": PASSWORD}))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[sqlx::test]
async fn the_last_admin_cannot_delete_itself(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    app.delete(ME)
        .cookies(&admin)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "last_admin");
    assert_eq!(
        app.get(ME).cookies(&admin).send().await.status,
        StatusCode::OK
    );
}
