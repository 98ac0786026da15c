//! Per-client budgets of the routes that check a password or create an account. The services
//! spend them, so every route reaching an operation is limited alike.
//!
//! Two stores: in process (governor; the default, each instance counts alone) and Redis when
//! `rate_limit.redis_url` is set (every instance spends the same budget: a GCRA in one Lua script,
//! one round trip per check over one multiplexed, self-reconnecting connection). Redis that does
//! not answer never fails a request: the check passes, `rate_limit_backend_errors_total` counts
//! it and the log warns once a minute (the per-account lockout lives in PostgreSQL and still
//! holds).
//!
//! Clients are counted by network: an IPv4-mapped IPv6 address as its IPv4 address, other IPv6
//! addresses per /64 (one customer's network, where a single host can pick any address).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::error::{AppError, AppResult};

/// The operations with a budget of their own, each `rate_limit.login_per_minute` a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Login,
    Token,
    SignUp,
    Restore,
    /// the private routes that check a current password (contacts, password)
    ConfirmPassword,
    Forgot,
}

impl Budget {
    fn name(self) -> &'static str {
        match self {
            Budget::Login => "login",
            Budget::Token => "token",
            Budget::SignUp => "sign_up",
            Budget::Restore => "restore",
            Budget::ConfirmPassword => "confirm_password",
            Budget::Forgot => "forgot",
        }
    }
}

/// The network a client is counted as.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
        v4 => v4,
    }
}

/// The budgets: in this process, or in Redis for every instance.
pub enum Limits {
    Local(Box<Local>),
    Shared(Shared),
}

impl Limits {
    /// In-process budgets; shared ones in Redis when `redis_url` is not empty (connected in the
    /// background: checks pass, counted as errors, until it answers).
    pub fn new(
        per_minute: u32,
        redis_url: &str,
        prefix: &str,
        errors: Counter,
    ) -> anyhow::Result<Self> {
        Ok(if redis_url.is_empty() {
            Limits::Local(Box::new(Local::new(per_minute)))
        } else {
            Limits::Shared(Shared::new(per_minute, redis_url, prefix, errors)?)
        })
    }

    /// Spends one call of the client's budget, or answers 429 `rate_limited` with when to come back.
    pub async fn check(&self, budget: Budget, ip: IpAddr) -> AppResult<()> {
        let network = client_network(ip);
        let wait = match self {
            Limits::Shared(shared) => shared.check(budget, network).await,
            Limits::Local(local) => local.check(budget, network),
        };
        match wait {
            None => Ok(()),
            Some(wait) => Err(AppError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }),
        }
    }

    /// Forgets idle clients so the in-process maps stay small (Redis expires its keys itself).
    pub fn retain_recent(&self) {
        if let Limits::Local(local) = self {
            local.retain_recent();
        }
    }
}

type IpLimiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

pub struct Local {
    login: IpLimiter,
    token: IpLimiter,
    sign_up: IpLimiter,
    restore: IpLimiter,
    confirm_password: IpLimiter,
    forgot: IpLimiter,
}

impl Local {
    fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            login: RateLimiter::keyed(quota),
            token: RateLimiter::keyed(quota),
            sign_up: RateLimiter::keyed(quota),
            restore: RateLimiter::keyed(quota),
            confirm_password: RateLimiter::keyed(quota),
            forgot: RateLimiter::keyed(quota),
        }
    }

    fn limiter(&self, budget: Budget) -> &IpLimiter {
        match budget {
            Budget::Login => &self.login,
            Budget::Token => &self.token,
            Budget::SignUp => &self.sign_up,
            Budget::Restore => &self.restore,
            Budget::ConfirmPassword => &self.confirm_password,
            Budget::Forgot => &self.forgot,
        }
    }

    /// None when allowed, else how long to wait.
    fn check(&self, budget: Budget, ip: IpAddr) -> Option<Duration> {
        self.limiter(budget)
            .check_key(&ip)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    fn retain_recent(&self) {
        for l in [
            &self.login,
            &self.token,
            &self.sign_up,
            &self.restore,
            &self.confirm_password,
            &self.forgot,
        ] {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// GCRA over Redis time: the key holds the "theoretical arrival time" in ms. Allows `limit` at
/// once, then one every `interval`. Returns 0 when allowed, else the ms to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - burst
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
return 0
";

/// How long one check may wait for Redis before it passes (fail open).
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

pub struct Shared {
    conn: Arc<OnceCell<ConnectionManager>>,
    script: redis::Script,
    prefix: String,
    interval_ms: u64,
    burst_ms: u64,
    errors: Counter,
    last_warning: AtomicI64,
}

impl Shared {
    fn new(per_minute: u32, url: &str, prefix: &str, errors: Counter) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = Arc::new(OnceCell::new());
        // connect in the background, retrying: a start while Redis is away still serves; the
        // retries end with the budgets (a state dropped before Redis answered)
        let cell = Arc::downgrade(&conn);
        tokio::spawn(async move {
            let config =
                ConnectionManagerConfig::new().set_connection_timeout(Some(Duration::from_secs(2)));
            loop {
                let connected =
                    ConnectionManager::new_with_config(client.clone(), config.clone()).await;
                let Some(slot) = cell.upgrade() else {
                    return;
                };
                match connected {
                    Ok(manager) => {
                        let _ = slot.set(manager);
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        });
        let per_minute = u64::from(per_minute.max(1));
        let interval_ms = (60_000 / per_minute).max(1);
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA),
            prefix: prefix.to_owned(),
            interval_ms,
            burst_ms: interval_ms * (per_minute - 1),
            errors,
            last_warning: AtomicI64::new(0),
        })
    }

    async fn check(&self, budget: Budget, ip: IpAddr) -> Option<Duration> {
        let key = format!("{}{}:{ip}", self.prefix, budget.name());
        let answer = match self.conn.get() {
            Some(conn) => {
                let mut conn = conn.clone();
                let mut invocation = self.script.prepare_invoke();
                invocation.key(key).arg(self.interval_ms).arg(self.burst_ms);
                let call = invocation.invoke_async::<u64>(&mut conn);
                tokio::time::timeout(REDIS_TIMEOUT, call)
                    .await
                    .map_err(|_| "timed out".to_owned())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            None => Err("not connected".to_owned()),
        };
        match answer {
            Ok(0) => None,
            Ok(wait_ms) => Some(Duration::from_millis(wait_ms)),
            Err(error) => {
                self.errors.inc();
                let now = chrono::Utc::now().timestamp();
                let last = self.last_warning.load(Ordering::Relaxed);
                if now - last >= 60
                    && self
                        .last_warning
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(%error, "rate limits: Redis does not answer; requests are served without a limit");
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_network() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_network(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_network(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(
            client_network(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_network(ip("2001:db8:1:2::1")),
            client_network(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_network(ip("2001:db8:1:2::1")),
            client_network(ip("2001:db8:1:3::1"))
        );
    }
}
