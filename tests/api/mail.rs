//! The courier and the mail the contract's "Mail" table names, delivered to a real SMTP server on
//! loopback (`smtp.rs`) and read back from it.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::helpers::{unique_ip, TestApp, PASSWORD};
use crate::smtp::{Mode, SmtpSink};

const FORGOT: &str = "/api/v1/public/users/passw/forgot";
const VERIFY: &str = "/api/v1/public/users/email/verify";

/// An app whose courier delivers to `sink` (retrying fast).
async fn app_with_sink(pool: PgPool, sink: &SmtpSink) -> TestApp {
    app_with(pool, sink, |f| f).await
}

async fn app_with(
    pool: PgPool,
    sink: &SmtpSink,
    tweak: impl FnOnce(figment::Figment) -> figment::Figment,
) -> TestApp {
    let url = sink.url.clone();
    let app = TestApp::with(pool, move |f| {
        tweak(
            f.merge(("email.smtp_url", url))
                .merge(("email.retry_base_secs", 1))
                .merge(("email.poll_interval_secs", 1)),
        )
    })
    .await;
    users_service::jobs::courier::spawn(app.state.clone(), CancellationToken::new())
        .expect("the courier runs");
    app
}

async fn forgot(app: &TestApp, email: &str) {
    let res = app
        .post(FORGOT)
        .json(json!({ "email": email }))
        .ip(unique_ip())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert!(res.text().is_empty());
}

async fn message_count(app: &TestApp, kind: &str) -> i64 {
    app.scalar_i64("select count(*) from messages where kind = $1", kind)
        .await
}

