//! Two-factor sign-in (TOTP and recovery codes) and secrets encrypted at rest with `auth.data_key`.

use axum::http::StatusCode;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use sqlx::PgPool;
use users_service::auth::data_key::DataKey;
use users_service::auth::totp;

use crate::helpers::{unique_ip, Session, TestApp, TestResponse, PASSWORD};
use crate::oauth;

const LOGIN_MFA: &str = "/api/v1/public/users/login/mfa";
const TOTP: &str = "/api/v1/private/users/me/mfa/totp";
const CONFIRM: &str = "/api/v1/private/users/me/mfa/totp/confirm";
const CODES: &str = "/api/v1/private/users/me/mfa/recovery-codes";
const MFA: &str = "/api/v1/private/users/me/mfa";

fn now_secs() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

/// The code of the current step shifted by `offset` steps.
fn code(secret: &[u8], offset: i64) -> String {
    let step = totp::step_of(now_secs()) as i64 + offset;
    totp::code_at(secret, step as u64).unwrap()
}

/// A code that is not the secret's for any accepted step.
fn wrong_code(secret: &[u8]) -> String {
    let taken: Vec<String> = (-1..=1).map(|o| code(secret, o)).collect();
    (0..1000)
        .map(|n| format!("{:06}", 100_000 + n * 7))
        .find(|c| !taken.contains(c))
        .unwrap()
}

/// Lets the current step's code be accepted again (a test that needs more codes than one window
/// holds).
async fn forget_steps(app: &TestApp) {
    sqlx::query("update totp_factors set last_step = null")
        .execute(&app.pool)
        .await
        .unwrap();
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Enrols and confirms two-factor for a signed-in user; returns the secret and the recovery codes.
pub(crate) async fn turn_on(app: &TestApp, s: &Session) -> (Vec<u8>, Vec<String>) {
    let enrolled = app.post(TOTP).cookies(s).send().await;
    assert_eq!(enrolled.status, StatusCode::CREATED, "{}", enrolled.text());
    let b32 = enrolled.json()["secret"].as_str().unwrap().to_owned();
    let secret = totp_rs::Secret::Encoded(b32).to_bytes().unwrap();
    let confirmed = app
        .post(CONFIRM)
        .cookies(s)
        .json(json!({"code": code(&secret, 0)}))
        .send()
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text());
    let codes: Vec<String> = confirmed.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    forget_steps(app).await;
    (secret, codes)
}

/// A first step that must ask for the second: returns the `mfa_token`.
fn challenged(res: &TestResponse) -> String {
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let body = res.json();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert_eq!(body["expires_in"], 300);
    assert!(
        res.set_cookies().is_empty(),
        "no cookies before the second step"
    );
    assert_eq!(res.headers["cache-control"], "no-store");
    body["mfa_token"].as_str().unwrap().to_owned()
}

async fn complete(app: &TestApp, token: &str, proof: Value) -> TestResponse {
    let mut body = proof;
    body["mfa_token"] = json!(token);
    app.post(LOGIN_MFA).json(body).ip(unique_ip()).send().await
}

async fn count(app: &TestApp, sql: &str, user_id: &str) -> i64 {
    app.scalar_i64(sql, user_id).await
}

