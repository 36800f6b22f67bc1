//! Rate limits shared across replicas through Redis, with an in-process
//! fallback (SPEC section 2, DESIGN D6).
//!
//! The shared limiter is GCRA in one Lua script (atomic; the clock is
//! Redis's own `TIME`, so replicas with skewed clocks agree). While Redis is
//! not configured, unreachable or slow (a call has 200 ms), each process
//! limits on its own with governor, and the outage is logged once. After
//! the first failed call the circuit opens: requests skip Redis without
//! waiting for it, and a background probe closes the circuit when Redis
//! answers again, so shared limits resume by themselves.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use redis::aio::ConnectionManager;

use crate::redis_link::{Circuit, CALL_TIMEOUT};

/// A limit: `limit` requests per `period`, as a smooth rate with a burst of
/// `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub name: &'static str,
    pub limit: u32,
    pub period: Duration,
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit: try again after this long.
    Limited {
        retry_after: Duration,
        limit: u32,
    },
}

/// GCRA over a key: returns {allowed (1|0), milliseconds to wait}.
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, new_tat - now))
return {1, 0}
";

/// The limiter: shared when Redis answers, per process otherwise.
pub struct RateLimiter {
    redis: Option<ConnectionManager>,
    script: redis::Script,
    prefix: String,
    local:
        std::sync::Mutex<std::collections::HashMap<&'static str, DefaultKeyedRateLimiter<String>>>,
    circuit: std::sync::Arc<Circuit>,
}

impl RateLimiter {
    /// A limiter over `redis` (none: per-process limits only). Keys get
    /// `prefix`, so deployments (and tests) sharing a Redis stay apart.
    pub fn new(redis: Option<ConnectionManager>, prefix: &str) -> Self {
        Self {
            redis,
            script: redis::Script::new(GCRA),
            prefix: prefix.to_string(),
            local: Default::default(),
            circuit: Circuit::new(),
        }
    }

    /// Counts one request against `limit` for `key`.
    pub async fn check(&self, limit: Limit, key: &str) -> Decision {
        let interval_ms = (limit.period.as_millis() as u64 / u64::from(limit.limit.max(1))).max(1);
        if let Some(redis) = self.redis.as_ref().filter(|_| !self.circuit.is_open()) {
            let mut connection = redis.clone();
            let full_key = format!("{}:rl:{}:{}", self.prefix, limit.name, key);
            let mut invocation = self.script.key(&full_key);
            invocation
                .arg(interval_ms)
                .arg(interval_ms * u64::from(limit.limit.max(1)));
            let call = invocation.invoke_async::<(i64, i64)>(&mut connection);
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok((allowed, wait_ms))) => {
                    return if allowed == 1 {
                        Decision::Allowed
                    } else {
                        Decision::Limited {
                            retry_after: Duration::from_millis(wait_ms.max(1) as u64),
                            limit: limit.limit,
                        }
                    };
                }
                Ok(Err(error)) => self.note_outage(redis, &error.to_string()),
                Err(_) => self.note_outage(redis, "timed out"),
            }
        }
        self.check_locally(limit, key)
    }

    /// Whether limits are per process now (no Redis, or its circuit open).
    pub fn is_local(&self) -> bool {
        self.redis.is_none() || self.circuit.is_open()
    }

    fn note_outage(&self, redis: &ConnectionManager, reason: &str) {
        if self.circuit.trip(redis) {
            tracing::warn!(
                reason,
                "Redis unavailable: rate limits hold per process until it returns"
            );
        }
    }

    fn check_locally(&self, limit: Limit, key: &str) -> Decision {
        let mut limiters = self
            .local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let limiter = limiters.entry(limit.name).or_insert_with(|| {
            let burst = NonZeroU32::new(limit.limit.max(1)).unwrap_or(NonZeroU32::MIN);
            let per = limit.period / burst.get();
            let quota = Quota::with_period(per.max(Duration::from_millis(1)))
                .unwrap_or_else(|| Quota::per_minute(burst))
                .allow_burst(burst);
            DefaultKeyedRateLimiter::keyed(quota)
        });
        match limiter.check_key(&key.to_string()) {
            Ok(()) => Decision::Allowed,
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                limit: limit.limit,
            },
        }
    }
}
