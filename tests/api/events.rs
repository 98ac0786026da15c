//! Events: written in the transaction of each change, read back over the server feed, published to
//! the real RabbitMQ (127.0.0.1:5672) by the relay. Each test publishes to an exchange of its own
//! and binds a queue of its own; the broker outage goes through a TCP proxy the test owns.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use users_service::jobs::relay;
use users_service::state::AppState;

use crate::helpers::{TestApp, PASSWORD};

const BROKER: &str = "127.0.0.1:5672";
const FEED: &str = "/api/v1/server/events";

async fn feed(app: &TestApp, query: &str) -> Value {
    let res = app.get(&format!("{FEED}{query}")).server_key().send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

/// Every event kept, in commit order, through the feed's pages.
async fn all_events(app: &TestApp) -> Vec<Value> {
    feed_pages(app).await
}

async fn feed_pages(app: &TestApp) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(a) => format!("?limit=7&after={a}"),
            None => "?limit=7".to_owned(),
        };
        let page = feed(app, &query).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => return items,
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[sqlx::test]
async fn every_change_writes_its_event_in_the_contracts_envelope(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    let token: String = sqlx::query_scalar(
        "select substring(body_text from 'token=([A-Za-z0-9_-]+)') from messages
         where recipient = 'ann@example.com' and kind = 'welcome'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let ok = |res: crate::helpers::TestResponse| {
        assert!(res.status.is_success(), "{} {}", res.status, res.text());
        res
    };
    ok(app
        .post("/api/v1/public/users/email/verify")
        .json(json!({"token": token}))
        .send()
        .await);
    ok(app
        .req(axum::http::Method::PATCH, "/api/v1/private/users/me")
        .bearer(&ann.access)
        .json(json!({"first_name": "Anna", "last_name": "Smith"}))
        .send()
        .await);
    ok(app
        .put("/api/v1/private/users/me/contacts")
        .bearer(&ann.access)
        .json(json!({"phone": "+79991234567", "current_password": PASSWORD}))
        .send()
        .await);
    let link = ok(app
        .post("/api/v1/private/users/me/linked-accounts")
        .bearer(&ann.access)
        .json(json!({"social_network": "github", "connection_link": "https://github.com/ann"}))
        .send()
        .await)
    .json();
    let link_path = format!(
        "/api/v1/private/users/me/linked-accounts/{}",
        link["id"].as_str().unwrap()
    );
    ok(app
        .req(axum::http::Method::PATCH, &link_path)
        .bearer(&ann.access)
        .json(json!({"connected_for": "code"}))
        .send()
        .await);
    ok(app.delete(&link_path).bearer(&ann.access).send().await);
    let user_path = format!("/api/v1/private/admin/users/{}", ann.user_id);
    ok(app
        .put(&format!("{user_path}/role"))
        .bearer(&admin.access)
        .json(json!({"role": "readonly"}))
        .send()
        .await);
    ok(app
        .put("/api/v1/private/users/me/password")
        .bearer(&ann.access)
        .json(json!({"current_password": PASSWORD, "new_password": "another long passphrase 42"}))
        .send()
        .await);
    ok(app.delete(&user_path).bearer(&admin.access).send().await);
    ok(app
        .post(&format!("{user_path}/restore"))
        .bearer(&admin.access)
        .send()
        .await);
    ok(app
        .delete(&format!("{user_path}?permanent=true"))
        .bearer(&admin.access)
        .send()
        .await);

    let events = all_events(&app).await;
    let anns: Vec<Value> = events
        .iter()
        .filter(|e| e["user_id"] == json!(ann.user_id))
        .cloned()
        .collect();
    assert_eq!(
        types(&anns),
        [
            "user.created",
            "user.email_verified",
            "user.updated",
            "user.updated",
            "linked_account.linked",
            "linked_account.updated",
            "linked_account.unlinked",
            "user.role_changed",
            "user.password_changed",
            "user.deleted",
            "user.restored",
            "user.purged",
        ]
    );
    let me = format!("user:{}", ann.user_id);
    let by_admin = format!("user:{}", admin.user_id);
    for e in &anns {
        let keys: HashSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            HashSet::from(["id", "type", "occurred_at", "actor", "user_id", "data"]),
            "{e}"
        );
        let id: uuid::Uuid = e["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(id.get_version_num(), 7);
        chrono::DateTime::parse_from_rfc3339(e["occurred_at"].as_str().unwrap()).unwrap();
        let expected_actor = match e["type"].as_str().unwrap() {
            "user.created" | "user.email_verified" => "anonymous".to_owned(),
            "user.role_changed" | "user.deleted" | "user.restored" | "user.purged" => {
                by_admin.clone()
            }
            _ => me.clone(),
        };
        // sign-up is by someone not yet a user; verification proves the link, not a session
        if e["type"] != "user.created" && e["type"] != "user.email_verified" {
            assert_eq!(e["actor"], json!(expected_actor), "{e}");
        }
    }
    let data = |i: usize| anns[i]["data"].clone();
    assert_eq!(data(0)["user"]["email"], "ann@example.com");
    assert_eq!(data(1)["user"]["email_verified"], true);
    assert_eq!(data(2)["changed"], json!(["first_name", "last_name"]));
    assert_eq!(data(2)["user"]["first_name"], "Anna");
    assert_eq!(data(3)["changed"], json!(["phone"]));
    assert_eq!(
        data(4)["linked_account"]["connection_link"],
        "https://github.com/ann"
    );
    assert_eq!(data(5)["linked_account"]["connected_for"], "code");
    assert_eq!(
        data(6),
        json!({"linked_account_id": link["id"], "social_network": "github"})
    );
    assert_eq!(data(7)["previous_role"], "methodist");
    assert_eq!(data(7)["user"]["role"], "readonly");
    assert_eq!(data(8), json!({}));
    assert_eq!(data(9)["user"]["status"], "deleted");
    assert_eq!(data(10)["user"]["status"], "active");
    assert_eq!(data(11), json!({}));
    // no secret in any event
    let text = serde_json::to_string(&events).unwrap();
    for secret in ["password_hash", "$argon2", "token", PASSWORD] {
        assert!(
            !text.contains(secret),
            "an event carries {secret:?}: {text}"
        );
    }
    // the feed is read with a server key only
    app.get(FEED)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn an_events_user_is_the_user_object_of_the_api(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.signed_in("ann@example.com").await;
    app.post("/api/v1/private/users/me/linked-accounts")
        .bearer(&ann.access)
        .json(json!({"social_network": "vk", "connection_link": "https://vk.com/ann", "connected_for": "teaching"}))
        .send()
        .await;
    let res = app
        .req(axum::http::Method::PATCH, "/api/v1/private/users/me")
        .bearer(&ann.access)
        .json(json!({"middle_name": "Marie"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let user = app
        .get(&format!("/api/v1/server/users/{}", ann.user_id))
        .server_key()
        .send()
        .await
        .json();
    let events = all_events(&app).await;
    let updated = events.iter().find(|e| e["type"] == "user.updated").unwrap();
    assert_eq!(updated["data"]["user"], user);
}

#[sqlx::test]
async fn the_feed_pages_oldest_first_and_names_a_bad_cursor_or_limit(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for i in 0..5 {
        app.sign_up(&format!("u{i}@example.com")).await;
    }
    assert_eq!(all_events(&app).await.len(), 5);
    let first = feed(&app, "?limit=2").await;
    let emails = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"]["user"]["email"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(emails(&first), ["u0@example.com", "u1@example.com"]);
    assert_eq!(first["next_cursor"], first["items"][1]["id"]);
    let rest = feed(
        &app,
        &format!("?after={}", first["next_cursor"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        emails(&rest),
        ["u2@example.com", "u3@example.com", "u4@example.com"]
    );
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(feed(&app, "").await["items"].as_array().unwrap().len(), 5);
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?after=not-a-uuid",
        "?after=0190b3a0-0000-7000-8000-000000000000",
        "?other=1",
    ] {
        let res = app.get(&format!("{FEED}{bad}")).server_key().send().await;
        res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
}

#[sqlx::test]
async fn a_change_that_fails_writes_no_event(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let before = all_events(&app).await.len();
    // a taken email, and the last admin's own demotion: both roll back
    app.post("/api/v1/public/users/sign_up")
        .json(json!({"email": "root@example.com", "password": PASSWORD, "first_name": "R"}))
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT, "email_taken");
    app.put(&format!(
        "/api/v1/private/admin/users/{}/role",
        admin.user_id
    ))
    .bearer(&admin.access)
    .json(json!({"role": "readonly"}))
    .send()
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "last_admin");
    assert_eq!(all_events(&app).await.len(), before);
}

#[sqlx::test]
async fn events_outlive_their_retention_only_until_the_sweep(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("old@example.com").await;
    app.sign_up("new@example.com").await;
    sqlx::query(
        "update events set occurred_at = now() - interval '8 days'
         where data -> 'user' ->> 'email' = 'old@example.com'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let swept = users_service::service::lifecycle::sweep_stale_records(&app.state)
        .await
        .unwrap();
    assert_eq!(swept.events, 1);
    let left = all_events(&app).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["data"]["user"]["email"], "new@example.com");
}

// ---- the relay, against the real broker ----

/// A queue of this test's own, bound to every routing key of `exchange` (declared as the
/// service declares it).
struct Consumer {
    _conn: Connection,
    channel: lapin::Channel,
    consumer: lapin::Consumer,
    exchange: String,
}

impl Consumer {
    async fn bind(exchange: &str) -> Self {
        let (conn, channel) = broker_channel(exchange).await;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "test".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        Self {
            _conn: conn,
            channel,
            consumer,
            exchange: exchange.to_owned(),
        }
    }

    /// The next `n` deliveries (waiting up to 20 s in all).
    async fn take(&mut self, n: usize) -> Vec<lapin::message::Delivery> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.consumer.next()).await {
                Ok(Some(Ok(d))) => {
                    d.ack(BasicAckOptions::default()).await.unwrap();
                    got.push(d);
                }
                _ => panic!("only {} of {n} events arrived", got.len()),
            }
        }
        got
    }

    /// Whether anything more arrives within `wait`.
    async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.consumer.next())
            .await
            .is_err()
    }

    async fn delete_exchange(&self) {
        let _ = self
            .channel
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

/// A channel to the broker with `exchange` declared as the service declares it.
async fn broker_channel(exchange: &str) -> (Connection, lapin::Channel) {
    let conn = Connection::connect(
        &format!("amqp://guest:guest@{BROKER}/%2f"),
        ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ answers on 127.0.0.1:5672");
    let channel = conn.create_channel().await.unwrap();
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    (conn, channel)
}

/// Events still unpublished once the relay's marking (which runs beside the next batch) is done:
/// waits up to 5 s for none.
async fn all_marked(app: &TestApp) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = app
            .scalar_i64(
                "select count(*) from events where published_at is null and $1 = $1",
                "",
            )
            .await;
        if left == 0 || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn exchange_name() -> String {
    format!("test.users.events.{}", uuid::Uuid::new_v4().simple())
}

async fn relay_app(pool: PgPool, amqp: &str, exchange: &str) -> TestApp {
    let (amqp, exchange) = (amqp.to_owned(), exchange.to_owned());
    TestApp::with(pool, move |f| {
        f.merge(("events.amqp_url", amqp))
            .merge(("events.exchange", exchange))
            .merge(("events.poll_interval_secs", 1))
    })
    .await
}

fn envelope(d: &lapin::message::Delivery) -> Value {
    serde_json::from_slice(&d.data).unwrap()
}

#[sqlx::test]
async fn the_relay_publishes_each_event_once_in_order_with_its_properties(pool: PgPool) {
    let exchange = exchange_name();
    let mut queue = Consumer::bind(&exchange).await;
    let app = relay_app(pool, &format!("amqp://guest:guest@{BROKER}/%2f"), &exchange).await;
    let stop = CancellationToken::new();
    let task = relay::spawn(app.state.clone(), stop.clone()).expect("the relay starts");
    for i in 0..20 {
        app.sign_up(&format!("u{i}@example.com")).await;
    }
    let got = queue.take(20).await;
    let emails: Vec<String> = got
        .iter()
        .map(|d| {
            envelope(d)["data"]["user"]["email"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("u{i}@example.com")).collect();
    assert_eq!(emails, expected, "in commit order");
    let feed_items = all_events(&app).await;
    for (d, item) in got.iter().zip(&feed_items) {
        let body = envelope(d);
        assert_eq!(&body, item, "the message body is the feed's envelope");
        let p = &d.properties;
        assert_eq!(
            p.message_id().as_ref().map(|s| s.as_str()),
            body["id"].as_str()
        );
        assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some("user.created"));
        assert_eq!(d.routing_key.as_str(), "user.created");
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(*p.delivery_mode(), Some(2));
        let at =
            chrono::DateTime::parse_from_rfc3339(body["occurred_at"].as_str().unwrap()).unwrap();
        assert_eq!(*p.timestamp(), Some(at.timestamp() as u64));
    }
    assert!(
        queue.quiet_for(Duration::from_millis(1500)).await,
        "nothing twice"
    );
    assert_eq!(all_marked(&app).await, 0);
    stop.cancel();
    task.await.unwrap();
    queue.delete_exchange().await;
}

/// A TCP proxy to the broker that the test can cut (every connection dropped, new ones refused)
/// and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Proxy {
    async fn start(upstream: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[sqlx::test]
async fn events_wait_through_a_broker_outage_and_then_flow_in_order(pool: PgPool) {
    let exchange = exchange_name();
    let mut queue = Consumer::bind(&exchange).await;
    let proxy = Proxy::start(BROKER).await;
    let app = relay_app(pool, &proxy.url(), &exchange).await;
    let stop = CancellationToken::new();
    let task = relay::spawn(app.state.clone(), stop.clone()).unwrap();
    app.sign_up("before@example.com").await;
    assert_eq!(
        envelope(&queue.take(1).await[0])["data"]["user"]["email"],
        "before@example.com"
    );

    proxy.cut();
    let started = Instant::now();
    for i in 0..10 {
        app.sign_up(&format!("during{i}@example.com")).await;
    }
    let during = started.elapsed();
    assert!(
        queue.quiet_for(Duration::from_secs(2)).await,
        "nothing is published while the broker is away"
    );
    assert_eq!(
        app.scalar_i64(
            "select count(*) from events where published_at is null and $1 = $1",
            ""
        )
        .await,
        10
    );
    let pending = "outbox_pending{outbox=\"events\"}";
    assert_eq!(app.scrape_counter(pending).await, 10.0);
    proxy.restore();
    let got = queue.take(10).await;
    let emails: Vec<String> = got
        .iter()
        .map(|d| {
            envelope(d)["data"]["user"]["email"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("during{i}@example.com")).collect();
    assert_eq!(emails, expected);
    // sign-ups hash a password (tens of ms each); the outage added nothing they waited for
    assert!(during < Duration::from_secs(10), "{during:?}");
    stop.cancel();
    task.await.unwrap();
    queue.delete_exchange().await;
}

#[sqlx::test]
async fn a_refused_event_is_published_again_until_acknowledged_and_order_holds(pool: PgPool) {
    let exchange = exchange_name();
    let (_conn, channel) = broker_channel(&exchange).await;
    // a queue that holds three messages and makes the broker nack what does not fit
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(3));
    args.insert(
        "x-overflow".into(),
        lapin::types::AMQPValue::LongString("reject-publish".into()),
    );
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let app = relay_app(pool, &format!("amqp://guest:guest@{BROKER}/%2f"), &exchange).await;
    let stop = CancellationToken::new();
    let task = relay::spawn(app.state.clone(), stop.clone()).unwrap();
    for i in 0..5 {
        app.sign_up(&format!("u{i}@example.com")).await;
    }
    let published = || {
        app.scalar_i64(
            "select count(*) from events where published_at is not null and $1 = $1",
            "",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while published().await < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        published().await,
        3,
        "only the acknowledged events are marked"
    );
    // room again: the two refused events go out on the relay's next try, after the first three
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut emails = Vec::new();
    while emails.len() < 5 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("the refused events arrive")
            .unwrap()
            .unwrap();
        d.ack(BasicAckOptions::default()).await.unwrap();
        emails.push(
            envelope(&d)["data"]["user"]["email"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let expected: Vec<String> = (0..5).map(|i| format!("u{i}@example.com")).collect();
    assert_eq!(emails, expected);
    assert_eq!(all_marked(&app).await, 0);
    assert_eq!(published().await, 5);
    stop.cancel();
    task.await.unwrap();
    let _ = channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
}

async fn second_instance(app: &TestApp) -> AppState {
    users_service::app::state(app.state.settings.clone(), app.pool.clone())
        .await
        .unwrap()
}

#[sqlx::test]
async fn two_instances_publish_each_event_once_and_a_dead_relay_is_replaced(pool: PgPool) {
    let exchange = exchange_name();
    let mut queue = Consumer::bind(&exchange).await;
    let app = relay_app(pool, &format!("amqp://guest:guest@{BROKER}/%2f"), &exchange).await;
    let other = second_instance(&app).await;
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = relay::spawn(app.state.clone(), stop_a.clone()).unwrap();
    let b = relay::spawn(other, stop_b.clone()).unwrap();
    for i in 0..30 {
        app.sign_up(&format!("u{i}@example.com")).await;
    }
    let got = queue.take(30).await;
    let ids: HashSet<String> = got
        .iter()
        .map(|d| envelope(d)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 30, "each event once");
    assert!(queue.quiet_for(Duration::from_millis(1500)).await);

    // the publishing relay dies with its instance (its lock connection closes); the other takes over
    a.abort();
    b.abort();
    let _ = (a.await, b.await);
    let third = second_instance(&app).await;
    let c = relay::spawn(third, stop_a.clone()).unwrap();
    sqlx::query(
        "insert into events (id, type, actor, data)
         select gen_random_uuid(), 'user.purged', 'system', '{}'::jsonb from generate_series(1, 3000)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let started = Instant::now();
    let first = queue.take(1).await;
    // kill the relay mid-stream; the next one republishes what was not acknowledged
    c.abort();
    let _ = c.await;
    let d = relay::spawn(second_instance(&app).await, stop_b.clone()).unwrap();
    let mut seen: HashSet<String> = first
        .iter()
        .map(|d| envelope(d)["id"].as_str().unwrap().to_owned())
        .collect();
    while seen.len() < 3000 {
        let batch = queue.take(1).await;
        seen.insert(envelope(&batch[0])["id"].as_str().unwrap().to_owned());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} of 3000",
            seen.len()
        );
    }
    assert_eq!(all_marked(&app).await, 0);
    stop_a.cancel();
    stop_b.cancel();
    d.await.unwrap();
    queue.delete_exchange().await;
}

#[sqlx::test]
async fn without_an_amqp_url_events_are_written_but_no_relay_runs(pool: PgPool) {
    let app = TestApp::new(pool).await;
    assert!(relay::spawn(app.state.clone(), CancellationToken::new()).is_none());
    app.sign_up("ann@example.com").await;
    assert_eq!(all_events(&app).await.len(), 1);
    // kept for the feed, waiting for no relay: not a backlog an alert should see
    let pending = "outbox_pending{outbox=\"events\"}";
    assert!(app
        .get("/metrics")
        .send()
        .await
        .text()
        .contains(&format!("{pending} 0")));
}

#[sqlx::test]
async fn events_are_in_commit_order_not_in_the_order_transactions_began(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let insert = "insert into events (id, type, actor, data) values ($1, $2, 'system', '{}')";
    // `early` writes first but commits last; `late` commits in between
    let mut early = app.pool.begin().await.unwrap();
    sqlx::query(insert)
        .bind(uuid::Uuid::now_v7())
        .bind("test.early")
        .execute(&mut *early)
        .await
        .unwrap();
    let mut late = app.pool.begin().await.unwrap();
    sqlx::query(insert)
        .bind(uuid::Uuid::now_v7())
        .bind("test.late")
        .execute(&mut *late)
        .await
        .unwrap();
    late.commit().await.unwrap();
    // committed events are served while another transaction is still open
    let types = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(types(all_events(&app).await), ["test.late"]);
    early.commit().await.unwrap();
    assert_eq!(types(all_events(&app).await), ["test.late", "test.early"]);
    let after_late = feed(
        &app,
        &format!(
            "?after={}",
            all_events(&app).await[0]["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(
        types(after_late["items"].as_array().unwrap().clone()),
        ["test.early"]
    );
}