#[sqlx::test]
async fn forgot_mails_a_reset_link_that_sets_a_new_password(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    app.sign_up("ann@example.com").await;
    forgot(&app, "ANN@example.com").await;
    let mail = sink.wait_for("ann@example.com", "Reset").await;
    assert_eq!(mail.content_type, "multipart/alternative");
    assert!(mail.message_id.starts_with('<') && mail.message_id.ends_with('>'));
    assert!(mail
        .text
        .contains("http://localhost:3000/reset-password?token="));
    assert!(mail.html.contains("reset-password?token="));
    let res = app
        .put("/api/v1/public/users/passw/reset")
        .json(json!({"reset_token": mail.token(), "password": "a brand new passphrase 42"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert_eq!(
        app.login("ann@example.com", "a brand new passphrase 42")
            .await
            .status,
        StatusCode::OK
    );
    sink.wait_for("ann@example.com", "password was changed")
        .await;
    // once sent, the body (it held the live token) is erased; the metadata stays
    let erased = app
        .scalar_i64(
            "select count(*) from messages where kind = $1 and status = 'sent'
             and body_text is null and body_html is null and sent_at is not null",
            "password_reset",
        )
        .await;
    assert_eq!(erased, 1);
}

#[sqlx::test]
async fn forgot_answers_alike_for_unknown_deleted_and_placeholder_addresses_and_mails_nothing(
    pool: PgPool,
) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    let gone = app.signed_in("gone@example.com").await;
    app.delete("/api/v1/private/users/me")
        .bearer(&gone.access)
        .send()
        .await;
    sqlx::query(
        "insert into users (id, email, first_name, role) values (gen_random_uuid(), 'telegram-1@users.invalid', 'Tg', 'methodist')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    for email in [
        "nobody@example.com",
        "gone@example.com",
        "telegram-1@users.invalid",
    ] {
        forgot(&app, email).await;
    }
    app.post(FORGOT)
        .json(json!({"email": "not an email"}))
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(message_count(&app, "password_reset").await, 0);
    assert_eq!(
        app.scalar_i64(
            "select count(*) from password_reset_tokens where $1 = $1",
            ""
        )
        .await,
        0
    );
}

#[sqlx::test]
async fn reset_mails_are_limited_per_account_and_a_new_token_kills_older_ones(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    app.sign_up("ann@example.com").await;
    forgot(&app, "ann@example.com").await;
    let first = sink.wait_for("ann@example.com", "Reset").await.token();
    forgot(&app, "ann@example.com").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        message_count(&app, "password_reset").await,
        1,
        "within email.min_interval_secs"
    );
    // a server-issued token makes the mailed one dead
    let issued = app
        .post("/api/v1/server/users/passw/reset_token")
        .server_key()
        .json(json!({"email": "ann@example.com"}))
        .send()
        .await;
    assert_eq!(issued.status, StatusCode::CREATED);
    app.put("/api/v1/public/users/passw/reset")
        .json(json!({"reset_token": first, "password": "a brand new passphrase 42"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_reset_token");
}

#[sqlx::test]
async fn sign_up_mails_a_welcome_whose_link_verifies_the_address_once(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    let s = app.signed_in("ann@example.com").await;
    let me = app
        .get("/api/v1/private/users/me")
        .bearer(&s.access)
        .send()
        .await
        .json();
    assert_eq!(me["email_verified"], false);
    let welcome = sink.wait_for("ann@example.com", "Welcome").await;
    assert!(welcome.text.contains("verify-email?token="));
    let res = app
        .post(VERIFY)
        .json(json!({"token": welcome.token()}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["email_verified"], true);
    app.post(VERIFY)
        .json(json!({"token": welcome.token()}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_verification_token");
    app.post("/api/v1/private/users/me/email/verification")
        .bearer(&s.access)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_verified");
    assert!(app
        .audit_actions(&s.user_id)
        .await
        .contains(&"user.email_verify".to_owned()));
}

#[sqlx::test]
async fn an_email_change_mails_both_addresses_and_kills_the_old_links(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    let s = app.signed_in("old@example.com").await;
    let welcome = sink.wait_for("old@example.com", "Welcome").await;
    let res = app
        .put("/api/v1/private/users/me/contacts")
        .bearer(&s.access)
        .json(json!({"email": "new@example.com", "current_password": PASSWORD}))
        .ip(unique_ip())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["email_verified"], false);
    let notice = sink.wait_for("old@example.com", "changed").await;
    assert!(notice.text.contains("new@example.com"));
    assert!(
        !notice.text.contains("token="),
        "a notice has no link that acts"
    );
    // the link sent to the old address is dead; the one sent to the new address works
    app.post(VERIFY)
        .json(json!({"token": welcome.token()}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_verification_token");
    let verification = sink.wait_for("new@example.com", "Confirm").await;
    let res = app
        .post(VERIFY)
        .json(json!({"token": verification.token()}))
        .send()
        .await;
    assert_eq!(res.json()["email_verified"], true, "{}", res.text());
}

#[sqlx::test]
async fn a_verification_request_mails_a_link_at_most_once_per_interval(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    let s = app.signed_in("ann@example.com").await;
    for _ in 0..3 {
        let res = app
            .post("/api/v1/private/users/me/email/verification")
            .bearer(&s.access)
            .send()
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    }
    sink.wait_for("ann@example.com", "Confirm").await;
    assert_eq!(message_count(&app, "email_verification").await, 1);
}

#[sqlx::test]
async fn with_require_verified_email_an_unverified_login_is_refused(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with(pool, &sink, |f| {
        f.merge(("auth.require_verified_email", true))
    })
    .await;
    app.sign_up("ann@example.com").await;
    app.login("ann@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "email_not_verified");
    let token = sink.wait_for("ann@example.com", "Welcome").await.token();
    app.post(VERIFY)
        .json(json!({ "token": token }))
        .send()
        .await;
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn a_soft_delete_mails_the_purge_date_and_a_restore_link_to_an_owner_only(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    let admin = app.signed_in_as("admin@example.com", "admin").await;
    let owner = app.signed_in("own@example.com").await;
    let other = app.signed_in("other@example.com").await;
    app.delete("/api/v1/private/users/me")
        .bearer(&owner.access)
        .send()
        .await;
    app.delete(&format!("/api/v1/private/admin/users/{}", other.user_id))
        .bearer(&admin.access)
        .send()
        .await;
    let own = sink.wait_for("own@example.com", "deleted").await;
    assert!(own.text.contains("/restore-account"));
    let theirs = sink.wait_for("other@example.com", "deleted").await;
    assert!(!theirs.text.contains("/restore-account"));
    assert!(theirs.text.contains("removed for good on"));
}

#[sqlx::test]
async fn html_bodies_escape_names(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    let res = app
        .post("/api/v1/public/users/sign_up")
        .json(json!({"email": "x@example.com", "password": PASSWORD, "first_name": "<b>Bob</b>"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let mail = sink.wait_for("x@example.com", "Welcome").await;
    assert!(mail.html.contains("&lt;b&gt;Bob&lt;"), "{}", mail.html);
    assert!(!mail.html.contains("<b>Bob"));
}

#[sqlx::test]
async fn a_transient_failure_is_retried_with_the_same_message_id(pool: PgPool) {
    let sink = SmtpSink::start(Mode::TransientFirst(1)).await;
    let app = app_with_sink(pool, &sink).await;
    app.sign_up("ann@example.com").await;
    let mail = sink.wait_for("ann@example.com", "Welcome").await;
    assert_eq!(sink.attempts(), 2, "451 first, then 250");
    let (status, attempts, message_id): (String, i32, String) =
        sqlx::query_as("select status, attempts, message_id from messages where kind = 'welcome'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("sent", 2));
    assert_eq!(mail.message_id, message_id);
}

#[sqlx::test]
async fn a_permanent_failure_abandons_the_message_at_once(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Reject).await;
    let app = app_with_sink(pool, &sink).await;
    app.sign_up("ann@example.com").await;
    for _ in 0..200 {
        let abandoned = app
            .scalar_i64(
                "select count(*) from messages where status = $1",
                "abandoned",
            )
            .await;
        if abandoned == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (attempts, error, body): (i32, Option<String>, Option<String>) = sqlx::query_as(
        "select attempts, last_error, body_text from messages where status = 'abandoned'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.unwrap_or_default().contains("550"));
    assert_eq!(body, None);
    assert!(sink.mails().is_empty());
}

#[sqlx::test]
async fn transient_failures_end_abandoned_after_the_attempts(pool: PgPool) {
    let sink = SmtpSink::start(Mode::TransientFirst(usize::MAX)).await;
    let app = app_with(pool, &sink, |f| f.merge(("email.max_attempts", 2))).await;
    app.sign_up("ann@example.com").await;
    for _ in 0..200 {
        if sink.attempts() >= 2
            && app
                .scalar_i64(
                    "select count(*) from messages where status = $1",
                    "abandoned",
                )
                .await
                == 1
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not abandoned after 2 attempts ({} made)", sink.attempts());
}

#[sqlx::test]
async fn admins_see_mail_metadata_and_never_a_body(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    let admin = app.signed_in_as("admin@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    sink.wait_for("ann@example.com", "Welcome").await;
    let page = app
        .get(&format!(
            "/api/v1/private/admin/messages?user_id={}&kind=welcome",
            ann.user_id
        ))
        .bearer(&admin.access)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let items = page.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["recipient"], "ann@example.com");
    assert!(!page.text().contains("token="));
    assert!(items[0].get("body_text").is_none());
    app.get("/api/v1/private/admin/messages")
        .bearer(&ann.access)
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
}

#[sqlx::test]
async fn without_an_smtp_url_messages_wait_queued(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    assert!(
        users_service::jobs::courier::spawn(app.state.clone(), CancellationToken::new()).is_none()
    );
    assert_eq!(
        app.scalar_i64("select count(*) from messages where status = $1", "queued")
            .await,
        1
    );
}

#[sqlx::test]
async fn a_message_claimed_by_a_courier_that_died_is_sent_after_its_lease(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let url = sink.url.clone();
    let app = TestApp::with(pool, move |f| {
        f.merge(("email.smtp_url", url))
            .merge(("email.poll_interval_secs", 1))
    })
    .await;
    app.sign_up("ann@example.com").await;
    // a courier claims the message (a one-second lease) and dies before sending it
    let mut conn = app.pool.acquire().await.unwrap();
    let claimed = users_service::repo::messages::claim_due(&mut *conn, 10, 1.0)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    drop(conn);
    users_service::jobs::courier::spawn(app.state.clone(), CancellationToken::new()).unwrap();
    let mail = sink.wait_for("ann@example.com", "Welcome").await;
    assert!(mail.text.contains("verify-email?token="));
    let attempts = app
        .scalar_i64(
            "select attempts::bigint from messages where kind = $1",
            "welcome",
        )
        .await;
    assert_eq!(attempts, 2, "the dead courier's attempt counts");
}

#[sqlx::test]
async fn an_unreachable_smtp_server_keeps_messages_queued_and_requests_unaffected(pool: PgPool) {
    let closed = crate::helpers::free_port();
    let app = TestApp::with(pool, move |f| {
        f.merge(("email.smtp_url", format!("smtp://127.0.0.1:{closed}")))
            .merge(("email.retry_base_secs", 1))
            .merge(("email.poll_interval_secs", 1))
    })
    .await;
    users_service::jobs::courier::spawn(app.state.clone(), CancellationToken::new()).unwrap();
    let res = app
        .post("/api/v1/public/users/sign_up")
        .json(json!({"email": "ann@example.com", "password": PASSWORD, "first_name": "Ann"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    for _ in 0..200 {
        let tried = app
            .scalar_i64(
                "select count(*) from messages where status = $1 and attempts >= 1 and last_error is not null",
                "queued",
            )
            .await;
        if tried == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the message was not tried and kept queued");
}

#[sqlx::test]
async fn a_password_change_is_told_and_kills_mailed_reset_links(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let app = app_with_sink(pool, &sink).await;
    let s = app.signed_in("ann@example.com").await;
    forgot(&app, "ann@example.com").await;
    let link = sink.wait_for("ann@example.com", "Reset").await.token();
    let res = app
        .put("/api/v1/private/users/me/password")
        .bearer(&s.access)
        .json(json!({"current_password": PASSWORD, "new_password": "a brand new passphrase 42"}))
        .ip(unique_ip())
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let notice = sink
        .wait_for("ann@example.com", "password was changed")
        .await;
    assert!(!notice.text.contains("token="));
    app.put("/api/v1/public/users/passw/reset")
        .json(json!({"reset_token": link, "password": "another new passphrase 43"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_reset_token");
}

#[sqlx::test]
async fn a_new_message_wakes_the_courier_without_waiting_for_a_poll(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    // polling once an hour: only the NOTIFY sent at commit can bring the mail in time
    let app = app_with(pool, &sink, |f| f.merge(("email.poll_interval_secs", 3600))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.sign_up("ann@example.com").await;
    sink.wait_for("ann@example.com", "Welcome").await;
}

#[sqlx::test]
async fn files_in_the_templates_dir_replace_the_built_in_templates(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("welcome.subject.txt"),
        "Bienvenue, {{ name }}",
    )
    .unwrap();
    std::fs::write(dir.path().join("welcome.txt"), "Lien : {{ link }}").unwrap();
    let sink = SmtpSink::start(Mode::Accept).await;
    let path = dir.path().to_string_lossy().into_owned();
    let app = app_with(pool, &sink, move |f| f.merge(("email.templates_dir", path))).await;
    app.sign_up("ann@example.com").await;
    let mail = sink.wait_for("ann@example.com", "Bienvenue, Ann").await;
    assert!(mail
        .text
        .starts_with("Lien : http://localhost:3000/verify-email?token="));
    // the HTML part, not replaced, is the built-in one
    assert!(mail.html.contains("Confirm my email"));
}

/// Two instances, two couriers on one table: every message goes out once (each claims its batch
/// with `for update skip locked` and a lease), whichever instance queued it.
#[sqlx::test]
async fn two_instances_send_each_message_once(pool: PgPool) {
    let sink = SmtpSink::start(Mode::Accept).await;
    let a = app_with_sink(pool.clone(), &sink).await;
    let b = app_with_sink(pool, &sink).await;
    let emails: Vec<String> = (0..12).map(|i| format!("user{i}@example.com")).collect();
    for (i, email) in emails.iter().enumerate() {
        let app = if i % 2 == 0 { &a } else { &b };
        app.sign_up(email).await;
    }
    for email in &emails {
        sink.wait_for(email, "Welcome").await;
    }
    // time for a second delivery to show up, were there one
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut to: Vec<String> = sink.mails().into_iter().map(|m| m.to).collect();
    to.sort();
    let mut expected = emails.clone();
    expected.sort();
    assert_eq!(to, expected, "each welcome mail delivered exactly once");
    assert_eq!(
        a.scalar_i64(
            "select count(*) from messages where status = 'sent' and attempts = 1 and kind = $1",
            "welcome"
        )
        .await,
        12
    );
}