#[sqlx::test]
async fn enrolment_confirmation_and_a_two_step_login_carry_amr(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("mfa@example.com").await;
    // an unconfirmed enrolment is replaced by the next
    let first = app.post(TOTP).cookies(&s).send().await.json();
    let second = app.post(TOTP).cookies(&s).send().await;
    assert_eq!(second.status, StatusCode::CREATED);
    let second = second.json();
    assert_ne!(first["secret"], second["secret"]);
    let uri = second["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/users-service:mfa%40example.com?"),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={}", second["secret"].as_str().unwrap())));
    assert!(uri.contains("issuer=users-service"));
    let secret = totp_rs::Secret::Encoded(second["secret"].as_str().unwrap().into())
        .to_bytes()
        .unwrap();
    // malformed, then wrong, then right
    for bad in [
        json!({"code": "12345"}),
        json!({"code": "abcdef"}),
        json!({}),
    ] {
        let res = app.post(CONFIRM).cookies(&s).json(bad).send().await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            res.text()
        );
    }
    app.post(CONFIRM)
        .cookies(&s)
        .json(json!({"code": wrong_code(&secret)}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_mfa_code");
    let on = app
        .post(CONFIRM)
        .cookies(&s)
        .json(json!({"code": code(&secret, 0)}))
        .send()
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.text());
    let codes = on.json()["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(codes.len(), 10);
    let uid = s.user_id.as_str();
    assert_eq!(
        count(
            &app,
            "select count(*) from recovery_codes where user_id = $1::uuid",
            uid
        )
        .await,
        10
    );
    for c in &codes {
        let plain = c.as_str().unwrap().replace('-', "");
        let stored = count(
            &app,
            "select count(*) from recovery_codes where position(convert_to($1, 'utf8') in code_hash) > 0",
            &plain,
        )
        .await;
        assert_eq!(stored, 0, "recovery codes are stored hashed");
    }
    app.post(TOTP)
        .cookies(&s)
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT, "mfa_already_enabled");
    app.post(CONFIRM)
        .cookies(&s)
        .json(json!({"code": code(&secret, 1)}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "mfa_not_enrolled");
    forget_steps(&app).await;

    // the first step: no session
    let sessions_before = count(
        &app,
        "select count(*) from sessions where user_id = $1::uuid",
        uid,
    )
    .await;
    let token = challenged(&app.login("mfa@example.com", PASSWORD).await);
    assert_eq!(
        count(
            &app,
            "select count(*) from sessions where user_id = $1::uuid",
            uid
        )
        .await,
        sessions_before
    );
    complete(&app, &token, json!({"code": wrong_code(&secret)}))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_mfa_code");
    // one step of clock skew is tolerated, two are not
    complete(&app, &token, json!({"code": code(&secret, -2)}))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_mfa_code");
    let right = code(&secret, 0);
    let done = complete(&app, &token, json!({"code": right})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(done.json()["user"]["id"], s.user_id.as_str());
    let access = done.cookie("access_token").unwrap();
    assert!(done.cookie("refresh_token").is_some());
    assert_eq!(claims(&access)["amr"], json!(["pwd", "otp"]));
    // the token is single use, and so is the code
    complete(&app, &token, json!({"code": code(&secret, 1)}))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let again = challenged(&app.login("mfa@example.com", PASSWORD).await);
    complete(&app, &again, json!({"code": right}))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_mfa_code");
    // a first step is no verdict; each completion counts under its first step's method
    let series =
        |result: &str| format!("users_sign_ins_total{{method=\"password\",result=\"{result}\"}}");
    assert_eq!(app.scrape_counter(&series("success")).await, 2.0);
    assert_eq!(
        app.scrape_counter(&series("invalid_credentials")).await,
        3.0
    );
    assert!(!app
        .get("/metrics")
        .send()
        .await
        .text()
        .contains("method=\"mfa\""));
    // the sessions list shows how each session signed in
    let list = app
        .get("/api/v1/private/users/seances")
        .bearer(&access)
        .send()
        .await
        .json();
    let items = list["items"].as_array().unwrap();
    let current = items.iter().find(|i| i["current"] == true).unwrap();
    assert_eq!(current["amr"], json!(["pwd", "otp"]));
    let older = items.iter().find(|i| i["current"] == false).unwrap();
    assert_eq!(older["amr"], json!(["pwd"]));
    let actions = app.audit_actions(uid).await;
    for action in ["mfa.enrol", "mfa.enable", "auth.login_failed", "auth.login"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
    let kinds: Vec<String> = sqlx::query_scalar("select type from events where user_id = $1::uuid")
        .bind(uid)
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(kinds.iter().any(|k| k == "user.mfa_enabled"), "{kinds:?}");
    assert_eq!(
        count(
            &app,
            "select count(*) from messages where kind = 'mfa_enabled' and user_id = $1::uuid",
            uid
        )
        .await,
        1
    );
}

#[sqlx::test]
async fn token_and_restore_first_steps_complete_in_their_own_form(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("forms@example.com").await;
    let (secret, _) = turn_on(&app, &s).await;
    // token: the body form, no cookies; refresh keeps amr
    let res = app
        .post("/api/v1/public/users/token")
        .json(json!({"email": "forms@example.com", "password": PASSWORD}))
        .send()
        .await;
    let token = challenged(&res);
    let done = complete(&app, &token, json!({"code": code(&secret, -1)})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert!(done.set_cookies().is_empty());
    let body = done.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["amr"],
        json!(["pwd", "otp"])
    );
    let refreshed = app
        .post("/api/v1/public/users/refresh")
        .json(json!({"refresh_token": body["refresh_token"]}))
        .send()
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let refreshed_access = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(claims(&refreshed_access)["amr"], json!(["pwd", "otp"]));

    // restore: the first step restores nothing; the second does
    let deleted = app
        .delete("/api/v1/private/users/me")
        .bearer(&refreshed_access)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let res = app
        .post("/api/v1/public/users/restore")
        .json(json!({"email": "forms@example.com", "password": PASSWORD}))
        .send()
        .await;
    let token = challenged(&res);
    assert_eq!(
        count(
            &app,
            "select count(*) from users where status = 'deleted' and id = $1::uuid",
            &s.user_id
        )
        .await,
        1
    );
    let done = complete(&app, &token, json!({"code": code(&secret, 0)})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(done.json()["status"], "active");
    assert!(done.set_cookies().is_empty());
}

#[sqlx::test]
async fn wrong_codes_kill_the_token_after_five_and_count_into_the_lockout(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.max_failed_logins", 10))).await;
    let s = app.signed_in("lock@example.com").await;
    let (secret, _) = turn_on(&app, &s).await;
    let token = challenged(&app.login("lock@example.com", PASSWORD).await);
    // stored as its SHA-256, never as itself
    let stored: Vec<u8> = sqlx::query_scalar("select token_hash from mfa_challenges")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, sha2::Sha256::digest(token.as_bytes()).to_vec());
    let wrong = wrong_code(&secret);
    for _ in 0..5 {
        complete(&app, &token, json!({"code": wrong}))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_mfa_code");
    }
    complete(&app, &token, json!({"code": code(&secret, 0)}))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    // the password attempt and the five wrong codes
    let counted = count(
        &app,
        "select failures::bigint from login_throttle where email_key = $1",
        "lock@example.com",
    )
    .await;
    assert_eq!(counted, 6, "wrong codes count like wrong passwords");
    // a right password does not end the count: only a completed sign-in does
    let token = challenged(&app.login("lock@example.com", PASSWORD).await);
    assert_eq!(
        count(
            &app,
            "select failures::bigint from login_throttle where email_key = $1",
            "lock@example.com"
        )
        .await,
        7
    );
    for _ in 0..3 {
        complete(&app, &token, json!({"code": wrong}))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_mfa_code");
    }
    // the 11th attempt is over auth.max_failed_logins (10)
    let res = complete(&app, &token, json!({"code": code(&secret, 0)})).await;
    res.assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    assert!(res.headers.contains_key("retry-after"));
    app.login("lock@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");

    // once the window passes, a completed sign-in ends the count; an expired token is dead
    sqlx::query("delete from login_throttle")
        .execute(&app.pool)
        .await
        .unwrap();
    let token = challenged(&app.login("lock@example.com", PASSWORD).await);
    sqlx::query(
        "update mfa_challenges set expires_at = now() - interval '1 second' where used_at is null",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    complete(&app, &token, json!({"code": code(&secret, 0)}))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let token = challenged(&app.login("lock@example.com", PASSWORD).await);
    let done = complete(&app, &token, json!({"code": code(&secret, 0)})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(
        count(
            &app,
            "select count(*) from login_throttle where email_key = $1",
            "lock@example.com"
        )
        .await,
        0
    );
    // used and expired challenges are swept
    let swept = users_service::service::lifecycle::sweep_stale_records(&app.state)
        .await
        .unwrap();
    // the exhausted one, the expired ones and the used one
    assert_eq!(swept.mfa_challenges, 4, "{swept:?}");
    assert_eq!(
        count(
            &app,
            "select count(*) from mfa_challenges where $1 = $1",
            ""
        )
        .await,
        0
    );
}

#[sqlx::test]
async fn one_code_completes_one_of_two_concurrent_sign_ins(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("race@example.com").await;
    let (secret, _) = turn_on(&app, &s).await;
    let a = challenged(&app.login("race@example.com", PASSWORD).await);
    let b = challenged(&app.login("race@example.com", PASSWORD).await);
    let c = code(&secret, 0);
    let (ra, rb) = tokio::join!(
        complete(&app, &a, json!({"code": c})),
        complete(&app, &b, json!({"code": c}))
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::UNAUTHORIZED],
        "{} / {}",
        ra.text(),
        rb.text()
    );
    let loser = if ra.status == StatusCode::OK { rb } else { ra };
    loser.assert_problem(StatusCode::UNAUTHORIZED, "invalid_mfa_code");
}

#[sqlx::test]
async fn recovery_codes_sign_in_once_and_can_be_renewed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("rc@example.com").await;
    let (secret, codes) = turn_on(&app, &s).await;
    for bad in [
        json!({"recovery_code": "xyz"}),
        json!({"recovery_code": "0000-1111-2222-333u"}),
        json!({"code": "123456", "recovery_code": codes[0]}),
        json!({}),
    ] {
        let token = challenged(&app.login("rc@example.com", PASSWORD).await);
        let res = complete(&app, &token, bad).await;
        res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let token = challenged(&app.login("rc@example.com", PASSWORD).await);
    // typed loosely: upper case, spaces for hyphens
    let typed = codes[0].to_uppercase().replace('-', " ");
    let done = complete(&app, &token, json!({"recovery_code": typed})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(
        claims(&done.cookie("access_token").unwrap())["amr"],
        json!(["pwd", "recovery"])
    );
    let token = challenged(&app.login("rc@example.com", PASSWORD).await);
    complete(&app, &token, json!({"recovery_code": codes[0]}))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_mfa_code");
    assert!(app
        .audit_actions(&s.user_id)
        .await
        .iter()
        .any(|a| a == "mfa.recovery_code_use"));
    let used_mail: String = sqlx::query_scalar(
        "select body_text from messages where kind = 'recovery_code_used' and user_id = $1::uuid",
    )
    .bind(&s.user_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(used_mail.contains("9 unused codes"), "{used_mail}");
    assert_eq!(
        count(&app, "select count(*) from messages where kind = 'recovery_code_used' and user_id = $1::uuid", &s.user_id).await,
        1
    );

    // new codes for a code from the app; the old ones die
    app.post(CODES)
        .cookies(&s)
        .json(json!({"code": wrong_code(&secret)}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_mfa_code");
    let renewed = app
        .post(CODES)
        .cookies(&s)
        .json(json!({"code": code(&secret, 0)}))
        .send()
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text());
    let fresh = renewed.json()["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(fresh.len(), 10);
    let token = challenged(&app.login("rc@example.com", PASSWORD).await);
    complete(&app, &token, json!({"recovery_code": codes[1]}))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_mfa_code");
    let done = complete(&app, &token, json!({"recovery_code": fresh[0]})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
}

#[sqlx::test]
async fn turning_it_off_needs_a_code_and_ends_the_other_sessions(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("off@example.com").await;
    app.post(CONFIRM)
        .cookies(&s)
        .json(json!({"code": "123456"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "mfa_not_enrolled");
    app.post(CODES)
        .cookies(&s)
        .json(json!({"code": "123456"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "mfa_not_enabled");
    app.delete(MFA)
        .cookies(&s)
        .json(json!({"code": "123456"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "mfa_not_enabled");
    let (secret, codes) = turn_on(&app, &s).await;
    let other = app.tokens("off@example.com", PASSWORD).await;
    let other_token = other["mfa_token"].as_str().unwrap();
    let other = complete(&app, other_token, json!({"code": code(&secret, 0)}))
        .await
        .json();
    let other_access = other["access_token"].as_str().unwrap();
    app.delete(MFA)
        .cookies(&s)
        .json(json!({"code": wrong_code(&secret)}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_mfa_code");
    let off = app
        .delete(MFA)
        .cookies(&s)
        .json(json!({"recovery_code": codes[3]}))
        .send()
        .await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.text());
    app.get("/api/v1/private/users/me")
        .bearer(other_access)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(
        app.get("/api/v1/private/users/me")
            .cookies(&s)
            .send()
            .await
            .status,
        StatusCode::OK
    );
    for table in ["totp_factors", "recovery_codes"] {
        let n = count(
            &app,
            &format!("select count(*) from {table} where user_id = $1::uuid"),
            &s.user_id,
        )
        .await;
        assert_eq!(n, 0, "{table}");
    }
    // a login is one step again
    let res = app.login("off@example.com", PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.cookie("access_token").is_some());
    let kinds: Vec<String> =
        sqlx::query_scalar("select type from events where user_id = $1::uuid order by seq")
            .bind(&s.user_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(kinds.iter().any(|k| k == "user.mfa_disabled"), "{kinds:?}");
    let data: Value =
        sqlx::query_scalar("select data from events where type = 'user.mfa_disabled'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(data, json!({}));
    let mails: Vec<String> = sqlx::query_scalar(
        "select kind from messages where user_id = $1::uuid order by created_at",
    )
    .bind(&s.user_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for kind in ["mfa_enabled", "recovery_code_used", "mfa_disabled"] {
        assert!(mails.iter().any(|m| m == kind), "{kind} in {mails:?}");
    }
    let actions = app.audit_actions(&s.user_id).await;
    assert!(actions.iter().any(|a| a == "mfa.disable"), "{actions:?}");
}

#[sqlx::test]
async fn an_admin_turns_off_a_lost_device(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("boss@example.com", "admin").await;
    let s = app.signed_in("lost@example.com").await;
    let path = format!("/api/v1/private/admin/users/{}/mfa", s.user_id);
    app.delete(&path)
        .cookies(&admin)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "mfa_not_enabled");
    turn_on(&app, &s).await;
    app.delete(&path)
        .cookies(&s)
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    app.delete(&format!(
        "/api/v1/private/admin/users/{}/mfa",
        uuid::Uuid::new_v4()
    ))
    .cookies(&admin)
    .send()
    .await
    .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    let res = app.delete(&path).cookies(&admin).send().await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    app.get("/api/v1/private/users/me")
        .cookies(&s)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let res = app.login("lost@example.com", PASSWORD).await;
    assert!(
        res.cookie("access_token").is_some(),
        "one step again: {}",
        res.text()
    );
    let actor: String =
        sqlx::query_scalar("select actor from audit_log where action = 'mfa.disable'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(actor, format!("user:{}", admin.user_id));
}

#[sqlx::test]
async fn enrolment_needs_a_recent_sign_in(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("old@example.com").await;
    oauth::age_sign_in(&app, &s.session_id, 601).await;
    app.post(TOTP)
        .cookies(&s)
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "reauthentication_required");
    assert_eq!(
        count(&app, "select count(*) from totp_factors where $1 = $1", "").await,
        0
    );
}

#[sqlx::test]
async fn telegram_and_yandex_sign_ins_ask_for_the_second_step(pool: PgPool) {
    let (app, provider) = oauth::app_with(pool).await;
    let now = chrono::Utc::now().timestamp();
    let first = app
        .post("/api/v1/public/oauth/telegram")
        .json(oauth::widget(91, now, oauth::BOT_TOKEN))
        .send()
        .await;
    let s = Session {
        access: first.cookie("access_token").unwrap(),
        refresh: first.cookie("refresh_token").unwrap(),
        session_id: first.json()["session_id"].as_str().unwrap().to_owned(),
        user_id: first.json()["user"]["id"].as_str().unwrap().to_owned(),
    };
    let (secret, _) = turn_on(&app, &s).await;
    let res = app
        .post("/api/v1/public/oauth/telegram")
        .json(oauth::widget(91, now - 1, oauth::BOT_TOKEN))
        .send()
        .await;
    let token = challenged(&res);
    let done = complete(&app, &token, json!({"code": code(&secret, 0)})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(done.json()["user"]["id"], s.user_id.as_str());
    assert_eq!(
        claims(&done.cookie("access_token").unwrap())["amr"],
        json!(["telegram", "otp"])
    );

    // Yandex: a user with two-factor on is sent back with the token, no cookies
    let flow = oauth::start(&app, &provider, None).await;
    provider.approve("2001|yamfa@example.com", &flow.challenge);
    let created = oauth::callback(&app, &flow, "2001|yamfa@example.com").await;
    let ya = Session {
        access: created.cookie("access_token").unwrap(),
        refresh: created.cookie("refresh_token").unwrap(),
        session_id: String::new(),
        user_id: String::new(),
    };
    let (ya_secret, _) = turn_on(&app, &ya).await;
    let flow = oauth::start(&app, &provider, None).await;
    provider.approve("2001|yamfa@example.com#2", &flow.challenge);
    let back = oauth::callback(&app, &flow, "2001|yamfa@example.com#2").await;
    assert_eq!(back.status, StatusCode::FOUND);
    assert!(back.cookie("access_token").is_none());
    let location = url::Url::parse(&oauth::location(&back)).unwrap();
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(q["mfa_required"], "1");
    let done = complete(&app, &q["mfa_token"], json!({"code": code(&ya_secret, 0)})).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(
        claims(&done.cookie("access_token").unwrap())["amr"],
        json!(["yandex", "otp"])
    );
}

fn key(byte: u8) -> String {
    STANDARD.encode([byte; 32])
}

#[sqlx::test]
async fn secrets_are_encrypted_at_rest_and_a_wrong_key_stops_the_start(pool: PgPool) {
    let app = TestApp::with(pool.clone(), |f| f.merge(("auth.data_key", key(1)))).await;
    let s = app.signed_in("sealed@example.com").await;
    let (secret, _) = turn_on(&app, &s).await;
    let (stored, key_id): (Vec<u8>, Option<String>) =
        sqlx::query_as("select secret, key_id from totp_factors")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(key_id.is_some());
    assert_ne!(stored, secret);
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_slice()));
    let (der, der_key): (Vec<u8>, Option<String>) =
        sqlx::query_as("select private_der, key_id from signing_keys")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(der_key, key_id);
    assert!(
        users_service::auth::jwt::public_key(&der).is_err(),
        "the stored key is not plain PKCS#8"
    );

    // another key, or none, refuses to start, naming the setting
    for other in [key(2), String::new()] {
        let settings = users_service::config::Settings::from_figment(
            crate::helpers::test_figment().merge(("auth.data_key", other)),
        )
        .unwrap();
        let err = users_service::app::state(settings, pool.clone())
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap();
        assert!(err.contains("auth.data_key"), "{err}");
    }

    // rotation re-seals everything in one go; the new key then serves the same secrets
    let done = users_service::service::secrets::rotate_data_key(
        &pool.clone().into(),
        &DataKey::from_base64(&key(1)).unwrap(),
        &DataKey::from_base64(&key(2)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!((done.signing_keys, done.totp_secrets), (1, 1));
    let rotated = TestApp::with(pool.clone(), |f| f.merge(("auth.data_key", key(2)))).await;
    assert_eq!(
        rotated
            .get("/api/v1/private/users/me")
            .cookies(&s)
            .send()
            .await
            .status,
        StatusCode::OK,
        "tokens signed before the rotation still verify: the signing key is the same"
    );
    let token = challenged(&rotated.login("sealed@example.com", PASSWORD).await);
    let ok = complete(&rotated, &token, json!({"code": code(&secret, 0)})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    // a rotation with the wrong current key changes nothing
    let wrong = users_service::service::secrets::rotate_data_key(
        &pool.clone().into(),
        &DataKey::from_base64(&key(3)).unwrap(),
        &DataKey::none(),
    )
    .await;
    assert!(wrong.is_err());
    let still: Option<String> = sqlx::query_scalar("select key_id from totp_factors")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        still.as_deref(),
        DataKey::from_base64(&key(2)).unwrap().id()
    );
    // and back to no key: stored as they are
    users_service::service::secrets::rotate_data_key(
        &pool.clone().into(),
        &DataKey::from_base64(&key(2)).unwrap(),
        &DataKey::none(),
    )
    .await
    .unwrap();
    let plain: Vec<u8> = sqlx::query_scalar("select secret from totp_factors")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(plain, secret);
}

#[sqlx::test]
async fn a_right_code_on_a_private_route_neither_counts_nor_ends_the_count(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let (secret, _) = turn_on(&app, &s).await;
    let failures = || {
        app.scalar_i64(
            "select coalesce((select failures::bigint from login_throttle where email_key = $1), 0)",
            "ann@example.com",
        )
    };
    for _ in 0..2 {
        app.post(CODES)
            .cookies(&s)
            .json(json!({"code": wrong_code(&secret)}))
            .send()
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "invalid_mfa_code");
    }
    assert_eq!(failures().await, 2);
    let res = app
        .post(CODES)
        .cookies(&s)
        .json(json!({"code": code(&secret, 0)}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(
        failures().await,
        2,
        "only a completed sign-in ends the count (contract)"
    );
}
