//! Passkeys (WebAuthn): registration, the list, rename and delete, and the discoverable sign-in,
//! driven by a software authenticator with real keys, CBOR and signatures.

use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::authenticator::{b64, unb64, Alg, Authenticator};
use crate::helpers::{unique_ip, Session, TestApp, TestResponse, ALLOWED_ORIGIN, PASSWORD};
use crate::{mfa, oauth};

const REG_OPTIONS: &str = "/api/v1/private/users/me/passkeys/registration/options";
const REGISTER: &str = "/api/v1/private/users/me/passkeys/registration";
const PASSKEYS: &str = "/api/v1/private/users/me/passkeys";
const OPTIONS: &str = "/api/v1/public/users/passkey/options";
const LOGIN: &str = "/api/v1/public/users/passkey/login";
const RP_ID: &str = "app.example";

/// An app whose relying party is the test origin's host.
async fn app(pool: PgPool) -> TestApp {
    TestApp::with(pool, |f| f.merge(("webauthn.rp_id", RP_ID))).await
}

async fn registration_options(app: &TestApp, s: &Session) -> (String, Value) {
    let res = app.post(REG_OPTIONS).cookies(s).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    (
        body["challenge_id"].as_str().unwrap().to_owned(),
        body["public_key"].clone(),
    )
}

async fn register_with(
    app: &TestApp,
    s: &Session,
    authenticator: &mut Authenticator,
    name: Option<&str>,
) -> TestResponse {
    let (challenge_id, options) = registration_options(app, s).await;
    let credential = authenticator.register(&options);
    let mut body = json!({"challenge_id": challenge_id, "credential": credential});
    if let Some(name) = name {
        body["name"] = json!(name);
    }
    app.post(REGISTER).cookies(s).json(body).send().await
}

async fn register(app: &TestApp, s: &Session, authenticator: &mut Authenticator) -> Value {
    let res = register_with(app, s, authenticator, None).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    res.json()
}

async fn sign_in_options(app: &TestApp) -> (String, Value) {
    let res = app
        .post(OPTIONS)
        .json(json!({}))
        .ip(unique_ip())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    (
        body["challenge_id"].as_str().unwrap().to_owned(),
        body["public_key"].clone(),
    )
}

async fn sign_in(app: &TestApp, authenticator: &mut Authenticator, tokens: bool) -> TestResponse {
    let (challenge_id, options) = sign_in_options(app).await;
    let credential = authenticator.assert(&options);
    app.post(LOGIN)
        .json(json!({"challenge_id": challenge_id, "credential": credential, "tokens": tokens}))
        .ip(unique_ip())
        .send()
        .await
}

fn session_of(res: &TestResponse) -> Session {
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    Session {
        access: res.cookie("access_token").unwrap(),
        refresh: res.cookie("refresh_token").unwrap(),
        session_id: res.json()["session_id"].as_str().unwrap().to_owned(),
        user_id: res.json()["user"]["id"].as_str().unwrap().to_owned(),
    }
}

async fn count(app: &TestApp, sql: &str, user_id: &str) -> i64 {
    app.scalar_i64(sql, user_id).await
}

