//! Typed settings mirroring the contract's configuration keys, layered
//! `config/default.yaml` → `--config PATH` → `DATABASE_URL` → `USERS__SECTION__KEY`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Yaml};
use figment::Figment;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::domain::Role;

/// The defaults ship inside the binary so it starts from any working directory.
const DEFAULTS: &str = include_str!("../config/default.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub cookies: CookieSettings,
    pub rate_limit: RateLimitSettings,
    pub users: UsersSettings,
    pub oauth: OAuthSettings,
    pub server_api: ServerApiSettings,
    pub email: EmailSettings,
    pub events: EventsSettings,
    pub notifications: NotificationsSettings,
    pub metrics: MetricsSettings,
    pub telemetry: TelemetrySettings,
    pub log: LogSettings,
    pub webauthn: WebauthnSettings,
}

/// The passkeys' relying party.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebauthnSettings {
    /// a registrable domain: the origins' host or a parent of it
    pub rp_id: String,
    pub rp_name: String,
    /// empty: `server.cors_origins`
    #[serde(deserialize_with = "origins")]
    pub origins: Vec<Origin>,
}

/// Traces over OTLP/HTTP (protobuf).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// the collector's base URL (spans go to `/v1/traces`); empty: export off
    pub otlp_endpoint: String,
    pub service_name: String,
    /// share of new traces kept (parent-based: a caller's decision is followed)
    pub sample_ratio: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// serve `GET /metrics`
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// browser origins, parsed once into header values (trailing `/` dropped)
    #[serde(deserialize_with = "origins")]
    pub cors_origins: Vec<Origin>,
    /// CIDRs; a bare address is a /32 (or /128)
    #[serde(deserialize_with = "networks")]
    pub trusted_proxies: Vec<IpNet>,
    pub body_limit_bytes: usize,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    /// `url` is PgBouncer in transaction pooling mode: statements are unnamed, and a statement
    /// outside a transaction gets one of its own (see `repo::db`)
    pub pgbouncer: bool,
    /// a direct connection, for migrations and what needs a session of its own (LISTEN, the
    /// relay's lock); required with `pgbouncer`, otherwise `url` is used
    pub migrate_url: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub refresh_reuse_grace_secs: i64,
    pub public_sign_up: bool,
    pub default_role: Role,
    pub max_failed_logins: i32,
    pub lockout_secs: i64,
    pub reset_token_ttl_secs: i64,
    pub min_password_score: u8,
    pub signing_key_file: String,
    /// 32 bytes, base64: seals TOTP secrets and the stored signing key (AES-256-GCM); empty: they
    /// are stored as they are
    pub data_key: SecretString,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// requests that may wait for a hashing slot; more get 503 `unavailable`
    pub hash_queue_max: usize,
    /// a session's absolute lifetime from sign-in; refresh answers 401 after it
    pub session_max_age_secs: i64,
    /// how recent a sign-in must be to link a sign-in identity to the account
    pub reauth_window_secs: i64,
    /// lifetime of an email verification token
    pub verify_token_ttl_secs: i64,
    /// a login of an account whose address is not verified answers 403 `email_not_verified`
    pub require_verified_email: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieSettings {
    pub access_name: String,
    pub refresh_name: String,
    pub secure: bool,
    pub domain: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub login_per_minute: u32,
    /// `redis://host:6379/0`: budgets shared by every instance; empty: each process keeps its own
    pub redis_url: SecretString,
    /// prefix of the budgets' keys in Redis
    pub redis_prefix: String,
    /// data exports a user may ask for in an hour (theirs, or as an admin anyone's)
    pub export_per_hour: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersSettings {
    pub purge_after_days: i32,
    pub purge_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    #[serde(deserialize_with = "list_or_csv")]
    pub allowed_redirects: Vec<String>,
    pub http_timeout_secs: u64,
    pub state_ttl_secs: i64,
    pub yandex: YandexSettings,
    pub telegram: TelegramSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YandexSettings {
    pub authorize_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_uri: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    pub bot_token: SecretString,
    pub max_age_secs: i64,
}

/// The courier: SMTP delivery of the `messages` outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// `smtp://host:port` (plain, for local sinks), `smtps://` (implicit TLS), or
    /// `smtp://host:port?tls=required` (STARTTLS); user and password in the URL. Empty: courier off.
    pub smtp_url: SecretString,
    /// the `From` address
    pub from: String,
    /// the frontend that links in mails point at
    pub link_base_url: String,
    /// a folder whose `<kind>.subject.txt`, `<kind>.txt`, `<kind>.html` replace the built-in templates
    pub templates_dir: String,
    pub max_attempts: i32,
    pub retry_base_secs: u64,
    pub poll_interval_secs: u64,
    pub retention_days: i32,
    /// at most one `password_reset` and one `email_verification` per account this often
    pub min_interval_secs: i64,
    /// time limit of one SMTP conversation
    pub timeout_secs: u64,
}

/// The in-app inbox and its live stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsSettings {
    /// a comment line on every open stream this often; each also re-checks the stream's session
    pub heartbeat_secs: u64,
    /// read notifications older than this are deleted by the purge job
    pub retention_days: i32,
}

