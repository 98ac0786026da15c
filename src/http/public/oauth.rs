//! Sign-in with Yandex (authorization code flow, `state` + PKCE) and Telegram (Login Widget).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

use crate::auth::cookies::{self, OAUTH_NONCE};
use crate::error::{AppError, AppResult, Problem};
use crate::http::auth_layer::append_auth_cookies;
use crate::http::docs::PROBLEM;
use crate::http::dto::{LoginAnswer, LoginResponse, NO_STORE};
use crate::http::extract::{Json, MaybeUser, Query};
use crate::http::public::users::{mfa_required, signed_in_with_cookies};
use crate::service::oauth::{self, Outcome, TelegramAnswer, TelegramLogin};
use crate::service::ClientMeta;
use crate::state::AppState;

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeParams {
    /// where to send the browser afterwards; one of `oauth.allowed_redirects`
    pub redirect_to: String,
}

#[utoipa::path(
    get, path = "/oauth/yandex/authorize", tag = "public", params(AuthorizeParams),
    responses(
        (status = 302, description = "To Yandex's authorize URL (code flow, `state`, PKCE S256); sets the `oauth_nonce` cookie binding the flow to this browser. \
            With a live access cookie the flow links the Yandex identity to that user instead of signing in; \
            when that session's sign-in is older than `auth.reauth_window_secs`, back to `redirect_to` with `?error=reauthentication_required`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`provider_not_configured`"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`: `redirect_to` is not in `oauth.allowed_redirects`"),
    )
)]
pub async fn yandex_authorize(
    State(state): State<AppState>,
    MaybeUser(current): MaybeUser,
    Query(params): Query<AuthorizeParams>,
) -> AppResult<Response> {
    let started = match oauth::start_yandex(&state, &params.redirect_to, current.as_ref()).await {
        Ok(started) => started,
        Err(AppError::ReauthenticationRequired) => {
            let back = with_query(
                &params.redirect_to,
                &[("error", "reauthentication_required")],
            );
            return redirect(&back);
        }
        Err(e) => return Err(e),
    };
    let mut response = redirect(&started.location)?;
    let ttl = state.settings.oauth.state_ttl_secs;
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookies.set_oauth_nonce(&started.browser_nonce, ttl),
    );
    Ok(response)
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    /// set by Yandex when the person declined
    pub error: Option<String>,
}

#[utoipa::path(
    get, path = "/oauth/yandex/callback", tag = "public", params(CallbackParams),
    responses(
        (status = 302, description = "Back to `redirect_to`: signed in (auth cookies set); `?mfa_required=1&mfa_token=…` when the user has two-factor sign-in on \
            (no cookies: `POST login/mfa` completes it as a login); `?linked=yandex` after linking; \
            `?error=account_exists` when the Yandex email belongs to another account (never linked automatically); \
            `?error=account_deleted`, `?error=link_exists`, `?error=sign_up_disabled` (an unknown identity while `auth.public_sign_up` is false), or Yandex's own `error`"),
        (status = 400, body = Problem, content_type = PROBLEM, description = "`invalid_state`: unknown, replayed, expired, or from another browser"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`provider_not_configured`"),
        (status = 502, body = Problem, content_type = PROBLEM, description = "`provider_error`: Yandex failed or timed out"),
    )
)]
pub async fn yandex_callback(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> AppResult<Response> {
    let state_param = params.state.as_deref().ok_or(AppError::InvalidState)?;
    let nonce = cookies::read(&headers, OAUTH_NONCE);
    let code = match (&params.code, &params.error) {
        (Some(code), _) => Ok(code.as_str()),
        (None, Some(error)) => Err(error.as_str()),
        (None, None) => Err("no_code"),
    };
    let (redirect_to, finished) =
        oauth::finish_yandex(&state, &meta, state_param, nonce.as_deref(), code).await?;
    let back = |pairs: &[(&str, &str)]| with_query(&redirect_to, pairs);
    let mut response = match finished {
        Ok(Outcome::SignedIn(_, issued)) => {
            let mut r = redirect(&redirect_to)?;
            append_auth_cookies(&state, r.headers_mut(), &issued);
            r
        }
        Ok(Outcome::SecondFactor(challenge)) => redirect(&back(&[
            ("mfa_required", "1"),
            ("mfa_token", &challenge.token),
        ]))?,
        Ok(Outcome::Linked(_)) => redirect(&back(&[("linked", "yandex")]))?,
        Ok(Outcome::AccountExists) => redirect(&back(&[("error", "account_exists")]))?,
        Ok(Outcome::Declined(reason)) => redirect(&back(&[("error", &reason)]))?,
        Err(AppError::AccountDeleted) => redirect(&back(&[("error", "account_deleted")]))?,
        Err(AppError::SignUpDisabled) => redirect(&back(&[("error", "sign_up_disabled")]))?,
        Err(AppError::Conflict("link_exists", _)) => redirect(&back(&[("error", "link_exists")]))?,
        Err(e) => return Err(e),
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.cookies.clear_oauth_nonce());
    Ok(response)
}

/// The Telegram Login Widget's fields, exactly as the widget gives them.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TelegramRequest {
    pub id: i64,
    pub first_name: String,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub photo_url: Option<String>,
    pub auth_date: i64,
    pub hash: String,
}

impl From<TelegramRequest> for TelegramLogin {
    fn from(r: TelegramRequest) -> Self {
        let mut fields = BTreeMap::new();
        fields.insert("id".to_owned(), r.id.to_string());
        fields.insert("first_name".to_owned(), r.first_name);
        fields.insert("auth_date".to_owned(), r.auth_date.to_string());
        for (key, value) in [
            ("last_name", r.last_name),
            ("username", r.username),
            ("photo_url", r.photo_url),
        ] {
            if let Some(value) = value {
                fields.insert(key.to_owned(), value);
            }
        }
        TelegramLogin {
            fields,
            hash: r.hash,
        }
    }
}

#[utoipa::path(
    post, path = "/oauth/telegram", tag = "public", request_body = TelegramRequest,
    responses(
        (status = 200, body = LoginAnswer, description = "Signed in (cookies set), a new user for an unknown Telegram id; \
            `{mfa_required: true, mfa_token, expires_in}` (no cookies) for a user with two-factor sign-in on; \
            with a live access cookie the identity is linked to that user instead"),
        (status = 401, body = Problem, content_type = PROBLEM, description = "`invalid_credentials`: bad hash, `auth_date` older than `oauth.telegram.max_age_secs` or not a sane time, or a payload used before"),
        (status = 403, body = Problem, content_type = PROBLEM, description = "`account_deleted`; `sign_up_disabled` (an unknown identity while `auth.public_sign_up` is false); \
            `reauthentication_required` (linking with a session whose sign-in is older than `auth.reauth_window_secs`); `origin_not_allowed`"),
        (status = 404, body = Problem, content_type = PROBLEM, description = "`provider_not_configured`"),
        (status = 409, body = Problem, content_type = PROBLEM, description = "`link_exists`: the identity belongs to another account"),
        (status = 422, body = Problem, content_type = PROBLEM, description = "`validation_failed`"),
        (status = 429, body = Problem, content_type = PROBLEM, description = "`rate_limited`"),
    )
)]
pub async fn telegram(
    State(state): State<AppState>,
    meta: ClientMeta,
    MaybeUser(current): MaybeUser,
    Json(body): Json<TelegramRequest>,
) -> AppResult<Response> {
    let signed_in = match oauth::telegram(&state, &meta, body.into(), current.as_ref()).await? {
        TelegramAnswer::Done(signed_in) => *signed_in,
        TelegramAnswer::SecondFactor(challenge) => return Ok(mfa_required(challenge)),
    };
    // a sign-in answers as the login does; a link (the caller's own session) carries no tokens
    if let Some(issued) = &signed_in.issued {
        return Ok(signed_in_with_cookies(&state, signed_in.user, issued));
    }
    let body = LoginResponse {
        user: signed_in.user.into(),
        session_id: signed_in.session_id,
    };
    Ok((NO_STORE, axum::Json(body)).into_response())
}

fn redirect(location: &str) -> AppResult<Response> {
    let value = HeaderValue::from_str(location)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("redirect: {e}")))?;
    Ok((StatusCode::FOUND, [(header::LOCATION, value)]).into_response())
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.into()
        }
        Err(_) => base.to_owned(),
    }
}
