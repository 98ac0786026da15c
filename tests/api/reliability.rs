//! What production does to the service: concurrency, floods. (Outage: `outage.rs`; shutdown and
//! the same-email sign-up race: `binary.rs`, `sign_up.rs`; racing refreshes: `refresh.rs`.)

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::binary::{peak_rss_kib, probe_liveness_while, FreshDb, Server};
use crate::helpers::{unique_ip, TestApp, PASSWORD};

#[sqlx::test]
async fn fifty_concurrent_logins_of_one_user_all_succeed(pool: PgPool) {
    // every attempt is reserved against the lockout before its hash, so more concurrent attempts
    // than `auth.max_failed_logins` would be refused (hardening.rs); here the limit admits them all
    let app = TestApp::with(pool, |f| f.merge(("auth.max_failed_logins", 50))).await;
    app.sign_up("ann@example.com").await;
    let logins = (0..50).map(|_| {
        app.post("/api/v1/public/users/login")
            .json(json!({"email": "ann@example.com", "password": PASSWORD}))
            .ip(unique_ip())
            .send()
    });
    let results = futures::future::join_all(logins).await;
    assert!(results.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(
        app.scalar_i64(
            "select count(*) from sessions where revoked_at is null and $1 = $1",
            ""
        )
        .await,
        50
    );
}

#[sqlx::test]
async fn a_flood_of_wrong_passwords_keeps_memory_bounded_and_liveness_answering(pool: PgPool) {
    let db = FreshDb::new(&pool);
    let server = Server::start_with(
        &db,
        &[
            ("USERS__RATE_LIMIT__LOGIN_PER_MINUTE", "100000"),
            ("USERS__AUTH__MAX_FAILED_LOGINS", "100000"),
        ],
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let flood: Vec<_> = (0..300)
        .map(|i| {
            let request = client
                .post(format!("{}/api/v1/public/users/login", server.base))
                .json(&json!({"email": format!("nobody{i}@example.com"), "password": "wrong password here"}));
            tokio::spawn(request.send())
        })
        .collect();
    // liveness keeps answering while every hash slot is busy (not a timing check: it must answer)
    let probes = probe_liveness_while(&server.base, Duration::from_millis(50), || {
        flood.iter().any(|h| !h.is_finished())
    })
    .await;
    assert!(probes > 0);
    // each is refused: 401 after its hash, or 503 with Retry-After: 1 when the queue for hashing
    // slots (`auth.hash_queue_max`) was full
    let mut wrong = 0;
    for h in flood {
        let res = h.await.unwrap().unwrap();
        match res.status().as_u16() {
            401 => wrong += 1,
            503 => assert_eq!(res.headers()["retry-after"], "1"),
            other => panic!("flood answer {other}"),
        }
    }
    assert!(wrong >= 128, "{wrong} answered 401");
    // 300 concurrent argon2 hashes at 19 MiB each would need ~5.7 GiB; the semaphore caps them at
    // one per core
    let peak_mib = peak_rss_kib(server.child.id()) / 1024;
    assert!(peak_mib < 200, "peak RSS {peak_mib} MiB");
    drop(server);
    drop(db);
}
