//! The OpenAPI document's frame: info, tags and security schemes. Paths are collected from the
//! router itself (utoipa-axum), so the document cannot drift from the routes.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::docs::PROBLEM;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "users-service",
        description = "Users and identity: sign-up, sign-in, sessions and accounts. \
            Errors are application/problem+json (RFC 9457) with a stable `code`.",
    ),
    modifiers(&SecuritySchemes),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    tags(
        (name = "public", description = "No credentials"),
        (name = "private", description = "A user's session: access cookie or Bearer access JWT"),
        (name = "server", description = "Internal services: Bearer server API key"),
        (name = "ops", description = "Health and keys"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "access_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("access_token"))),
        );
        components.add_security_scheme(
            "server_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The answers every operation can give for reasons of its shape rather than its meaning, added in
/// one place: bodies that are not JSON (400 `malformed_body`, 415), too large (413) or of the wrong
/// shape (422), malformed path parameters (422), and a database outage (503 `unavailable`).
/// Applied to the finished document (after the router has added its paths).
pub struct CommonProblems;

impl Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let has_params = path.contains('{');
            let operations = [
                (&mut item.get, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.delete, true),
                (&mut item.patch, true),
                (&mut item.head, false),
                (&mut item.options, false),
                (&mut item.trace, false),
            ];
            for (op, unsafe_method) in operations {
                let Some(op) = op else { continue };
                let mut add = |code: &str, what: &str| {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| problem(what));
                };
                if op.request_body.is_some() {
                    add("400", "`malformed_body`: the body is not JSON");
                    add("413", "`payload_too_large`");
                    add(
                        "415",
                        "`unsupported_media_type`: the body is not `application/json`",
                    );
                    add("422", "`validation_failed`: the body does not fit the schema; `errors` names each field");
                }
                if has_params
                    || path.ends_with("/audit")
                    || path.ends_with("/messages")
                    || path.contains("/oauth/yandex/")
                {
                    add(
                        "422",
                        "`validation_failed`: a malformed path or query parameter",
                    );
                }
                add("503", "`unavailable`: the database is unreachable; retry");
                for (code, what) in group_answers(path, unsafe_method) {
                    add(code, what);
                }
            }
        }
    }
}

/// The answers of a route group's auth layer, declared once for every route in the group; a
/// route that says more about one of these codes keeps its own description.
fn group_answers(path: &str, unsafe_method: bool) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if path.starts_with("/api/v1/private/") {
        out.push((
            "401",
            "`unauthenticated`: no session, or a dead one (its cookies are cleared)",
        ));
        let admin_only = path.starts_with("/api/v1/private/admin/") || path.ends_with("/users/any");
        out.push(match (admin_only, unsafe_method) {
            (true, true) => (
                "403",
                "`forbidden` for roles other than admin; `origin_not_allowed` for a cookie request from a foreign origin",
            ),
            (true, false) => ("403", "`forbidden` for roles other than admin"),
            (false, _) if unsafe_method => (
                "403",
                "`origin_not_allowed`: a cookie request from an origin not in `server.cors_origins`",
            ),
            (false, _) => return out,
        });
    } else if path.starts_with("/api/v1/server/") {
        out.push(("401", "`unauthenticated`: missing or wrong server key"));
    }
    out
}

fn problem(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(PROBLEM, content)
            .build(),
    )
}
