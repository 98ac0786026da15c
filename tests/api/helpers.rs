//! The test harness: an app over the test's own database (from `#[sqlx::test]`), driven through the
//! real router in-process, with a request builder and response helpers.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use figment::providers::Serialized;
use figment::Figment;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;
use users_service::config::Settings;
use users_service::state::AppState;

pub const SERVER_KEY: &str = "test-server-key-0123456789";
pub const ALLOWED_ORIGIN: &str = "https://app.example";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    pub pool: PgPool,
}

impl TestApp {
    pub async fn new(pool: PgPool) -> Self {
        Self::with(pool, |f| f).await
    }

    /// An app whose settings are the defaults, the test settings, then `tweak`.
    pub async fn with(pool: PgPool, tweak: impl FnOnce(Figment) -> Figment) -> Self {
        init_logs();
        let settings = Settings::from_figment(tweak(test_figment())).unwrap();
        let state = users_service::app::state(settings, pool).await.unwrap();
        Self::from_state(state).await
    }

    /// An app over a state built elsewhere (a test that owns its database server).
    pub async fn from_state(state: AppState) -> Self {
        init_logs();
        let router = users_service::http::router(state.clone());
        let pool = state.db.direct().clone();
        Self {
            state,
            router,
            pool,
        }
    }

    pub fn req(&self, method: Method, path: &str) -> Req<'_> {
        Req {
            app: self,
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Body::empty(),
            ip: "192.0.2.1".parse().unwrap_or(IpAddr::from([127, 0, 0, 1])),
        }
    }

    pub fn get(&self, path: &str) -> Req<'_> {
        self.req(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Req<'_> {
        self.req(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> Req<'_> {
        self.req(Method::PUT, path)
    }

    pub fn delete(&self, path: &str) -> Req<'_> {
        self.req(Method::DELETE, path)
    }

    /// Signs up through the public route; returns the user's id.
    pub async fn sign_up(&self, email: &str) -> String {
        let res = self
            .post("/api/v1/public/users/sign_up")
            .json(json!({"email": email, "password": PASSWORD, "first_name": "Ann"}))
            .ip(unique_ip())
            .send()
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        res.json()["id"].as_str().unwrap().to_owned()
    }

    /// Logs in through the public route (from a fresh IP, so rate limits stay out of the way).
    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        self.post("/api/v1/public/users/login")
            .json(json!({"email": email, "password": password}))
            .ip(unique_ip())
            .send()
            .await
    }

    /// Signs up and logs in; returns the session's cookies.
    pub async fn signed_in(&self, email: &str) -> Session {
        self.sign_up(email).await;
        let res = self.login(email, PASSWORD).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        Session {
            access: res.cookie("access_token").unwrap(),
            refresh: res.cookie("refresh_token").unwrap(),
            session_id: res.json()["session_id"].as_str().unwrap().to_owned(),
            user_id: res.json()["user"]["id"].as_str().unwrap().to_owned(),
        }
    }

    /// Creates a user with a role through the server route, then signs in.
    pub async fn signed_in_as(&self, email: &str, role: &str) -> Session {
        let res = self
            .post("/api/v1/server/users/sign_up")
            .server_key()
            .json(json!({"email": email, "password": PASSWORD, "first_name": "Ann", "role": role}))
            .send()
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        let res = self.login(email, PASSWORD).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        Session {
            access: res.cookie("access_token").unwrap(),
            refresh: res.cookie("refresh_token").unwrap(),
            session_id: res.json()["session_id"].as_str().unwrap().to_owned(),
            user_id: res.json()["user"]["id"].as_str().unwrap().to_owned(),
        }
    }

    /// The audit actions recorded about a user, oldest first.
    pub async fn audit_actions(&self, user_id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "select action from audit_log where target_user_id = $1::uuid order by id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Tokens from the body-form sign-in.
    pub async fn tokens(&self, email: &str, password: &str) -> Value {
        let res = self
            .post("/api/v1/public/users/token")
            .json(json!({"email": email, "password": password}))
            .ip(unique_ip())
            .send()
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.json()
    }

    /// The value of an unlabelled series in this instance's `/metrics` (0 when absent).
    pub async fn scrape_counter(&self, name: &str) -> f64 {
        let text = self.get("/metrics").send().await.text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn scalar_i64(&self, sql: &str, bind: &str) -> i64 {
        sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// A signed-in browser's cookies.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub session_id: String,
    pub user_id: String,
}

impl Session {
    pub fn cookie_header(&self) -> String {
        format!(
            "access_token={}; refresh_token={}",
            self.access, self.refresh
        )
    }
}

pub struct Req<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Body,
    ip: IpAddr,
}

impl Req<'_> {
    pub fn json(mut self, body: Value) -> Self {
        self.headers
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        self.body = Body::from(body.to_string());
        self
    }

    pub fn raw(mut self, content_type: &str, body: impl Into<Body>) -> Self {
        self.headers
            .insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn server_key(self) -> Self {
        self.bearer(SERVER_KEY)
    }

    pub fn cookies(self, session: &Session) -> Self {
        self.header("cookie", &session.cookie_header())
    }

    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = ip;
        self
    }

    pub async fn send(self) -> TestResponse {
        let mut request = Request::builder()
            .method(self.method)
            .uri(self.path)
            .body(self.body)
            .unwrap();
        *request.headers_mut() = self.headers;
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(self.ip, 40000)));
        let response = self.app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json",
            "{}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status.as_u16());
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The whole `Set-Cookie` line for a cookie name.
    pub fn set_cookie_line(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The value a `Set-Cookie` gives the named cookie (None when not set or cleared).
    pub fn cookie(&self, name: &str) -> Option<String> {
        let line = self.set_cookie_line(name)?;
        let value = line.split(';').next()?.split_once('=')?.1.to_owned();
        (!value.is_empty()).then_some(value)
    }

    /// True when both auth cookies are cleared (Max-Age=0).
    pub fn clears_cookies(&self) -> bool {
        ["access_token", "refresh_token"].iter().all(|name| {
            self.set_cookie_line(name)
                .is_some_and(|l| l.contains("Max-Age=0") && l.starts_with(&format!("{name}=;")))
        })
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A different client address for every call.
pub fn unique_ip() -> IpAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8])
}

pub fn test_figment() -> Figment {
    Settings::figment(None)
        .merge(Serialized::default(
            "server_api.keys",
            json!([{"name": "tests", "key": SERVER_KEY}]),
        ))
        .merge(Serialized::default(
            "server.cors_origins",
            vec![ALLOWED_ORIGIN],
        ))
        .merge(Serialized::default("log.format", "json"))
}

/// Everything the test binary logs, at every level, so a test can prove secrets never reach logs.
pub fn captured_logs() -> String {
    let buf = LOGS
        .get()
        .map(|b| b.lock().unwrap().clone())
        .unwrap_or_default();
    String::from_utf8_lossy(&buf).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

fn init_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buf = buf.clone();
            move || LogWriter(buf.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_current_span(true)
            .with_writer(writer)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    });
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
