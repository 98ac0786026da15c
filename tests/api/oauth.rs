//! Sign-in with Yandex against a provider this test runs on loopback, and with Telegram.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use figment::Figment;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use users_service::providers::telegram;

use crate::helpers::{TestApp, TestResponse};

pub(crate) const BACK: &str = "https://app.example/after";
pub(crate) const BOT_TOKEN: &str = "123456:test-bot-token";

/// Codes the fake Yandex has issued, with the PKCE challenge each was issued for.
type Challenges = Arc<Mutex<HashMap<String, String>>>;

pub(crate) struct FakeYandex {
    base: String,
    challenges: Challenges,
}

impl FakeYandex {
    async fn start() -> Self {
        let challenges: Challenges = Arc::default();
        let app = axum::Router::new()
            .route("/token", post(token))
            .route("/info", get(info))
            .with_state(challenges.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, challenges }
    }

    /// The person approves: the provider issues `code` for the flow's challenge.
    pub(crate) fn approve(&self, code: &str, challenge: &str) {
        self.challenges
            .lock()
            .unwrap()
            .insert(code.to_owned(), challenge.to_owned());
    }

    fn config(&self, f: Figment) -> Figment {
        f.merge((
            "oauth.yandex.authorize_url",
            format!("{}/authorize", self.base),
        ))
        .merge(("oauth.yandex.token_url", format!("{}/token", self.base)))
        .merge(("oauth.yandex.userinfo_url", format!("{}/info", self.base)))
        .merge(("oauth.yandex.client_id", "cid"))
        .merge(("oauth.yandex.client_secret", "csecret"))
        .merge((
            "oauth.yandex.redirect_uri",
            "http://localhost:8080/api/v1/public/oauth/yandex/callback",
        ))
        .merge(("oauth.allowed_redirects", vec![BACK]))
        .merge(("oauth.http_timeout_secs", 1))
        .merge(("oauth.telegram.bot_token", BOT_TOKEN))
    }
}

async fn token(
    State(challenges): State<Challenges>,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    let code = form.get("code").cloned().unwrap_or_default();
    if code.starts_with("fail500") {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if code.starts_with("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let expected = challenges.lock().unwrap().remove(&code);
    let pkce_ok = expected == Some(URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())));
    let client_ok = form.get("client_id").map(String::as_str) == Some("cid")
        && form.get("client_secret").map(String::as_str) == Some("csecret")
        && form.get("grant_type").map(String::as_str) == Some("authorization_code");
    if !pkce_ok || !client_ok {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    axum::Json(json!({"access_token": format!("at-{code}"), "token_type": "bearer"}))
        .into_response()
}

/// The profile comes from the code: `id|email`.
async fn info(headers: HeaderMap) -> axum::response::Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(code) = auth.strip_prefix("OAuth at-") else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let (id, email) = code.split_once('|').unwrap_or((code, ""));
    let mut profile =
        json!({"id": id, "login": format!("login{id}"), "first_name": "Ya", "last_name": "User"});
    if !email.is_empty() {
        profile["default_email"] = json!(email);
    }
    axum::Json(profile).into_response()
}

pub(crate) struct Flow {
    pub(crate) state: String,
    pub(crate) challenge: String,
    pub(crate) nonce: String,
}

pub(crate) async fn start(app: &TestApp, provider: &FakeYandex, cookie: Option<&str>) -> Flow {
    let mut req = app.get(&format!(
        "/api/v1/public/oauth/yandex/authorize?redirect_to={}",
        urlencode(BACK)
    ));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = req.send().await;
    assert_eq!(res.status, StatusCode::FOUND, "{}", res.text());
    let location = url::Url::parse(res.headers["location"].to_str().unwrap()).unwrap();
    assert!(location
        .as_str()
        .starts_with(&format!("{}/authorize?", provider.base)));
    let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "cid");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(
        q["redirect_uri"],
        "http://localhost:8080/api/v1/public/oauth/yandex/callback"
    );
    let nonce_line = res.set_cookie_line("oauth_nonce").unwrap();
    assert!(
        nonce_line.contains("HttpOnly") && nonce_line.contains("Path=/api/v1/public/oauth"),
        "{nonce_line}"
    );
    Flow {
        state: q["state"].clone(),
        challenge: q["code_challenge"].clone(),
        nonce: res.cookie("oauth_nonce").unwrap(),
    }
}

pub(crate) async fn callback(app: &TestApp, flow: &Flow, code: &str) -> TestResponse {
    app.get(&format!(
        "/api/v1/public/oauth/yandex/callback?code={}&state={}",
        urlencode(code),
        flow.state
    ))
    .header("cookie", &format!("oauth_nonce={}", flow.nonce))
    .send()
    .await
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) fn location(res: &TestResponse) -> String {
    res.headers["location"].to_str().unwrap().to_owned()
}

