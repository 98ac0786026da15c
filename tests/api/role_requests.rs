//! Role-change requests: asked by users, decided by admins, with their audit records,
//! notifications and events.

use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{Session, TestApp, TestResponse};

const OWN: &str = "/api/v1/private/users/me/role-requests";
const ADMIN: &str = "/api/v1/private/admin/role-requests";

async fn ask(app: &TestApp, s: &Session, role: &str, reason: &str) -> TestResponse {
    app.post(OWN)
        .bearer(&s.access)
        .json(json!({"role": role, "reason": reason}))
        .send()
        .await
}

async fn decide(
    app: &TestApp,
    admin: &Session,
    id: &str,
    verb: &str,
    body: Option<Value>,
) -> TestResponse {
    let req = app
        .post(&format!("{ADMIN}/{id}/{verb}"))
        .bearer(&admin.access);
    match body {
        Some(b) => req.json(b),
        None => req,
    }
    .send()
    .await
}

async fn role_of(app: &TestApp, user_id: &str) -> String {
    sqlx::query_scalar("select role from users where id = $1::uuid")
        .bind(user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn inbox(app: &TestApp, s: &Session) -> Vec<Value> {
    app.get("/api/v1/private/users/me/notifications")
        .bearer(&s.access)
        .send()
        .await
        .json()["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[sqlx::test]
async fn a_user_asks_once_at_a_time_and_may_cancel(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    let bob = app.signed_in("bob@example.com").await;
    for (role, reason) in [
        ("methodist", "already mine"),
        ("emperor", "unknown role"),
        ("admin", ""),
        ("admin", "   "),
        ("admin", &"x".repeat(1001)),
    ] {
        ask(&app, &ann, role, reason)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let res = ask(&app, &ann, "admin", "  I lead the group now  ").await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let request = res.json();
    assert_eq!(request["status"], "pending");
    assert_eq!(request["current_role"], "methodist");
    assert_eq!(request["requested_role"], "admin");
    assert_eq!(request["reason"], "I lead the group now");
    assert_eq!(request["decided_by"], Value::Null);
    ask(&app, &ann, "readonly", "changed my mind")
        .await
        .assert_problem(StatusCode::CONFLICT, "request_pending");
    // every active admin is told
    let told = inbox(&app, &admin).await;
    assert_eq!(told[0]["kind"], "role_request.created");
    assert_eq!(told[0]["data"]["role_request_id"], request["id"]);
    assert_eq!(
        told[0]["body"],
        "ann@example.com asks to become admin: I lead the group now"
    );

    let id = request["id"].as_str().unwrap();
    let mine = app.get(OWN).bearer(&ann.access).send().await.json();
    assert_eq!(mine["items"][0]["id"], request["id"]);
    assert!(
        app.get(OWN).bearer(&bob.access).send().await.json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // another user's or an unknown id: 404
    for (who, id) in [(&bob, id), (&ann, "0190b3a0-0000-7000-8000-000000000000")] {
        app.delete(&format!("{OWN}/{id}"))
            .bearer(&who.access)
            .send()
            .await
            .assert_problem(StatusCode::NOT_FOUND, "role_request_not_found");
    }
    let res = app
        .delete(&format!("{OWN}/{id}"))
        .bearer(&ann.access)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["status"], "cancelled");
    app.delete(&format!("{OWN}/{id}"))
        .bearer(&ann.access)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "request_not_pending");
    decide(&app, &admin, id, "approve", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "request_not_pending");
    // a new one may be asked once none is pending
    assert_eq!(
        ask(&app, &ann, "readonly", "fewer rights").await.status,
        StatusCode::CREATED
    );
    let actions = app.audit_actions(&ann.user_id).await;
    for a in ["role_request.create", "role_request.cancel"] {
        assert!(actions.contains(&a.to_owned()), "{actions:?}");
    }
    assert_eq!(role_of(&app, &ann.user_id).await, "methodist");
}

#[sqlx::test]
async fn an_approval_changes_the_role_as_the_admin_route_does(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    let id = ask(&app, &ann, "readonly", "read only is enough")
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // admin routes only
    decide(&app, &ann, &id, "approve", None)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    app.get(ADMIN)
        .bearer(&ann.access)
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");

    let res = decide(
        &app,
        &admin,
        &id,
        "approve",
        Some(json!({"comment": "welcome"})),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let decided = res.json();
    assert_eq!(decided["status"], "approved");
    assert_eq!(decided["decided_by"], json!(admin.user_id));
    assert_eq!(decided["comment"], "welcome");
    assert!(decided["decided_at"].is_string());
    assert_eq!(role_of(&app, &ann.user_id).await, "readonly");
    let actions = app.audit_actions(&ann.user_id).await;
    for a in ["role_request.approve", "user.role_change"] {
        assert!(actions.contains(&a.to_owned()), "{actions:?}");
    }
    let told = inbox(&app, &ann).await;
    assert_eq!(told[0]["kind"], "role_request.approved");
    assert_eq!(told[0]["body"], "welcome");
    // the session carries the new role from its next refresh
    let refreshed = app
        .post("/api/v1/public/users/refresh")
        .json(json!({"refresh_token": ann.refresh}))
        .send()
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    decide(&app, &admin, &id, "reject", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "request_not_pending");

    let filtered = app
        .get(&format!("{ADMIN}?status=approved&user_id={}", ann.user_id))
        .bearer(&admin.access)
        .send()
        .await
        .json();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    for bad in ["?status=maybe", "?user_id=x", "?limit=0", "?cursor=zz"] {
        app.get(&format!("{ADMIN}{bad}"))
            .bearer(&admin.access)
            .send()
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    decide(
        &app,
        &admin,
        "0190b3a0-0000-7000-8000-000000000000",
        "approve",
        None,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "role_request_not_found");
}

#[sqlx::test]
async fn a_rejection_notifies_and_changes_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    let id = ask(&app, &ann, "admin", "please").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    decide(
        &app,
        &admin,
        &id,
        "reject",
        Some(json!({"comment": "x".repeat(1001)})),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let res = decide(
        &app,
        &admin,
        &id,
        "reject",
        Some(json!({"comment": "not now"})),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["status"], "rejected");
    assert_eq!(role_of(&app, &ann.user_id).await, "methodist");
    let told = inbox(&app, &ann).await;
    assert_eq!(
        (told[0]["kind"].as_str(), told[0]["body"].as_str()),
        (Some("role_request.rejected"), Some("not now"))
    );
}

#[sqlx::test]
async fn an_admin_cannot_decide_their_own_request_nor_for_a_deleted_user(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let root = app.signed_in_as("root@example.com", "admin").await;
    let other = app.signed_in_as("other@example.com", "admin").await;
    let own = ask(&app, &other, "methodist", "step down").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    decide(&app, &other, &own, "approve", None)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    decide(&app, &other, &own, "reject", None)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        decide(&app, &root, &own, "approve", None).await.status,
        StatusCode::OK
    );
    assert_eq!(role_of(&app, &other.user_id).await, "methodist");

    let ann = app.signed_in("ann@example.com").await;
    let id = ask(&app, &ann, "readonly", "r").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.delete(&format!("/api/v1/private/admin/users/{}", ann.user_id))
        .bearer(&root.access)
        .send()
        .await;
    decide(&app, &root, &id, "approve", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_deleted");
}

#[sqlx::test]
async fn two_admins_deciding_at_once_one_wins(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let a = app.signed_in_as("a@example.com", "admin").await;
    let b = app.signed_in_as("b@example.com", "admin").await;
    for round in 0..5 {
        let user = app.signed_in(&format!("u{round}@example.com")).await;
        let id = ask(&app, &user, "readonly", "race").await.json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (x, y) = tokio::join!(
            decide(&app, &a, &id, "approve", None),
            decide(&app, &b, &id, "reject", None)
        );
        let mut statuses = [x.status, y.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::BAD_REQUEST],
            "{} / {}",
            x.text(),
            y.text()
        );
        let loser = if x.status == StatusCode::OK { &y } else { &x };
        loser.assert_problem(StatusCode::BAD_REQUEST, "request_not_pending");
        let winner = if x.status == StatusCode::OK { &x } else { &y };
        let expected_role = if winner.json()["status"] == "approved" {
            "readonly"
        } else {
            "methodist"
        };
        assert_eq!(role_of(&app, &user.user_id).await, expected_role);
        let decisions = app
            .scalar_i64(
                "select count(*) from audit_log where action in ('role_request.approve', 'role_request.reject') and details ->> 'role_request_id' = $1",
                &id,
            )
            .await;
        assert_eq!(decisions, 1);
    }
}

#[sqlx::test]
async fn each_step_of_a_request_is_an_event(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    let first = ask(&app, &ann, "admin", "a").await.json();
    app.delete(&format!("{OWN}/{}", first["id"].as_str().unwrap()))
        .bearer(&ann.access)
        .send()
        .await;
    let second = ask(&app, &ann, "admin", "b").await.json();
    decide(&app, &admin, second["id"].as_str().unwrap(), "reject", None).await;
    let third = ask(&app, &ann, "readonly", "c").await.json();
    let approved = decide(&app, &admin, third["id"].as_str().unwrap(), "approve", None)
        .await
        .json();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let events = loop {
        let page = app
            .get("/api/v1/server/events?limit=1000")
            .server_key()
            .send()
            .await
            .json();
        let items: Vec<Value> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"].as_str().unwrap().starts_with("role_request."))
            .cloned()
            .collect();
        if items.len() == 6 || std::time::Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "role_request.created",
            "role_request.cancelled",
            "role_request.created",
            "role_request.rejected",
            "role_request.created",
            "role_request.approved",
        ]
    );
    assert_eq!(events[1]["data"]["role_request"]["status"], "cancelled");
    assert_eq!(events[0]["data"]["role_request"]["reason"], "a");
    // an event's request is the API's request object
    assert_eq!(events[5]["data"]["role_request"], approved);
}
