//! A user's data export: every section, no secret, audited, with its own hourly budget.

use axum::http::{header, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::authenticator::{Alg, Authenticator};
use crate::helpers::{TestApp, ALLOWED_ORIGIN, PASSWORD};
use crate::mfa;

const EXPORT: &str = "/api/v1/private/users/me/export";

fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[sqlx::test]
async fn the_export_holds_every_section_as_the_routes_show_it_and_no_secret(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("webauthn.rp_id", "app.example"))).await;
    let s = app.signed_in("ann@example.com").await;
    // something in every section
    let link = app
        .post("/api/v1/private/users/me/linked-accounts")
        .cookies(&s)
        .json(json!({"social_network": "vk", "connection_link": "https://vk.com/ann"}))
        .send()
        .await;
    assert_eq!(link.status, StatusCode::CREATED, "{}", link.text());
    let options = app
        .post("/api/v1/private/users/me/passkeys/registration/options")
        .cookies(&s)
        .send()
        .await
        .json();
    let mut key = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN);
    let credential = key.register(&options["public_key"]);
    let passkey = app
        .post("/api/v1/private/users/me/passkeys/registration")
        .cookies(&s)
        .json(json!({"challenge_id": options["challenge_id"], "credential": credential}))
        .send()
        .await;
    assert_eq!(passkey.status, StatusCode::CREATED, "{}", passkey.text());
    let (_, recovery_codes) = mfa::turn_on(&app, &s).await;
    let request = app
        .post("/api/v1/private/users/me/role-requests")
        .cookies(&s)
        .json(json!({"role": "readonly", "reason": "I only read"}))
        .send()
        .await;
    assert_eq!(request.status, StatusCode::CREATED, "{}", request.text());
    let notified = app
        .post(&format!("/api/v1/server/users/{}/notifications", s.user_id))
        .server_key()
        .json(json!({"kind": "news", "title": "Hello"}))
        .send()
        .await;
    assert_eq!(notified.status, StatusCode::CREATED, "{}", notified.text());

    let res = app.get(EXPORT).cookies(&s).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert!(res.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc = res.json();
    assert_eq!(
        keys(&doc),
        [
            "audit",
            "exported_at",
            "linked_accounts",
            "messages",
            "mfa",
            "notifications",
            "passkeys",
            "role_requests",
            "sessions",
            "user"
        ]
    );
    // each part as its own route answers
    let me = app
        .get("/api/v1/private/users/me")
        .cookies(&s)
        .send()
        .await
        .json();
    assert_eq!(doc["user"], me);
    let listed = app
        .get("/api/v1/private/users/me/passkeys")
        .cookies(&s)
        .send()
        .await
        .json();
    assert_eq!(doc["passkeys"], listed["items"]);
    assert_eq!(doc["linked_accounts"], me["linked_accounts"]);
    assert_eq!(doc["mfa"], json!({"enabled": true}));
    assert_eq!(doc["role_requests"][0]["requested_role"], "readonly");
    assert_eq!(doc["notifications"][0]["title"], "Hello");
    assert!(doc["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == s.session_id.as_str() && x["current"] == true));
    let kinds: Vec<&str> = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"welcome") && kinds.contains(&"passkey_added"));
    assert!(doc["messages"][0].get("body").is_none());
    let actions: Vec<&str> = doc["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[0], "user.export",
        "the export itself is audited: {actions:?}"
    );
    assert!(actions.contains(&"user.sign_up") && actions.contains(&"passkey.register"));

    // no secret: no hash, token, TOTP secret, recovery code or key
    let text = res.text();
    for secret in [
        "$argon2".to_owned(),
        s.access.clone(),
        s.refresh.clone(),
        recovery_codes[0].clone(),
        PASSWORD.to_owned(),
    ] {
        assert!(!text.contains(&secret), "the export holds {secret}");
    }
    let handle: Vec<u8> =
        sqlx::query_scalar("select webauthn_handle from users where id = $1::uuid")
            .bind(&s.user_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    use base64::Engine;
    for encoded in [
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&handle),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key.credential_id),
    ] {
        assert!(!text.contains(&encoded));
    }
    for field in [
        "credential",
        "public_key",
        "secret",
        "refresh_hash",
        "password_hash",
    ] {
        assert!(!text.contains(&format!("\"{field}\"")), "{field}");
    }
}

#[sqlx::test]
async fn admins_export_anyone_deleted_or_not_and_each_caller_has_an_hourly_budget(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("rate_limit.export_per_hour", 2))).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    app.delete("/api/v1/private/users/me")
        .cookies(&ann)
        .json(json!({"password": PASSWORD}))
        .send()
        .await;
    let deleted: String = sqlx::query_scalar("select status from users where id = $1::uuid")
        .bind(&ann.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(deleted, "deleted");
    let path = format!("/api/v1/private/admin/users/{}/export", ann.user_id);
    let res = app.get(&path).cookies(&admin).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["user"]["status"], "deleted");
    assert_eq!(res.json()["user"]["id"], ann.user_id.as_str());
    let bob = app.signed_in("bob@example.com").await;
    app.get(&path)
        .cookies(&bob)
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let unknown = format!(
        "/api/v1/private/admin/users/{}/export",
        uuid::Uuid::now_v7()
    );
    app.get(&unknown)
        .cookies(&admin)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    // the export is audited with its actor and target
    let audited = app
        .scalar_i64(
            "select count(*) from audit_log where action = 'user.export' and target_user_id = $1::uuid",
            &ann.user_id,
        )
        .await;
    assert_eq!(audited, 1);

    // two an hour per caller: the admin's second, then a 429 with when to come back
    let res = app.get(&path).cookies(&admin).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = app.get(&path).cookies(&admin).send().await;
    res.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = res.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry), "{retry}");
    // another caller's budget is their own
    for _ in 0..2 {
        let res = app.get(EXPORT).cookies(&bob).send().await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    }
    app.get(EXPORT)
        .cookies(&bob)
        .send()
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let audited = app
        .scalar_i64(
            "select count(*) from audit_log where action = 'user.export' and actor = 'user:' || $1",
            &bob.user_id,
        )
        .await;
    assert_eq!(audited, 2, "a refused export is not recorded");
}
