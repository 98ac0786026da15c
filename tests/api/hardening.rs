//! The contract's "Hardening" section, rule by rule (the provider rules — recent sign-in for
//! linking, sign-up through providers, single-use Telegram payloads — are in `oauth.rs`).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use sqlx::PgPool;
use users_service::service::lifecycle;

use crate::binary::{peak_rss_kib, probe_liveness_while, FreshDb, Server};
use crate::helpers::{unique_ip, TestApp, PASSWORD};

const LOGIN: &str = "/api/v1/public/users/login";
const REFRESH: &str = "/api/v1/public/users/refresh";

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[sqlx::test]
async fn access_and_refresh_tokens_are_typed_and_a_refresh_token_fails_an_audience_check(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(header_of(access)["typ"], "at+jwt");
    assert_eq!(header_of(refresh)["typ"], "refresh+jwt");

    // a downstream service: verifies with the JWKS key and checks `aud` against auth.audience
    let jwks = app.get("/.well-known/jwks.json").send().await.json();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    let key = DecodingKey::from_ed_components(x).unwrap();
    let mut downstream = Validation::new(Algorithm::EdDSA);
    downstream.set_audience(&["platform"]);
    downstream.set_issuer(&["users-service"]);
    assert!(jsonwebtoken::decode::<Value>(access, &key, &downstream).is_ok());
    let refused = jsonwebtoken::decode::<Value>(refresh, &key, &downstream).unwrap_err();
    assert!(
        matches!(
            refused.kind(),
            jsonwebtoken::errors::ErrorKind::InvalidAudience
        ),
        "{refused:?}"
    );
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(refresh.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "users-service");
    // and this service takes neither for the other
    app.get("/api/v1/private/users/me")
        .bearer(refresh)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.post(REFRESH)
        .json(json!({"refresh_token": access}))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn every_answer_that_carries_a_token_is_no_store(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let no_store = |res: &crate::helpers::TestResponse, what: &str| {
        assert!(res.status.is_success(), "{what}: {}", res.text());
        assert_eq!(
            res.headers
                .get(header::CACHE_CONTROL)
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{what}"
        );
    };
    let login = app.login("ann@example.com", PASSWORD).await;
    no_store(&login, "login");
    let token = app
        .post("/api/v1/public/users/token")
        .json(json!({"email": "ann@example.com", "password": PASSWORD}))
        .ip(unique_ip())
        .send()
        .await;
    no_store(&token, "token");
    let body_refresh = app
        .post(REFRESH)
        .json(json!({"refresh_token": token.json()["refresh_token"]}))
        .send()
        .await;
    no_store(&body_refresh, "refresh (body)");
    let cookie_refresh = app
        .post(REFRESH)
        .header(
            "cookie",
            &format!("refresh_token={}", login.cookie("refresh_token").unwrap()),
        )
        .send()
        .await;
    no_store(&cookie_refresh, "refresh (cookie)");
    let reset = app
        .post("/api/v1/server/users/passw/reset_token")
        .server_key()
        .json(json!({"email": "ann@example.com"}))
        .send()
        .await;
    no_store(&reset, "server reset token");
}

#[sqlx::test]
async fn a_session_older_than_its_absolute_lifetime_cannot_refresh(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    // the sliding refresh lifetime is fine; the sign-in was 91 days ago
    sqlx::query(
        "update sessions set created_at = now() - interval '91 days',
                             expires_at = now() + interval '30 days' where id = $1::uuid",
    )
    .bind(&s.session_id)
    .execute(&app.pool)
    .await
    .unwrap();
    let res = app
        .post(REFRESH)
        .header("cookie", &format!("refresh_token={}", s.refresh))
        .send()
        .await;
    res.assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(res.clears_cookies());
}

#[sqlx::test]
async fn concurrent_wrong_passwords_get_at_most_the_limit_of_verdicts(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.max_failed_logins", 3))).await;
    app.sign_up("ann@example.com").await;
    let guesses = (0..12).map(|i| {
        app.post(LOGIN)
            .json(json!({"email": "ann@example.com", "password": format!("wrong guess {i}")}))
            .ip(unique_ip())
            .send()
    });
    let answers = futures::future::join_all(guesses).await;
    let wrong = answers
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    let locked = answers
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((wrong, locked), (3, 9), "at most 3 guesses may be checked");
    for r in answers
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
    {
        r.assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    }
    // the owner too is locked out until the window passes
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
}

#[sqlx::test]
async fn wrong_current_passwords_count_into_the_login_lockout(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.max_failed_logins", 3))).await;
    let s = app.signed_in("ann@example.com").await;
    for i in 0..3 {
        app.put("/api/v1/private/users/me/password")
            .bearer(&s.access)
            .json(json!({"current_password": format!("not it {i}"), "new_password": "a brand new passphrase 42"}))
            .ip(unique_ip())
            .send()
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    app.put("/api/v1/private/users/me/contacts")
        .bearer(&s.access)
        .json(json!({"phone": "+79990001122", "current_password": PASSWORD}))
        .ip(unique_ip())
        .send()
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    let phone: Option<String> = sqlx::query_scalar("select phone from users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(phone, None, "nothing changed");
}

#[sqlx::test]
async fn password_checking_private_routes_have_a_per_ip_budget(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("rate_limit.login_per_minute", 2))).await;
    let s = app.signed_in("ann@example.com").await;
    let ip = unique_ip();
    let change = |i: u32| {
        app.put("/api/v1/private/users/me/contacts")
            .bearer(&s.access)
            .json(json!({"phone": format!("+7999000112{i}"), "current_password": PASSWORD}))
            .ip(ip)
            .send()
    };
    assert_eq!(change(1).await.status, StatusCode::OK);
    assert_eq!(change(2).await.status, StatusCode::OK);
    let res = change(3).await;
    res.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(res.headers.contains_key(header::RETRY_AFTER));
}

#[sqlx::test]
async fn a_full_queue_for_hashing_slots_answers_503_with_retry_after_1(pool: PgPool) {
    let app = TestApp::with(pool, |f| {
        f.merge(("auth.hash_queue_max", 1))
            .merge(("auth.max_failed_logins", 1000))
    })
    .await;
    let logins = (0..24).map(|i| {
        app.post(LOGIN)
            .json(json!({"email": format!("nobody{i}@example.com"), "password": "wrong password"}))
            .ip(unique_ip())
            .send()
    });
    let answers = futures::future::join_all(logins).await;
    let busy: Vec<_> = answers
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        !busy.is_empty(),
        "one slot per core and one waiter: some must be turned away"
    );
    for r in &busy {
        r.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert_eq!(r.headers[header::RETRY_AFTER], "1");
    }
    assert!(answers.iter().all(
        |r| r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::SERVICE_UNAVAILABLE
    ));
    // a turned-away attempt was handed back: it does not count towards a lockout
    let counted: i64 =
        sqlx::query_scalar("select coalesce(sum(failures), 0)::bigint from login_throttle")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(counted as usize, answers.len() - busy.len());
}

