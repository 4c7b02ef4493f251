//! Per-key rate limits: a token bucket per key, sized by the key's role, so one runaway
//! integration cannot swamp PostgreSQL. Buckets live in each process: with N replicas a
//! key may get up to N times its rate.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::access::Role;

/// A sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// The rate of each role (configurable as `rate_limits.<role>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoleRates {
    pub admin: Rate,
    pub qa_reviewer: Rate,
    pub agent: Rate,
    pub integration: Rate,
    pub analyst: Rate,
    pub service: Rate,
}

impl Default for RoleRates {
    fn default() -> Self {
        let rate = |per_second: f64| Rate {
            per_second,
            burst: per_second * 2.0,
        };
        Self {
            admin: rate(200.0),
            qa_reviewer: rate(100.0),
            agent: rate(20.0),
            integration: rate(500.0),
            analyst: rate(50.0),
            service: rate(5_000.0),
        }
    }
}

impl RoleRates {
    pub fn of(&self, role: Role) -> Rate {
        match role {
            Role::Admin => self.admin,
            Role::QaReviewer => self.qa_reviewer,
            Role::Agent => self.agent,
            Role::Integration => self.integration,
            Role::Analyst => self.analyst,
            Role::Service => self.service,
        }
    }
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

pub struct RateLimiter {
    rates: RoleRates,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

impl RateLimiter {
    pub fn new(rates: RoleRates) -> Self {
        Self {
            rates,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of the key's bucket, or says how long until one is available.
    pub fn take(&self, key_id: Uuid, role: Role) -> Result<(), Duration> {
        self.take_at(key_id, role, Instant::now())
    }

    fn take_at(&self, key_id: Uuid, role: Role, now: Instant) -> Result<(), Duration> {
        let rate = self.rates.of(role);
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let bucket = buckets.entry(key_id).or_insert(Bucket {
            tokens: rate.burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if rate.per_second <= 0.0 {
            Err(Duration::from_secs(60))
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: f64) -> RateLimiter {
        let rate = Rate { per_second, burst };
        RateLimiter::new(RoleRates {
            agent: rate,
            ..RoleRates::default()
        })
    }

    #[test]
    fn a_burst_passes_then_calls_wait_for_the_refill() {
        let limiter = limiter(10.0, 3.0);
        let key = Uuid::now_v7();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at(key, Role::Agent, start).is_ok());
        }
        let wait = limiter.take_at(key, Role::Agent, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6);
        assert!(
            limiter
                .take_at(key, Role::Agent, start + Duration::from_millis(100))
                .is_ok()
        );
    }

    #[test]
    fn keys_have_buckets_of_their_own() {
        let limiter = limiter(1.0, 1.0);
        let now = Instant::now();
        assert!(limiter.take_at(Uuid::now_v7(), Role::Agent, now).is_ok());
        assert!(limiter.take_at(Uuid::now_v7(), Role::Agent, now).is_ok());
    }
}
