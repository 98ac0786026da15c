//! Per-client-IP budgets for the public sign-in routes (governor, in memory, per instance).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::{AppError, AppResult};

pub struct IpLimiter(RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>);

impl IpLimiter {
    fn per_minute(n: NonZeroU32) -> Self {
        Self(RateLimiter::keyed(Quota::per_minute(n)))
    }

    /// Spends one call of `ip`'s budget, or answers 429 with when to come back.
    pub fn check(&self, ip: IpAddr) -> AppResult<()> {
        self.0.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }
}

/// Each route has its own budget of `rate_limit.login_per_minute`.
pub struct Limits {
    pub login: IpLimiter,
    pub token: IpLimiter,
    pub sign_up: IpLimiter,
    pub restore: IpLimiter,
}

impl Limits {
    pub fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            login: IpLimiter::per_minute(n),
            token: IpLimiter::per_minute(n),
            sign_up: IpLimiter::per_minute(n),
            restore: IpLimiter::per_minute(n),
        }
    }

    /// Forgets idle clients so the maps stay small.
    pub fn retain_recent(&self) {
        for l in [&self.login, &self.token, &self.sign_up, &self.restore] {
            l.0.retain_recent();
            l.0.shrink_to_fit();
        }
    }
}
