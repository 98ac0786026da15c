//! The notification inbox, the server route that fills it, and the live stream (served over a real
//! socket: Server-Sent Events are read as they arrive).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use figment::providers::Serialized;
use serde_json::{json, Value};
use sqlx::PgPool;
use users_service::config::Settings;

use crate::helpers::{Session, TestApp, PASSWORD};

const INBOX: &str = "/api/v1/private/users/me/notifications";

fn server_route(user_id: &str) -> String {
    format!("/api/v1/server/users/{user_id}/notifications")
}

pub async fn notify(app: &TestApp, user_id: &str, body: Value) -> Value {
    let res = app
        .post(&server_route(user_id))
        .server_key()
        .json(body)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    res.json()
}

async fn inbox(app: &TestApp, s: &Session, query: &str) -> Value {
    let res = app
        .get(&format!("{INBOX}{query}"))
        .bearer(&s.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

fn titles(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn the_inbox_pages_newest_first_filters_unread_and_counts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.signed_in("ann@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let n = notify(
            &app,
            &ann.user_id,
            json!({"kind": "test.kind", "title": format!("t{i}"), "body": "b", "link": "/x", "data": {"i": i}}),
        )
        .await;
        assert_eq!(
            n.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            [
                "body",
                "created_at",
                "data",
                "id",
                "kind",
                "link",
                "read_at",
                "title"
            ]
            .map(String::from)
            .into()
        );
        assert_eq!(n["read_at"], Value::Null);
        ids.push(n["id"].as_str().unwrap().to_owned());
    }
    let first = inbox(&app, &ann, "?limit=2").await;
    assert_eq!(titles(&first), ["t4", "t3"]);
    let next = first["next_cursor"].as_str().unwrap();
    assert_eq!(
        titles(&inbox(&app, &ann, &format!("?limit=2&cursor={next}")).await),
        ["t2", "t1"]
    );

    let read = |id: &str| format!("{INBOX}/{id}/read");
    let res = app.put(&read(&ids[3])).bearer(&ann.access).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let read_at = res.json()["read_at"].clone();
    assert!(read_at.is_string());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = app
        .put(&read(&ids[3]))
        .bearer(&ann.access)
        .send()
        .await
        .json();
    assert_eq!(
        again["read_at"], read_at,
        "a second call keeps the first time"
    );
    assert_eq!(
        titles(&inbox(&app, &ann, "?unread=true").await),
        ["t4", "t2", "t1", "t0"]
    );
    let count = app
        .get(&format!("{INBOX}/unread_count"))
        .bearer(&ann.access)
        .send()
        .await
        .json();
    assert_eq!(count, json!({"count": 4}));

    // another user's or an unknown id: 404, and nothing changes
    for (who, id) in [
        (&bob, ids[0].as_str()),
        (&ann, "0190b3a0-0000-7000-8000-000000000000"),
    ] {
        app.put(&read(id))
            .bearer(&who.access)
            .send()
            .await
            .assert_problem(StatusCode::NOT_FOUND, "notification_not_found");
        app.delete(&format!("{INBOX}/{id}"))
            .bearer(&who.access)
            .send()
            .await
            .assert_problem(StatusCode::NOT_FOUND, "notification_not_found");
    }
    assert_eq!(titles(&inbox(&app, &bob, "").await), Vec::<String>::new());
    assert_eq!(
        inbox(&app, &ann, "").await["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let res = app
        .delete(&format!("{INBOX}/{}", ids[0]))
        .bearer(&ann.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = app
        .put(&format!("{INBOX}/read"))
        .bearer(&ann.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("{INBOX}/unread_count"))
            .bearer(&ann.access)
            .send()
            .await
            .json(),
        json!({"count": 0})
    );
    assert_eq!(
        titles(&inbox(&app, &ann, "").await),
        ["t4", "t3", "t2", "t1"]
    );
    for bad in [
        "?limit=0",
        "?limit=101",
        "?unread=maybe",
        "?cursor=zzz",
        "?other=1",
    ] {
        app.get(&format!("{INBOX}{bad}"))
            .bearer(&ann.access)
            .send()
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    app.get(INBOX)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn the_server_route_checks_every_field_and_the_user(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.signed_in("ann@example.com").await;
    let big = "x".repeat(16 * 1024);
    for (body, field) in [
        (json!({"kind": "Bad Kind", "title": "t"}), "kind"),
        (json!({"kind": "", "title": "t"}), "kind"),
        (json!({"kind": "k".repeat(65), "title": "t"}), "kind"),
        (json!({"kind": "k", "title": ""}), "title"),
        (json!({"kind": "k", "title": "   "}), "title"),
        (json!({"kind": "k", "title": "t".repeat(201)}), "title"),
        (
            json!({"kind": "k", "title": "t", "body": "b".repeat(4001)}),
            "body",
        ),
        (
            json!({"kind": "k", "title": "t", "link": "http://example.com/x"}),
            "link",
        ),
        (
            json!({"kind": "k", "title": "t", "link": "javascript:alert(1)"}),
            "link",
        ),
        (
            json!({"kind": "k", "title": "t", "link": "//evil.example/x"}),
            "link",
        ),
        (json!({"kind": "k", "title": "t", "data": [1, 2]}), "data"),
        (
            json!({"kind": "k", "title": "t", "data": {"big": big}}),
            "data",
        ),
        (
            json!({"kind": "k", "title": "t", "data": {"n": {"deep": [-1.7976931348623157e308]}}}),
            "data",
        ),
        (json!({"title": "t"}), "kind"),
        (json!({"kind": "k", "title": "t", "extra": 1}), "extra"),
    ] {
        let res = app
            .post(&server_route(&ann.user_id))
            .server_key()
            .json(body.clone())
            .send()
            .await;
        res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let fields: Vec<String> = res.json()["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| e["field"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(fields.iter().any(|f| f == field), "{body}: {}", res.text());
    }
    let count = app
        .scalar_i64("select count(*) from notifications where $1 = $1", "")
        .await;
    assert_eq!(count, 0);
    let ok = notify(
        &app,
        &ann.user_id,
        json!({"kind": "billing.invoice_paid", "title": "Paid", "link": "https://billing.example/i/1", "data": {}}),
    )
    .await;
    assert_eq!(ok["link"], "https://billing.example/i/1");
    let padded = notify(
        &app,
        &ann.user_id,
        json!({"kind": "k", "title": "  Paid  "}),
    )
    .await;
    assert_eq!(padded["title"], "Paid", "titles are stored trimmed");
    app.post(&server_route("0190b3a0-0000-7000-8000-000000000000"))
        .server_key()
        .json(json!({"kind": "k", "title": "t"}))
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    app.delete("/api/v1/private/users/me")
        .bearer(&ann.access)
        .send()
        .await;
    app.post(&server_route(&ann.user_id))
        .server_key()
        .json(json!({"kind": "k", "title": "t"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_deleted");
    app.post(&server_route(&ann.user_id))
        .json(json!({"kind": "k", "title": "t"}))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn a_password_change_notifies_its_user(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.signed_in("ann@example.com").await;
    let res = app
        .put("/api/v1/private/users/me/password")
        .bearer(&ann.access)
        .json(json!({"current_password": PASSWORD, "new_password": "another long passphrase 42"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    let page = inbox(&app, &ann, "").await;
    assert_eq!(page["items"][0]["kind"], "password.changed");
}

#[sqlx::test]
async fn read_notifications_past_their_retention_are_swept(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.signed_in("ann@example.com").await;
    for title in ["old read", "old unread", "new read"] {
        notify(&app, &ann.user_id, json!({"kind": "k", "title": title})).await;
    }
    sqlx::raw_sql(
        "update notifications set created_at = now() - interval '91 days' where title like 'old%';
         update notifications set read_at = now() where title like '%read' and title not like '%unread'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let swept = users_service::service::lifecycle::sweep_stale_records(&app.state)
        .await
        .unwrap();
    assert_eq!(swept.notifications, 1);
    assert_eq!(
        titles(&inbox(&app, &ann, "").await),
        ["new read", "old unread"]
    );
}

// ---- the live stream ----

/// The app served on a real socket (streams need one).
pub async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    format!("http://{addr}")
}

#[derive(Debug)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<Value>,
    /// a `:` comment (a heartbeat)
    pub comment: bool,
}

pub struct SseClient {
    resp: reqwest::Response,
    buf: String,
}

impl SseClient {
    pub async fn open(base: &str, access: &str, last_event_id: Option<&str>) -> Self {
        Self::try_open(base, access, last_event_id)
            .await
            .expect("the stream opens")
    }

    /// None when the service answers other than 200 (503 while its listener reconnects).
    pub async fn try_open(base: &str, access: &str, last_event_id: Option<&str>) -> Option<Self> {
        let mut req = reqwest::Client::new()
            .get(format!("{base}{INBOX}/stream"))
            .bearer_auth(access);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.unwrap();
        if resp.status() != StatusCode::OK {
            return None;
        }
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Some(Self {
            resp,
            buf: String::new(),
        })
    }

    /// The next event (heartbeats included); `None` when the stream ended or nothing came in time.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut e = SseEvent {
                    event: None,
                    id: None,
                    data: None,
                    comment: false,
                };
                for line in block.lines() {
                    if line.starts_with(':') {
                        e.comment = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        e.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        e.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        e.data = Some(serde_json::from_str(v.trim()).unwrap());
                    }
                }
                return Some(e);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// The next notification, skipping heartbeats.
    pub async fn notification(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let e = self.next(left).await?;
            if !e.comment {
                return Some(e);
            }
        }
    }

    /// Whether the server ended the stream within `wait`.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }
}

async fn stream_app(pool: PgPool) -> TestApp {
    TestApp::with(pool, |f| f.merge(("notifications.heartbeat_secs", 1))).await
}

#[sqlx::test]
async fn a_stream_delivers_new_notifications_with_heartbeats_and_replays_after_last_event_id(
    pool: PgPool,
) {
    let app = stream_app(pool).await;
    let base = serve(&app).await;
    let ann = app.signed_in("ann@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    let mut stream = SseClient::open(&base, &ann.access, None).await;
    let mut bobs = SseClient::open(&base, &bob.access, None).await;

    let started = Instant::now();
    let created = notify(
        &app,
        &ann.user_id,
        json!({"kind": "k", "title": "live", "data": {"a": 1}}),
    )
    .await;
    let e = stream
        .notification(Duration::from_secs(5))
        .await
        .expect("the notification arrives");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.event.as_deref(), Some("notification"));
    assert_eq!(e.id.as_deref(), created["id"].as_str());
    assert_eq!(e.data.unwrap(), created);
    // a heartbeat comes within the interval when nothing happens
    let beat = stream.next(Duration::from_secs(3)).await.unwrap();
    assert!(beat.comment, "{beat:?}");
    // another user's stream saw nothing of ann's
    assert!(bobs
        .notification(Duration::from_millis(1500))
        .await
        .is_none());

    // away, then back with Last-Event-ID: what was created meanwhile comes first, in order
    drop(stream);
    for title in ["missed 1", "missed 2"] {
        notify(&app, &ann.user_id, json!({"kind": "k", "title": title})).await;
    }
    let mut back = SseClient::open(&base, &ann.access, created["id"].as_str()).await;
    let replayed: Vec<String> = [
        back.notification(Duration::from_secs(5)).await.unwrap(),
        back.notification(Duration::from_secs(5)).await.unwrap(),
    ]
    .iter()
    .map(|e| {
        e.data.as_ref().unwrap()["title"]
            .as_str()
            .unwrap()
            .to_owned()
    })
    .collect();
    assert_eq!(replayed, ["missed 1", "missed 2"]);
    notify(&app, &ann.user_id, json!({"kind": "k", "title": "after"})).await;
    let e = back.notification(Duration::from_secs(5)).await.unwrap();
    assert_eq!(e.data.unwrap()["title"], "after");
    assert_eq!(app.state.notification_hub.open_streams(), 2);
}

#[sqlx::test]
async fn a_stream_ends_when_its_session_is_revoked(pool: PgPool) {
    let app = stream_app(pool).await;
    let base = serve(&app).await;
    let ann = app.signed_in("ann@example.com").await;
    let mut stream = SseClient::open(&base, &ann.access, None).await;
    let res = app
        .put("/api/v1/private/users/logout")
        .bearer(&ann.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(
        stream.ends_within(Duration::from_secs(4)).await,
        "checked at the next heartbeat"
    );
    // and a revoked session cannot open one
    let res = reqwest::Client::new()
        .get(format!("{base}{INBOX}/stream"))
        .bearer_auth(&ann.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn a_stream_ends_when_its_session_expires(pool: PgPool) {
    let app = stream_app(pool).await;
    let base = serve(&app).await;
    let ann = app.signed_in("ann@example.com").await;
    let mut stream = SseClient::open(&base, &ann.access, None).await;
    // the access token stays valid; the session behind it runs out
    sqlx::query("update sessions set expires_at = now() - interval '1 second' where id = $1::uuid")
        .bind(&ann.session_id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(
        stream.ends_within(Duration::from_secs(4)).await,
        "checked at the next heartbeat"
    );
}

#[sqlx::test]
async fn a_notification_created_on_one_instance_reaches_a_stream_on_another(pool: PgPool) {
    let a = stream_app(pool).await;
    let b = TestApp::from_state(
        users_service::app::state(a.state.settings.clone(), a.pool.clone())
            .await
            .unwrap(),
    )
    .await;
    let base_b = serve(&b).await;
    let ann = a.signed_in("ann@example.com").await;
    let mut on_b = SseClient::open(&base_b, &ann.access, None).await;
    let started = Instant::now();
    let created = notify(&a, &ann.user_id, json!({"kind": "k", "title": "from a"})).await;
    let e = on_b
        .notification(Duration::from_secs(5))
        .await
        .expect("it crosses instances");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.id.as_deref(), created["id"].as_str());
    assert_eq!(a.state.notification_hub.open_streams(), 0);
    assert_eq!(b.state.notification_hub.open_streams(), 1);
}

#[sqlx::test]
async fn a_database_outage_ends_streams_and_they_replay_what_was_created_meanwhile(_pool: PgPool) {
    let pg = crate::outage::TempPostgres::start();
    let figment = Settings::figment(None)
        .merge(Serialized::default("database.url", pg.url()))
        .merge(Serialized::default("database.acquire_timeout_secs", 1))
        .merge(Serialized::default("notifications.heartbeat_secs", 1))
        .merge(Serialized::default(
            "server_api.keys",
            json!([{"name": "tests", "key": crate::helpers::SERVER_KEY}]),
        ));
    let settings = Settings::from_figment(figment).unwrap();
    let pool = users_service::app::migrate(&settings).await.unwrap();
    let state = users_service::app::state(settings, pool).await.unwrap();
    let app = TestApp::from_state(state).await;
    let base = serve(&app).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let user_id: uuid::Uuid =
        sqlx::query_scalar("select id from users where email = 'ann@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let user_id = user_id.to_string();
    let mut stream = SseClient::open(&base, &access, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = notify(&app, &user_id, json!({"kind": "k", "title": "before"})).await;
    assert!(stream.notification(Duration::from_secs(5)).await.is_some());

    pg.stop();
    assert!(
        stream.ends_within(Duration::from_secs(10)).await,
        "the stream ends cleanly"
    );
    pg.ctl_start();
    // back: notifications created before the client returns are replayed to it
    let deadline = Instant::now() + Duration::from_secs(20);
    let created = loop {
        let res = app
            .post(&server_route(&user_id))
            .server_key()
            .json(json!({"kind": "k", "title": "meanwhile"}))
            .send()
            .await;
        if res.status == StatusCode::CREATED {
            break res.json();
        }
        assert!(
            Instant::now() < deadline,
            "the service did not recover: {}",
            res.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut back = loop {
        // 503 until the listener is back (it retries within 5 s)
        if let Some(s) = SseClient::try_open(&base, &access, first["id"].as_str()).await {
            break s;
        }
        assert!(Instant::now() < deadline, "the stream did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let e = back
        .notification(Duration::from_secs(5))
        .await
        .expect("replayed");
    assert_eq!(e.id.as_deref(), created["id"].as_str());
    // and the listener is back by itself (it retries within 5 s): new ones arrive live again
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let live = notify(&app, &user_id, json!({"kind": "k", "title": "live again"})).await;
        if let Some(e) = back.notification(Duration::from_millis(700)).await {
            assert_eq!(e.id.as_deref(), live["id"].as_str());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no live notification after the restart"
        );
        // a stream the listener ended while reconnecting: open another one
        if back.ends_within(Duration::from_millis(1)).await {
            if let Some(s) = SseClient::try_open(&base, &access, live["id"].as_str()).await {
                back = s;
            }
        }
    }
}

#[sqlx::test]
async fn a_user_deleted_under_a_notification_is_not_found_not_a_500(pool: PgPool) {
    // the server route checks the user first; a permanent delete in between fails the insert
    // on its foreign key, which must read as the contract's 404
    let err = users_service::repo::notifications::insert(
        &pool,
        &users_service::repo::notifications::NewNotification {
            user_id: uuid::Uuid::now_v7(),
            kind: "k",
            title: "t",
            body: None,
            link: None,
            data: None,
        },
    )
    .await
    .unwrap_err();
    let mapped = users_service::error::AppError::from_db(&err).expect("a client-facing error");
    assert_eq!(
        mapped.status_and_code(),
        (StatusCode::NOT_FOUND, "user_not_found")
    );
}

#[sqlx::test]
async fn a_long_replay_is_sent_whole_page_by_page(pool: PgPool) {
    let app = stream_app(pool).await;
    let base = serve(&app).await;
    let ann = app.signed_in("ann@example.com").await;
    // more than one replay page (500), written before the stream opens
    let ids: Vec<uuid::Uuid> = (0..1_201).map(|_| uuid::Uuid::now_v7()).collect();
    let titles: Vec<String> = (0..ids.len()).map(|i| format!("n{i}")).collect();
    sqlx::query(
        "insert into notifications (id, user_id, kind, title)
         select i, $2::uuid, 'k', t from unnest($1::uuid[], $3::text[]) as x (i, t)",
    )
    .bind(&ids)
    .bind(&ann.user_id)
    .bind(&titles)
    .execute(&app.pool)
    .await
    .unwrap();
    let first = ids[0].to_string();
    let mut stream = SseClient::open(&base, &ann.access, Some(&first)).await;
    for expected in &titles[1..] {
        let e = stream.notification(Duration::from_secs(5)).await.unwrap();
        assert_eq!(e.data.unwrap()["title"], expected.as_str());
    }
    notify(&app, &ann.user_id, json!({"kind": "k", "title": "live"})).await;
    let e = stream.notification(Duration::from_secs(5)).await.unwrap();
    assert_eq!(e.data.unwrap()["title"], "live");
}

#[sqlx::test]
async fn inbox_pages_asked_at_once_share_queries_and_each_gets_its_own(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.signed_in("ann@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    let empty = app.signed_in("eve@example.com").await;
    for (s, n) in [(&ann, 7), (&bob, 4)] {
        for i in 0..n {
            notify(
                &app,
                &s.user_id,
                json!({"kind": "k", "title": format!("{}{i}", &s.user_id[..4])}),
            )
            .await;
        }
    }
    let bob_read = notify(&app, &bob.user_id, json!({"kind": "k", "title": "read"})).await;
    let res = app
        .put(&format!(
            "{INBOX}/{}/read",
            bob_read["id"].as_str().unwrap()
        ))
        .bearer(&bob.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let cursor = inbox(&app, &ann, "?limit=3").await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    // every kind of page, each asked a few times: first pages, unread ones, a cursor's, an empty inbox
    let asks: Vec<(&Session, String)> = vec![
        (&ann, String::new()),
        (&ann, "?limit=3".into()),
        (&ann, format!("?limit=3&cursor={cursor}")),
        (&ann, "?unread=true&limit=2".into()),
        (&bob, String::new()),
        (&bob, "?unread=true".into()),
        (&empty, String::new()),
    ];
    // each alone first: what a page is
    let mut expected = Vec::new();
    for (s, q) in &asks {
        expected.push(inbox(&app, s, q).await);
    }
    assert_eq!(titles(&expected[4]).len(), 5);
    assert_eq!(titles(&expected[5]).len(), 4, "the read one is not unread");
    assert!(titles(&expected[6]).is_empty());
    // every first page is kept now; a change to each inbox (its version bumped) has them read
    sqlx::query("update notification_inboxes set version = version + 1")
        .execute(&app.pool)
        .await
        .unwrap();
    let (reads_before, queries_before) = app.state.notification_pages.counts();
    let burst = asks
        .iter()
        .cycle()
        .take(asks.len() * 4)
        .map(|(s, q)| app.get(&format!("{INBOX}{q}")).bearer(&s.access).send());
    let answers = futures::future::join_all(burst).await;
    let (reads_after, queries_after) = app.state.notification_pages.counts();
    for (i, res) in answers.iter().enumerate() {
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert_eq!(
            res.json(),
            expected[i % asks.len()],
            "ask {}",
            i % asks.len()
        );
    }
    let (reads, queries) = (reads_after - reads_before, queries_after - queries_before);
    // each ask read its page, but for first pages a request of the burst kept before another
    // of the same page checked (the cursor's page is never kept)
    assert!(
        reads > answers.len() as u64 / 2 && reads <= answers.len() as u64,
        "{reads} reads for {} asks",
        answers.len()
    );
    assert!(
        queries * 4 <= reads,
        "{reads} concurrent pages took {queries} queries"
    );
}

/// Reads of inbox pages the instance ran (its kept first pages answer without one).
fn page_reads(app: &TestApp) -> u64 {
    app.state.notification_pages.counts().0
}

async fn inbox_version(app: &TestApp, user_id: &str) -> i64 {
    sqlx::query_scalar("select version from notification_inboxes where user_id = $1::uuid")
        .bind(user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_kept_first_page_shows_every_change_made_on_any_instance_at_once(pool: PgPool) {
    let a = TestApp::new(pool).await;
    let b = TestApp::from_state(
        users_service::app::state(a.state.settings.clone(), a.pool.clone())
            .await
            .unwrap(),
    )
    .await;
    let ann = a.signed_in("ann@example.com").await;
    let bob = a.signed_in("bob@example.com").await;
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        let n = notify(&a, &ann.user_id, json!({"kind": "k", "title": title})).await;
        ids.push(n["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(inbox_version(&a, &ann.user_id).await, 3);

    // read once, then answered from the kept page while nothing changes (another user's
    // notification is not a change to this inbox)
    let first = inbox(&a, &ann, "").await;
    assert_eq!(titles(&first), ["three", "two", "one"]);
    let reads = page_reads(&a);
    notify(&b, &bob.user_id, json!({"kind": "k", "title": "bob's"})).await;
    assert_eq!(inbox(&a, &ann, "").await, first);
    assert_eq!(page_reads(&a), reads, "the kept page answered");
    // each page size and filter is a page of its own
    assert_eq!(titles(&inbox(&a, &ann, "?limit=2").await), ["three", "two"]);
    assert_eq!(page_reads(&a), reads + 1);

    // every change on the other instance shows on the next request, without waiting
    notify(&b, &ann.user_id, json!({"kind": "k", "title": "four"})).await;
    assert_eq!(
        titles(&inbox(&a, &ann, "").await),
        ["four", "three", "two", "one"]
    );
    assert_eq!(
        titles(&inbox(&a, &ann, "?limit=2").await),
        ["four", "three"]
    );

    let res = b
        .put(&format!("{INBOX}/{}/read", ids[1]))
        .bearer(&ann.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let page = inbox(&a, &ann, "").await;
    assert!(page["items"][2]["read_at"].is_string(), "{page}");
    assert_eq!(
        titles(&inbox(&a, &ann, "?unread=true").await),
        ["four", "three", "one"]
    );

    let res = b
        .delete(&format!("{INBOX}/{}", ids[2]))
        .bearer(&ann.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(titles(&inbox(&a, &ann, "").await), ["four", "two", "one"]);

    let res = b
        .put(&format!("{INBOX}/read"))
        .bearer(&ann.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(titles(&inbox(&a, &ann, "?unread=true").await).is_empty());

    // the retention sweep is a change too
    sqlx::query(
        "update notifications set created_at = now() - interval '91 days' where id = $1::uuid",
    )
    .bind(&ids[0])
    .execute(&a.pool)
    .await
    .unwrap();
    let swept = users_service::service::lifecycle::sweep_stale_records(&b.state)
        .await
        .unwrap();
    assert_eq!(swept.notifications, 1);
    assert_eq!(titles(&inbox(&a, &ann, "").await), ["four", "two"]);
    // three notified, one more, one read, one deleted, all read, one swept (and the backdating
    // above); bob's are his own
    assert_eq!(inbox_version(&a, &ann.user_id).await, 9);
    assert_eq!(inbox_version(&a, &bob.user_id).await, 1);
}
