//! Route table and global layers.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::trace::TraceLayer;
use tracing::{field, Span};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use super::auth_layer::{require_server, require_user, resolve_client_ip};
use super::openapi::{ApiDoc, CommonProblems};
use super::{private, public, server};
use crate::error::AppError;
use crate::state::AppState;
use crate::telemetry;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application: API groups, ops routes, `/openapi.json` and `/docs`, global layers.
pub fn router(state: AppState) -> Router {
    let (api, mut openapi) = api(&state).split_for_parts();
    CommonProblems.modify(&mut openapi);
    let cors = cors(&state);
    let body_limit = state.settings.server.body_limit_bytes;
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), public::metrics::record))
        .layer(from_fn_with_state(state.clone(), resolve_client_ip))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_request(())
                        .on_response(log_response)
                        .on_failure(()),
                )
                // the request's server span when traces are exported, inside its `tracing`
                // span (whose fields log lines show)
                .option_layer(telemetry::trace_requests())
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
                .layer(CatchPanicLayer::custom(|_| {
                    AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
                }))
                .layer(cors),
        )
        .with_state(state)
}

/// The documented routes. Auth is added per group with `route_layer`, so it runs only for routes
/// that exist: an unknown path stays 404 instead of turning into 401.
fn api(state: &AppState) -> OpenApiRouter<AppState> {
    let public = OpenApiRouter::new()
        .routes(routes!(public::users::login))
        .routes(routes!(public::users::token))
        .routes(routes!(public::users::login_mfa))
        .routes(routes!(public::passkeys::options))
        .routes(routes!(public::passkeys::login))
        .routes(routes!(public::users::refresh))
        .routes(routes!(public::users::sign_up))
        .routes(routes!(public::users::reset_password))
        .routes(routes!(public::users::restore))
        .routes(routes!(public::email::forgot))
        .routes(routes!(public::email::verify))
        .routes(routes!(public::oauth::yandex_authorize))
        .routes(routes!(public::oauth::yandex_callback))
        .routes(routes!(public::oauth::telegram));
    let private = OpenApiRouter::new()
        .routes(routes!(private::seances::logout))
        .routes(routes!(
            private::seances::list,
            private::seances::revoke_others
        ))
        .routes(routes!(private::seances::revoke))
        .routes(routes!(
            private::users::me,
            private::users::update_me,
            private::users::delete_me
        ))
        .routes(routes!(private::users::change_contacts))
        .routes(routes!(private::users::change_password))
        .routes(routes!(private::users::search))
        .routes(routes!(private::users::request_verification))
        .routes(routes!(private::messages::list))
        .routes(routes!(
            private::admin::get_user,
            private::admin::delete_user
        ))
        .routes(routes!(private::admin::restore_user))
        .routes(routes!(private::admin::set_role))
        .routes(routes!(private::admin::revoke_user_sessions))
        .routes(routes!(private::admin::reset_mfa))
        .routes(routes!(private::mfa::enrol))
        .routes(routes!(private::mfa::confirm))
        .routes(routes!(private::mfa::regenerate_codes))
        .routes(routes!(private::mfa::disable))
        .routes(routes!(private::passkeys::registration_options))
        .routes(routes!(private::passkeys::register))
        .routes(routes!(private::passkeys::list))
        .routes(routes!(
            private::passkeys::rename,
            private::passkeys::delete
        ))
        .routes(routes!(private::export::me))
        .routes(routes!(private::export::admin))
        .routes(routes!(private::admin::audit))
        .routes(routes!(private::linked_accounts::link))
        .routes(routes!(
            private::linked_accounts::update,
            private::linked_accounts::unlink
        ))
        .routes(routes!(private::notifications::list))
        .routes(routes!(private::notifications::unread_count))
        .routes(routes!(private::notifications::mark_read))
        .routes(routes!(private::notifications::mark_all_read))
        .routes(routes!(private::notifications::delete))
        .routes(routes!(private::notifications::stream))
        .routes(routes!(
            private::role_requests::create,
            private::role_requests::list_own
        ))
        .routes(routes!(private::role_requests::cancel))
        .routes(routes!(private::role_requests::list_all))
        .routes(routes!(private::role_requests::approve))
        .routes(routes!(private::role_requests::reject))
        .route_layer(from_fn_with_state(state.clone(), require_user));
    let server = OpenApiRouter::new()
        .routes(routes!(server::users::sign_up))
        .routes(routes!(server::users::create_user))
        .routes(routes!(server::users::get_user))
        .routes(routes!(server::users::recovery_user))
        .routes(routes!(server::users::delete_temporarily))
        .routes(routes!(server::users::delete_permanently))
        .routes(routes!(server::users::change_fullname))
        .routes(routes!(server::users::change_contacts))
        .routes(routes!(server::linked_accounts::link))
        .routes(routes!(server::linked_accounts::unlink))
        .routes(routes!(server::linked_accounts::change_reason))
        .routes(routes!(server::passwords::reset_token))
        .routes(routes!(server::passwords::set_new_password))
        .routes(routes!(server::events::feed))
        .routes(routes!(server::notifications::create))
        .route_layer(from_fn_with_state(state.clone(), require_server));
    let ops = if state.settings.metrics.enabled {
        OpenApiRouter::new().routes(routes!(public::metrics::metrics))
    } else {
        OpenApiRouter::new()
    };
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ops)
        .nest("/api/v1/public", public)
        .nest("/api/v1/private", private)
        .nest("/api/v1/server", server)
        .routes(routes!(public::health::live))
        .routes(routes!(public::health::ready))
        .routes(routes!(public::health::healthcheck))
        .routes(routes!(public::health::jwks))
}

/// Credentials are allowed for the configured origins only.
fn cors(state: &AppState) -> CorsLayer {
    let origins: Vec<HeaderValue> = state
        .settings
        .server
        .cors_origins
        .iter()
        .map(|o| o.header_value())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, REQUEST_ID])
        .expose_headers([REQUEST_ID])
        .max_age(Duration::from_secs(600))
}

/// One span per request; every log line inside carries the request id. Headers are not recorded.
fn request_span(req: &Request) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let method = req.method().as_str();
    tracing::info_span!(
        "request",
        http.request.method = method,
        http.route = route,
        http.response.status_code = field::Empty,
        request_id,
        user_id = field::Empty,
        server_key = field::Empty,
        trace_id = field::Empty,
        span_id = field::Empty,
    )
}

fn log_response<B>(res: &axum::http::Response<B>, latency: Duration, span: &Span) {
    span.record("http.response.status_code", res.status().as_u16());
    tracing::info!(
        status = res.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request"
    );
}

async fn not_found() -> AppError {
    AppError::NotFound("not_found", "no such route")
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