pub(crate) async fn app_with(pool: PgPool) -> (TestApp, FakeYandex) {
    let provider = FakeYandex::start().await;
    let app = TestApp::with(pool, |f| provider.config(f)).await;
    (app, provider)
}

#[sqlx::test]
async fn an_unknown_yandex_identity_creates_a_user_and_signs_in(pool: PgPool) {
    let (app, provider) = app_with(pool).await;
    let flow = start(&app, &provider, None).await;
    provider.approve("1001|ya@example.com", &flow.challenge);
    let res = callback(&app, &flow, "1001|ya@example.com").await;
    assert_eq!(res.status, StatusCode::FOUND, "{}", res.text());
    assert_eq!(location(&res), BACK);
    let access = res.cookie("access_token").unwrap();
    assert!(res.cookie("refresh_token").is_some());
    assert!(res
        .set_cookie_line("oauth_nonce")
        .unwrap()
        .contains("Max-Age=0"));
    let me = app
        .get("/api/v1/private/users/me")
        .bearer(&access)
        .send()
        .await
        .json();
    assert_eq!(me["email"], "ya@example.com");
    assert_eq!(
        me["email_verified"], true,
        "Yandex vouches for the address it gave"
    );
    assert_eq!(me["first_name"], "Ya");
    assert_eq!(me["linked_accounts"][0]["social_network"], "yandex");
    let external: String = sqlx::query_scalar("select external_id from linked_accounts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(external, "1001");
}

#[sqlx::test]
async fn a_returning_yandex_identity_signs_in_its_user(pool: PgPool) {
    let (app, provider) = app_with(pool).await;
    for code in ["1002|r@example.com", "1002|r@example.com#2"] {
        let flow = start(&app, &provider, None).await;
        provider.approve(code, &flow.challenge);
        let res = callback(&app, &flow, code).await;
        assert_eq!(res.status, StatusCode::FOUND);
        assert!(res.cookie("access_token").is_some());
    }
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        1
    );
    assert_eq!(
        app.scalar_i64("select count(*) from sessions where $1 = $1", "")
            .await,
        2
    );
}

