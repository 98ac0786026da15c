//! The two auth cookies. One builder serves setting and clearing, so a cookie is always cleared with
//! the same name, path and domain that set it (a mismatch would leave the old cookie in the browser).

use axum::http::{header, HeaderMap, HeaderValue};
use cookie::time::Duration;
use cookie::{Cookie, SameSite};

use crate::config::Settings;

#[derive(Debug, Clone)]
pub struct CookieJar {
    access_name: String,
    refresh_name: String,
    secure: bool,
    domain: Option<String>,
    access_ttl_secs: i64,
    refresh_ttl_secs: i64,
}

/// The access cookie goes everywhere (`/`, Lax, so top-level navigation carries it); the refresh
/// cookie only to the API (`/api/v1`, Strict), where refresh and auto-refresh happen.
const ACCESS_PATH: &str = "/";
const REFRESH_PATH: &str = "/api/v1";
pub const OAUTH_NONCE: &str = "oauth_nonce";
const OAUTH_PATH: &str = "/api/v1/public/oauth";

impl CookieJar {
    pub fn new(settings: &Settings) -> Self {
        let c = &settings.cookies;
        Self {
            access_name: c.access_name.clone(),
            refresh_name: c.refresh_name.clone(),
            secure: c.secure,
            domain: (!c.domain.trim().is_empty()).then(|| c.domain.trim().to_owned()),
            access_ttl_secs: settings.auth.access_ttl_secs,
            refresh_ttl_secs: settings.auth.refresh_ttl_secs,
        }
    }

    pub fn access_name(&self) -> &str {
        &self.access_name
    }

    pub fn refresh_name(&self) -> &str {
        &self.refresh_name
    }

    pub fn set_access(&self, token: &str) -> HeaderValue {
        self.build(
            &self.access_name,
            token,
            ACCESS_PATH,
            SameSite::Lax,
            self.access_ttl_secs,
        )
    }

    pub fn set_refresh(&self, token: &str) -> HeaderValue {
        self.build(
            &self.refresh_name,
            token,
            REFRESH_PATH,
            SameSite::Strict,
            self.refresh_ttl_secs,
        )
    }

    /// `Set-Cookie` values that delete both cookies (Max-Age=0).
    pub fn clear(&self) -> [HeaderValue; 2] {
        [
            self.build(&self.access_name, "", ACCESS_PATH, SameSite::Lax, 0),
            self.build(&self.refresh_name, "", REFRESH_PATH, SameSite::Strict, 0),
        ]
    }

    /// The cookie that binds a started provider sign-in to this browser. Lax, so the top-level
    /// redirect back from the provider carries it; only the OAuth routes see it.
    pub fn set_oauth_nonce(&self, nonce: &str, ttl_secs: i64) -> HeaderValue {
        self.build(OAUTH_NONCE, nonce, OAUTH_PATH, SameSite::Lax, ttl_secs)
    }

    pub fn clear_oauth_nonce(&self) -> HeaderValue {
        self.build(OAUTH_NONCE, "", OAUTH_PATH, SameSite::Lax, 0)
    }

    /// Appends the clearing headers to a response's headers.
    pub fn append_clear(&self, headers: &mut HeaderMap) {
        for value in self.clear() {
            headers.append(header::SET_COOKIE, value);
        }
    }

    fn build(
        &self,
        name: &str,
        value: &str,
        path: &'static str,
        same_site: SameSite,
        max_age: i64,
    ) -> HeaderValue {
        let mut cookie = Cookie::build((name.to_owned(), value.to_owned()))
            .path(path)
            .http_only(true)
            .secure(self.secure)
            .same_site(same_site)
            .max_age(Duration::seconds(max_age));
        if let Some(domain) = &self.domain {
            cookie = cookie.domain(domain.clone());
        }
        // names come from validated config and values are base64url JWTs: always a valid header
        HeaderValue::from_str(&cookie.build().to_string()).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The value of the named cookie in the request, if any.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_cookie_among_several() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; access_token=abc.def; b=2"),
        );
        assert_eq!(read(&h, "access_token").as_deref(), Some("abc.def"));
        assert_eq!(read(&h, "refresh_token"), None);
    }
}
