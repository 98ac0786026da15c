//! Extractors: our `Json` (rejections as problem+json with per-field errors), the client's IP and
//! user agent, and the callers the auth layers resolved (`CurrentUser`, `ServerClient`).

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;
use validator::Validate;

use super::auth_layer::{resolve, Refresh};
use crate::domain::Role;
use crate::error::{AppError, FieldError};
use crate::service::{Actor, Caller, ClientMeta, Principal};
use crate::state::AppState;

/// A JSON body: 415 unless JSON, 413 over the size limit, 400 `malformed_body` when it does not
/// parse, 422 `validation_failed` (naming each bad field) when it parses but does not fit `T`.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate + ToSchema,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state).await?;
        parse(&bytes).map(Json)
    }
}

/// Path parameters; a malformed one (say, not a UUID) is 422 `validation_failed` naming it.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let field = match e.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    _ => "path".to_owned(),
                };
                Err(AppError::Validation(vec![FieldError::new(
                    field,
                    e.body_text(),
                )]))
            }
            Err(other) => Err(AppError::Internal(anyhow::anyhow!(
                "path extraction: {other}"
            ))),
        }
    }
}

/// A JSON body that may be absent (empty): `None`, else as [`Json`].
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate + ToSchema,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        if !json {
            return Err(AppError::UnsupportedMediaType);
        }
        parse(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, AppError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::MalformedBody("the request body could not be read".into())
        }
    })
}

/// `application/json` or any `application/*+json`, parameters ignored.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses and validates a JSON body. A body that does not fit is answered with every bad field at
/// once: shape errors (wrong type, unknown field, missing required field) and, when the shape is
/// right, rule errors (length, range).
pub fn parse<T: DeserializeOwned + Validate + ToSchema>(bytes: &[u8]) -> Result<T, AppError> {
    // syntax first, so a truncated document is malformed even where its start fits no field
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map_err(|e| AppError::MalformedBody(format!("the body is not valid JSON: {e}")))?;
    // every body is an object (serde would also read a struct from an array)
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AppError::Validation(vec![FieldError::new(
            "body",
            "expected a JSON object",
        )]));
    }
    if has_escaped_nul(bytes) {
        return Err(AppError::Validation(vec![FieldError::new(
            "body",
            "strings may not contain NUL characters",
        )]));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(de) {
        Ok(value) => value,
        Err(e) if is_malformed(e.inner()) => {
            return Err(AppError::MalformedBody(format!(
                "the body is not valid JSON: {}",
                e.inner()
            )))
        }
        Err(_) => return Err(AppError::Validation(every_bad_field::<T>(bytes))),
    };
    value
        .validate()
        .map_err(|errors| AppError::Validation(field_errors(&errors)))?;
    Ok(value)
}

fn is_malformed(e: &serde_json::Error) -> bool {
    e.is_syntax() || e.is_eof() || e.is_io()
}

/// The slow path of a bad body: takes out each field serde stops at and tries again, so every
/// wrongly typed or unknown field is named; then names every required field (per the schema, with
/// the contract's aliases) the body lacks; and, when what is left parses (every required field has a
/// value of the right type), adds its rule errors too.
fn every_bad_field<T: DeserializeOwned + Validate + ToSchema>(bytes: &[u8]) -> Vec<FieldError> {
    let Ok(mut fields) = serde_json::from_slice::<Map<String, Value>>(bytes) else {
        return vec![FieldError::new("body", "expected a JSON object")];
    };
    let mut errors = missing_required::<T>(&fields);
    for _ in 0..=fields.len() {
        let attempt = serde_path_to_error::deserialize::<_, T>(Value::Object(fields.clone()));
        let e = match attempt {
            Ok(value) => {
                if let Err(rules) = value.validate() {
                    errors.extend(field_errors(&rules));
                }
                break;
            }
            Err(e) => e,
        };
        let (field, message) = describe(&e);
        if message.starts_with("missing field") {
            // a required field: named above, or the one taken out for its bad value
            break;
        }
        let key = top_level_key(&field);
        errors.push(FieldError::new(field, message));
        if fields.remove(&key).is_none() {
            break;
        }
    }
    errors.sort_by(|a, b| a.field.cmp(&b.field));
    errors.dedup_by(|a, b| a.field == b.field);
    if errors.is_empty() {
        errors.push(FieldError::new("body", "the body does not fit the schema"));
    }
    errors
}

/// Where a deserialisation error points and what it says (without serde's line and column).
fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let path = e.path().to_string();
    let message = e.inner().to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or_default()
        .to_owned();
    let field = match backticked(&message) {
        // a missing field is reported on the enclosing object
        Some(name) if message.starts_with("missing field") => join_path(&path, name),
        _ if path == "." => "body".to_owned(),
        _ => path,
    };
    (field, message)
}

fn top_level_key(field: &str) -> String {
    field
        .split(['.', '['])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The contract's input aliases, by canonical name.
fn aliases(field: &str) -> &'static [&'static str] {
    match field {
        "password" => &["passw"],
        "first_name" => &["name", "firstname"],
        "last_name" => &["lastname"],
        "middle_name" => &["middlename"],
        _ => &[],
    }
}

/// Required properties of `T`'s schema that the body has under no accepted name.
fn missing_required<T: ToSchema>(fields: &Map<String, Value>) -> Vec<FieldError> {
    let RefOr::T(Schema::Object(object)) = T::schema() else {
        return Vec::new();
    };
    object
        .required
        .iter()
        .filter(|name| {
            !fields.contains_key(name.as_str())
                && !aliases(name).iter().any(|a| fields.contains_key(*a))
        })
        .map(|name| FieldError::new(name.as_str(), format!("missing field `{name}`")))
        .collect()
}