#[sqlx::test]
async fn with_a_session_cookie_the_flow_links_instead_of_signing_in(pool: PgPool) {
    let (app, provider) = app_with(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let flow = start(&app, &provider, Some(&format!("access_token={}", s.access))).await;
    provider.approve("1003|other@example.com", &flow.challenge);
    let res = callback(&app, &flow, "1003|other@example.com").await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(location(&res), format!("{BACK}?linked=yandex"));
    assert!(res.cookie("access_token").is_none());
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        1
    );
    let owner: uuid::Uuid =
        sqlx::query_scalar("select user_id from linked_accounts where external_id = '1003'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(owner.to_string(), s.user_id);
    // the linked identity now signs in that user
    let flow = start(&app, &provider, None).await;
    provider.approve("1003", &flow.challenge);
    let res = callback(&app, &flow, "1003").await;
    let access = res.cookie("access_token").unwrap();
    assert_eq!(
        app.get("/api/v1/private/users/me")
            .bearer(&access)
            .send()
            .await
            .json()["id"],
        s.user_id
    );
}

#[sqlx::test]
async fn an_email_of_another_account_is_not_linked_automatically(pool: PgPool) {
    let (app, provider) = app_with(pool).await;
    app.sign_up("taken@example.com").await;
    let flow = start(&app, &provider, None).await;
    provider.approve("1004|taken@example.com", &flow.challenge);
    let res = callback(&app, &flow, "1004|taken@example.com").await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(location(&res), format!("{BACK}?error=account_exists"));
    assert!(res.cookie("access_token").is_none());
    assert_eq!(
        app.scalar_i64("select count(*) from linked_accounts where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn a_replayed_wrong_or_foreign_state_is_invalid_state(pool: PgPool) {
    let (app, provider) = app_with(pool).await;
    let flow = start(&app, &provider, None).await;
    provider.approve("1005", &flow.challenge);
    // another browser (no or a different nonce cookie) cannot finish this flow
    let foreign = app
        .get(&format!(
            "/api/v1/public/oauth/yandex/callback?code=1005&state={}",
            flow.state
        ))
        .header("cookie", "oauth_nonce=someone-elses")
        .send()
        .await;
    foreign.assert_problem(StatusCode::BAD_REQUEST, "invalid_state");
    // the state was used up by that attempt: a replay fails too
    callback(&app, &flow, "1005")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");
    let unknown = Flow {
        state: "made-up".into(),
        challenge: String::new(),
        nonce: flow.nonce.clone(),
    };
    callback(&app, &unknown, "1005")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");
    app.get("/api/v1/public/oauth/yandex/callback?code=x")
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");
    // a good flow, replayed after success
    let flow = start(&app, &provider, None).await;
    provider.approve("1006", &flow.challenge);
    assert_eq!(
        callback(&app, &flow, "1006").await.status,
        StatusCode::FOUND
    );
    callback(&app, &flow, "1006")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");
}

#[sqlx::test]
async fn an_expired_state_is_invalid_state(pool: PgPool) {
    let (app, provider) = app_with(pool).await;
    let flow = start(&app, &provider, None).await;
    provider.approve("1007", &flow.challenge);
    sqlx::query("update oauth_states set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    callback(&app, &flow, "1007")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_state");
}

#[sqlx::test]
async fn provider_failures_and_timeouts_are_provider_error(pool: PgPool) {
    let (app, provider) = app_with(pool).await;
    for code in ["fail500", "slow"] {
        let flow = start(&app, &provider, None).await;
        provider.approve(code, &flow.challenge);
        let started = std::time::Instant::now();
        callback(&app, &flow, code)
            .await
            .assert_problem(StatusCode::BAD_GATEWAY, "provider_error");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{code}: {:?}",
            started.elapsed()
        );
    }
    // a code issued for another flow's challenge fails PKCE at the provider
    let flow = start(&app, &provider, None).await;
    provider.approve("1008", "not-this-flows-challenge");
    callback(&app, &flow, "1008")
        .await
        .assert_problem(StatusCode::BAD_GATEWAY, "provider_error");
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn a_declined_sign_in_goes_back_with_the_providers_error(pool: PgPool) {
    let (app, provider) = app_with(pool).await;
    let flow = start(&app, &provider, None).await;
    let res = app
        .get(&format!(
            "/api/v1/public/oauth/yandex/callback?error=access_denied&state={}",
            flow.state
        ))
        .header("cookie", &format!("oauth_nonce={}", flow.nonce))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(location(&res), format!("{BACK}?error=access_denied"));
}

#[sqlx::test]
async fn redirect_to_must_be_an_allowed_redirect(pool: PgPool) {
    let (app, _provider) = app_with(pool).await;
    for target in [
        "https://evil.example/after",
        "https://app.example/after/../x",
        "",
    ] {
        app.get(&format!(
            "/api/v1/public/oauth/yandex/authorize?redirect_to={}",
            urlencode(target)
        ))
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    assert_eq!(
        app.scalar_i64("select count(*) from oauth_states where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn an_unconfigured_provider_is_not_found(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("oauth.allowed_redirects", vec![BACK]))).await;
    app.get(&format!(
        "/api/v1/public/oauth/yandex/authorize?redirect_to={}",
        urlencode(BACK)
    ))
    .send()
    .await
    .assert_problem(StatusCode::NOT_FOUND, "provider_not_configured");
}

pub(crate) fn widget(id: i64, auth_date: i64, token: &str) -> serde_json::Value {
    let fields: BTreeMap<String, String> = [
        ("id", id.to_string()),
        ("first_name", "Tg".to_owned()),
        ("username", format!("tg{id}")),
        ("auth_date", auth_date.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let hash = hex::encode(telegram::sign(&fields, token));
    json!({"id": id, "first_name": "Tg", "username": format!("tg{id}"), "auth_date": auth_date, "hash": hash})
}

#[sqlx::test]
async fn a_correctly_signed_telegram_login_signs_in_and_returns(pool: PgPool) {
    let (app, _provider) = app_with(pool).await;
    let now = chrono::Utc::now().timestamp();
    let first = app
        .post("/api/v1/public/oauth/telegram")
        .json(widget(77, now, BOT_TOKEN))
        .send()
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert!(first.cookie("access_token").is_some());
    assert_eq!(
        first.headers["cache-control"], "no-store",
        "an answer with tokens"
    );
    let user = first.json()["user"].clone();
    assert_eq!(user["linked_accounts"][0]["social_network"], "telegram");
    assert_eq!(
        user["linked_accounts"][0]["connection_link"],
        "https://t.me/tg77"
    );
    // a new widget payload (each is single use) signs the same user in
    let again = app
        .post("/api/v1/public/oauth/telegram")
        .json(widget(77, now - 1, BOT_TOKEN))
        .send()
        .await;
    assert_eq!(again.json()["user"]["id"], user["id"]);
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        1
    );
    // the identity is the only way in: it cannot be unlinked
    let cookie = format!("access_token={}", again.cookie("access_token").unwrap());
    let link_id = user["linked_accounts"][0]["id"].as_str().unwrap();
    app.delete(&format!(
        "/api/v1/private/users/me/linked-accounts/{link_id}"
    ))
    .header("cookie", &cookie)
    .send()
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "last_login_method");
}

#[sqlx::test]
async fn wrongly_signed_or_stale_telegram_logins_are_invalid_credentials(pool: PgPool) {
    let (app, _provider) = app_with(pool).await;
    let now = chrono::Utc::now().timestamp();
    let mut tampered = widget(78, now, BOT_TOKEN);
    tampered["first_name"] = json!("Mallory");
    for body in [
        widget(78, now, "999:another-bot"),
        widget(78, now - 86_401, BOT_TOKEN),
        tampered,
    ] {
        app.post("/api/v1/public/oauth/telegram")
            .json(body)
            .send()
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn a_telegram_login_with_a_session_links_the_identity(pool: PgPool) {
    let (app, _provider) = app_with(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let now = chrono::Utc::now().timestamp();
    let res = app
        .post("/api/v1/public/oauth/telegram")
        .cookies(&s)
        .json(widget(79, now, BOT_TOKEN))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["user"]["id"], s.user_id);
    assert_eq!(res.json()["session_id"], s.session_id);
    // a foreign page cannot make a signed-in browser link someone else's identity
    let forged = app
        .post("/api/v1/public/oauth/telegram")
        .cookies(&s)
        .header("origin", "https://evil.example")
        .json(widget(80, now, BOT_TOKEN))
        .send()
        .await;
    forged.assert_problem(StatusCode::FORBIDDEN, "origin_not_allowed");
    assert_eq!(
        app.scalar_i64(
            "select count(*) from linked_accounts where external_id = $1",
            "80"
        )
        .await,
        0
    );
}

/// Makes the session's sign-in look `secs` seconds old.
pub(crate) async fn age_sign_in(app: &TestApp, session_id: &str, secs: i64) {
    sqlx::query(
        "update sessions set created_at = now() - make_interval(secs => $2) where id = $1::uuid",
    )
    .bind(session_id)
    .bind(secs as f64)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[sqlx::test]
async fn linking_an_identity_needs_a_recent_sign_in(pool: PgPool) {
    let (app, provider) = app_with(pool).await;
    let s = app.signed_in("ann@example.com").await;
    age_sign_in(&app, &s.session_id, 601).await;
    let now = chrono::Utc::now().timestamp();
    app.post("/api/v1/public/oauth/telegram")
        .cookies(&s)
        .json(widget(81, now, BOT_TOKEN))
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "reauthentication_required");
    let res = app
        .get(&format!(
            "/api/v1/public/oauth/yandex/authorize?redirect_to={}",
            urlencode(BACK)
        ))
        .header("cookie", &format!("access_token={}", s.access))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::FOUND, "{}", res.text());
    assert_eq!(
        location(&res),
        format!("{BACK}?error=reauthentication_required")
    );
    assert_eq!(
        app.scalar_i64("select count(*) from linked_accounts where $1 = $1", "")
            .await
            + app
                .scalar_i64("select count(*) from oauth_states where $1 = $1", "")
                .await,
        0
    );
    // a fresh sign-in links, and the link is audited
    age_sign_in(&app, &s.session_id, 0).await;
    let flow = start(&app, &provider, Some(&format!("access_token={}", s.access))).await;
    provider.approve("1009", &flow.challenge);
    assert_eq!(
        location(&callback(&app, &flow, "1009").await),
        format!("{BACK}?linked=yandex")
    );
    let actions = app.audit_actions(&s.user_id).await;
    assert!(actions.iter().any(|a| a.contains("link")), "{actions:?}");
}

#[sqlx::test]
async fn with_public_sign_up_off_providers_create_no_users(pool: PgPool) {
    let provider = FakeYandex::start().await;
    let app = TestApp::with(pool, |f| {
        provider.config(f).merge(("auth.public_sign_up", false))
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    app.post("/api/v1/public/oauth/telegram")
        .json(widget(82, now, BOT_TOKEN))
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "sign_up_disabled");
    let flow = start(&app, &provider, None).await;
    provider.approve("1010|new@example.com", &flow.challenge);
    let res = callback(&app, &flow, "1010|new@example.com").await;
    assert_eq!(location(&res), format!("{BACK}?error=sign_up_disabled"));
    assert!(res.cookie("access_token").is_none());
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn a_telegram_payload_signs_in_once(pool: PgPool) {
    let (app, _provider) = app_with(pool).await;
    let body = widget(83, chrono::Utc::now().timestamp(), BOT_TOKEN);
    let first = app
        .post("/api/v1/public/oauth/telegram")
        .json(body.clone())
        .send()
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    app.post("/api/v1/public/oauth/telegram")
        .json(body)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(
        app.scalar_i64("select count(*) from sessions where $1 = $1", "")
            .await,
        1
    );
}

#[sqlx::test]
async fn an_absurd_telegram_auth_date_is_invalid_credentials_not_a_500(pool: PgPool) {
    let (app, _provider) = app_with(pool).await;
    for date in [i64::MAX, i64::MIN, -1, 0] {
        app.post("/api/v1/public/oauth/telegram")
            .json(widget(84, date, BOT_TOKEN))
            .send()
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
}
