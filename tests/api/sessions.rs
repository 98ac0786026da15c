//! The private session routes: logout, listing and revocation.

use axum::http::StatusCode;
use sqlx::PgPool;

use crate::helpers::{TestApp, PASSWORD};

const SEANCES: &str = "/api/v1/private/users/seances";
const ME: &str = "/api/v1/private/users/me";

#[sqlx::test]
async fn logout_revokes_this_session_and_clears_both_cookies(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .put("/api/v1/private/users/logout")
        .cookies(&s)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(res.body.is_empty());
    assert!(res.clears_cookies(), "{:?}", res.set_cookies());
    let cleared = res.set_cookie_line("refresh_token").unwrap();
    assert!(
        cleared.contains("Path=/api/v1"),
        "cleared with the path that set it: {cleared}"
    );
    let revoked: bool =
        sqlx::query_scalar("select revoked_at is not null from sessions where id = $1::uuid")
            .bind(&s.session_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(revoked);
    let after = app.get(ME).cookies(&s).send().await;
    after.assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(after.clears_cookies());
}

#[sqlx::test]
async fn private_routes_without_credentials_are_unauthenticated(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for res in [
        app.get(ME).send().await,
        app.put("/api/v1/private/users/logout").send().await,
        app.get(SEANCES).send().await,
        app.delete(SEANCES).send().await,
    ] {
        res.assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
}

#[sqlx::test]
async fn seances_lists_live_sessions_newest_first_marking_the_current_one(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let first = app.signed_in("ann@example.com").await;
    let second = app.login("ann@example.com", PASSWORD).await.json()["session_id"].clone();
    let third = app.login("ann@example.com", PASSWORD).await.json()["session_id"].clone();
    app.delete(&format!("{SEANCES}/{}", third.as_str().unwrap()))
        .cookies(&first)
        .send()
        .await;
    for res in [
        app.get(SEANCES).cookies(&first).send().await,
        app.post(SEANCES).cookies(&first).send().await,
    ] {
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        let items = res.json()["items"].as_array().unwrap().clone();
        let ids: Vec<_> = items.iter().map(|i| i["id"].clone()).collect();
        assert_eq!(
            ids,
            vec![second.clone(), serde_json::json!(first.session_id)]
        );
        assert_eq!(items[0]["current"], false);
        assert_eq!(items[1]["current"], true);
        for key in ["user_agent", "ip", "created_at", "last_seen_at"] {
            assert!(items[1].get(key).is_some(), "{key}");
        }
    }
}

#[sqlx::test]
async fn deleting_a_session_revokes_it_at_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let a = app.signed_in("ann@example.com").await;
    let b = app.tokens("ann@example.com", PASSWORD).await;
    let res = app
        .delete(&format!("{SEANCES}/{}", b["session_id"].as_str().unwrap()))
        .cookies(&a)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    app.get(ME)
        .bearer(b["access_token"].as_str().unwrap())
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(app.get(ME).cookies(&a).send().await.status, StatusCode::OK);
}

#[sqlx::test]
async fn deleting_another_users_or_an_unknown_session_is_session_not_found(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.signed_in("ann@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    app.delete(&format!("{SEANCES}/{}", bob.session_id))
        .cookies(&ann)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "session_not_found");
    app.delete(&format!("{SEANCES}/{}", uuid::Uuid::new_v4()))
        .cookies(&ann)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "session_not_found");
    app.delete(&format!("{SEANCES}/not-a-uuid"))
        .cookies(&ann)
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(
        app.get(ME).cookies(&bob).send().await.status,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn deleting_all_sessions_keeps_only_the_current_one(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let a = app.signed_in("ann@example.com").await;
    let b = app.tokens("ann@example.com", PASSWORD).await;
    let c = app.tokens("ann@example.com", PASSWORD).await;
    let res = app.delete(SEANCES).cookies(&a).send().await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    for other in [&b, &c] {
        app.get(ME)
            .bearer(other["access_token"].as_str().unwrap())
            .send()
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    assert_eq!(app.get(ME).cookies(&a).send().await.status, StatusCode::OK);
    let live = app
        .scalar_i64(
            "select count(*) from sessions where user_id = $1::uuid and revoked_at is null",
            &a.user_id,
        )
        .await;
    assert_eq!(live, 1);
}

#[sqlx::test]
async fn me_answers_the_signed_in_user_by_cookie_or_bearer(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let by_cookie = app.get(ME).cookies(&s).send().await;
    assert_eq!(by_cookie.status, StatusCode::OK);
    assert_eq!(by_cookie.json()["email"], "ann@example.com");
    assert!(
        by_cookie.set_cookies().is_empty(),
        "a live access token needs no refresh"
    );
    let by_bearer = app.get(ME).bearer(&s.access).send().await;
    assert_eq!(by_bearer.json()["id"], s.user_id);
}

#[sqlx::test]
async fn a_soft_deleted_users_sessions_are_dead(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    sqlx::query("update users set status = 'deleted', deleted_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    app.get(ME)
        .bearer(&s.access)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn concurrent_session_checks_share_queries_and_each_gets_its_own_user(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut sessions = Vec::new();
    for i in 0..6 {
        sessions.push(app.signed_in(&format!("user{i}@example.com")).await);
    }
    // user0 has a linked account: the links must not leak to the others in the same batch
    let link = app
        .post("/api/v1/server/users/link-social-network")
        .server_key()
        .json(
            serde_json::json!({"user_id": sessions[0].user_id, "social_network": "vk",
                                 "connection_link": "https://vk.com/user0"}),
        )
        .send()
        .await;
    assert_eq!(link.status, StatusCode::CREATED, "{}", link.text());
    let dead = app.signed_in("gone@example.com").await;
    let res = app
        .put("/api/v1/private/users/logout")
        .bearer(&dead.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);

    let (checks_before, queries_before) = app.state.session_reads.counts();
    // every live session three times (duplicates in one batch), and the dead one, all at once
    let burst = sessions
        .iter()
        .cycle()
        .take(18)
        .chain(std::iter::once(&dead))
        .map(|s| app.get(ME).bearer(&s.access).send());
    let results = futures::future::join_all(burst).await;
    let (checks_after, queries_after) = app.state.session_reads.counts();

    for (i, res) in results[..18].iter().enumerate() {
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        let body = res.json();
        assert_eq!(body["email"], format!("user{}@example.com", i % 6));
        let links = body["linked_accounts"].as_array().unwrap();
        if i % 6 == 0 {
            // read back through the session query's JSON, exactly as the link route answered it
            assert_eq!(links, &vec![link.json()]);
        } else {
            assert!(links.is_empty(), "{body}");
        }
    }
    results[18].assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    let checks = checks_after - checks_before;
    let queries = queries_after - queries_before;
    assert_eq!(checks, 19);
    assert!(
        queries * 4 <= checks,
        "{checks} concurrent checks took {queries} queries"
    );
}

/// A batching slot keeps its connection while session checks keep coming (a connection given
/// back to sqlx's pool is pinged first: one more round trip per query) and gives it back once
/// they stop, so an idle service holds none.
#[sqlx::test]
async fn session_checks_keep_their_connection_while_they_come_and_give_it_back_when_quiet(
    pool: PgPool,
) {
    use std::time::{Duration, Instant};
    use users_service::repo::batch::HOLD_IDLE;
    use users_service::repo::db::Db;
    use users_service::repo::session_reads::SessionReads;

    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let reads = SessionReads::spawn(Db::from(own.clone()), 1, Duration::from_secs(5));
    let in_use = || own.size() as usize - own.num_idle();

    for _ in 0..5 {
        let found = reads.read(uuid::Uuid::now_v7()).await.unwrap();
        assert!(found.is_none());
        assert_eq!(in_use(), 1, "the slot holds the one connection it used");
    }
    tokio::time::sleep(HOLD_IDLE + Duration::from_millis(300)).await;
    let given_back = Instant::now();
    while in_use() > 0 {
        assert!(
            given_back.elapsed() < Duration::from_secs(3),
            "still held after a quiet spell"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // and the next check takes one again
    assert!(reads.read(uuid::Uuid::now_v7()).await.unwrap().is_none());
    assert_eq!(in_use(), 1);
}
