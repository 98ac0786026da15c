//! Access-token verification: everything but a well-formed, well-signed, live token is 401.

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sqlx::PgPool;
use users_service::auth::jwt::{Keys, TokenKind};
use users_service::domain::Role;

use crate::helpers::{TestApp, PASSWORD};

const ME: &str = "/api/v1/private/users/me";

async fn bearer_me(app: &TestApp, token: &str) -> StatusCode {
    let res = app.get(ME).bearer(token).send().await;
    if res.status == StatusCode::UNAUTHORIZED {
        res.assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    res.status
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn part(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[sqlx::test]
async fn the_token_route_answers_tokens_in_the_body_and_sets_no_cookies(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let res = app
        .post("/api/v1/public/users/token")
        .json(json!({"email": "ann@example.com", "password": PASSWORD}))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(res.set_cookies().is_empty());
    let body = res.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["refresh_token"].is_string());
    let access = body["access_token"].as_str().unwrap();
    let claims = claims_of(access);
    for claim in ["iss", "aud", "sub", "sid", "role", "iat", "exp", "jti"] {
        assert!(claims.get(claim).is_some(), "{claim} missing: {claims}");
    }
    assert_eq!(claims["sid"], body["session_id"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert_eq!(bearer_me(&app, access).await, StatusCode::OK);
}

#[sqlx::test]
async fn the_token_route_has_the_login_errors(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let res = app
        .post("/api/v1/public/users/token")
        .json(json!({"email": "nobody@example.com", "password": PASSWORD}))
        .send()
        .await;
    res.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[sqlx::test]
async fn jwks_publishes_the_key_that_verifies_access_tokens(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    let jwks = app.get("/.well-known/jwks.json").send().await.json();
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    let header = jsonwebtoken::decode_header(tokens["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let decoding =
        jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["platform"]);
    validation.set_issuer(&["users-service"]);
    let data = jsonwebtoken::decode::<Value>(
        tokens["access_token"].as_str().unwrap(),
        &decoding,
        &validation,
    );
    assert!(data.is_ok(), "{data:?}");
}

#[sqlx::test]
async fn the_signing_key_is_stored_once_and_reused_by_the_next_instance(pool: PgPool) {
    let first = TestApp::new(pool.clone()).await;
    first.sign_up("ann@example.com").await;
    let tokens = first.tokens("ann@example.com", PASSWORD).await;
    let second = TestApp::new(pool).await;
    assert_eq!(first.state.keys.kid(), second.state.keys.kid());
    assert_eq!(
        bearer_me(&second, tokens["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    assert_eq!(
        second
            .scalar_i64("select count(*) from signing_keys where $1 = $1", "")
            .await,
        1
    );
}

#[sqlx::test]
async fn forged_and_foreign_tokens_are_unauthenticated(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    let good = tokens["access_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&good);
    let kid = app.state.keys.kid().to_owned();
    let mut forged = Vec::new();

    // alg: none
    forged.push(format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        part(&claims)
    ));
    // HS256 keyed with the public key
    let x = app.get("/.well-known/jwks.json").send().await.json()["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    forged
        .push(jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(x.as_bytes())).unwrap());
    forged.push(
        jsonwebtoken::encode(
            &hs,
            &claims,
            &EncodingKey::from_secret(&URL_SAFE_NO_PAD.decode(&x).unwrap()),
        )
        .unwrap(),
    );
    // a well-formed token from another key (unknown kid), and one claiming our kid
    let other =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let other_key = EncodingKey::from_ed_der(other.as_ref());
    let mut ed = Header::new(Algorithm::EdDSA);
    ed.kid = Some("unknown-kid".into());
    forged.push(jsonwebtoken::encode(&ed, &claims, &other_key).unwrap());
    ed.kid = Some(kid.clone());
    forged.push(jsonwebtoken::encode(&ed, &claims, &other_key).unwrap());
    // our key, but wrong issuer or audience, or expired, or a refresh token used as access
    let der: Vec<u8> = sqlx::query_scalar("select private_der from signing_keys")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let sub = claims["sub"].as_str().unwrap().parse().unwrap();
    let sid = claims["sid"].as_str().unwrap().parse().unwrap();
    for (iss, aud) in [
        ("someone-else", "platform"),
        ("users-service", "other-audience"),
    ] {
        let mut auth = app.state.settings.auth.clone();
        auth.issuer = iss.into();
        auth.audience = aud.into();
        let keys = Keys::from_pkcs8(&auth, &der).unwrap();
        forged.push(
            keys.issue(TokenKind::Access, sub, sid, Some(Role::Methodist), &[], 900)
                .unwrap()
                .0,
        );
    }
    forged.push(
        app.state
            .keys
            .issue(TokenKind::Access, sub, sid, Some(Role::Methodist), &[], -5)
            .unwrap()
            .0,
    );
    forged.push(
        app.state
            .keys
            .issue(TokenKind::Access, sub, sid, Some(Role::Methodist), &[], 0)
            .unwrap()
            .0,
    );
    forged.push(tokens["refresh_token"].as_str().unwrap().to_owned());
    // tampered payload: role raised to admin, signature kept
    let mut raised = claims.clone();
    raised["role"] = json!("admin");
    let pieces: Vec<&str> = good.split('.').collect();
    forged.push(format!("{}.{}.{}", pieces[0], part(&raised), pieces[2]));
    // tampered signature
    let mut sig = URL_SAFE_NO_PAD.decode(pieces[2]).unwrap();
    sig[0] ^= 1;
    forged.push(format!(
        "{}.{}.{}",
        pieces[0],
        pieces[1],
        URL_SAFE_NO_PAD.encode(sig)
    ));
    forged.push("garbage".into());

    for token in &forged {
        assert_eq!(
            bearer_me(&app, token).await,
            StatusCode::UNAUTHORIZED,
            "accepted: {token}"
        );
    }
    assert_eq!(bearer_me(&app, &good).await, StatusCode::OK);
}

#[sqlx::test]
async fn a_server_key_is_not_accepted_on_private_routes_nor_a_user_token_on_server_routes(
    pool: PgPool,
) {
    let app = TestApp::new(pool).await;
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    app.get(ME)
        .server_key()
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    app.post("/api/v1/server/users/passw/reset_token")
        .bearer(tokens["access_token"].as_str().unwrap())
        .json(json!({"email": "ann@example.com"}))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[sqlx::test]
async fn a_configured_pem_key_signs_the_tokens_and_none_is_stored(pool: PgPool) {
    let pkcs8 =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signing.pem");
    std::fs::write(&file, pem).unwrap();
    let path = file.display().to_string();
    let app = TestApp::with(pool, |f| f.merge(("auth.signing_key_file", path))).await;
    let expected = Keys::from_pkcs8(&app.state.settings.auth, pkcs8.as_ref()).unwrap();
    assert_eq!(app.state.keys.kid(), expected.kid());
    let jwks = app.get("/.well-known/jwks.json").send().await.json();
    assert_eq!(jwks["keys"][0]["kid"], expected.kid());
    app.sign_up("ann@example.com").await;
    let tokens = app.tokens("ann@example.com", PASSWORD).await;
    assert!(expected
        .verify(tokens["access_token"].as_str().unwrap(), TokenKind::Access)
        .is_ok());
    assert_eq!(
        app.scalar_i64("select count(*) from signing_keys where $1 = $1", "")
            .await,
        0
    );
}
