//! Who is calling, decided once per request. The client IP is computed by a global layer; the
//! private group's layer resolves the session (Bearer first, else the access cookie; an expired or
//! missing access cookie is refreshed from the refresh cookie and the response carries the rotated
//! cookies) and owns the cookie policy: a dead session clears a cookie caller's cookies, and a
//! response that clears them never also sets them. The server group's layer checks the API key.
//! Both groups' layers are added with `route_layer`, so unknown paths stay 404.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::{client_ip, ClientIp, ServerClient, SessionUser};
use crate::auth::{cookies, csrf, jwt::TokenError};
use crate::error::AppError;
use crate::service::auth::{self as auth_service, AuthFailure};
use crate::service::views::UserView;
use crate::service::{Issued, Principal};
use crate::state::AppState;

/// Global: the client's address, from the peer or a trusted proxy's `X-Forwarded-For`, computed
/// once and read by [`ClientIp`] wherever it is needed.
pub async fn resolve_client_ip(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let ip = client_ip(peer, req.headers(), &state.settings.server.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

/// What a resolved caller brings to the handler.
pub struct Resolved {
    pub principal: Principal,
    /// the user and links read with the session (absent after an auto-refresh)
    pub user: Option<UserView>,
    /// tokens rotated by an auto-refresh, for the response's cookies
    pub rotated: Option<Issued>,
}

/// Whether an expired access cookie may be refreshed from the refresh cookie on this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    Allowed,
    Never,
}

/// The one resolver: `Ok(None)` when the request carries no usable credentials (missing, malformed,
/// badly signed or, without a refresh, expired), `Err` when they name a dead session or the check
/// itself failed (a database outage is 503, never "signed out").
pub async fn resolve(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    ip: IpAddr,
    refresh: Refresh,
) -> Result<Option<Resolved>, AppError> {
    let signed_in = |(principal, user)| Resolved {
        principal,
        user: Some(user),
        rotated: None,
    };
    if let Some(token) = bearer(headers) {
        // Bearer callers are not browsers carrying ambient credentials: no CSRF check
        return match auth_service::authenticate(state, token).await {
            Ok(found) => Ok(Some(signed_in(found))),
            Err(AuthFailure::Token(_)) => Ok(None),
            Err(AuthFailure::Rejected(e)) => Err(e),
        };
    }
    let access = cookies::read(headers, state.cookies.access_name());
    let refresh_cookie = cookies::read(headers, state.cookies.refresh_name());
    if access.is_none() && refresh_cookie.is_none() {
        return Ok(None);
    }
    csrf::check(method, headers, &state.settings.server.cors_origins)?;
    if let Some(token) = access {
        match auth_service::authenticate(state, &token).await {
            Ok(found) => return Ok(Some(signed_in(found))),
            Err(AuthFailure::Token(TokenError::Expired)) => {}
            Err(AuthFailure::Token(TokenError::Invalid)) => return Ok(None),
            Err(AuthFailure::Rejected(e)) => return Err(e),
        }
    }
    if refresh == Refresh::Never {
        return Ok(None);
    }
    let token = refresh_cookie.ok_or(AppError::SessionEnded)?;
    let issued = auth_service::refresh(state, &token, ip).await?;
    Ok(Some(Resolved {
        principal: issued.principal.clone(),
        user: None,
        rotated: Some(issued),
    }))
}

/// The private group's layer.
pub async fn require_user(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ClientIp>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0);
    let with_cookies = bearer(req.headers()).is_none();
    let resolved = resolve(&state, req.method(), req.headers(), ip, Refresh::Allowed).await;
    let Resolved {
        principal,
        user,
        rotated,
    } = match resolved {
        Ok(Some(found)) => found,
        Ok(None) => return AppError::Unauthenticated.into_response(),
        Err(e) => return refused(&state, e, with_cookies),
    };
    crate::telemetry::record_request_field("user_id", principal.user_id);
    req.extensions_mut().insert(principal);
    if let Some(user) = user {
        // the session query read the user and links already: `GET /users/me` need not read again
        req.extensions_mut().insert(SessionUser(Some(user)));
    }
    let mut response = next.run(req).await;
    if let Some(issued) = rotated {
        // logout, `DELETE me`, revoking the current session: the clearing stands alone
        if !clears_auth_cookies(&state, response.headers()) {
            append_auth_cookies(&state, response.headers_mut(), &issued);
        }
    }
    response
}

/// The answer to refused credentials; a dead session clears a cookie caller's cookies, with the
/// attributes that set them.
pub fn refused(state: &AppState, e: AppError, with_cookies: bool) -> Response {
    let session_ended = matches!(e, AppError::SessionEnded);
    let mut response = e.into_response();
    if session_ended && with_cookies {
        state.cookies.append_clear(response.headers_mut());
    }
    response
}

/// True when the response clears the access cookie (`Max-Age=0`).
fn clears_auth_cookies(state: &AppState, headers: &HeaderMap) -> bool {
    let prefix = format!("{}=", state.cookies.access_name());
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with(&prefix) && v.contains("Max-Age=0"))
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `Set-Cookie` for newly issued tokens (a grace-window refresh has no refresh token to set), and
/// `Cache-Control: no-store`, as on every answer that carries a token.
pub fn append_auth_cookies(state: &AppState, headers: &mut HeaderMap, issued: &Issued) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.append(
        header::SET_COOKIE,
        state.cookies.set_access(&issued.access_token),
    );
    if let Some(refresh) = &issued.refresh_token {
        headers.append(header::SET_COOKIE, state.cookies.set_refresh(refresh));
    }
}

/// Server routes: a configured API key as Bearer; the key's name is logged with the request.
pub async fn require_server(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let name = bearer(req.headers()).and_then(|key| state.server_keys.authenticate(key));
    let Some(name) = name.map(str::to_owned) else {
        return AppError::Unauthenticated.into_response();
    };
    crate::telemetry::record_request_field("server_key", name.as_str());
    req.extensions_mut().insert(ServerClient { name });
    next.run(req).await
}
