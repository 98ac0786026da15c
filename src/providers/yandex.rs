//! Yandex OAuth: authorization code flow with PKCE. Every provider failure (connection, timeout,
//! non-2xx, unreadable body) is `provider_error`, never a 500; redirects are not followed.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::{OAuthSettings, YandexSettings};
use crate::error::{AppError, AppResult};

pub struct YandexClient {
    http: reqwest::Client,
    settings: YandexSettings,
}

/// The profile fields we use from `login.yandex.ru/info`.
#[derive(Debug, Clone, Deserialize)]
pub struct YandexProfile {
    pub id: String,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub default_email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

impl YandexClient {
    pub fn new(oauth: &OAuthSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(oauth.http_timeout_secs))
            .connect_timeout(Duration::from_secs(oauth.http_timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            settings: oauth.yandex.clone(),
        })
    }

    pub fn is_configured(&self) -> bool {
        !self.settings.client_id.is_empty()
    }

    /// Where to send the browser: the authorize URL with `state` and the S256 PKCE challenge.
    pub fn authorize_url(&self, state: &str, challenge: &str) -> AppResult<String> {
        let mut url = url::Url::parse(&self.settings.authorize_url)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("oauth.yandex.authorize_url: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Exchanges the code (with the PKCE verifier) for an access token.
    pub async fn exchange(&self, code: &str, verifier: &str) -> AppResult<String> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &self.settings.client_id),
            ("client_secret", self.settings.client_secret.expose_secret()),
            ("code_verifier", verifier),
            ("redirect_uri", &self.settings.redirect_uri),
        ];
        let response = self
            .http
            .post(&self.settings.token_url)
            .headers(crate::telemetry::trace_headers())
            .form(&form)
            .send()
            .await
            .map_err(provider("token"))?;
        let answer: TokenAnswer = checked(response, "token")
            .await?
            .json()
            .await
            .map_err(provider("token body"))?;
        Ok(answer.access_token)
    }

    pub async fn profile(&self, access_token: &str) -> AppResult<YandexProfile> {
        let response = self
            .http
            .get(&self.settings.userinfo_url)
            .headers(crate::telemetry::trace_headers())
            .query(&[("format", "json")])
            .header(
                reqwest::header::AUTHORIZATION,
                format!("OAuth {access_token}"),
            )
            .send()
            .await
            .map_err(provider("userinfo"))?;
        checked(response, "userinfo")
            .await?
            .json()
            .await
            .map_err(provider("userinfo body"))
    }
}

async fn checked(response: reqwest::Response, step: &'static str) -> AppResult<reqwest::Response> {
    if response.status().is_success() {
        Ok(response)
    } else {
        tracing::warn!(
            step,
            status = response.status().as_u16(),
            "yandex answered with an error"
        );
        Err(AppError::ProviderError)
    }
}

fn provider(step: &'static str) -> impl Fn(reqwest::Error) -> AppError {
    move |e| {
        // reqwest errors name the URL, never the form body or headers
        tracing::warn!(step, error = %e.without_url(), "yandex call failed");
        AppError::ProviderError
    }
}
