//! Every state change writes exactly one audit record, in its own transaction; failures write none.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, PASSWORD};

#[sqlx::test]
async fn each_state_change_writes_one_record_with_its_actor(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let s = app.signed_in("ann@example.com").await;
    let id = s.user_id.clone();
    app.login("ann@example.com", "wrong password here").await;
    let second = app.tokens("ann@example.com", PASSWORD).await;
    app.delete(&format!(
        "/api/v1/private/users/seances/{}",
        second["session_id"].as_str().unwrap()
    ))
    .cookies(&s)
    .send()
    .await;
    app.req(axum::http::Method::PATCH, "/api/v1/private/users/me")
        .cookies(&s)
        .json(json!({"last_name": "L"}))
        .send()
        .await;
    app.put("/api/v1/private/users/me/contacts")
        .cookies(&s)
        .json(json!({"phone": "+79990000009", "current_password": PASSWORD}))
        .send()
        .await;
    app.put("/api/v1/private/users/me/password")
        .cookies(&s)
        .json(json!({"current_password": PASSWORD, "new_password": "another good passphrase"}))
        .send()
        .await;
    app.delete("/api/v1/private/users/seances")
        .cookies(&s)
        .send()
        .await;
    app.put(&format!("/api/v1/private/admin/users/{id}/role"))
        .cookies(&admin)
        .json(json!({"role": "readonly"}))
        .send()
        .await;
    let token = app
        .post("/api/v1/server/users/passw/reset_token")
        .server_key()
        .json(json!({"user_id": id}))
        .send()
        .await
        .json()["reset_token"]
        .clone();
    app.put("/api/v1/public/users/passw/reset")
        .json(json!({"reset_token": token, "password": PASSWORD}))
        .send()
        .await;
    let s = app.login("ann@example.com", PASSWORD).await;
    let cookie = format!(
        "access_token={}; refresh_token={}",
        s.cookie("access_token").unwrap(),
        s.cookie("refresh_token").unwrap()
    );
    app.put("/api/v1/private/users/logout")
        .header("cookie", &cookie)
        .send()
        .await;
    app.delete(&format!("/api/v1/private/admin/users/{id}"))
        .cookies(&admin)
        .send()
        .await;
    app.post(&format!("/api/v1/private/admin/users/{id}/restore"))
        .cookies(&admin)
        .send()
        .await;

    assert_eq!(
        app.audit_actions(&id).await,
        [
            "user.sign_up",
            "auth.login",
            "auth.login_failed",
            "auth.login",
            "session.revoke",
            "user.profile_update",
            "user.contacts_update",
            "user.password_change",
            "session.revoke_all",
            "user.role_change",
            "user.reset_token_issue",
            "user.password_reset",
            "auth.login",
            "session.logout",
            "user.soft_delete",
            "user.restore",
        ]
    );
    let actors: Vec<(String, String)> = sqlx::query_as(
        "select action, actor from audit_log where target_user_id = $1::uuid order by id",
    )
    .bind(&id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let actor_of = |action: &str| {
        actors
            .iter()
            .find(|(a, _)| a == action)
            .map(|(_, who)| who.clone())
            .unwrap()
    };
    assert_eq!(actor_of("user.sign_up"), format!("user:{id}"));
    assert_eq!(actor_of("auth.login_failed"), "anonymous");
    assert_eq!(
        actor_of("user.role_change"),
        format!("user:{}", admin.user_id)
    );
    assert_eq!(actor_of("user.reset_token_issue"), "server:tests");
    let details: serde_json::Value =
        sqlx::query_scalar("select details from audit_log where action = 'user.role_change'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(details, json!({"from": "methodist", "to": "readonly"}));
}

#[sqlx::test]
async fn a_failed_change_writes_no_record(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.sign_up("ann@example.com").await;
    let before = app
        .scalar_i64("select count(*) from audit_log where $1 = $1", "")
        .await;
    app.post("/api/v1/public/users/sign_up")
        .json(json!({"email": "ann@example.com", "password": PASSWORD, "first_name": "Ann"}))
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT, "email_taken");
    app.put("/api/v1/server/users/recovery-user")
        .server_key()
        .json(json!({"user_id": ann}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_active");
    assert_eq!(
        app.scalar_i64("select count(*) from audit_log where $1 = $1", "")
            .await,
        before
    );
}

#[sqlx::test]
async fn audit_records_carry_no_secrets(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    app.login("ann@example.com", "a wrong secret password")
        .await;
    let all: String = sqlx::query_scalar(
        "select coalesce(string_agg(details::text || actor, ' '), '') from audit_log",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    for secret in [PASSWORD, "a wrong secret password", &s.access, &s.refresh] {
        assert!(!all.contains(secret), "{secret}");
    }
}
