//! The Origin check for cookie-authenticated unsafe requests: a browser always sends `Origin` on
//! cross-site POST/PUT/PATCH/DELETE, so a present origin outside `server.cors_origins` is refused.

use axum::http::{header, HeaderMap, Method};

use crate::config::Origin;
use crate::error::{AppError, AppResult};

pub fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

pub fn check(method: &Method, headers: &HeaderMap, allowed: &[Origin]) -> AppResult<()> {
    if !is_unsafe(method) {
        return Ok(());
    }
    let origin = match headers.get(header::ORIGIN) {
        Some(o) => Some(o.to_str().unwrap_or("null").to_owned()),
        None => headers.get(header::REFERER).map(|r| {
            r.to_str()
                .ok()
                .and_then(origin_of)
                .unwrap_or_else(|| "null".into())
        }),
    };
    match origin {
        Some(o) if !allowed.iter().any(|a| a.as_str() == o) => Err(AppError::OriginNotAllowed),
        _ => Ok(()),
    }
}

fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    Some(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn allows_listed_origin_and_absent_origin() {
        let allowed: Vec<Origin> = vec!["https://app.example".parse().unwrap()];
        assert!(check(
            &Method::POST,
            &headers(header::ORIGIN, "https://app.example"),
            &allowed
        )
        .is_ok());
        assert!(check(&Method::POST, &HeaderMap::new(), &allowed).is_ok());
        assert!(check(
            &Method::GET,
            &headers(header::ORIGIN, "https://evil.example"),
            &allowed
        )
        .is_ok());
    }

    #[test]
    fn refuses_foreign_origin_or_referer() {
        let allowed: Vec<Origin> = vec!["https://app.example".parse().unwrap()];
        assert!(check(
            &Method::DELETE,
            &headers(header::ORIGIN, "https://evil.example"),
            &allowed
        )
        .is_err());
        assert!(check(
            &Method::PUT,
            &headers(header::REFERER, "https://evil.example/page"),
            &allowed
        )
        .is_err());
        assert!(check(
            &Method::PUT,
            &headers(header::REFERER, "https://app.example/page"),
            &allowed
        )
        .is_ok());
    }
}