/// Events to RabbitMQ (the `events` outbox and its relay).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// `amqp://user:password@host:port/vhost`; empty: publishing off (events are still written and
    /// readable over the feed)
    pub amqp_url: SecretString,
    /// the durable topic exchange the relay declares and publishes to
    pub exchange: String,
    pub retention_days: i32,
    /// the relay is woken on every new event and also looks this often
    pub poll_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerApiSettings {
    #[serde(deserialize_with = "server_keys")]
    pub keys: Vec<ServerKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerKey {
    pub name: String,
    pub key: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON under CI or in a container, pretty otherwise
    #[serde(rename = "")]
    Auto,
    Json,
    Pretty,
}

/// A browser origin (`scheme://host[:port]`) as `Origin` headers carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(axum::http::HeaderValue);

impl Origin {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    pub fn header_value(&self) -> axum::http::HeaderValue {
        self.0.clone()
    }
}

impl std::str::FromStr for Origin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim_end_matches('/');
        let url = url::Url::parse(s).map_err(|_| format!("`{s}` is not an origin"))?;
        if !url.has_host() || url.origin().ascii_serialization() != s {
            return Err(format!("`{s}` is not an origin (scheme://host[:port])"));
        }
        axum::http::HeaderValue::from_str(s)
            .map(Origin)
            .map_err(|_| format!("`{s}` is not an origin"))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads the layered configuration and validates it. `file` is `--config` / `USERS_CONFIG`.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment(file))
    }

    /// The layered sources, for callers (tests) that add their own layer on top.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Yaml::string(DEFAULTS));
        if let Some(file) = file {
            figment = figment.merge(Yaml::file_exact(file));
        }
        figment
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            )
            .merge(Env::prefixed("USERS__").split("__"))
    }

    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(|errors| {
            let messages: Vec<String> = errors
                .into_iter()
                .map(|e| {
                    let source = e
                        .metadata
                        .as_ref()
                        .map(|m| format!(" (from {})", m.name))
                        .unwrap_or_default();
                    format!("{}: {}{source}", e.path.join("."), e.kind)
                })
                .collect();
            ConfigError(messages.join("; "))
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        self.validate_auth()?;
        self.validate_oauth()?;
        self.validate_email()?;
        self.validate_events()?;
        self.validate_notifications()?;
        self.validate_webauthn()?;
        self.validate_rest()
    }

    fn validate_webauthn(&self) -> Result<(), ConfigError> {
        let w = &self.webauthn;
        let rp_id = w.rp_id.as_str();
        let domain = url::Url::parse(&format!("https://{rp_id}/"))
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        if rp_id.is_empty() || domain.as_deref() != Some(rp_id) {
            return fail(
                "webauthn.rp_id",
                "must be a domain name (no scheme or port)",
            );
        }
        if w.rp_name.trim().is_empty() {
            return fail("webauthn.rp_name", "must not be empty");
        }
        // the origins named for passkeys must be the relying party's domain or under it (those
        // borrowed from server.cors_origins may serve other things: the start warns of them)
        if let Some(origin) = w.origins.iter().find(|o| !self.on_rp_id(o)) {
            return fail(
                "webauthn.origins",
                &format!("`{}` is not on webauthn.rp_id `{rp_id}`", origin.as_str()),
            );
        }
        Ok(())
    }

    /// Whether `origin`'s host is `webauthn.rp_id` or under it (browsers refuse the others).
    fn on_rp_id(&self, origin: &Origin) -> bool {
        let rp_id = self.webauthn.rp_id.as_str();
        let host = url::Url::parse(origin.as_str())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        host == rp_id || host.ends_with(&format!(".{rp_id}"))
    }

    /// The passkey origins (borrowed from `server.cors_origins`) that are not on `webauthn.rp_id`:
    /// no passkey ceremony from them can succeed.
    pub fn webauthn_origins_off_rp_id(&self) -> Vec<&str> {
        self.webauthn_origins()
            .iter()
            .filter(|o| !self.on_rp_id(o))
            .map(Origin::as_str)
            .collect()
    }

    /// The origins passkey ceremonies are accepted from: `webauthn.origins`, else the CORS origins.
    pub fn webauthn_origins(&self) -> &[Origin] {
        if self.webauthn.origins.is_empty() {
            &self.server.cors_origins
        } else {
            &self.webauthn.origins
        }
    }

    fn validate_email(&self) -> Result<(), ConfigError> {
        let e = &self.email;
        optional_url(
            "email.smtp_url",
            e.smtp_url.expose_secret(),
            &["smtp", "smtps"],
        )?;
        if e.from.parse::<lettre::message::Mailbox>().is_err() {
            return fail("email.from", "not an email address");
        }
        if url::Url::parse(&e.link_base_url).is_err() {
            return fail("email.link_base_url", "not a URL");
        }
        if !e.templates_dir.is_empty() && !Path::new(&e.templates_dir).is_dir() {
            return fail("email.templates_dir", "no such folder");
        }
        for (key, value) in [
            ("email.max_attempts", i64::from(e.max_attempts)),
            ("email.retry_base_secs", e.retry_base_secs as i64),
            ("email.poll_interval_secs", e.poll_interval_secs as i64),
            ("email.retention_days", i64::from(e.retention_days)),
            ("email.timeout_secs", e.timeout_secs as i64),
        ] {
            if value < 1 {
                return fail(key, "must be at least 1");
            }
        }
        if e.min_interval_secs < 0 {
            return fail("email.min_interval_secs", "must not be negative");
        }
        Ok(())
    }

    fn validate_events(&self) -> Result<(), ConfigError> {
        let e = &self.events;
        optional_url(
            "events.amqp_url",
            e.amqp_url.expose_secret(),
            &["amqp", "amqps"],
        )?;
        if e.exchange.trim().is_empty() || e.exchange.len() > 255 || e.exchange.starts_with("amq.")
        {
            return fail(
                "events.exchange",
                "must be 1 to 255 characters and not start with amq.",
            );
        }
        if e.retention_days < 1 {
            return fail("events.retention_days", "must be at least 1");
        }
        if e.poll_interval_secs < 1 {
            return fail("events.poll_interval_secs", "must be at least 1");
        }
        Ok(())
    }

    fn validate_notifications(&self) -> Result<(), ConfigError> {
        let n = &self.notifications;
        if n.heartbeat_secs < 1 || n.heartbeat_secs > 3600 {
            return fail("notifications.heartbeat_secs", "must be 1 to 3600");
        }
        if n.retention_days < 1 {
            return fail("notifications.retention_days", "must be at least 1");
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        if self.database.max_connections == 0 {
            return fail("database.max_connections", "must be at least 1");
        }
        if self.database.acquire_timeout_secs == 0 {
            return fail("database.acquire_timeout_secs", "must be at least 1");
        }
        if self.database.pgbouncer && self.database.migrate_url.expose_secret().is_empty() {
            return fail(
                "database.migrate_url",
                "is required when database.pgbouncer is true (a direct connection to PostgreSQL)",
            );
        }
        if url::Url::parse(self.database.url.expose_secret()).is_err() {
            return fail("database.url", "not a URL");
        }
        if self.server.body_limit_bytes < 1024 {
            return fail("server.body_limit_bytes", "must be at least 1024");
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        for (key, value) in [
            ("auth.access_ttl_secs", a.access_ttl_secs),
            ("auth.refresh_ttl_secs", a.refresh_ttl_secs),
            ("auth.lockout_secs", a.lockout_secs),
            ("auth.reset_token_ttl_secs", a.reset_token_ttl_secs),
            ("auth.session_max_age_secs", a.session_max_age_secs),
            ("auth.reauth_window_secs", a.reauth_window_secs),
            ("auth.verify_token_ttl_secs", a.verify_token_ttl_secs),
        ] {
            if value <= 0 {
                return fail(key, "must be a positive number of seconds");
            }
        }
        if a.refresh_reuse_grace_secs < 0 || a.refresh_reuse_grace_secs >= a.refresh_ttl_secs {
            return fail(
                "auth.refresh_reuse_grace_secs",
                "must be between 0 and auth.refresh_ttl_secs",
            );
        }
        if a.hash_queue_max == 0 {
            return fail("auth.hash_queue_max", "must be at least 1");
        }
        if a.max_failed_logins < 1 {
            return fail("auth.max_failed_logins", "must be at least 1");
        }
        if a.min_password_score > 4 {
            return fail("auth.min_password_score", "must be between 0 and 4");
        }
        if a.issuer.is_empty() {
            return fail("auth.issuer", "must not be empty");
        }
        if a.audience.is_empty() {
            return fail("auth.audience", "must not be empty");
        }
        if a.argon2_memory_kib < 19456 || a.argon2_iterations < 2 || a.argon2_parallelism < 1 {
            return fail(
                "auth.argon2_memory_kib",
                "argon2id must be at least m=19456 KiB, t=2, p=1",
            );
        }
        if let Err(e) = crate::auth::data_key::DataKey::from_base64(a.data_key.expose_secret()) {
            return fail("auth.data_key", &format!("{e:#}"));
        }
        if !self.signing_key_path().is_none_or(|p| p.is_file()) {
            return fail("auth.signing_key_file", "no such file");
        }
        if self.rate_limit.login_per_minute == 0 {
            return fail("rate_limit.login_per_minute", "must be at least 1");
        }
        Ok(())
    }

    fn validate_oauth(&self) -> Result<(), ConfigError> {
        let o = &self.oauth;
        if o.http_timeout_secs == 0 {
            return fail("oauth.http_timeout_secs", "must be at least 1");
        }
        for (key, value) in [
            ("oauth.state_ttl_secs", o.state_ttl_secs),
            ("oauth.telegram.max_age_secs", o.telegram.max_age_secs),
        ] {
            if value <= 0 {
                return fail(key, "must be a positive number of seconds");
            }
        }
        for (key, value) in [
            ("oauth.yandex.authorize_url", &o.yandex.authorize_url),
            ("oauth.yandex.token_url", &o.yandex.token_url),
            ("oauth.yandex.userinfo_url", &o.yandex.userinfo_url),
        ] {
            if url::Url::parse(value).is_err() {
                return fail(key, "not a URL");
            }
        }
        if !o.yandex.client_id.is_empty() && url::Url::parse(&o.yandex.redirect_uri).is_err() {
            return fail(
                "oauth.yandex.redirect_uri",
                "not a URL (required with oauth.yandex.client_id)",
            );
        }
        for target in &o.allowed_redirects {
            if url::Url::parse(target).is_err() {
                return fail(
                    "oauth.allowed_redirects",
                    &format!("`{target}` is not a URL"),
                );
            }
        }
        Ok(())
    }

    fn validate_rest(&self) -> Result<(), ConfigError> {
        let r = &self.rate_limit;
        let redis = r.redis_url.expose_secret();
        optional_url("rate_limit.redis_url", redis, &["redis"])?;
        // the client reads the rest (database number, options) without connecting
        if let Err(e) = (!redis.is_empty())
            .then(|| redis::Client::open(redis))
            .transpose()
        {
            return fail("rate_limit.redis_url", &e.to_string());
        }
        if r.redis_prefix.len() > 64 {
            return fail("rate_limit.redis_prefix", "must be at most 64 characters");
        }
        if r.export_per_hour == 0 {
            return fail("rate_limit.export_per_hour", "must be at least 1");
        }
        let t = &self.telemetry;
        optional_url(
            "telemetry.otlp_endpoint",
            &t.otlp_endpoint,
            &["http", "https"],
        )?;
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return fail("telemetry.sample_ratio", "must be between 0 and 1");
        }
        if t.service_name.is_empty() {
            return fail("telemetry.service_name", "must not be empty");
        }
        if self.users.purge_after_days < 0 {
            return fail("users.purge_after_days", "must not be negative");
        }
        if self.users.purge_interval_secs == 0 {
            return fail("users.purge_interval_secs", "must be at least 1");
        }
        for key in &self.server_api.keys {
            if key.name.is_empty() {
                return fail("server_api.keys", "every key needs a name");
            }
            if key.key.expose_secret().len() < 16 {
                return fail(
                    "server_api.keys",
                    &format!("key `{}` is shorter than 16 characters", key.name),
                );
            }
        }
        if self.cookies.access_name.is_empty() || self.cookies.refresh_name.is_empty() {
            return fail("cookies.access_name", "cookie names must not be empty");
        }
        Ok(())
    }

    pub fn signing_key_path(&self) -> Option<PathBuf> {
        let file = self.auth.signing_key_file.trim();
        (!file.is_empty()).then(|| PathBuf::from(file))
    }

    /// JSON logs under CI or in a container unless set explicitly.
    pub fn log_json(&self) -> bool {
        match self.log.format {
            LogFormat::Json => true,
            LogFormat::Pretty => false,
            LogFormat::Auto => {
                std::env::var_os("CI").is_some() || Path::new("/.dockerenv").exists()
            }
        }
    }
}

/// Empty, or a URL with one of `schemes`.
fn optional_url(key: &str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if value.is_empty() || url::Url::parse(value).is_ok_and(|u| schemes.contains(&u.scheme())) {
        return Ok(());
    }
    let list: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    fail(key, &format!("not a URL of {}", list.join(" or ")))
}

fn fail(key: &str, why: &str) -> Result<(), ConfigError> {
    Err(ConfigError(format!("{key}: {why}")))
}

/// A list of origins (YAML list or comma-separated), each checked once here.
fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Origin>, D::Error> {
    list_or_csv(d)?
        .iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// A list of networks; a bare address means that one address.
fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    list_or_csv(d)?
        .iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a CIDR or address")))
        })
        .collect()
}