/// True when a JSON string holds `\u0000` (an escape, not an escaped backslash followed by text).
fn has_escaped_nul(bytes: &[u8]) -> bool {
    let needle = b"u0000";
    bytes.windows(needle.len()).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(needle) && {
            let slashes = bytes[..i].iter().rev().take_while(|b| **b == b'\\').count();
            slashes % 2 == 1
        }
    })
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn join_path(path: &str, name: &str) -> String {
    if path == "." {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn field_errors(errors: &validator::ValidationErrors) -> Vec<FieldError> {
    let mut out: Vec<FieldError> = errors
        .field_errors()
        .into_iter()
        .flat_map(|(field, errs)| {
            errs.iter().map(move |e| {
                let message = e
                    .message
                    .as_deref()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.code.to_string());
                FieldError::new(field.to_string(), message)
            })
        })
        .collect();
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest untrusted
/// address in `X-Forwarded-For`. Computed once per request by `auth_layer::resolve_client_ip`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or(ClientIp(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    // walk from the nearest hop outwards; the first address we do not trust is the client
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(ClientMeta { ip, user_agent })
    }
}

/// The signed-in user of a private route (set by the private auth layer).
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(CurrentUser)
            .ok_or(AppError::Unauthenticated)
    }
}

/// The signed-in user on a public route that behaves differently for one (a provider sign-in
/// started with a session links instead): the private group's resolver, without auto-refresh.
/// Absent or unusable credentials are `None`; a failed check (the database) is still an error.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<Principal>);

impl<S> FromRequestParts<S> for MaybeUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let ip = parts
            .extensions
            .get::<ClientIp>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0);
        match resolve(&state, &parts.method, &parts.headers, ip, Refresh::Never).await {
            Ok(found) => Ok(MaybeUser(found.map(|r| r.principal))),
            Err(AppError::SessionEnded) => Ok(MaybeUser(None)),
            Err(e) => Err(e),
        }
    }
}

/// The signed-in user and their links when the auth layer read them with the session (absent
/// after an auto-refresh, where the handler reads them itself).
#[derive(Clone)]
pub struct SessionUser(pub Option<crate::service::views::UserView>);

impl<S: Send + Sync> FromRequestParts<S> for SessionUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .remove::<SessionUser>()
            .unwrap_or(SessionUser(None)))
    }
}

/// The signed-in user of an admin route: 403 `forbidden` unless their role is `admin` now.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for AdminUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let CurrentUser(p) = CurrentUser::from_request_parts(parts, state).await?;
        if p.role != Role::Admin {
            return Err(AppError::Forbidden);
        }
        Ok(AdminUser(p))
    }
}

/// Who is calling, for the audit log: the signed-in user, the server key's name, or anonymous.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        let actor = if let Some(p) = parts.extensions.get::<Principal>() {
            Actor::User(p.user_id)
        } else if let Some(client) = parts.extensions.get::<ServerClient>() {
            Actor::Server(client.name.clone())
        } else {
            Actor::Anonymous
        };
        Ok(Caller {
            actor,
            ip: Some(ip),
        })
    }
}

/// Query parameters: 422 `validation_failed` when they do not parse or validate.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if query.to_ascii_lowercase().contains("%00") {
            return Err(AppError::Validation(vec![FieldError::new(
                "query",
                "NUL characters are not allowed",
            )]));
        }
        let value: T = serde_urlencoded::from_str(query)
            .map_err(|e| AppError::Validation(vec![FieldError::new("query", e.to_string())]))?;
        value
            .validate()
            .map_err(|errors| AppError::Validation(field_errors(&errors)))?;
        Ok(Query(value))
    }
}

/// For optional fields where `null` means "clear" and absence means "keep":
/// `#[serde(default, deserialize_with = "nullable")]` on an `Option<Option<T>>`.
pub fn nullable<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Bad email or phone on the contact routes is 422 `invalid_contacts` rather than `validation_failed`.
pub fn contacts_rejection(e: AppError) -> AppError {
    match e {
        AppError::Validation(errors)
            if errors
                .iter()
                .all(|e| e.field == "email" || e.field == "phone") =>
        {
            AppError::InvalidContacts(errors)
        }
        other => other,
    }
}

/// The internal service calling a server route, by its key's name (set by the server auth layer).
#[derive(Debug, Clone)]
pub struct ServerClient {
    pub name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ServerClient {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ServerClient>()
            .cloned()
            .ok_or(AppError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Validate, ToSchema)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        email: String,
        #[allow(dead_code)]
        #[validate(range(min = 1, max = 100))]
        limit: Option<u32>,
    }

    fn fields(e: AppError) -> Vec<String> {
        match e {
            AppError::Validation(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field_for_each_kind_of_rejection() {
        assert!(matches!(
            parse::<Body>(b"{\"email\":"),
            Err(AppError::MalformedBody(_))
        ));
        assert_eq!(fields(parse::<Body>(b"{}").unwrap_err()), ["email"]);
        assert_eq!(
            fields(parse::<Body>(br#"{"email":"a","x":1}"#).unwrap_err()),
            ["x"]
        );
        assert_eq!(
            fields(parse::<Body>(br#"{"email":5}"#).unwrap_err()),
            ["email"]
        );
        assert_eq!(
            fields(parse::<Body>(br#"{"email":"a","limit":0}"#).unwrap_err()),
            ["limit"]
        );
    }

    #[test]
    fn names_every_bad_field_at_once() {
        assert_eq!(
            fields(parse::<Body>(br#"{"limit":"many","x":1}"#).unwrap_err()),
            ["email", "limit", "x"]
        );
        assert_eq!(
            fields(parse::<Body>(br#"{"email":"a","limit":0,"x":1}"#).unwrap_err()),
            ["limit", "x"]
        );
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.2"),
        );
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
    }
}
