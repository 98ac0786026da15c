//! Linked social accounts: private (own) and server (any user) routes.

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{Session, TestApp, TestResponse};

const MINE: &str = "/api/v1/private/users/me/linked-accounts";

async fn link(app: &TestApp, s: &Session, network: &str, url: &str) -> TestResponse {
    app.post(MINE)
        .cookies(s)
        .json(json!({"social_network": network, "connection_link": url}))
        .send()
        .await
}

#[sqlx::test]
async fn a_user_links_updates_and_unlinks_their_accounts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    let res = app
        .post(MINE)
        .cookies(&s)
        .json(json!({"social_network": "vk", "connection_link": "https://vk.com/ann", "connected_for": "teaching"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let linked = res.json();
    assert_eq!(linked["social_network"], "vk");
    assert_eq!(linked["connected_for"], "teaching");
    let id = linked["id"].as_str().unwrap().to_owned();
    link(&app, &s, "github", "https://www.github.com/ann").await;
    let me = app
        .get("/api/v1/private/users/me")
        .cookies(&s)
        .send()
        .await
        .json();
    let links: Vec<&str> = me["linked_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["social_network"].as_str().unwrap())
        .collect();
    assert_eq!(links, ["vk", "github"]);
    let patched = app
        .req(Method::PATCH, &format!("{MINE}/{id}"))
        .cookies(&s)
        .json(json!({"connected_for": "research"}))
        .send()
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.json()["connected_for"], "research");
    assert_eq!(
        app.delete(&format!("{MINE}/{id}"))
            .cookies(&s)
            .send()
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.scalar_i64(
            "select count(*) from linked_accounts where user_id = $1::uuid",
            &s.user_id
        )
        .await,
        1
    );
    let actions = app.audit_actions(&s.user_id).await;
    for action in [
        "linked_account.link",
        "linked_account.update",
        "linked_account.unlink",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} not audited: {actions:?}"
        );
    }
}

#[sqlx::test]
async fn links_off_the_networks_hosts_are_link_not_of_network(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let s = app.signed_in("ann@example.com").await;
    for url in [
        "https://vk.com.evil.example/ann",
        "http://vk.com/ann",
        "https://user@vk.com/ann",
        "https://vk.com:8443/ann",
        "https://t.me/ann",
        "not a url",
    ] {
        link(&app, &s, "vk", url)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "link_not_of_network");
    }
    link(&app, &s, "myspace", "https://myspace.com/ann")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(
        app.scalar_i64("select count(*) from linked_accounts where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn a_page_linked_twice_is_link_exists(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.signed_in("ann@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    assert_eq!(
        link(&app, &ann, "telegram", "https://t.me/ann")
            .await
            .status,
        StatusCode::CREATED
    );
    link(&app, &ann, "telegram", "https://t.me/ann")
        .await
        .assert_problem(StatusCode::CONFLICT, "link_exists");
    link(&app, &bob, "telegram", "https://T.ME/ann")
        .await
        .assert_problem(StatusCode::CONFLICT, "link_exists");
}

#[sqlx::test]
async fn another_users_linked_account_is_not_found(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.signed_in("ann@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    let id = link(&app, &ann, "ok", "https://ok.ru/ann").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.req(Method::PATCH, &format!("{MINE}/{id}"))
        .cookies(&bob)
        .json(json!({"connected_for": "x"}))
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "linked_account_not_found");
    app.delete(&format!("{MINE}/{id}"))
        .cookies(&bob)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "linked_account_not_found");
    app.delete(&format!("{MINE}/{}", uuid::Uuid::new_v4()))
        .cookies(&ann)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "linked_account_not_found");
    assert_eq!(
        app.scalar_i64(
            "select count(*) from linked_accounts where id = $1::uuid",
            &id
        )
        .await,
        1
    );
}

