//! Traces: the real binary exports spans over OTLP/HTTP (protobuf) to a receiver this test runs on
//! loopback; an incoming `traceparent` is continued.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use sqlx::PgPool;
use tempfile::NamedTempFile;

use crate::binary::{FreshDb, Server};
use crate::helpers::PASSWORD;

type Received = Arc<Mutex<Vec<Span>>>;

async fn receive(State(spans): State<Received>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let mut spans = spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            spans.extend(scope.spans);
        }
    }
    ""
}

async fn collector() -> (String, Received) {
    let spans: Received = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, spans)
}

/// The binary exporting its spans to a collector of this test, its log lines (stdout) going to a
/// file; `env` adds settings.
async fn traced(db: &FreshDb, env: &[(&str, &str)]) -> (Server, Received, NamedTempFile) {
    let (endpoint, spans) = collector().await;
    let log = NamedTempFile::new().unwrap();
    let mut all = vec![("USERS__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str())];
    all.extend_from_slice(env);
    let server = Server::start_logging(db, &all, log.reopen().unwrap().into()).await;
    (server, spans, log)
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(value: Option<&AnyValue>) -> Option<String> {
    match value {
        Some(AnyValue::StringValue(s)) => Some(s.clone()),
        Some(AnyValue::IntValue(i)) => Some(i.to_string()),
        _ => None,
    }
}

#[sqlx::test]
async fn a_request_continues_the_callers_trace_with_hashing_and_database_spans(pool: PgPool) {
    let db = FreshDb::new(&pool);
    let (server, spans, log) = traced(
        &db,
        &[("OTEL_BSP_SCHEDULE_DELAY", "100"), ("RUST_LOG", "info")],
    )
    .await;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/api/v1/public/users/sign_up", server.base))
        .json(&json!({"email": "ann@example.com", "password": PASSWORD, "first_name": "Ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let res = client
        .post(format!("{}/api/v1/public/users/login", server.base))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .json(&json!({"email": "ann@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let mut ours = Vec::new();
    for _ in 0..200 {
        ours = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex::encode(&s.trace_id) == trace_id)
            .cloned()
            .collect::<Vec<_>>();
        if ours
            .iter()
            .any(|s| s.name == "POST /api/v1/public/users/login")
            && ours.iter().any(|s| s.name == "password.verify")
            && ours.iter().any(|s| s.name == "sessions.insert")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server_span = ours
        .iter()
        .find(|s| s.name == "POST /api/v1/public/users/login")
        .unwrap_or_else(|| {
            panic!(
                "no server span in {:?}",
                ours.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(hex::encode(&server_span.parent_span_id), parent);
    assert_eq!(
        text(attribute(server_span, "http.request.method")).as_deref(),
        Some("POST")
    );
    assert_eq!(
        text(attribute(server_span, "http.route")).as_deref(),
        Some("/api/v1/public/users/login")
    );
    assert_eq!(
        text(attribute(server_span, "http.response.status_code")).as_deref(),
        Some("200")
    );
    assert!(
        server_span.events.is_empty(),
        "the request's info log line is not a span event: {:?}",
        server_span.events
    );
    let verify = ours.iter().find(|s| s.name == "password.verify").unwrap();
    assert_eq!(
        verify.parent_span_id, server_span.span_id,
        "hashing is a child of the request"
    );
    // the sign-up before it (a trace of its own) hashed its password
    let all = spans.lock().unwrap().clone();
    let sign_up = all
        .iter()
        .find(|s| s.name == "POST /api/v1/public/users/sign_up")
        .expect("the sign-up's server span");
    assert!(sign_up.parent_span_id.is_empty(), "a root of its own");
    let hash = all
        .iter()
        .find(|s| s.name == "password.hash")
        .expect("a password.hash span");
    assert_eq!(
        (&hash.trace_id, &hash.parent_span_id),
        (&sign_up.trace_id, &sign_up.span_id)
    );
    // database spans are named by their repository and function: the login opened a session
    let insert = ours
        .iter()
        .find(|s| s.name == "sessions.insert")
        .unwrap_or_else(|| {
            panic!(
                "no sessions.insert span in {:?}",
                ours.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        text(attribute(insert, "db.system")).as_deref(),
        Some("postgresql")
    );
    assert_eq!(insert.parent_span_id, server_span.span_id);
    // the request's log line carries the ids of its exported server span
    let lines = std::fs::read_to_string(log.path()).unwrap();
    let logged = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "request" && l["span"]["trace_id"] == trace_id)
        .unwrap_or_else(|| panic!("no request line with the trace id in {lines}"));
    assert_eq!(
        logged["span"]["span_id"],
        hex::encode(&server_span.span_id),
        "{logged}"
    );
    drop(server);
    drop(db);
}

#[sqlx::test]
async fn warnings_and_errors_reach_the_log_with_traces_on(pool: PgPool) {
    let db = FreshDb::new(&pool);
    let (server, _spans, log) = traced(
        &db,
        &[
            ("USERS__AUTH__REFRESH_REUSE_GRACE_SECS", "0"),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}/api/v1/public/users/{path}", server.base))
            .json(&body)
    };
    let res = post(
        "sign_up",
        json!({"email": "ann@example.com", "password": PASSWORD, "first_name": "Ann"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let tokens: serde_json::Value = post(
        "token",
        json!({"email": "ann@example.com", "password": PASSWORD}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let old = tokens["refresh_token"].as_str().unwrap();
    let rotated = post("refresh", json!({"refresh_token": old}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    // a rotated token used again: the session is revoked, with a warning (the layer that exports
    // spans once made the log layer drop every warning and error)
    let reuse = post("refresh", json!({"refresh_token": old}))
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), 401);

    let mut warning = None;
    for _ in 0..100 {
        let lines = std::fs::read_to_string(log.path()).unwrap();
        warning = lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == "refresh token reused; session revoked");
        if warning.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let warning = warning.unwrap_or_else(|| {
        panic!(
            "no reuse warning in {}",
            std::fs::read_to_string(log.path()).unwrap()
        )
    });
    assert_eq!(warning["level"], "WARN");
    assert_eq!(
        warning["target"], "users_service::service::auth",
        "{warning}"
    );
    let lines = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        !lines.contains("\"message\":\"request\""),
        "no info line at warn: {lines}"
    );
    drop(server);
    drop(db);
}

/// The `traceparent` headers a fake Yandex received, by path.
type Seen = Arc<Mutex<Vec<(&'static str, Option<String>)>>>;

fn traceparent(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A Yandex that issues a token for any code and a profile for any token, noting the trace
/// headers of each call.
async fn traced_yandex() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/token",
            post(
                |State(seen): State<Seen>, headers: axum::http::HeaderMap| async move {
                    seen.lock().unwrap().push(("token", traceparent(&headers)));
                    axum::Json(json!({"access_token": "at-1", "token_type": "bearer"}))
                },
            ),
        )
        .route(
            "/info",
            axum::routing::get(
                |State(seen): State<Seen>, headers: axum::http::HeaderMap| async move {
                    seen.lock().unwrap().push(("info", traceparent(&headers)));
                    axum::Json(json!({"id": "42", "login": "ya42", "first_name": "Ya",
                        "last_name": "User", "default_email": "ya@example.com"}))
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

#[sqlx::test]
async fn calls_to_yandex_carry_the_requests_trace(pool: PgPool) {
    let db = FreshDb::new(&pool);
    let (yandex, seen) = traced_yandex().await;
    let (authorize, token, info) = (
        format!("{yandex}/authorize"),
        format!("{yandex}/token"),
        format!("{yandex}/info"),
    );
    let back = "https://app.example/after";
    let allowed = format!("[\"{back}\"]");
    let (server, spans, _log) = traced(
        &db,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("USERS__OAUTH__YANDEX__AUTHORIZE_URL", authorize.as_str()),
            ("USERS__OAUTH__YANDEX__TOKEN_URL", token.as_str()),
            ("USERS__OAUTH__YANDEX__USERINFO_URL", info.as_str()),
            ("USERS__OAUTH__YANDEX__CLIENT_ID", "cid"),
            ("USERS__OAUTH__YANDEX__CLIENT_SECRET", "csecret"),
            (
                "USERS__OAUTH__YANDEX__REDIRECT_URI",
                "http://localhost:8080/api/v1/public/oauth/yandex/callback",
            ),
            ("USERS__OAUTH__ALLOWED_REDIRECTS", allowed.as_str()),
        ],
    )
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .get(format!(
            "{}/api/v1/public/oauth/yandex/authorize?redirect_to={back}",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let nonce = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("oauth_nonce="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let res = client
        .get(format!(
            "{}/api/v1/public/oauth/yandex/callback?code=c1&state={state}",
            server.base
        ))
        .header("cookie", format!("oauth_nonce={nonce}"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302, "{:?}", res.text().await);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(path, _)| *path).collect::<Vec<_>>(),
        ["token", "info"]
    );
    // each call names the trace, and a span of it that was exported
    let mut exported = Vec::new();
    for _ in 0..100 {
        exported = spans.lock().unwrap().clone();
        if exported
            .iter()
            .any(|s| s.name == "GET /api/v1/public/oauth/yandex/callback")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (path, header) in seen {
        let header = header.unwrap_or_else(|| panic!("no traceparent on the {path} call"));
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4, "{header}");
        assert_eq!((parts[0], parts[1], parts[3]), ("00", trace_id, "01"));
        assert!(
            exported.iter().any(
                |s| hex::encode(&s.trace_id) == trace_id && hex::encode(&s.span_id) == parts[2]
            ),
            "the {path} call's parent {} is a span of the request: {:?}",
            parts[2],
            exported.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
    drop(server);
    drop(db);
}

/// A login without credentials: 422, and the spans of one request.
async fn an_empty_login(server: &Server) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/public/users/login", server.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
}

#[sqlx::test]
async fn spans_still_queued_are_sent_when_the_service_stops(pool: PgPool) {
    let db = FreshDb::new(&pool);
    // batches would leave only after an hour: what arrives was sent at shutdown
    let (server, spans, _log) = traced(&db, &[("OTEL_BSP_SCHEDULE_DELAY", "3600000")]).await;
    an_empty_login(&server).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        spans.lock().unwrap().is_empty(),
        "nothing sent before the delay"
    );

    let (status, _server) = server.terminate().await;
    assert_eq!(status.code(), Some(0));
    let names: Vec<String> = spans
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert!(
        names.iter().any(|n| n == "POST /api/v1/public/users/login"),
        "{names:?}"
    );
    drop(db);
}

#[sqlx::test]
async fn a_collector_that_is_down_loses_spans_not_requests_and_is_warned_of_once(pool: PgPool) {
    let db = FreshDb::new(&pool);
    let log = NamedTempFile::new().unwrap();
    // nothing listens there
    let endpoint = format!("http://127.0.0.1:{}", crate::helpers::free_port());
    let server = Server::start_logging(
        &db,
        &[
            ("USERS__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        ],
        log.reopen().unwrap().into(),
    )
    .await;
    for _ in 0..5 {
        an_empty_login(&server).await;
        // each request's spans leave in a batch of their own, and fail
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warned = |lines: &str| {
        lines
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("trace export failed"))
            })
            .count()
    };
    let lines = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(warned(&lines), 1, "{lines}");
    drop(server);
    drop(db);
}

#[sqlx::test]
async fn a_collector_that_never_answers_holds_up_no_request(pool: PgPool) {
    let db = FreshDb::new(&pool);
    // a collector that takes the connection and then says nothing: the exporter's POST waits
    // the minute of its timeout, and the queue behind it (8 spans) fills and drops
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    let server = Server::start_with(
        &db,
        &[
            ("USERS__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "60000"),
        ],
    )
    .await;
    let first = tokio::time::timeout(Duration::from_secs(30), an_empty_login(&server)).await;
    assert!(first.is_ok(), "the first request answered");
    let waited = std::time::Instant::now();
    while connections.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(waited.elapsed() < Duration::from_secs(10), "no export came");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // the exporter now waits on its POST: forty requests more (ten times the queue's room in
    // spans) are answered all the same; were one to wait for the export, it would wait a minute
    let more = async {
        for _ in 0..40 {
            an_empty_login(&server).await;
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(30), more)
            .await
            .is_ok(),
        "a request waited for the collector"
    );
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the exporter still waits on its one POST"
    );
    drop(server);
    drop(db);
}
