//! The seed's server operations on accounts.

use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{TestApp, TestResponse, PASSWORD};

const BASE: &str = "/api/v1/server/users";

async fn call(app: &TestApp, method: &str, path: &str, body: Value) -> TestResponse {
    app.req(method.parse().unwrap(), &format!("{BASE}/{path}"))
        .server_key()
        .json(body)
        .send()
        .await
}

#[sqlx::test]
async fn create_user_makes_an_account_that_signs_in_after_a_reset(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = call(
        &app,
        "POST",
        "create_user",
        json!({"email": "ann@example.com", "phone": 79991112233u64, "name": "Ann", "role": "readonly"}),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let user = res.json();
    assert_eq!(
        (user["role"].as_str(), user["phone"].as_str()),
        (Some("readonly"), Some("+79991112233"))
    );
    let hash: Option<String> =
        sqlx::query_scalar("select password_hash from users where email = 'ann@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(hash.is_none());
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let token = call(
        &app,
        "POST",
        "passw/reset_token",
        json!({"user_id": user["id"]}),
    )
    .await
    .json()["reset_token"]
        .clone();
    let set = call(
        &app,
        "PUT",
        "passw/set_new_passw",
        json!({"reset_token": token, "password": PASSWORD}),
    )
    .await;
    assert_eq!(set.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn create_user_has_the_contract_errors(pool: PgPool) {
    let app = TestApp::new(pool).await;
    call(
        &app,
        "POST",
        "create_user",
        json!({"email": "ann@example.com", "first_name": "Ann", "phone": "+79990000001"}),
    )
    .await;
    call(
        &app,
        "POST",
        "create_user",
        json!({"email": "ANN@example.com", "first_name": "Ann"}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "email_taken");
    call(
        &app,
        "POST",
        "create_user",
        json!({"email": "b@example.com", "first_name": "B", "phone": "+79990000001"}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "phone_taken");
    for body in [
        json!({"email": "not an email", "first_name": "B"}),
        json!({"email": "b@example.com", "first_name": "B", "phone": "12"}),
    ] {
        let res = call(&app, "POST", "create_user", body).await;
        res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_contacts");
        assert!(res.json()["errors"][0]["field"].is_string());
    }
    call(
        &app,
        "POST",
        "create_user",
        json!({"email": "b@example.com"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        1
    );
}

#[sqlx::test]
async fn get_user_answers_the_user_with_linked_accounts_or_404(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = app.sign_up("ann@example.com").await;
    let res = app.get(&format!("{BASE}/{id}")).server_key().send().await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["email"], "ann@example.com");
    assert!(res.json()["linked_accounts"].is_array());
    app.get(&format!("{BASE}/{}", uuid::Uuid::new_v4()))
        .server_key()
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    app.get(&format!("{BASE}/{id}"))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn temporary_deletion_and_recovery_follow_the_lifecycle(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let id = json!({"user_id": s.user_id});
    assert_eq!(
        call(&app, "DELETE", "delete-user-temporarily", id.clone())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    app.get("/api/v1/private/users/me")
        .cookies(&s)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    call(&app, "DELETE", "delete-user-temporarily", id.clone())
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_deleted");
    call(
        &app,
        "PUT",
        "change-fullname",
        json!({"user_id": s.user_id, "first_name": "X"}),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "already_deleted");
    call(
        &app,
        "PUT",
        "change-contacts",
        json!({"user_id": s.user_id, "email": "x@example.com"}),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "already_deleted");
    let back = call(&app, "PUT", "recovery-user", id.clone()).await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(back.json()["status"], "active");
    call(&app, "PUT", "recovery-user", id)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_active");
    let unknown = json!({"user_id": uuid::Uuid::new_v4()});
    for (method, path) in [
        ("PUT", "recovery-user"),
        ("DELETE", "delete-user-temporarily"),
        ("DELETE", "delete-user-permanently"),
    ] {
        call(&app, method, path, unknown.clone())
            .await
            .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    }
    call(&app, "PUT", "recovery-user", json!({"user_id": "nope"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[sqlx::test]
async fn permanent_deletion_removes_the_user_and_its_sessions(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = call(
        &app,
        "DELETE",
        "delete-user-permanently",
        json!({"user_id": s.user_id}),
    )
    .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.scalar_i64("select count(*) from users where id = $1::uuid", &s.user_id)
            .await,
        0
    );
    assert_eq!(
        app.scalar_i64(
            "select count(*) from sessions where user_id = $1::uuid",
            &s.user_id
        )
        .await,
        0
    );
    let audit: String =
        sqlx::query_scalar("select actor from audit_log where action = 'user.permanent_delete'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audit, "server:tests");
}

#[sqlx::test]
async fn change_fullname_and_change_contacts_update_the_user(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let id = app.sign_up("ann@example.com").await;
    app.sign_up("bob@example.com").await;
    let named = call(
        &app,
        "PUT",
        "change-fullname",
        json!({"user_id": id, "firstname": "Anna", "lastname": "Lee"}),
    )
    .await;
    assert_eq!(named.status, StatusCode::OK, "{}", named.text());
    assert_eq!(
        (
            named.json()["first_name"].as_str(),
            named.json()["last_name"].as_str()
        ),
        (Some("Anna"), Some("Lee"))
    );
    let moved = call(
        &app,
        "PUT",
        "change-contacts",
        json!({"user_id": id, "email": "anna@example.com", "phone": "+79995550000"}),
    )
    .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text());
    assert_eq!(moved.json()["email"], "anna@example.com");
    call(
        &app,
        "PUT",
        "change-contacts",
        json!({"user_id": id, "email": "bob@example.com"}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "email_taken");
    call(
        &app,
        "PUT",
        "change-contacts",
        json!({"user_id": id, "email": "bob at example"}),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_contacts");
    call(
        &app,
        "PUT",
        "change-contacts",
        json!({"user_id": uuid::Uuid::new_v4(), "email": "z@example.com"}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    call(
        &app,
        "PUT",
        "change-fullname",
        json!({"user_id": uuid::Uuid::new_v4(), "first_name": "Z"}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    assert_eq!(
        app.login("anna@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}
