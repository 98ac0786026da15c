//! The auth layers of the private and server groups, added with `route_layer` so unknown paths
//! stay 404. Private: Bearer first, else the access cookie; an expired or missing access cookie is
//! refreshed from the refresh cookie and the response carries the rotated cookies.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::{client_ip, ServerClient, SessionUser};
use crate::app::AppState;
use crate::auth::{cookies, csrf, jwt::TokenError};
use crate::error::{AppError, ClearAuthCookies};
use crate::service::auth::{self as auth_service, AuthFailure};
use crate::service::linked_accounts::UserView;
use crate::service::{Issued, Principal};

pub async fn require_user(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = client_ip(
        peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        req.headers(),
        &state.trusted_proxies,
    );
    let (principal, user, rotated) =
        match resolve_user(&state, req.method(), req.headers(), ip).await {
            Ok(found) => found,
            Err(e) => return e.into_response(),
        };
    tracing::Span::current().record("user_id", tracing::field::display(principal.user_id));
    req.extensions_mut().insert(principal);
    if let Some(user) = user {
        // the session query read the user and links already: `GET /users/me` need not read again
        req.extensions_mut().insert(SessionUser(Some(user)));
    }
    let mut response = next.run(req).await;
    if let Some(issued) = rotated {
        append_auth_cookies(&state, response.headers_mut(), &issued);
    }
    response
}

async fn resolve_user(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<(Principal, Option<UserView>, Option<Issued>), AppError> {
    if let Some(token) = bearer(headers) {
        // Bearer callers are not browsers carrying ambient credentials: no CSRF check
        return match auth_service::authenticate(state, token).await {
            Ok((p, user)) => Ok((p, Some(user), None)),
            Err(AuthFailure::Rejected(e)) => Err(no_cookie_clearing(e)),
            Err(AuthFailure::Token(_)) => Err(AppError::Unauthenticated {
                clear_cookies: false,
            }),
        };
    }
    let access = cookies::read(headers, state.cookies.access_name());
    let refresh = cookies::read(headers, state.cookies.refresh_name());
    if access.is_none() && refresh.is_none() {
        return Err(AppError::Unauthenticated {
            clear_cookies: false,
        });
    }
    csrf::check(method, headers, &state.settings.server.cors_origins)?;
    if let Some(token) = access {
        match auth_service::authenticate(state, &token).await {
            Ok((p, user)) => return Ok((p, Some(user), None)),
            Err(AuthFailure::Token(TokenError::Expired)) => {}
            Err(AuthFailure::Token(TokenError::Invalid)) => {
                return Err(AppError::Unauthenticated {
                    clear_cookies: false,
                })
            }
            Err(AuthFailure::Rejected(e)) => return Err(e),
        }
    }
    let refresh = refresh.ok_or(AppError::Unauthenticated {
        clear_cookies: true,
    })?;
    let issued = auth_service::refresh(state, &refresh, ip).await?;
    Ok((issued.principal.clone(), None, Some(issued)))
}

/// A Bearer caller has no cookies to clear.
fn no_cookie_clearing(e: AppError) -> AppError {
    match e {
        AppError::Unauthenticated { .. } => AppError::Unauthenticated {
            clear_cookies: false,
        },
        other => other,
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `Set-Cookie` for newly issued tokens; a grace-window refresh has no refresh token to set.
pub fn append_auth_cookies(state: &AppState, headers: &mut HeaderMap, issued: &Issued) {
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
        return AppError::Unauthenticated {
            clear_cookies: false,
        }
        .into_response();
    };
    tracing::Span::current().record("server_key", name.as_str());
    req.extensions_mut().insert(ServerClient { name });
    next.run(req).await
}

/// Any response marked by a dead session clears both cookies, with the attributes that set them.
pub async fn clear_dead_session_cookies(
    State(state): State<AppState>,
    mut response: Response,
) -> Response {
    if response
        .extensions_mut()
        .remove::<ClearAuthCookies>()
        .is_some()
    {
        state.cookies.append_clear(response.headers_mut());
    }
    response
}