#[sqlx::test]
async fn the_last_way_to_sign_in_cannot_be_unlinked(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.sign_up("ann@example.com").await;
    sqlx::query("update users set password_hash = null where id = $1::uuid")
        .bind(&ann)
        .execute(&app.pool)
        .await
        .unwrap();
    let identity: uuid::Uuid = sqlx::query_scalar(
        "insert into linked_accounts (id, user_id, social_network, connection_link, external_id)
         values ($1, $2::uuid, 'telegram', 'https://t.me/ann', '42') returning id",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(&ann)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let unlink = |id: uuid::Uuid| {
        app.delete("/api/v1/server/users/unlink-social-network")
            .server_key()
            .json(json!({"user_id": ann, "linked_account_id": id}))
            .send()
    };
    unlink(identity)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "last_login_method");
    // a second identity makes the first removable
    let link = app
        .post("/api/v1/server/users/link-social-network")
        .server_key()
        .json(json!({"user_id": ann, "social_network": "vk", "connection_link": "https://vk.com/ann"}))
        .send()
        .await;
    assert_eq!(link.status, StatusCode::CREATED);
    let manual = uuid::Uuid::parse_str(link.json()["id"].as_str().unwrap()).unwrap();
    assert_eq!(
        unlink(manual).await.status,
        StatusCode::NO_CONTENT,
        "a link added by hand is no way to sign in"
    );
    unlink(identity)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "last_login_method");
}

#[sqlx::test]
async fn the_server_routes_manage_any_users_links_with_the_contract_errors(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let ann = app.sign_up("ann@example.com").await;
    let res = app
        .post("/api/v1/server/users/link-social-network")
        .server_key()
        .json(json!({"user_id": ann, "social_network": "yandex", "connection_link": "https://dzen.ru/ann"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let id = res.json()["id"].as_str().unwrap().to_owned();
    let reason = app
        .put("/api/v1/server/users/change-social-network-connection-reason")
        .server_key()
        .json(json!({"user_id": ann, "linked_account_id": id, "reason": "blog"}))
        .send()
        .await;
    assert_eq!(reason.status, StatusCode::OK);
    assert_eq!(reason.json()["connected_for"], "blog");
    let got = app
        .get(&format!("/api/v1/server/users/{ann}"))
        .server_key()
        .send()
        .await
        .json();
    assert_eq!(got["linked_accounts"][0]["connected_for"], "blog");
    app.post("/api/v1/server/users/link-social-network")
        .server_key()
        .json(json!({"user_id": ann, "social_network": "yandex", "connection_link": "https://ya.ru.evil/ann"}))
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "link_not_of_network");
    app.post("/api/v1/server/users/link-social-network")
        .server_key()
        .json(json!({"user_id": uuid::Uuid::new_v4(), "social_network": "vk", "connection_link": "https://vk.com/x"}))
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    app.put("/api/v1/server/users/change-social-network-connection-reason")
        .server_key()
        .json(json!({"user_id": ann, "linked_account_id": uuid::Uuid::new_v4(), "reason": "x"}))
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "linked_account_not_found");
    sqlx::query("update users set status = 'deleted', deleted_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    app.post("/api/v1/server/users/link-social-network")
        .server_key()
        .json(json!({"user_id": ann, "social_network": "vk", "connection_link": "https://vk.com/ann"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_deleted");
    app.delete("/api/v1/server/users/unlink-social-network")
        .server_key()
        .json(json!({"user_id": ann, "linked_account_id": id}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_deleted");
    app.put("/api/v1/server/users/change-social-network-connection-reason")
        .server_key()
        .json(json!({"user_id": ann, "linked_account_id": id, "reason": "x"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_deleted");
}

#[sqlx::test]
async fn a_search_page_carries_each_users_links(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    link(&app, &ann, "vk", "https://vk.com/ann").await;
    let page = app
        .put("/api/v1/private/users/any")
        .cookies(&admin)
        .json(json!({}))
        .send()
        .await
        .json();
    let ann_row = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ann@example.com")
        .unwrap()
        .clone();
    assert_eq!(
        ann_row["linked_accounts"][0]["connection_link"],
        "https://vk.com/ann"
    );
}