#[sqlx::test]
async fn a_request_dropped_mid_hash_keeps_its_hashing_slot_until_the_hash_ends(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.max_failed_logins", 100_000))).await;
    // clients that go away: forty logins at once, each dropped a few milliseconds after the first
    // hash has started, so some are hashing and the rest wait for a slot when they are dropped
    // (what a reset HTTP/2 stream, a proxy timeout or a timeout layer does). Waiting for a hash to
    // start, rather than a fixed delay, keeps this true on a machine slow to reach the hash.
    let passwords = &app.state.passwords;
    let logins = (0..40u64).map(|i| {
        let login = app
            .post(LOGIN)
            .json(json!({"email": format!("gone{i}@example.com"), "password": "wrong password"}))
            .ip(unique_ip())
            .send();
        async move {
            let hashing_started = async {
                while passwords.running().1 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::time::sleep(Duration::from_millis(i % 8)).await;
            };
            tokio::select! {
                _ = login => {}
                _ = hashing_started => {}
            }
        }
    });
    futures::future::join_all(logins).await;
    while passwords.running().0 > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cores = std::thread::available_parallelism().unwrap().get();
    let (_, peak) = passwords.running();
    assert!(
        (1..=cores).contains(&peak),
        "{peak} hashes ran at once on {cores} cores"
    );
    assert_eq!(passwords.waiting(), 0, "dropped waiters leave the queue");
    // every slot came back: a login now runs to its answer
    app.login("nobody@example.com", "wrong password")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[sqlx::test]
async fn clients_that_send_a_login_and_hang_up_cannot_stack_hashes(pool: PgPool) {
    let db = FreshDb::new(&pool);
    let server = Server::start_with(
        &db,
        &[
            ("USERS__RATE_LIMIT__LOGIN_PER_MINUTE", "100000000"),
            ("USERS__AUTH__MAX_FAILED_LOGINS", "100000000"),
        ],
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let body = r#"{"email":"nobody@example.com","password":"wrong password here"}"#;
    let request = format!(
        "POST /api/v1/public/users/login HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // 64 clients, each sending a login and closing its socket at once, for 4 seconds: memory stays
    // bounded and liveness answers while the queue for hashing slots turns the excess away
    let until = Instant::now() + Duration::from_secs(4);
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (addr, request) = (addr.clone(), request.clone());
            std::thread::spawn(move || {
                let mut sent = 0u32;
                while Instant::now() < until {
                    if let Ok(mut s) = TcpStream::connect(&addr) {
                        let _ = s.write_all(request.as_bytes());
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    let probes = probe_liveness_while(&server.base, Duration::from_millis(100), || {
        clients.iter().any(|c| !c.is_finished())
    })
    .await;
    let sent: u32 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(sent > 500, "only {sent} hang-ups sent");
    assert!(probes > 0);
    let peak_mib = peak_rss_kib(server.child.id()) / 1024;
    assert!(
        peak_mib < 200,
        "peak RSS {peak_mib} MiB after {sent} hang-ups"
    );
    drop(server);
    drop(db);
}

#[sqlx::test]
async fn a_response_that_clears_the_cookies_never_sets_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    // the access cookie has expired (absent): the layer refreshes, then the handler logs out
    let res = app
        .put("/api/v1/private/users/logout")
        .header("cookie", &format!("refresh_token={}", s.refresh))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(res.clears_cookies());
    for line in res.set_cookies() {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            line.contains("Max-Age=0"),
            "cookie {name} was set, not cleared"
        );
    }
    // the same for deleting the account
    let s = app.signed_in("bob@example.com").await;
    let res = app
        .delete("/api/v1/private/users/me")
        .header("cookie", &format!("refresh_token={}", s.refresh))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    for line in res.set_cookies() {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            line.contains("Max-Age=0"),
            "cookie {name} was set, not cleared"
        );
    }
}

#[sqlx::test]
async fn public_restore_brings_back_only_an_account_its_owner_deleted(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("admin@example.com", "admin").await;
    let owner = app.signed_in("own@example.com").await;
    let victim = app.signed_in("gone@example.com").await;
    app.delete("/api/v1/private/users/me")
        .bearer(&owner.access)
        .send()
        .await;
    app.delete(&format!("/api/v1/private/admin/users/{}", victim.user_id))
        .bearer(&admin.access)
        .send()
        .await;
    let restore = |email: &'static str| {
        app.post("/api/v1/public/users/restore")
            .json(json!({"email": email, "password": PASSWORD}))
            .ip(unique_ip())
            .send()
    };
    restore("gone@example.com")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "account_deleted");
    let status: String = sqlx::query_scalar("select status from users where id = $1::uuid")
        .bind(&victim.user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "deleted");
    assert_eq!(restore("own@example.com").await.status, StatusCode::OK);
    // an admin restores the one an admin deleted
    let res = app
        .post(&format!(
            "/api/v1/private/admin/users/{}/restore",
            victim.user_id
        ))
        .bearer(&admin.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[sqlx::test]
async fn the_purge_sweeps_records_that_can_no_longer_do_anything(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let live = app.signed_in("bob@example.com").await;
    for sql in [
        "update sessions set expires_at = now() - interval '1 second' where id = $1::uuid",
        "insert into login_throttle (email_key, failures, window_started_at)
             values ('old@example.com', 3, now() - interval '2 hours'), ($1, 1, now())",
        "insert into oauth_states (state_hash, provider, code_verifier, redirect_to, browser_hash, expires_at)
             values ('\\x01', 'yandex', 'v', 'https://a.example', '\\x02', now() - interval '1 second'),
                    ('\\x03', 'yandex', 'v', 'https://a.example', '\\x04', now() + interval '1 hour')
             returning $1",
        "insert into telegram_logins (hash_digest, expires_at)
             values ('\\x05', now() - interval '1 second'), ('\\x06', now() + interval '1 hour')
             returning $1",
        "insert into webauthn_challenges (id, ceremony, state, expires_at)
             values (gen_random_uuid(), 'authentication', '{}', now() - interval '1 second'),
                    (gen_random_uuid(), 'authentication', '{}', now() + interval '1 hour')
             returning $1",
        "insert into messages (id, kind, recipient, subject, message_id, status, created_at)
             values (gen_random_uuid(), 'welcome', 'a@example.com', 'old', '<1@x>', 'sent', now() - interval '8 days'),
                    (gen_random_uuid(), 'welcome', 'b@example.com', 'new', '<2@x>', 'sent', now())
             returning $1",
    ] {
        sqlx::query(sql)
            .bind(&s.session_id)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    for expires in ["now() - interval '1 second'", "now() + interval '1 hour'"] {
        sqlx::query(&format!(
            "insert into password_reset_tokens (token_hash, user_id, expires_at)
             values (sha256(gen_random_uuid()::text::bytea), $1::uuid, {expires})"
        ))
        .bind(&live.user_id)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "insert into password_reset_tokens (token_hash, user_id, expires_at, used_at)
         values ('\\x07', $1::uuid, now() + interval '1 hour', now())",
    )
    .bind(&live.user_id)
    .execute(&app.pool)
    .await
    .unwrap();

    let swept = lifecycle::sweep_stale_records(&app.state).await.unwrap();
    assert_eq!(
        swept,
        lifecycle::Swept {
            sessions: 1,
            lockout_counters: 1,
            flow_states: 1,
            reset_tokens: 2,
            telegram_logins: 1,
            verification_tokens: 0,
            messages: 1,
            events: 0,
            notifications: 0,
            mfa_challenges: 0,
            webauthn_challenges: 1,
        }
    );
    for (table, left) in [
        ("sessions", 1),
        ("login_throttle", 1),
        ("oauth_states", 1),
        ("password_reset_tokens", 1),
        ("telegram_logins", 1),
        ("webauthn_challenges", 1),
    ] {
        let n = app
            .scalar_i64(&format!("select count(*) from {table} where $1 = $1"), "")
            .await;
        assert_eq!(n, left, "{table}");
    }
    // the live session still works
    assert_eq!(
        app.get("/api/v1/private/users/me")
            .bearer(&live.access)
            .send()
            .await
            .status,
        StatusCode::OK
    );
}