/// Accepts a YAML list or a comma-separated string (the environment form).
fn list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Form::deserialize(d)? {
        Form::List(items) => items,
        Form::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// Accepts `[{name, key}]` or the environment form `name1:key1,name2:key2`.
fn server_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServerKey>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<ServerKey>),
        Csv(String),
    }
    match Form::deserialize(d)? {
        Form::List(keys) => Ok(keys),
        Form::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|pair| match pair.split_once(':') {
                Some((name, key)) => Ok(ServerKey {
                    name: name.trim().to_owned(),
                    key: SecretString::from(key.trim().to_owned()),
                }),
                None => Err(serde::de::Error::custom(
                    "expected name:key pairs separated by commas",
                )),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::from_figment(Figment::from(Yaml::string(DEFAULTS))).unwrap();
        assert_eq!(s.auth.access_ttl_secs, 900);
        assert_eq!(s.server.listen.port(), 8080);
    }

    #[test]
    fn bad_value_names_the_key() {
        let f = Figment::from(Yaml::string(DEFAULTS))
            .merge(Serialized::default("auth.access_ttl_secs", "soon"));
        let err = Settings::from_figment(f).unwrap_err().to_string();
        assert!(err.contains("auth.access_ttl_secs"), "{err}");
        let f = Figment::from(Yaml::string(DEFAULTS))
            .merge(Serialized::default("auth.min_password_score", 9));
        let err = Settings::from_figment(f).unwrap_err().to_string();
        assert!(err.contains("auth.min_password_score"), "{err}");
    }

    #[test]
    fn bad_origins_and_proxies_name_their_key() {
        for (key, value) in [
            ("server.cors_origins", "not an origin"),
            ("server.cors_origins", "https://app.example/path"),
            ("server.trusted_proxies", "10.0.0.0/99"),
            ("log.format", "xml"),
        ] {
            let f = Figment::from(Yaml::string(DEFAULTS)).merge(Serialized::default(key, value));
            let err = Settings::from_figment(f).unwrap_err().to_string();
            assert!(err.contains(key), "{key}={value}: {err}");
        }
    }

    #[test]
    fn the_relying_party_and_the_export_budget_are_checked() {
        for (key, value) in [
            ("webauthn.rp_id", "https://app.example"),
            ("webauthn.rp_id", "app.example:8443"),
            ("webauthn.rp_id", ""),
            ("webauthn.rp_name", " "),
            ("webauthn.origins", "https://evil.example"),
            ("webauthn.origins", "https://notlocalhost"),
            ("rate_limit.export_per_hour", "0"),
        ] {
            let f = Figment::from(Yaml::string(DEFAULTS)).merge(Serialized::default(key, value));
            let err = Settings::from_figment(f).unwrap_err().to_string();
            assert!(err.contains(key), "{key}={value}: {err}");
        }
        // origins on the relying party's domain or under it; the CORS origins stand in for none
        let f = Figment::from(Yaml::string(DEFAULTS))
            .merge(Serialized::default("webauthn.rp_id", "example.com"))
            .merge(Serialized::default(
                "webauthn.origins",
                vec!["https://example.com", "https://app.example.com:8443"],
            ))
            .merge(Serialized::default(
                "server.cors_origins",
                "https://other.example",
            ));
        let s = Settings::from_figment(f).unwrap();
        assert_eq!(s.webauthn_origins().len(), 2);
        let f = Figment::from(Yaml::string(DEFAULTS)).merge(Serialized::default(
            "server.cors_origins",
            "http://localhost:3000",
        ));
        let s = Settings::from_figment(f).unwrap();
        assert_eq!(s.webauthn_origins()[0].as_str(), "http://localhost:3000");
    }

    #[test]
    fn server_keys_parse_from_env_form() {
        let f = Figment::from(Yaml::string(DEFAULTS)).merge(Serialized::default(
            "server_api.keys",
            "billing:0123456789abcdef0123, crm:fedcba9876543210fedc",
        ));
        let s = Settings::from_figment(f).unwrap();
        let names: Vec<_> = s.server_api.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["billing", "crm"]);
    }

    #[test]
    fn trusted_proxies_accept_cidrs_and_bare_addresses() {
        let f = Figment::from(Yaml::string(DEFAULTS)).merge(Serialized::default(
            "server.trusted_proxies",
            vec!["10.0.0.0/8", "127.0.0.1"],
        ));
        let s = Settings::from_figment(f).unwrap();
        let nets = &s.server.trusted_proxies;
        assert!(nets[1].contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
        assert!(!nets[1].contains(&"127.0.0.2".parse::<IpAddr>().unwrap()));
    }
}
