//! Admin tools: user search, reading, deleting, restoring, roles, sessions, the audit log.

use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{Session, TestApp, PASSWORD};

const ANY: &str = "/api/v1/private/users/any";

fn user_path(id: &str) -> String {
    format!("/api/v1/private/admin/users/{id}")
}

async fn search(app: &TestApp, admin: &Session, body: Value) -> Value {
    let res = app.put(ANY).cookies(admin).json(body).send().await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

fn emails(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn admin_routes_are_forbidden_to_other_roles(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let methodist = app.signed_in_as("m@example.com", "methodist").await;
    let readonly = app.signed_in_as("r@example.com", "readonly").await;
    let id = methodist.user_id.clone();
    for who in [&methodist, &readonly] {
        let calls = [
            app.put(ANY).cookies(who).json(json!({})).send().await,
            app.get(&user_path(&id)).cookies(who).send().await,
            app.delete(&user_path(&id)).cookies(who).send().await,
            app.post(&format!("{}/restore", user_path(&id)))
                .cookies(who)
                .send()
                .await,
            app.put(&format!("{}/role", user_path(&id)))
                .cookies(who)
                .json(json!({"role": "admin"}))
                .send()
                .await,
            app.delete(&format!("{}/seances", user_path(&id)))
                .cookies(who)
                .send()
                .await,
            app.get("/api/v1/private/admin/audit")
                .cookies(who)
                .send()
                .await,
        ];
        for res in calls {
            res.assert_problem(StatusCode::FORBIDDEN, "forbidden");
        }
    }
    let role: String = sqlx::query_scalar("select role from users where id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(role, "methodist");
}

#[sqlx::test]
async fn an_admin_reads_any_user_deleted_ones_too(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.sign_up("ann@example.com").await;
    sqlx::query("update users set status = 'deleted', deleted_at = now() where id = $1::uuid")
        .bind(&ann)
        .execute(&app.pool)
        .await
        .unwrap();
    let res = app.get(&user_path(&ann)).cookies(&admin).send().await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["status"], "deleted");
    app.get(&user_path(&uuid::Uuid::new_v4().to_string()))
        .cookies(&admin)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
}

#[sqlx::test]
async fn an_admin_soft_deletes_restores_and_permanently_deletes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    assert_eq!(
        app.delete(&user_path(&ann.user_id))
            .cookies(&admin)
            .send()
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    app.get("/api/v1/private/users/me")
        .cookies(&ann)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.delete(&user_path(&ann.user_id))
        .cookies(&admin)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_deleted");
    let restored = app
        .post(&format!("{}/restore", user_path(&ann.user_id)))
        .cookies(&admin)
        .send()
        .await;
    assert_eq!(restored.status, StatusCode::OK);
    assert_eq!(restored.json()["status"], "active");
    app.post(&format!("{}/restore", user_path(&ann.user_id)))
        .cookies(&admin)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "already_active");
    let hard = app
        .delete(&format!("{}?permanent=true", user_path(&ann.user_id)))
        .cookies(&admin)
        .send()
        .await;
    assert_eq!(hard.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.scalar_i64(
            "select count(*) from users where id = $1::uuid",
            &ann.user_id
        )
        .await,
        0
    );
    assert_eq!(
        app.scalar_i64(
            "select count(*) from sessions where user_id = $1::uuid",
            &ann.user_id
        )
        .await,
        0
    );
    app.delete(&format!("{}?permanent=true", user_path(&ann.user_id)))
        .cookies(&admin)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
    app.delete(&format!("{}?permanent=maybe", user_path(&ann.user_id)))
        .cookies(&admin)
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // the email is free again
    assert_eq!(app.sign_up("ann@example.com").await.len(), 36);
}

#[sqlx::test]
async fn a_role_change_reaches_the_users_tokens_at_the_next_refresh(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    let res = app
        .put(&format!("{}/role", user_path(&ann.user_id)))
        .cookies(&admin)
        .json(json!({"role": "admin"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["role"], "admin");
    // the session keeps working, and the next refresh carries the new role
    let refreshed = app
        .post("/api/v1/public/users/refresh")
        .header("cookie", &format!("refresh_token={}", ann.refresh))
        .send()
        .await;
    let access = refreshed.cookie("access_token").unwrap();
    let claims = app
        .state
        .keys
        .verify(&access, users_service::auth::jwt::TokenKind::Access)
        .unwrap();
    assert_eq!(claims.role, Some(users_service::domain::Role::Admin));
    app.put(&format!("{}/role", user_path(&ann.user_id)))
        .cookies(&admin)
        .json(json!({"role": "root"}))
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[sqlx::test]
async fn a_demoted_admin_loses_admin_routes_at_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let root = app.signed_in_as("root@example.com", "admin").await;
    let second = app.signed_in_as("second@example.com", "admin").await;
    app.put(&format!("{}/role", user_path(&second.user_id)))
        .cookies(&root)
        .json(json!({"role": "readonly"}))
        .send()
        .await;
    app.get(&user_path(&root.user_id))
        .cookies(&second)
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
}

#[sqlx::test]
async fn the_last_admin_cannot_be_demoted_or_deleted(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let root = app.signed_in_as("root@example.com", "admin").await;
    let me = user_path(&root.user_id);
    app.put(&format!("{me}/role"))
        .cookies(&root)
        .json(json!({"role": "methodist"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "last_admin");
    app.delete(&me)
        .cookies(&root)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "last_admin");
    app.delete(&format!("{me}?permanent=true"))
        .cookies(&root)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "last_admin");
    // with a second admin, the first may step down
    let second = app.signed_in_as("second@example.com", "admin").await;
    let res = app
        .put(&format!("{me}/role"))
        .cookies(&second)
        .json(json!({"role": "methodist"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK);
    app.put(&format!("{}/role", user_path(&second.user_id)))
        .cookies(&second)
        .json(json!({"role": "readonly"}))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "last_admin");
}

#[sqlx::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let a = app.signed_in_as("a@example.com", "admin").await;
    let b = app.signed_in_as("b@example.com", "admin").await;
    let demote_b = app
        .put(&format!("{}/role", user_path(&b.user_id)))
        .cookies(&a)
        .json(json!({"role": "readonly"}))
        .send();
    let demote_a = app
        .put(&format!("{}/role", user_path(&a.user_id)))
        .cookies(&b)
        .json(json!({"role": "readonly"}))
        .send();
    let _ = tokio::join!(demote_a, demote_b);
    let admins = app
        .scalar_i64("select count(*) from users where role = $1", "admin")
        .await;
    assert_eq!(admins, 1);
}

#[sqlx::test]
async fn an_admin_revokes_every_session_of_a_user(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    let res = app
        .delete(&format!("{}/seances", user_path(&ann.user_id)))
        .cookies(&admin)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    app.get("/api/v1/private/users/me")
        .cookies(&ann)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.delete(&format!(
        "{}/seances",
        user_path(&uuid::Uuid::new_v4().to_string())
    ))
    .cookies(&admin)
    .send()
    .await
    .assert_problem(StatusCode::NOT_FOUND, "user_not_found");
}

#[sqlx::test]
async fn search_matches_email_phone_and_names_case_insensitively(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    for (email, first, last, phone) in [
        ("ann.smith@example.com", "Ann", "Smith", "+79990000001"),
        ("bob@example.org", "Bob", "Ivanov", "+79990000002"),
        ("carol@example.net", "Carol", "Smithson", "+49151000003"),
    ] {
        app.post("/api/v1/public/users/sign_up")
            .json(json!({"email": email, "password": PASSWORD, "first_name": first, "last_name": last, "phone": phone}))
            .ip(crate::helpers::unique_ip())
            .send()
            .await;
    }
    let by_name = search(&app, &admin, json!({"query": "SMITH"})).await;
    assert_eq!(
        emails(&by_name),
        ["carol@example.net", "ann.smith@example.com"]
    );
    assert_eq!(
        emails(&search(&app, &admin, json!({"query": "ivan"})).await),
        ["bob@example.org"]
    );
    assert_eq!(
        emails(&search(&app, &admin, json!({"query": "4915"})).await),
        ["carol@example.net"]
    );
    assert_eq!(
        emails(&search(&app, &admin, json!({"query": "EXAMPLE.ORG"})).await),
        ["bob@example.org"]
    );
    assert!(
        emails(&search(&app, &admin, json!({"query": "%"})).await).is_empty(),
        "wildcards are literal"
    );
    assert_eq!(
        emails(&search(&app, &admin, json!({"role": "admin"})).await),
        ["root@example.com"]
    );
    sqlx::query(
        "update users set status = 'deleted', deleted_at = now() where email = 'bob@example.org'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        emails(&search(&app, &admin, json!({"status": "deleted"})).await),
        ["bob@example.org"]
    );
    assert_eq!(
        search(&app, &admin, json!({"status": "active"})).await["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for bad in [
        json!({"limit": 0}),
        json!({"limit": 101}),
        json!({"cursor": "garbage"}),
        json!({"status": "gone"}),
    ] {
        app.put(ANY)
            .cookies(&admin)
            .json(bad)
            .send()
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
}

#[sqlx::test]
async fn search_pages_neither_repeat_nor_skip_while_users_are_added(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    for i in 0..7 {
        sqlx::query(
            "insert into users (id, email, first_name, role) values ($1, $2, 'P', 'readonly')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(format!("page{i}@example.com"))
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"query": "page", "limit": 3});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let page = search(&app, &admin, body).await;
        seen.extend(emails(&page));
        pages += 1;
        // a user added between pages must not shift what follows
        sqlx::query(
            "insert into users (id, email, first_name, role) values ($1, $2, 'P', 'readonly')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(format!("page-new{pages}@example.com"))
        .execute(&app.pool)
        .await
        .unwrap();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7)
        .rev()
        .map(|i| format!("page{i}@example.com"))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
}

#[sqlx::test]
async fn search_uses_the_trigram_index(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("set enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "explain select id from users where search_text like '%' || 'smith' || '%' escape '\\' order by id desc limit 21",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(
        plan.iter()
            .any(|l| l.contains("users_search_text_trgm_idx")),
        "{plan:#?}"
    );
}

#[sqlx::test]
async fn a_sampled_search_asks_the_index_for_the_rare_part_and_answers_the_same(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    sqlx::query(
        "insert into users (id, email, first_name, last_name, role)
         select ('00000000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
                'user' || g || '@bench.example', 'Name' || g, 'Family' || (g % 10), 'readonly'
         from generate_series(1, 300) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("analyze users")
        .execute(&app.pool)
        .await
        .unwrap();
    let before = emails(&search(&app, &admin, json!({"query": "User12"})).await);
    // (that search started a sample in the background; this one is taken now)
    app.state.search_terms.refresh(&app.state.db).await.unwrap();
    // `use` and `ser` are in every row: the index is asked for the rare end only
    let asked = app.state.search_terms.index_pattern("user123");
    assert!(asked.ends_with("123") && !asked.contains("se"), "{asked}");
    let after = emails(&search(&app, &admin, json!({"query": "User12"})).await);
    assert_eq!(before, after);
    assert_eq!(
        after,
        [
            "user129", "user128", "user127", "user126", "user125", "user124", "user123", "user122",
            "user121", "user120", "user12"
        ]
        .map(|u| format!("{u}@bench.example"))
    );
    // the rest of the text still has to match: `name123` holds `123` but not `user123`
    assert_eq!(
        emails(&search(&app, &admin, json!({"query": "user123"})).await),
        ["user123@bench.example"]
    );
    assert!(emails(&search(&app, &admin, json!({"query": "xuser123"})).await).is_empty());
}

#[sqlx::test]
async fn the_audit_log_pages_newest_first_with_filters(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let admin = app.signed_in_as("root@example.com", "admin").await;
    let ann = app.signed_in("ann@example.com").await;
    app.login("ann@example.com", "wrong password here").await;
    let res = app
        .get(&format!(
            "/api/v1/private/admin/audit?user_id={}&limit=2",
            ann.user_id
        ))
        .cookies(&admin)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let page = res.json();
    let actions: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["auth.login_failed", "auth.login"]);
    let first = &page["items"][0];
    assert_eq!(first["actor"], "anonymous");
    assert_eq!(first["target_user_id"], ann.user_id);
    for key in ["id", "at", "ip", "details"] {
        assert!(first.get(key).is_some(), "{key}");
    }
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!(
            "/api/v1/private/admin/audit?user_id={}&limit=2&cursor={cursor}",
            ann.user_id
        ))
        .cookies(&admin)
        .send()
        .await
        .json();
    let actions: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["user.sign_up"]);
    assert!(rest["next_cursor"].is_null());
    let sign_ups = app
        .get("/api/v1/private/admin/audit?action=user.sign_up")
        .cookies(&admin)
        .send()
        .await
        .json();
    assert_eq!(sign_ups["items"].as_array().unwrap().len(), 2);
    app.get("/api/v1/private/admin/audit?limit=500")
        .cookies(&admin)
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}
