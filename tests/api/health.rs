//! Ops routes and the OpenAPI document.

use axum::http::{header, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestApp;

#[sqlx::test]
async fn live_ready_and_the_legacy_healthcheck_answer_their_exact_bodies(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let live = app.get("/health/live").send().await;
    assert_eq!(
        (live.status, live.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let ready = app.get("/health/ready").send().await;
    assert_eq!(ready.status, StatusCode::OK);
    let legacy = app.post("/api/v1/healthcheck").send().await;
    assert_eq!(
        (legacy.status, legacy.json()),
        (
            StatusCode::OK,
            json!({"status": 200, "result": {"status": "OK"}})
        )
    );
}

#[sqlx::test]
async fn every_response_carries_a_request_id_echoing_the_callers(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let generated = app.get("/health/live").send().await;
    assert_eq!(
        generated.headers["x-request-id"].to_str().unwrap().len(),
        36
    );
    let echoed = app
        .get("/health/live")
        .header("x-request-id", "abc-123")
        .send()
        .await;
    assert_eq!(echoed.headers["x-request-id"], "abc-123");
}

#[sqlx::test]
async fn the_openapi_document_describes_every_routed_operation(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let doc = app.get("/openapi.json").send().await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected = [
        ("post", "/api/v1/public/users/login"),
        ("post", "/api/v1/public/users/token"),
        ("post", "/api/v1/public/users/refresh"),
        ("post", "/api/v1/public/users/sign_up"),
        ("put", "/api/v1/public/users/passw/reset"),
        ("put", "/api/v1/private/users/logout"),
        ("get", "/api/v1/private/users/seances"),
        ("post", "/api/v1/private/users/seances"),
        ("delete", "/api/v1/private/users/seances"),
        ("delete", "/api/v1/private/users/seances/{id}"),
        ("get", "/api/v1/private/users/me"),
        ("put", "/api/v1/private/users/me/password"),
        ("post", "/api/v1/server/users/sign_up"),
        ("post", "/api/v1/server/users/passw/reset_token"),
        ("put", "/api/v1/server/users/passw/set_new_passw"),
        ("post", "/api/v1/public/users/restore"),
        ("patch", "/api/v1/private/users/me"),
        ("delete", "/api/v1/private/users/me"),
        ("put", "/api/v1/private/users/me/contacts"),
        ("put", "/api/v1/private/users/any"),
        ("get", "/api/v1/private/admin/users/{id}"),
        ("delete", "/api/v1/private/admin/users/{id}"),
        ("post", "/api/v1/private/admin/users/{id}/restore"),
        ("put", "/api/v1/private/admin/users/{id}/role"),
        ("delete", "/api/v1/private/admin/users/{id}/seances"),
        ("get", "/api/v1/private/admin/audit"),
        ("post", "/api/v1/server/users/create_user"),
        ("get", "/api/v1/server/users/{user_id}"),
        ("put", "/api/v1/server/users/recovery-user"),
        ("delete", "/api/v1/server/users/delete-user-temporarily"),
        ("delete", "/api/v1/server/users/delete-user-permanently"),
        ("put", "/api/v1/server/users/change-fullname"),
        ("put", "/api/v1/server/users/change-contacts"),
        ("post", "/api/v1/private/users/me/linked-accounts"),
        ("patch", "/api/v1/private/users/me/linked-accounts/{id}"),
        ("delete", "/api/v1/private/users/me/linked-accounts/{id}"),
        ("post", "/api/v1/server/users/link-social-network"),
        ("delete", "/api/v1/server/users/unlink-social-network"),
        (
            "put",
            "/api/v1/server/users/change-social-network-connection-reason",
        ),
        ("get", "/api/v1/public/oauth/yandex/authorize"),
        ("get", "/api/v1/public/oauth/yandex/callback"),
        ("post", "/api/v1/public/oauth/telegram"),
        ("post", "/api/v1/public/users/passw/forgot"),
        ("post", "/api/v1/public/users/email/verify"),
        ("post", "/api/v1/private/users/me/email/verification"),
        ("get", "/api/v1/private/admin/messages"),
        ("get", "/api/v1/server/events"),
        ("post", "/api/v1/server/users/{user_id}/notifications"),
        ("get", "/api/v1/private/users/me/notifications"),
        ("get", "/api/v1/private/users/me/notifications/unread_count"),
        ("put", "/api/v1/private/users/me/notifications/{id}/read"),
        ("put", "/api/v1/private/users/me/notifications/read"),
        ("delete", "/api/v1/private/users/me/notifications/{id}"),
        ("get", "/api/v1/private/users/me/notifications/stream"),
        ("post", "/api/v1/private/users/me/role-requests"),
        ("get", "/api/v1/private/users/me/role-requests"),
        ("delete", "/api/v1/private/users/me/role-requests/{id}"),
        ("get", "/api/v1/private/admin/role-requests"),
        ("post", "/api/v1/private/admin/role-requests/{id}/approve"),
        ("post", "/api/v1/private/admin/role-requests/{id}/reject"),
        ("post", "/api/v1/public/users/login/mfa"),
        ("post", "/api/v1/private/users/me/mfa/totp"),
        ("post", "/api/v1/private/users/me/mfa/totp/confirm"),
        ("post", "/api/v1/private/users/me/mfa/recovery-codes"),
        ("delete", "/api/v1/private/users/me/mfa"),
        ("delete", "/api/v1/private/admin/users/{id}/mfa"),
        (
            "post",
            "/api/v1/private/users/me/passkeys/registration/options",
        ),
        ("post", "/api/v1/private/users/me/passkeys/registration"),
        ("get", "/api/v1/private/users/me/passkeys"),
        ("patch", "/api/v1/private/users/me/passkeys/{id}"),
        ("delete", "/api/v1/private/users/me/passkeys/{id}"),
        ("post", "/api/v1/public/users/passkey/options"),
        ("post", "/api/v1/public/users/passkey/login"),
        ("get", "/api/v1/private/users/me/export"),
        ("get", "/api/v1/private/admin/users/{id}/export"),
        ("get", "/.well-known/jwks.json"),
        ("get", "/metrics"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("post", "/api/v1/healthcheck"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        expected.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (method, path) in expected {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
        // and it is really routed: no 404 or 405 for the documented method
        let status = app
            .req(
                method.to_uppercase().parse().unwrap(),
                &path
                    .replace("{id}", &uuid::Uuid::new_v4().to_string())
                    .replace("{user_id}", &uuid::Uuid::new_v4().to_string()),
            )
            .send()
            .await
            .status;
        // no credentials: existing routes answer 401/415/200, never 404
        assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    // the notification stream is documented as Server-Sent Events, the inbox as a JSON page
    let stream = &doc["paths"]["/api/v1/private/users/me/notifications/stream"]["get"];
    assert!(
        stream["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{stream}"
    );
    let inbox = &doc["paths"]["/api/v1/private/users/me/notifications"]["get"];
    assert!(
        inbox["responses"]["200"]["content"]["application/json"].is_object(),
        "{inbox}"
    );
}

#[sqlx::test]
async fn swagger_ui_is_served_from_the_binary(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let page = app.get("/docs/").send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let config = app.get("/docs/swagger-initializer.js").send().await;
    assert_eq!(config.status, StatusCode::OK);
    assert!(config.text().contains("/openapi.json"), "{}", config.text());
}