/// The mails of this kind written for the user.
async fn mails(app: &TestApp, kind: &str, user_id: &str) -> i64 {
    sqlx::query_scalar("select count(*) from messages where kind = $1 and user_id = $2::uuid")
        .bind(kind)
        .bind(user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn passkeys_of(app: &TestApp, user_id: &str) -> i64 {
    count(
        app,
        "select count(*) from passkeys where user_id = $1::uuid",
        user_id,
    )
    .await
}

#[sqlx::test]
async fn p256_and_ed25519_passkeys_register_and_sign_in_with_webauthn_amr(pool: PgPool) {
    let app = app(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let (_, options) = registration_options(&app, &s).await;
    assert_eq!(options["rp"]["id"], RP_ID);
    assert_eq!(options["rp"]["name"], "users-service");
    let handle = unb64(options["user"]["id"].as_str().unwrap());
    assert_eq!(handle.len(), 32);
    assert!(!String::from_utf8_lossy(&handle).contains("ann@example.com"));
    assert_ne!(
        handle,
        uuid::Uuid::parse_str(&s.user_id).unwrap().as_bytes()
    );
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    assert_eq!(options["attestation"], "none");
    let algs: Vec<i64> = options["pubKeyCredParams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["alg"].as_i64().unwrap())
        .collect();
    assert_eq!(algs, vec![-7, -8], "ES256 and EdDSA");
    assert!(options["excludeCredentials"]
        .as_array()
        .is_none_or(Vec::is_empty));

    let mut p256 = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN).counting();
    let first = register(&app, &s, &mut p256).await;
    assert_eq!(first["name"], "Passkey");
    assert!(first["last_used_at"].is_null());
    // the handle stays the user's; the next options exclude the passkey they have
    let (_, options) = registration_options(&app, &s).await;
    assert_eq!(unb64(options["user"]["id"].as_str().unwrap()), handle);
    assert_eq!(
        options["excludeCredentials"][0]["id"].as_str().unwrap(),
        b64(&p256.credential_id)
    );
    let mut ed25519 = Authenticator::new(Alg::EdDsa, ALLOWED_ORIGIN);
    let res = register_with(&app, &s, &mut ed25519, Some("  Phone ")).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(res.json()["name"], "Phone");
    let list = app.get(PASSKEYS).cookies(&s).send().await.json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Phone", "Passkey"], "newest first");
    assert!(list["items"][0].get("credential").is_none());

    // the sign-in options name nobody
    let (_, request) = sign_in_options(&app).await;
    assert_eq!(request["rpId"], RP_ID);
    assert_eq!(request["userVerification"], "required");
    assert!(request["allowCredentials"]
        .as_array()
        .is_none_or(Vec::is_empty));

    // as the login: user, session and cookies, amr webauthn
    let res = sign_in(&app, &mut p256, false).await;
    let signed_in = session_of(&res);
    assert_eq!(signed_in.user_id, s.user_id);
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    let amr: Vec<String> = sqlx::query_scalar("select amr from sessions where id = $1::uuid")
        .bind(&signed_in.session_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(amr, vec!["webauthn"]);
    let me = app
        .get("/api/v1/private/users/me")
        .cookies(&signed_in)
        .send()
        .await;
    assert_eq!(me.json()["email"], "ann@example.com");
    // as the token route: tokens in the body, no cookies
    let res = sign_in(&app, &mut ed25519, true).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.json()["access_token"].is_string());
    assert!(res.json()["refresh_token"].is_string());
    assert!(res.set_cookies().is_empty());
    let used = app.get(PASSKEYS).cookies(&s).send().await.json();
    assert!(used["items"][0]["last_used_at"].is_string());
    let counter: i64 = sqlx::query_scalar(
        "select (credential->>'counter')::bigint from passkeys where credential_id = $1",
    )
    .bind(&p256.credential_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(counter, 1, "the counter is kept");

    assert!(app
        .audit_actions(&s.user_id)
        .await
        .iter()
        .any(|a| a == "passkey.register"));
    // each passkey sign-in is one `auth.login` record naming its session, amr and passkey
    let logins: Vec<Value> = sqlx::query_scalar(
        "select details from audit_log where action = 'auth.login' and details ? 'passkey_id'
         and target_user_id = $1::uuid order by id",
    )
    .bind(&s.user_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0]["session_id"], signed_in.session_id.as_str());
    assert_eq!(logins[0]["amr"], json!(["webauthn"]));
    assert_eq!(logins[0]["passkey_id"], first["id"]);
    let events: Vec<Value> = sqlx::query_scalar(
        "select data from events where type = 'user.passkey_added' and user_id = $1::uuid order by commit_seq",
    )
    .bind(&s.user_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["passkey"]["id"], first["id"]);
    assert!(events[0]["passkey"].get("credential").is_none());
    assert_eq!(mails(&app, "passkey_added", &s.user_id).await, 2);
}

#[sqlx::test]
async fn forged_or_replayed_registrations_are_invalid_passkey_and_change_nothing(pool: PgPool) {
    let app = app(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let refused =
        |res: TestResponse| res.assert_problem(StatusCode::BAD_REQUEST, "invalid_passkey");

    // another ceremony's challenge
    let (challenge_id, _) = registration_options(&app, &s).await;
    let (_, other) = registration_options(&app, &s).await;
    let credential = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN).register(&other);
    refused(
        app.post(REGISTER)
            .cookies(&s)
            .json(json!({"challenge_id": challenge_id, "credential": credential}))
            .send()
            .await,
    );
    // a foreign origin, another relying party, no user verification, an algorithm not offered
    let mut foreign = Authenticator::new(Alg::Es256, "https://evil.example");
    refused(register_with(&app, &s, &mut foreign, None).await);
    let mut other_rp = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN);
    other_rp.rp_id_override = Some("evil.example".into());
    refused(register_with(&app, &s, &mut other_rp, None).await);
    let mut unverified = Authenticator::new(Alg::EdDsa, ALLOWED_ORIGIN);
    unverified.verify_user = false;
    refused(register_with(&app, &s, &mut unverified, None).await);
    let mut p384 = Authenticator::new(Alg::Es384, ALLOWED_ORIGIN);
    refused(register_with(&app, &s, &mut p384, None).await);
    // not an answer at all, and an unknown challenge
    let (challenge_id, _) = registration_options(&app, &s).await;
    refused(
        app.post(REGISTER)
            .cookies(&s)
            .json(json!({"challenge_id": challenge_id, "credential": "garbage"}))
            .send()
            .await,
    );
    refused(
        app.post(REGISTER)
            .cookies(&s)
            .json(json!({"challenge_id": uuid::Uuid::now_v7(), "credential": {}}))
            .send()
            .await,
    );
    assert_eq!(passkeys_of(&app, &s.user_id).await, 0);

    // a used challenge is spent; a credential is registered once, by anyone
    let mut key = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN);
    let (challenge_id, options) = registration_options(&app, &s).await;
    let credential = key.register(&options);
    let body = json!({"challenge_id": challenge_id, "credential": credential});
    let res = app
        .post(REGISTER)
        .cookies(&s)
        .json(body.clone())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    refused(app.post(REGISTER).cookies(&s).json(body).send().await);
    refused(register_with(&app, &s, &mut key, None).await);
    let bob = app.signed_in("bob@example.com").await;
    refused(register_with(&app, &bob, &mut key, None).await);
    assert_eq!(passkeys_of(&app, &s.user_id).await, 1);
    assert_eq!(passkeys_of(&app, &bob.user_id).await, 0);
    // a challenge lives 300 s
    let (challenge_id, options) = registration_options(&app, &s).await;
    sqlx::query("update webauthn_challenges set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let credential = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN).register(&options);
    refused(
        app.post(REGISTER)
            .cookies(&s)
            .json(json!({"challenge_id": challenge_id, "credential": credential}))
            .send()
            .await,
    );
    // another user's challenge is not theirs to finish
    let (challenge_id, options) = registration_options(&app, &s).await;
    let credential = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN).register(&options);
    refused(
        app.post(REGISTER)
            .cookies(&bob)
            .json(json!({"challenge_id": challenge_id, "credential": credential}))
            .send()
            .await,
    );
    assert_eq!(passkeys_of(&app, &bob.user_id).await, 0);
    app.post(REGISTER)
        .cookies(&s)
        .json(json!({"challenge_id": "nope", "credential": {}}))
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[sqlx::test]
async fn forged_or_replayed_sign_ins_are_refused_and_open_no_session(pool: PgPool) {
    let app = app(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let mut key = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN);
    register(&app, &s, &mut key).await;
    let sessions_before = count(
        &app,
        "select count(*) from sessions where user_id = $1::uuid",
        &s.user_id,
    )
    .await;
    let bad =
        |res: TestResponse| res.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");

    // a bad signature
    let (challenge_id, options) = sign_in_options(&app).await;
    let mut credential = key.assert(&options);
    let mut signature = unb64(credential["response"]["signature"].as_str().unwrap());
    let last = signature.len() - 1;
    signature[last] ^= 1;
    credential["response"]["signature"] = json!(b64(&signature));
    bad(app
        .post(LOGIN)
        .json(json!({"challenge_id": challenge_id, "credential": credential}))
        .send()
        .await);
    // another challenge, origin, relying party; no user verification; an unknown credential
    let (challenge_id, _) = sign_in_options(&app).await;
    let (_, other) = sign_in_options(&app).await;
    let credential = key.assert(&other);
    bad(app
        .post(LOGIN)
        .json(json!({"challenge_id": challenge_id, "credential": credential}))
        .send()
        .await);
    key.origin = "https://evil.example".into();
    bad(sign_in(&app, &mut key, false).await);
    key.origin = ALLOWED_ORIGIN.into();
    key.rp_id_override = Some("evil.example".into());
    bad(sign_in(&app, &mut key, false).await);
    key.rp_id_override = None;
    key.verify_user = false;
    bad(sign_in(&app, &mut key, false).await);
    key.verify_user = true;
    let mut stranger = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN);
    stranger.user_handle = key.user_handle.clone();
    bad(sign_in(&app, &mut stranger, false).await);
    // the right credential under another user's handle
    let bob = app.signed_in("bob@example.com").await;
    let mut bobs = Authenticator::new(Alg::EdDsa, ALLOWED_ORIGIN);
    register(&app, &bob, &mut bobs).await;
    let handle = std::mem::replace(&mut key.user_handle, bobs.user_handle.clone());
    bad(sign_in(&app, &mut key, false).await);
    key.user_handle = handle;
    // garbage
    let (challenge_id, _) = sign_in_options(&app).await;
    bad(app
        .post(LOGIN)
        .json(json!({"challenge_id": challenge_id, "credential": [1, 2]}))
        .send()
        .await);
    assert_eq!(
        count(
            &app,
            "select count(*) from sessions where user_id = $1::uuid",
            &s.user_id
        )
        .await,
        sessions_before
    );
    assert!(app
        .audit_actions(&s.user_id)
        .await
        .iter()
        .any(|a| a == "auth.login_failed"));

    // a challenge is used once: a replay, an unknown and an expired one are unauthenticated
    let (challenge_id, options) = sign_in_options(&app).await;
    let credential = key.assert(&options);
    let body = json!({"challenge_id": challenge_id, "credential": credential});
    let res = app.post(LOGIN).json(body.clone()).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    app.post(LOGIN)
        .json(body)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let (challenge_id, options) = sign_in_options(&app).await;
    sqlx::query("update webauthn_challenges set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let credential = key.assert(&options);
    app.post(LOGIN)
        .json(json!({"challenge_id": challenge_id, "credential": credential}))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn a_counter_that_goes_back_is_refused_audited_and_suspends_the_passkey(pool: PgPool) {
    let app = app(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let mut key = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN).counting();
    register(&app, &s, &mut key).await;
    session_of(&sign_in(&app, &mut key, false).await);
    session_of(&sign_in(&app, &mut key, false).await);
    // a clone still at the first signature
    key.counter = 0;
    sign_in(&app, &mut key, false)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert!(app
        .audit_actions(&s.user_id)
        .await
        .iter()
        .any(|a| a == "passkey.counter_regression"));
    // suspended: even a counter that grows again is refused, until it is registered again
    key.counter = 10;
    sign_in(&app, &mut key, false)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let (_, options) = registration_options(&app, &s).await;
    assert!(
        options["excludeCredentials"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "a suspended passkey may be registered again"
    );
    register(&app, &s, &mut key).await;
    assert_eq!(passkeys_of(&app, &s.user_id).await, 1);
    session_of(&sign_in(&app, &mut key, false).await);

    // a suspended passkey is no way in: without a password or an identity it can still be deleted
    sqlx::query("update users set password_hash = null where id = $1::uuid")
        .bind(&s.user_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let id = app.get(PASSKEYS).cookies(&s).send().await.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.delete(&format!("{PASSKEYS}/{id}"))
        .cookies(&s)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "last_login_method");
    key.counter = 0;
    sign_in(&app, &mut key, false)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let res = app
        .delete(&format!("{PASSKEYS}/{id}"))
        .cookies(&s)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
}

#[sqlx::test]
async fn a_passkey_sign_in_skips_the_totp_step_and_counts_as_recent(pool: PgPool) {
    let app = app(pool).await;
    let s = app.signed_in("ann@example.com").await;
    mfa::turn_on(&app, &s).await;
    let mut key = Authenticator::new(Alg::EdDsa, ALLOWED_ORIGIN);
    register(&app, &s, &mut key).await;
    // the password asks for a code; the passkey does not
    let res = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(res.json()["mfa_required"], true);
    let signed_in = session_of(&sign_in(&app, &mut key, false).await);
    // a recent sign-in: the re-authenticated routes accept it, an old one does not
    let res = app.post(REG_OPTIONS).cookies(&signed_in).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    oauth::age_sign_in(&app, &signed_in.session_id, 601).await;
    app.post(REG_OPTIONS)
        .cookies(&signed_in)
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "reauthentication_required");
    assert_eq!(
        count(
            &app,
            "select count(*) from webauthn_challenges where user_id = $1::uuid",
            &s.user_id
        )
        .await,
        1,
        "the refused options stored no ceremony"
    );
}

#[sqlx::test]
async fn passkeys_are_renamed_and_deleted_but_never_the_last_way_in(pool: PgPool) {
    let app = app(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let mut key = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN);
    let passkey = register(&app, &s, &mut key).await;
    let path = format!("{PASSKEYS}/{}", passkey["id"].as_str().unwrap());
    let res = app
        .req(Method::PATCH, &path)
        .cookies(&s)
        .json(json!({"name": "Laptop"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["name"], "Laptop");
    for name in [
        String::new(),
        "   ".into(),
        "x".repeat(65),
        "tab\there".into(),
    ] {
        let res = app
            .req(Method::PATCH, &path)
            .cookies(&s)
            .json(json!({"name": name}))
            .send()
            .await;
        res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(res.json()["errors"][0]["field"], "name", "{name:?}");
    }
    let bob = app.signed_in("bob@example.com").await;
    app.req(Method::PATCH, &path)
        .cookies(&bob)
        .json(json!({"name": "Mine"}))
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "passkey_not_found");
    app.delete(&path)
        .cookies(&bob)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "passkey_not_found");
    assert!(app
        .audit_actions(&s.user_id)
        .await
        .iter()
        .any(|a| a == "passkey.rename"));

    // without a password or an identity, the only passkey is the only way in
    sqlx::query("update users set password_hash = null where id = $1::uuid")
        .bind(&s.user_id)
        .execute(&app.pool)
        .await
        .unwrap();
    app.delete(&path)
        .cookies(&s)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "last_login_method");
    let mut second = Authenticator::new(Alg::EdDsa, ALLOWED_ORIGIN);
    register(&app, &s, &mut second).await;
    let res = app.delete(&path).cookies(&s).send().await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    app.delete(&path)
        .cookies(&s)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "passkey_not_found");
    sign_in(&app, &mut key, false)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(passkeys_of(&app, &s.user_id).await, 1);
    let removed: Value = sqlx::query_scalar(
        "select data from events where type = 'user.passkey_removed' and user_id = $1::uuid",
    )
    .bind(&s.user_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(removed["passkey"]["id"], passkey["id"]);
    assert_eq!(removed["passkey"]["name"], "Laptop");
    assert_eq!(mails(&app, "passkey_removed", &s.user_id).await, 1);
}

#[sqlx::test]
async fn a_deleted_account_is_account_deleted_and_the_routes_share_the_login_budget(pool: PgPool) {
    let app = TestApp::with(pool, |f| {
        f.merge(("webauthn.rp_id", RP_ID))
            .merge(("rate_limit.login_per_minute", 3))
    })
    .await;
    let s = app.signed_in("ann@example.com").await;
    let mut key = Authenticator::new(Alg::Es256, ALLOWED_ORIGIN);
    register(&app, &s, &mut key).await;
    sqlx::query("update users set status = 'deleted', deleted_at = now() where id = $1::uuid")
        .bind(&s.user_id)
        .execute(&app.pool)
        .await
        .unwrap();
    sign_in(&app, &mut key, false)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "account_deleted");

    let ip = unique_ip();
    for _ in 0..3 {
        let res = app.post(OPTIONS).json(json!({})).ip(ip).send().await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    }
    let res = app.post(OPTIONS).ip(ip).send().await;
    res.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    app.post(LOGIN)
        .json(json!({"challenge_id": uuid::Uuid::now_v7(), "credential": {}}))
        .ip(ip)
        .send()
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // and the password login spends the same budget
    app.post("/api/v1/public/users/login")
        .json(json!({"email": "ann@example.com", "password": PASSWORD}))
        .ip(ip)
        .send()
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

#[sqlx::test]
async fn a_ceremony_started_on_one_instance_finishes_on_another(pool: PgPool) {
    let one = app(pool.clone()).await;
    let other = app(pool).await;
    let s = one.signed_in("ann@example.com").await;
    let mut key = Authenticator::new(Alg::EdDsa, ALLOWED_ORIGIN);
    let (challenge_id, options) = registration_options(&one, &s).await;
    let credential = key.register(&options);
    let res = other
        .post(REGISTER)
        .cookies(&s)
        .json(json!({"challenge_id": challenge_id, "credential": credential}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let (challenge_id, options) = sign_in_options(&other).await;
    let credential = key.assert(&options);
    let res = one
        .post(LOGIN)
        .json(json!({"challenge_id": challenge_id, "credential": credential}))
        .ip(unique_ip())
        .send()
        .await;
    assert_eq!(session_of(&res).user_id, s.user_id);
}
