//! The claim side of the dispatch model (the ready, scheduled and running sets the projector
//! maintains, see [`crate::keys`]): one atomic Lua script promotes due jobs and pops the best
//! ready ones for a worker, and a released claim goes back where it was.

use crate::keys;
use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use std::time::Duration;

/// A job popped for a worker: it may start attempt `attempt` of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub queue: String,
    pub job_id: String,
    pub attempt: u32,
}

#[derive(Clone)]
pub struct Dispatch {
    connection: ConnectionManager,
    claim: Script,
    release: Script,
}

/// Running → ready, scored like `apply.lua` does: (9 − priority)·10¹³ + enqueue ms.
const RELEASE: &str = r"
local priority = tonumber(redis.call('HGET', KEYS[1], 'priority') or '0')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], (9 - priority) * 1e13 + tonumber(ARGV[2]), ARGV[1])";

impl Dispatch {
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            claim: Script::new(include_str!("lua/claim.lua")),
            release: Script::new(RELEASE),
        }
    }

    /// Claims up to `max` jobs of `tenant` from `queues` (in that order of preference) in
    /// `namespace`, each running until `lease` from `now_ms`.
    pub async fn claim(
        &mut self,
        namespace: &str,
        tenant: &str,
        queues: &[String],
        max: usize,
        now_ms: i64,
        lease: Duration,
    ) -> RedisResult<Vec<Claim>> {
        if max == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let flat: Vec<String> = self
            .claim
            .arg(namespace)
            .arg(tenant)
            .arg(now_ms)
            .arg(lease.as_millis() as u64)
            .arg(max)
            .arg(queues)
            .invoke_async(&mut self.connection)
            .await?;
        Ok(flat
            .chunks_exact(3)
            .map(|c| Claim {
                queue: c[0].clone(),
                job_id: c[1].clone(),
                attempt: c[2].parse().unwrap_or(0),
            })
            .collect())
    }

    /// Puts a claim the write side could not start (for a reason that may pass) back in the
    /// ready set at `enqueued_ms`, at the job's own priority.
    pub async fn release(
        &mut self,
        namespace: &str,
        tenant: &str,
        claim: &Claim,
        enqueued_ms: i64,
    ) -> RedisResult<()> {
        self.release
            .key(keys::job(namespace, &claim.job_id))
            .key(keys::dispatch(namespace, "running", tenant, &claim.queue))
            .key(keys::dispatch(namespace, "ready", tenant, &claim.queue))
            .arg(&claim.job_id)
            .arg(enqueued_ms)
            .invoke_async(&mut self.connection)
            .await
    }
}
