//! Per-client-IP budgets of the routes that check a password or create an account (governor, in
//! memory, per instance). The services spend them, so every route reaching an operation is limited
//! alike.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

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

type IpLimiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

pub struct Limits {
    login: IpLimiter,
    token: IpLimiter,
    sign_up: IpLimiter,
    restore: IpLimiter,
    confirm_password: IpLimiter,
    forgot: IpLimiter,
}

impl Limits {
    pub fn new(per_minute: u32) -> Self {
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

    /// Spends one call of `ip`'s budget, or answers 429 `rate_limited` with when to come back.
    pub fn check(&self, budget: Budget, ip: IpAddr) -> AppResult<()> {
        self.limiter(budget).check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            AppError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }

    /// Forgets idle clients so the maps stay small.
    pub fn retain_recent(&self) {
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
