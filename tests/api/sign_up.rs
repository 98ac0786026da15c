use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{unique_ip, TestApp, PASSWORD};

const PATH: &str = "/api/v1/public/users/sign_up";

#[sqlx::test]
async fn sign_up_creates_a_user_with_the_default_role(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = app
        .post(PATH)
        .json(json!({"email": " Ann@Example.com ", "password": PASSWORD, "first_name": "Ann", "phone": "+7 999 123-45-67"}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let user = res.json();
    assert_eq!(user["email"], "Ann@Example.com");
    assert_eq!(user["phone"], "+79991234567");
    assert_eq!(user["role"], "methodist");
    assert_eq!(user["status"], "active");
    assert_eq!(user["linked_accounts"], json!([]));
    assert!(user.get("password_hash").is_none());
    let hash: String = sqlx::query_scalar("select password_hash from users where id = $1::uuid")
        .bind(user["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
}

#[sqlx::test]
async fn sign_up_accepts_the_legacy_aliases_and_a_numeric_phone(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = app
        .post(PATH)
        .json(
            json!({"email": "b@example.com", "passw": PASSWORD, "name": "Bob", "lastname": "Brown",
                     "middlename": "B", "phone": 79990001122u64}),
        )
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let user = res.json();
    assert_eq!(
        (user["first_name"].as_str(), user["last_name"].as_str()),
        (Some("Bob"), Some("Brown"))
    );
    assert_eq!(user["middle_name"], "B");
    assert_eq!(user["phone"], "+79990001122");
}

#[sqlx::test]
async fn sign_up_with_a_taken_email_in_any_case_is_email_taken(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let res = app
        .post(PATH)
        .json(json!({"email": "ANN@example.com", "password": PASSWORD, "first_name": "Ann"}))
        .send()
        .await;
    res.assert_problem(StatusCode::CONFLICT, "email_taken");
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        1
    );
}

#[sqlx::test]
async fn sign_up_with_a_taken_phone_is_phone_taken(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for (email, expected) in [
        ("a@example.com", StatusCode::CREATED),
        ("b@example.com", StatusCode::CONFLICT),
    ] {
        let res = app
            .post(PATH)
            .json(json!({"email": email, "password": PASSWORD, "first_name": "A", "phone": "89991234567"}))
            .send()
            .await;
        assert_eq!(res.status, expected, "{}", res.text());
        if expected == StatusCode::CONFLICT {
            res.assert_problem(StatusCode::CONFLICT, "phone_taken");
        }
    }
}

#[sqlx::test]
async fn sign_up_with_weak_passwords_is_weak_password(pool: PgPool) {
    let app = TestApp::new(pool).await;
    for password in [
        "short1",
        "password123",
        "qwertyuiop",
        "w@example.com",
        &"x".repeat(129),
    ] {
        let res = app
            .post(PATH)
            .json(json!({"email": "w@example.com", "password": password, "first_name": "W"}))
            .send()
            .await;
        res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "weak_password");
    }
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn sign_up_with_invalid_fields_names_each_field(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD, "first_name": "A"}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "first_name": "  "}),
            "first_name",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "first_name": "A", "phone": "12ab"}),
            "phone",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD}),
            "first_name",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "first_name": "A", "role": "admin"}),
            "role",
        ),
        (
            json!({"email": 42, "password": PASSWORD, "first_name": "A"}),
            "email",
        ),
    ];
    for (body, field) in cases {
        let res = app.post(PATH).json(body.clone()).send().await;
        res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(
            res.json()["errors"][0]["field"],
            field,
            "{body}: {}",
            res.text()
        );
    }
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 = $1", "")
            .await,
        0
    );
}

#[sqlx::test]
async fn sign_up_is_refused_when_public_sign_up_is_disabled(pool: PgPool) {
    let app = TestApp::with(pool, |f| f.merge(("auth.public_sign_up", false))).await;
    let res = app
        .post(PATH)
        .json(json!({"email": "a@example.com", "password": PASSWORD, "first_name": "A"}))
        .send()
        .await;
    res.assert_problem(StatusCode::FORBIDDEN, "sign_up_disabled");
}

#[sqlx::test]
async fn twenty_concurrent_sign_ups_with_one_email_create_exactly_one_user(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let attempts = (0..20).map(|i| {
        app.post(PATH)
            .json(json!({"email": "race@example.com", "password": PASSWORD, "first_name": format!("R{i}")}))
            .ip(unique_ip())
            .send()
    });
    let results = futures::future::join_all(attempts).await;
    let created = results
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let conflicts = results
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 19));
    for r in results.iter().filter(|r| r.status == StatusCode::CONFLICT) {
        r.assert_problem(StatusCode::CONFLICT, "email_taken");
    }
    assert_eq!(
        app.scalar_i64(
            "select count(*) from users where email = $1",
            "race@example.com"
        )
        .await,
        1
    );
}

#[sqlx::test]
async fn sign_up_names_every_bad_field_at_once_and_creates_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = app
        .post(PATH)
        .json(json!({"email": "not-an-email", "password": 12, "phone": "12", "colour": "red"}))
        .send()
        .await;
    res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let fields: Vec<String> = res.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        fields,
        ["colour", "email", "first_name", "password", "phone"],
        "{}",
        res.text()
    );
    assert_eq!(
        app.scalar_i64("select count(*) from users where $1 <> ''", "x")
            .await,
        0
    );
}

#[sqlx::test]
async fn a_body_of_the_right_shape_reports_every_broken_rule(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let long = "x".repeat(101);
    let res = app
        .post(PATH)
        .json(
            json!({"email": "a@example.com", "password": PASSWORD, "name": " ", "lastname": long}),
        )
        .send()
        .await;
    res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let fields: Vec<String> = res.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["first_name", "last_name"], "{}", res.text());
}

#[sqlx::test]
async fn names_are_stored_trimmed_whichever_route_creates_or_changes_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = app
        .post(PATH)
        .json(json!({"email": "a@example.com", "password": PASSWORD, "first_name": "  Ann ", "last_name": "   "}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(res.json()["first_name"], "Ann");
    assert_eq!(res.json()["last_name"], serde_json::Value::Null);
    let res = app
        .post("/api/v1/server/users/create_user")
        .server_key()
        .json(json!({"email": "b@example.com", "first_name": " Bob", "middle_name": " B "}))
        .send()
        .await;
    assert_eq!(res.json()["first_name"], "Bob");
    assert_eq!(res.json()["middle_name"], "B");
    let id = res.json()["id"].as_str().unwrap().to_owned();
    let res = app
        .put("/api/v1/server/users/change-fullname")
        .server_key()
        .json(json!({"user_id": id, "first_name": " Robert ", "middle_name": "  "}))
        .send()
        .await;
    assert_eq!(res.json()["first_name"], "Robert", "{}", res.text());
    assert_eq!(res.json()["middle_name"], serde_json::Value::Null);
}
