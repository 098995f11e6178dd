//! Per-tenant ingest limits, held in Redis so that they hold across every ingest instance:
//! two token buckets per tenant (lines and bytes per second, each with a burst), checked and
//! taken together by one Lua script (`limit.lua`), so a request is let in or refused whole
//! and concurrent requests on any instance see each other at once.
//!
//! One hash per tenant, `{prefix}:ingest:limit:{tenant}`, expiring once both buckets would
//! be full again: idle tenants leave nothing behind, so the keys stay bounded by the tenants
//! active in the last few seconds. Redis's own clock (`TIME`) drives the refill, so
//! instances with skewed clocks agree.
//!
//! A request larger than a burst is let in when the bucket is full and leaves it in debt,
//! which later requests wait out: big batches are never refused forever, and the average
//! rate still holds. When Redis fails or is slow (more than [`TIMEOUT`]), the request is let
//! in (and counted): the limits protect the pipeline, they must not stop logging.

use ordo_domain::spec::TenantId;
use redis::aio::ConnectionManager;
use redis::Script;
use std::time::Duration;

/// Bound of the limit check; past it the request is let in.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// A tenant's allowance; a rate of 0 means no limit on that dimension.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantLimits {
    pub lines_per_sec: u64,
    pub lines_burst: u64,
    pub bytes_per_sec: u64,
    pub bytes_burst: u64,
}

impl TenantLimits {
    /// The defaults: twice the role's throughput target per tenant, a burst of two seconds.
    pub const DEFAULT: TenantLimits = TenantLimits {
        lines_per_sec: 100_000,
        lines_burst: 200_000,
        bytes_per_sec: 64 * 1024 * 1024,
        bytes_burst: 128 * 1024 * 1024,
    };

    pub fn unlimited(&self) -> bool {
        self.lines_per_sec == 0 && self.bytes_per_sec == 0
    }
}

/// What the limiter says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit: come back after this long (the time until the buckets hold the
    /// request, at most a burst's worth of refill).
    Limited(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("no answer from Redis within {TIMEOUT:?}")]
    Timeout,
}

#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
    prefix: String,
    limits: TenantLimits,
    script: Script,
}

impl RateLimiter {
    pub fn new(redis: ConnectionManager, prefix: &str, limits: TenantLimits) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            limits,
            script: Script::new(include_str!("limit.lua")),
        }
    }

    /// Takes `lines` and `bytes` from `tenant`'s buckets, or says how long to wait.
    pub async fn check(
        &self,
        tenant: &TenantId,
        lines: u64,
        bytes: u64,
    ) -> Result<Decision, LimiterError> {
        if self.limits.unlimited() {
            return Ok(Decision::Allowed);
        }
        let limits = self.limits;
        let key = format!("{}:ingest:limit:{tenant}", self.prefix);
        let mut redis = self.redis.clone();
        let mut invocation = self.script.key(key);
        invocation
            .arg(lines)
            .arg(bytes)
            .arg(limits.lines_per_sec)
            .arg(limits.lines_burst.max(1))
            .arg(limits.bytes_per_sec)
            .arg(limits.bytes_burst.max(1));
        let wait_ms: u64 = tokio::time::timeout(TIMEOUT, invocation.invoke_async(&mut redis))
            .await
            .map_err(|_| LimiterError::Timeout)??;
        Ok(match wait_ms {
            0 => Decision::Allowed,
            ms => Decision::Limited(Duration::from_millis(ms)),
        })
    }
}
